"""The GGUF export checked by llama.cpp itself (through llama-cpp-python): tokenization, logits, greedy tokens.

A small Llama-style model is trained for a few dozen steps on repetitive text, so that its greedy
choices are decisive (random weights give near-tied logits, where f16 rounding flips the argmax),
then exported as f16 (and q8_0) and run by llama.cpp on 2 threads. Run with ``pytest -m llamacpp``;
it needs ``llama-cpp-python`` (``make test-llamacpp`` installs it).

The q8_0 file is loaded without llama.cpp's extra CPU buffer types (``--no-repack``): on CPUs
with AMX, llama.cpp's AMX Q8_0 matmul (llama-cpp-python 0.3.36) segfaults on any batch of two or
more tokens (ggml-org/llama.cpp#20824), whatever the file; the plain CPU path runs it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from lightningllm.data.instruct import format_prompt
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.interop.gguf import write_gguf
from lightningllm.model import GPT, GPTConfig, generate

pytestmark = pytest.mark.llamacpp
llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama.cpp checks need llama-cpp-python: pip install llama-cpp-python==0.3.36"
)

TEXT = (
    "the cat sat on the mat and the dog ran to the park. "
    "one two three: 1 + 2 = 3, 4 + 5 = 9. "
    "Héllo wörld, café au lait! 東京 is big.\n\tindented line with  two spaces\n"
    "score:   42 and  7\n"
) * 40
PROMPTS = ["the cat", "one two three: 1", "Héllo", "\tindented", "the dog ran"]
MIXED = (
    "Héllo  wörld\t東京タワー 😀👩‍👩‍👧 x=12345, y = 3.14\n\n  naïve\u00a0café — Ω≈ç√ 'tis we'll\r\n"
    "नमस्ते e\u0301 ﬁ ½ ٣٤ ²\u3000全角\u2028sep  1   22    333 end   "
)
llama_chat_format = pytest.importorskip("llama_cpp.llama_chat_format")
NEW_TOKENS = 24
SHAPES = {
    "gqa-tied-nobias": {"bias": False, "tie_embeddings": True, "n_head": 4, "n_kv_head": 2},
    "mha-untied-bias": {"bias": True, "tie_embeddings": False, "n_head": 4},
}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([TEXT, MIXED], vocab_size=300)


def trained_model(tokenizer: Tokenizer, steps: int = 120, **shape) -> GPT:
    """A Llama-style GPT fitted to ``TEXT`` with plain PyTorch: a few dozen AdamW steps."""
    torch.manual_seed(0)
    config = GPTConfig.from_name(
        "debug",
        norm="rmsnorm",
        mlp="swiglu",
        pos_emb="rope",
        n_embd=64,
        block_size=64,
        vocab_size=tokenizer.vocab_size,
        **shape,
    )
    model = GPT(config)
    ids = torch.tensor(tokenizer.encode(TEXT))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - config.block_size - 1, (8,)).tolist()
        x = torch.stack([ids[s : s + config.block_size] for s in starts])  # (8, T)
        y = torch.stack([ids[s + 1 : s + config.block_size + 1] for s in starts])
        loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def load(path: Path, n_ctx: int) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=2)


@contextmanager
def no_extra_buffers() -> Iterator[None]:
    """Models loaded inside use plain CPU buffers: llama.cpp's ``--no-repack``, which llama-cpp-python lacks."""
    low = llama_cpp.llama_cpp
    default = low.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    low.llama_model_default_params = params
    try:
        yield
    finally:
        low.llama_model_default_params = default


