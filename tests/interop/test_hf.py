"""Hugging Face exports, proven with transformers and peft themselves: logits, tokenizer, generation, chat, import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightningllm.data import Tokenizer
from lightningllm.data.instruct import chat_segments, format_prompt
from lightningllm.interop.hf import architecture, load_hf, save_hf
from lightningllm.interop.peft import save_hf_adapter
from lightningllm.model import GPT, GPTConfig, LoRAConfig, apply_lora, generate

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (make test installs it)")

MIXED = "Héllo wörld — naïve café, 東京タワー 🙂🚀\tx=12345  two  spaces\n\tnew line 7.5%"
TEXTS = [
    "the quick brown fox jumps over the lazy dog 42 times",
    "Héllo wörld, café naïve; 東京 🙂 and tabs\tand 2024 digits",
    "a stitch in time saves nine, said the 3 wise owls",
] * 30

LLAMA = dict(norm="rmsnorm", mlp="swiglu", pos_emb="rope")
SHAPES = {
    "gpt2-tied": dict(),
    "gpt2-untied-nobias": dict(bias=False, tie_embeddings=False),
    "llama-gqa-untied": dict(**LLAMA, bias=False, n_head=4, n_kv_head=2, n_embd=64, tie_embeddings=False),
    "llama-mqa-tied-bias": dict(**LLAMA, bias=True, n_head=4, n_kv_head=1, n_embd=64, rope_base=500.0),
    "neox-tied-nobias": dict(pos_emb="rope", bias=False, n_head=4, n_embd=64),  # the demo's shape
    "neox-untied-bias": dict(pos_emb="rope", bias=True, tie_embeddings=False, rope_base=300.0),
}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, vocab_size=330)


def random_model(tokenizer: Tokenizer, **shape) -> GPT:
    """A debug-sized GPT whose every weight is perturbed (zero biases and unit norms would hide mix-ups)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, **shape)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    return model


@pytest.fixture(scope="module", params=list(SHAPES))
def export(request, tokenizer, tmp_path_factory) -> tuple[GPT, Path]:
    model = random_model(tokenizer, **SHAPES[request.param])
    out = tmp_path_factory.mktemp(request.param)
    save_hf(model, tokenizer, out)
    return model, out


def hf_model(folder: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(folder).eval()


def test_transformers_gives_our_logits(export):
    model, folder = export
    theirs = hf_model(folder)
    expected = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "gpt_neox": "GPTNeoXForCausalLM"}
    expected = expected[architecture(model.config)]
    assert type(theirs).__name__ == expected
    idx = torch.randint(0, model.config.vocab_size, (3, model.config.block_size))
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, model(idx), atol=1e-4, rtol=0)
    assert theirs.config.tie_word_embeddings == model.config.tie_embeddings
    if architecture(model.config) == "llama":
        assert theirs.config.num_key_value_heads == model.config.n_kv_head
        assert theirs.config.head_dim == model.config.head_size
    if model.config.pos_emb == "rope":
        assert theirs.config.rope_parameters["rope_theta"] == model.config.rope_base


def test_transformers_greedy_generation_equals_ours(export, tokenizer):
    model, folder = export
    theirs = hf_model(folder)
    for prompt in ("the quick", "Héllo 東京", "3 wise"):
        ids = torch.tensor([tokenizer.encode(prompt)])
        steps = model.config.block_size - ids.size(1)
        ours = ids[0].tolist() + generate(model, ids, max_new_tokens=steps, temperature=0.0)[0]
        out = theirs.generate(ids, max_new_tokens=steps, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert out[0].tolist() == ours, prompt


def test_autotokenizer_encodes_and_decodes_as_ours(export, tokenizer):
    _, folder = export
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ids = theirs.encode(MIXED)
    assert ids == tokenizer.encode(MIXED)
    assert theirs.decode(ids) == MIXED == tokenizer.decode(ids)
    assert (theirs.bos_token, theirs.eos_token, theirs.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert (theirs.bos_token_id, theirs.eos_token_id) == (tokenizer.bos_id, tokenizer.eos_id)


def test_the_chat_template_renders_our_chat_format(export):
    _, folder = export
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Japan?\nOne word."},
        {"role": "assistant", "content": "Tokyo."},
    ]
    ours = "".join(text for text, _ in chat_segments(messages))
    assert theirs.apply_chat_template(messages, tokenize=False) == ours
    prompt = theirs.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == format_prompt("Capital of France?", system="Be terse.")


def test_import_gives_back_identical_weights_and_config(export, tokenizer):
    model, folder = export
    back, back_tokenizer = load_hf(folder)
    assert back.config == model.config
    assert back_tokenizer.same_vocabulary(tokenizer)
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name


def test_a_model_transformers_saved_imports_exactly(export, tmp_path):
    model, folder = export
    hf_model(folder).save_pretrained(tmp_path)  # transformers' own writer: its names, its tied-weight handling
    (tmp_path / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    back, _ = load_hf(tmp_path)
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(back(idx), model(idx), atol=0, rtol=0)


def test_large_models_are_sharded_with_an_index_transformers_reads(tokenizer, tmp_path):
    model = random_model(tokenizer, **SHAPES["llama-gqa-untied"])
    files = save_hf(model, tokenizer, tmp_path, max_shard_size=40_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert (
        len(shards) > 2 and "model.safetensors" not in files and (tmp_path / "model.safetensors.index.json").is_file()
    )
    assert all(path.stat().st_size < 40_000 + 2**16 for path in shards)  # a tensor larger than a shard gets its own
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf_model(tmp_path)(idx).logits, model(idx), atol=1e-4, rtol=0)
        torch.testing.assert_close(load_hf(tmp_path)[0](idx), model(idx), atol=0, rtol=0)


@pytest.mark.parametrize("shape", ["gpt2-tied", "llama-gqa-untied", "llama-mqa-tied-bias", "neox-untied-bias"])
def test_peft_applies_our_exported_adapters_with_our_logits(shape, tokenizer, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is a test dependency (make test installs it)")
    model = random_model(tokenizer, **SHAPES[shape])
    save_hf(model, tokenizer, tmp_path / "base")
    lora = LoRAConfig(r=4, alpha=8, targets=("attn.qkv", "attn.proj", "mlp.*"))
    apply_lora(model, lora)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    save_hf_adapter(model, lora, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] == (shape == "gpt2-tied")  # GPT-2's Conv1D stores (in, out)
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    base = hf_model(tmp_path / "base")
    with torch.no_grad():
        base_logits = base(idx).logits
        tuned = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
        ours = model(idx)
        torch.testing.assert_close(tuned(idx).logits, ours, atol=1e-4, rtol=0)
    assert (ours - base_logits).abs().max() > 1e-2  # the adapters do change the model


REFUSED = {
    "sinusoidal": (dict(pos_emb="sinusoidal"), "pos_emb sinusoidal is not GPT-2-style"),
    "learned-rmsnorm": (dict(norm="rmsnorm"), "norm rmsnorm, mlp gelu, pos_emb learned is not"),
    "rmsnorm-gelu-rope": (dict(norm="rmsnorm", pos_emb="rope"), "Llama-style (norm rmsnorm, mlp swiglu, pos_emb rope)"),
    "gpt2-gqa": (dict(n_head=2, n_kv_head=1), "GPT2LMHeadModel has no grouped-query attention"),
    "neox-gqa": (dict(n_head=2, n_kv_head=1, pos_emb="rope"), "GPTNeoXForCausalLM has no grouped-query attention"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_shape_transformers_cannot_express_is_refused_in_one_line(case, tokenizer, tmp_path):
    shape, expected = REFUSED[case]
    model = GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, **shape))
    with pytest.raises(ValueError, match="cannot export to Hugging Face") as info:
        save_hf(model, tokenizer, tmp_path / "out")
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


IMPORT_ERRORS = {
    "bert": (lambda d: _edit_config(d, model_type="bert", architectures=["BertModel"]), "model_type 'bert'"),
    "gelu_new": (lambda d: _edit_config(d, activation_function="gelu_new"), "activation_function 'gelu_new'"),
    "scaled_rope": (lambda d: _edit_config(d, rope_parameters={"rope_type": "linear", "factor": 2.0}), "RoPE scaling"),
    "parallel_residual": (lambda d: _edit_config(d, use_parallel_residual=True), "blocks are sequential"),
    "partial_rope": (
        lambda d: _edit_config(d, rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.25}),
        "RoPE on 0.25 of each head",
    ),
    "no_weights": (lambda d: (d / "model.safetensors").unlink(), "has no model.safetensors"),
    "missing_tensor": (lambda d: _drop_tensor(d, "transformer.h.1.ln_2.weight"), "missing ['transformer.h.1.ln_2"),
    "wrong_width": (lambda d: _edit_config(d, n_embd=48), "tensor transformer.wte.weight has shape"),
    "foreign_tokenizer": (lambda d: _foreign_tokenizer(d), "is not a lightningllm tokenizer"),
    "bad_json": (lambda d: (d / "config.json").write_text("{nope"), "is not valid JSON"),
}


def _drop_tensor(folder: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors[name]
    save_file(tensors, folder / "model.safetensors")


def _foreign_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    HFTokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1}, unk_token="<|endoftext|>")).save(
        str(folder / "tokenizer.json")
    )


@pytest.mark.parametrize("case", list(IMPORT_ERRORS))
def test_importing_a_folder_that_does_not_fit_is_a_one_line_error(case, tokenizer, tmp_path):
    edit, expected = IMPORT_ERRORS[case]
    shape = {
        "scaled_rope": "llama-gqa-untied",
        "parallel_residual": "neox-tied-nobias",
        "partial_rope": "neox-tied-nobias",
    }
    shape = SHAPES[shape.get(case, "gpt2-tied")]
    save_hf(random_model(tokenizer, **shape), tokenizer, tmp_path)
    edit(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_hf(tmp_path)
    assert expected in str(info.value) and "\n" not in str(info.value), str(info.value)