def first_logits(llm: llama_cpp.Llama, model: GPT, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(llama.cpp's, ours) logits (T, V) for ``ids``."""
    llm.reset()
    llm.eval(ids)
    with torch.no_grad():
        return np.asarray(llm.scores[: len(ids)]), model(torch.tensor([ids]))[0].numpy()


def greedy(llm: llama_cpp.Llama, ids: list[int], new_tokens: int) -> list[int]:
    llm.reset()  # no reuse of the previous prompt's cache
    return list(islice(llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0), new_tokens))


@pytest.fixture(scope="module", params=SHAPES.values(), ids=SHAPES.keys())
def exported(request, tokenizer, tmp_path_factory) -> tuple[GPT, llama_cpp.Llama]:
    model = trained_model(tokenizer, **request.param)
    path = tmp_path_factory.mktemp("gguf") / "model-f16.gguf"
    write_gguf(model, tokenizer, path, "f16")
    llm = load(path, model.config.block_size)
    yield model, llm
    llm.close()


def test_llamacpp_tokenizes_mixed_script_text_as_we_do(exported, tokenizer):
    _, llm = exported
    ours = tokenizer.encode(MIXED)
    assert llm.tokenize(MIXED.encode(), add_bos=False) == ours
    assert llm.tokenize(MIXED.encode()) == ours  # llama.cpp's default adds no BOS, like our generation
    assert llm.detokenize(ours) == MIXED.encode()
    for text in ["x=12345", "  multiple   spaces  ", "line\n\n\nbreaks\r\n", "tab\tand\t\ttabs", "2024-01-02T03:04"]:
        assert llm.tokenize(text.encode(), add_bos=False) == tokenizer.encode(text), text


def test_llamacpp_reads_special_tokens_as_we_do_when_parsing_them(exported, tokenizer):
    _, llm = exported
    chat = format_prompt("What is 2 + 2?", system="Be terse.")
    assert llm.tokenize(chat.encode(), add_bos=False, special=True) == tokenizer.encode(chat)
    assert llm.token_eos() == tokenizer.eos_id and llm.token_bos() == tokenizer.bos_id


def test_llamacpp_detokenizes_without_cleaning_spaces(exported, tokenizer):
    """Whole-text detokenization keeps " ." and " 's" (refact's clean_spaces would drop those spaces)."""
    _, llm = exported
    text = "Hi , there . It 's done ! ' quoted '"
    ids = tokenizer.encode(text)
    tokens = (llama_cpp.llama_token * len(ids))(*ids)
    buffer = ctypes.create_string_buffer(256)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n = llama_cpp.llama_detokenize(vocab, tokens, len(ids), buffer, len(buffer), True, False)
    assert buffer.raw[:n].decode() == text == tokenizer.decode(ids)


def test_llamacpp_logits_match_ours(exported, tokenizer):
    model, llm = exported
    for prompt in PROMPTS[:2]:
        ids = tokenizer.encode(prompt + " sat on the mat")
        theirs, ours = first_logits(llm, model, ids)
        assert theirs.shape == ours.shape == (len(ids), model.config.padded_vocab_size)
        scale = np.abs(ours).max()
        assert np.abs(theirs - ours).max() < 0.02 * scale, prompt  # f16 weights and activations in llama.cpp
        assert (theirs.argmax(-1) == ours.argmax(-1)).all(), prompt


def test_llamacpp_greedy_tokens_equal_ours(exported, tokenizer):
    model, llm = exported
    ours = generate(model, [tokenizer.encode(p) for p in PROMPTS], NEW_TOKENS, temperature=0)
    for prompt, expected in zip(PROMPTS, ours, strict=True):
        ids = tokenizer.encode(prompt)
        with torch.no_grad():
            top2 = model(torch.tensor([ids + expected]))[0, len(ids) - 1 : -1].topk(2).values  # (NEW_TOKENS, 2)
        margin = (top2[:, 0] - top2[:, 1]).min().item()
        assert margin > 0.5, f"{prompt!r}: a near-tie ({margin:.3f}) on our greedy path; train the model longer"
        theirs = greedy(llm, ids, NEW_TOKENS)
        assert theirs == expected, (
            f"{prompt!r}: llama.cpp {tokenizer.decode(theirs)!r}, ours {tokenizer.decode(expected)!r}"
        )
    assert len({tuple(o) for o in ours}) == len(PROMPTS)  # the prompts really lead to different continuations


def test_llamacpp_applies_our_chat_template(exported, tokenizer):
    _, llm = exported
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    template = llm.metadata["tokenizer.chat_template"]
    formatter = llama_chat_format.Jinja2ChatFormatter(template, eos_token="<|eos|>", bos_token="<|bos|>")
    assert formatter(messages=messages).prompt == format_prompt("Hi", system="Be terse.")


def test_llamacpp_runs_q8_0_close_to_ours(tokenizer, tmp_path):
    model = trained_model(tokenizer, **SHAPES["gqa-tied-nobias"])
    write_gguf(model, tokenizer, tmp_path / "model-q8_0.gguf", "q8_0")
    with no_extra_buffers():
        llm = load(tmp_path / "model-q8_0.gguf", model.config.block_size)
    try:
        theirs, ours = first_logits(llm, model, tokenizer.encode("the cat sat on the mat"))
        assert np.abs(theirs - ours).max() < 0.03 * np.abs(ours).max()  # 8-bit weights: looser than f16
        assert (theirs.argmax(-1) == ours.argmax(-1)).all()
        expected = generate(model, [tokenizer.encode(p) for p in PROMPTS], NEW_TOKENS, temperature=0)
        assert [greedy(llm, tokenizer.encode(p), NEW_TOKENS) for p in PROMPTS] == expected
    finally:
        llm.close()
