"""GGUF export read back with the gguf package's own reader: names, shapes, metadata, weights, refusals."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import jinja2
import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="GGUF export tests need the gguf package: pip install 'lightningllm[gguf]'")

from lightningllm.data.instruct import format_prompt  # noqa: E402
from lightningllm.data.tokenizer import SPECIAL_TOKENS, Tokenizer  # noqa: E402
from lightningllm.interop.gguf import CHAT_TEMPLATE, permute_for_llamacpp, write_gguf  # noqa: E402
from lightningllm.model import GPT, GPTConfig  # noqa: E402
from lightningllm.model.layers import apply_rope, rope_cache  # noqa: E402
from lightningllm.model.lora import LoRAConfig, apply_lora, merged_state_dict  # noqa: E402

LLAMA = {"norm": "rmsnorm", "mlp": "swiglu", "pos_emb": "rope"}
CORPUS = ["The cat sat on the mat. 12 + 30 = 42.", "Héllo wörld — naïve café", "def f(x):\n\treturn x * 2\n"] * 20
T = gguf.MODEL_TENSOR
SHAPES = {
    "mha-tied-nobias": {"bias": False, "tie_embeddings": True},
    "gqa-untied-bias": {"bias": True, "tie_embeddings": False, "n_head": 4, "n_kv_head": 2},
    "mqa-tied-bias": {"bias": True, "tie_embeddings": True, "n_head": 4, "n_kv_head": 1},
}


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(CORPUS, vocab_size=300)


def llama_model(tokenizer: Tokenizer, **overrides) -> GPT:
    config = GPTConfig.from_name("debug", **LLAMA, vocab_size=tokenizer.vocab_size, **overrides)
    model = GPT(config)
    with torch.no_grad():  # non-trivial norms and biases, so a mix-up between them shows
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                param.normal_(1.0 if "norm" in name else 0.0, 0.5)
    return model


def export(model: GPT, tokenizer: Tokenizer, path: Path, quant: str = "f16") -> gguf.GGUFReader:
    write_gguf(model, tokenizer, path, quant)
    return gguf.GGUFReader(path)


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def dequantized(reader: gguf.GGUFReader) -> dict[str, np.ndarray]:
    """Each tensor as float32 in numpy (PyTorch) layout, (rows, columns)."""
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}


def unpermute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's adjacent RoPE pairs back to our (first half, second half) order, per head."""
    hs = rows.shape[0] // n_head
    return rows.reshape(n_head, hs // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def expected_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under the names the gguf package's own table gives llama.cpp's llama tensors."""
    c = model.config
    state = merged_state_dict(model)
    hs = c.head_size
    out = {
        gguf.TENSOR_NAMES[T.TOKEN_EMBD] + ".weight": state["wte.weight"],
        gguf.TENSOR_NAMES[T.OUTPUT_NORM] + ".weight": state["norm_f.weight"],
    }
    if not c.tie_embeddings:
        out[gguf.TENSOR_NAMES[T.OUTPUT] + ".weight"] = state["lm_head.weight"]
    leaves = ("weight", "bias") if c.bias else ("weight",)
    for i in range(c.n_layer):
        name = {k: gguf.TENSOR_NAMES[k].format(bid=i) for k in T}
        p = f"blocks.{i}."
        out[name[T.ATTN_NORM] + ".weight"] = state[p + "norm_1.weight"]
        out[name[T.FFN_NORM] + ".weight"] = state[p + "norm_2.weight"]
        for leaf in leaves:
            q, k, v = state[f"{p}attn.qkv.{leaf}"].split([c.n_head * hs, c.n_kv_head * hs, c.n_kv_head * hs])
            out[f"{name[T.ATTN_Q]}.{leaf}"], out[f"{name[T.ATTN_K]}.{leaf}"], out[f"{name[T.ATTN_V]}.{leaf}"] = q, k, v
            out[f"{name[T.ATTN_OUT]}.{leaf}"] = state[f"{p}attn.proj.{leaf}"]
            out[f"{name[T.FFN_GATE]}.{leaf}"] = state[f"{p}mlp.gate.{leaf}"]
            out[f"{name[T.FFN_UP]}.{leaf}"] = state[f"{p}mlp.up.{leaf}"]
            out[f"{name[T.FFN_DOWN]}.{leaf}"] = state[f"{p}mlp.proj.{leaf}"]
    return {k: v.detach().float() for k, v in out.items()}


def to_ours(name: str, array: np.ndarray, config: GPTConfig) -> np.ndarray:
    if ".attn_q." in name:
        return unpermute(array, config.n_head)
    if ".attn_k." in name:
        return unpermute(array, config.n_kv_head)
    return array


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_f16_file_holds_our_weights_under_llamacpp_names(tokenizer, tmp_path, shape):
    model = llama_model(tokenizer, **shape)
    reader = export(model, tokenizer, tmp_path / "model.gguf")
    expected = expected_tensors(model)
    assert {t.name for t in reader.tensors} == set(expected)
    llama_names = {
        gguf.TENSOR_NAMES[k].format(bid=i) for k in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.LLAMA] for i in range(2)
    }
    for tensor in reader.tensors:
        ours = expected[tensor.name]
        assert tensor.name.rsplit(".", 1)[0] in llama_names, tensor.name
        assert [int(n) for n in tensor.shape] == list(reversed(ours.shape)), tensor.name  # ggml order: fastest first
        want_type = gguf.GGMLQuantizationType.F16 if ours.ndim == 2 else gguf.GGMLQuantizationType.F32
        assert tensor.tensor_type == want_type, tensor.name
    for name, array in dequantized(reader).items():
        ours = expected[name]
        rounded = ours.half().float() if ours.ndim == 2 else ours
        np.testing.assert_array_equal(to_ours(name, array, model.config), rounded.numpy(), err_msg=name)


def test_q_and_k_rows_are_moved_to_adjacent_rope_pairs(tokenizer, tmp_path):
    """A head's rows j and j + hs/2 (our RoPE pair) sit at 2j and 2j + 1 in the file (llama.cpp's)."""
    model = llama_model(tokenizer, **SHAPES["gqa-untied-bias"])
    tensors = dequantized(export(model, tokenizer, tmp_path / "model.gguf"))
    hs = model.config.head_size
    q_rows = model.blocks[0].attn.qkv.weight[: model.config.n_head * hs].detach().half().float().numpy()
    q_file = tensors["blk.0.attn_q.weight"]
    head, j = 1, 3
    np.testing.assert_array_equal(q_file[head * hs + 2 * j], q_rows[head * hs + j])
    np.testing.assert_array_equal(q_file[head * hs + 2 * j + 1], q_rows[head * hs + j + hs // 2])
    assert not np.array_equal(q_file, q_rows)


def test_permuted_rows_under_adjacent_pair_rope_equal_our_rope():
    """llama.cpp's RoPE (rotate pairs 2i, 2i+1 by pos * base^(-2i/hs)) on the permuted rows is our RoPE."""
    n_head, hs, positions, base = 3, 8, 5, 10000.0
    x = torch.randn(1, n_head, positions, hs)
    cos, sin = rope_cache(positions, hs, base)
    ours = apply_rope(x, cos, sin)  # (1, nh, T, hs)

    def to_file(t: torch.Tensor) -> torch.Tensor:  # (1, nh, T, hs) -> per position, permute the nh * hs rows
        rows = t[0].permute(1, 0, 2).reshape(positions, n_head * hs)  # (T, nh * hs)
        return torch.stack([permute_for_llamacpp(r, n_head) for r in rows]).reshape(positions, n_head, hs)

    theirs = to_file(x).clone()
    for pos in range(positions):
        for i in range(hs // 2):
            theta = pos * base ** (-2 * i / hs)
            a, b = theirs[pos, :, 2 * i].clone(), theirs[pos, :, 2 * i + 1].clone()
            theirs[pos, :, 2 * i] = a * math.cos(theta) - b * math.sin(theta)
            theirs[pos, :, 2 * i + 1] = a * math.sin(theta) + b * math.cos(theta)
    torch.testing.assert_close(theirs, to_file(ours))


def test_q8_0_quantizes_rows_of_whole_blocks_and_keeps_the_rest_f16(tokenizer, tmp_path):
    model = llama_model(tokenizer, **SHAPES["gqa-untied-bias"])  # mlp_hidden 88: ffn_down rows are not 32-multiples
    assert model.config.mlp_hidden % 32
    reader = export(model, tokenizer, tmp_path / "q8.gguf", "q8_0")
    expected = expected_tensors(model)
    types = {t.name: t.tensor_type for t in reader.tensors}
    Q8, F16, F32 = (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32)
    for name, ours in expected.items():
        if ours.ndim == 1:
            assert types[name] == F32, name
        else:
            assert types[name] == (Q8 if ours.shape[1] % 32 == 0 else F16), name
    assert types["blk.0.ffn_down.weight"] == F16 and types["token_embd.weight"] == Q8
    for name, array in dequantized(reader).items():
        ours = expected[name].numpy()
        got = to_ours(name, array, model.config)
        if types[name] != Q8:
            np.testing.assert_array_equal(got, ours.astype(np.float16).astype(np.float32) if ours.ndim == 2 else ours)
            continue
        # Q8_0: per 32-value block, int8 steps of d = max|x| / 127 (d stored as f16): error <= d/2 plus d's rounding
        blocks = ours.reshape(-1, 32)
        step = np.abs(blocks).max(axis=1, keepdims=True) / 127
        error = np.abs(got.reshape(-1, 32) - blocks)
        assert (error <= step * (0.5 + 127 / 2048) + 1e-12).all(), name
        assert error.max() > 0, name  # really quantized, not stored exactly
    write_gguf(model, tokenizer, tmp_path / "f16.gguf", "f16")
    assert (tmp_path / "q8.gguf").stat().st_size < 0.75 * (tmp_path / "f16.gguf").stat().st_size


def test_metadata_describes_the_model_and_tokenizer(tokenizer, tmp_path):
    model = llama_model(tokenizer, **SHAPES["gqa-untied-bias"], rope_base=5000.0, norm_eps=1e-6, block_size=48)
    c = model.config
    reader = export(model, tokenizer, tmp_path / "model.gguf")
    arch = field(reader, "general.architecture")
    assert arch == "llama"
    assert field(reader, f"{arch}.context_length") == 48
    assert field(reader, f"{arch}.embedding_length") == c.n_embd
    assert field(reader, f"{arch}.block_count") == c.n_layer
    assert field(reader, f"{arch}.feed_forward_length") == c.mlp_hidden
    assert field(reader, f"{arch}.attention.head_count") == 4
    assert field(reader, f"{arch}.attention.head_count_kv") == 2
    assert field(reader, f"{arch}.rope.dimension_count") == c.head_size
    assert field(reader, f"{arch}.rope.freq_base") == 5000.0
    assert field(reader, f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    assert field(reader, f"{arch}.vocab_size") == c.padded_vocab_size

    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "smollm"
    tokens, types = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == c.padded_vocab_size > tokenizer.vocab_size  # one token per embedding row
    assert tokens[: tokenizer.vocab_size] == [tokenizer.hf.id_to_token(i) for i in range(tokenizer.vocab_size)]
    assert len(set(tokens)) == len(tokens)
    specials = {tokenizer.hf.token_to_id(t) for t in SPECIAL_TOKENS}
    for i, kind in enumerate(types):
        if i in specials:
            assert kind == gguf.TokenType.CONTROL, tokens[i]
        elif i >= tokenizer.vocab_size:
            assert kind == gguf.TokenType.UNUSED, tokens[i]
        else:
            assert kind == gguf.TokenType.NORMAL, tokens[i]
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    assert field(reader, "tokenizer.ggml.merges") == [" ".join(m) for m in merges]
    assert field(reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_id
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_id
    assert field(reader, "tokenizer.ggml.padding_token_id") == tokenizer.pad_id
    assert field(reader, "tokenizer.ggml.eot_token_id") == tokenizer.hf.token_to_id("<|end|>")
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert field(reader, "tokenizer.ggml.add_eos_token") is False


def test_chat_template_renders_our_chat_format():
    template = jinja2.Environment().from_string(CHAT_TEMPLATE)
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Capital of France?"}]
    assert template.render(messages=messages, add_generation_prompt=True) == format_prompt(
        "Capital of France?", system="Be terse."
    )
    turns = messages + [{"role": "assistant", "content": "Paris."}]
    assert template.render(messages=turns, add_generation_prompt=False).endswith("<|assistant|>Paris.<|end|>")


def test_lora_adapters_are_merged_into_the_written_weights(tokenizer, tmp_path):
    model = apply_lora(llama_model(tokenizer), LoRAConfig(r=2, targets=("mlp.up",)))
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.up.lora_B.weight.normal_()
    merged = merged_state_dict(model)["blocks.0.mlp.up.weight"]
    assert not torch.equal(merged, model.blocks[0].mlp.up.base.weight)
    tensors = dequantized(export(model, tokenizer, tmp_path / "model.gguf"))
    np.testing.assert_array_equal(tensors["blk.0.ffn_up.weight"], merged.detach().half().float().numpy())


# --- refusals: one line each, nothing written ---------------------------------------------------


def refusal(model: GPT, tokenizer: Tokenizer, path: Path, quant: str = "f16") -> str:
    with pytest.raises(ValueError) as info:
        write_gguf(model, tokenizer, path, quant)
    message = str(info.value)
    assert "\n" not in message and not path.exists()
    return message


def test_gpt2_style_models_are_refused_naming_the_gelu_difference(tokenizer, tmp_path):
    model = GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size))  # layernorm, gelu, learned
    message = refusal(model, tokenizer, tmp_path / "m.gguf")
    assert "norm layernorm, mlp gelu, pos_emb learned" in message
    assert "erf GELU" in message and "norm rmsnorm, mlp swiglu, pos_emb rope" in message


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({**LLAMA, "pos_emb": "sinusoidal"}, "pos_emb sinusoidal"),
        ({**LLAMA, "pos_emb": "learned"}, "pos_emb learned"),
        ({**LLAMA, "norm": "layernorm"}, "norm layernorm"),
        ({**LLAMA, "mlp": "gelu"}, "mlp gelu"),
    ],
)
def test_shapes_llamas_graph_cannot_express_are_refused(tokenizer, tmp_path, overrides, named):
    model = GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, **overrides))
    assert named in refusal(model, tokenizer, tmp_path / "m.gguf")


def test_char_tokenizer_is_refused(tmp_path):
    char = Tokenizer.train(CORPUS, kind="char")
    message = refusal(llama_model(char), char, tmp_path / "m.gguf")
    assert "kind 'char'" in message


def with_json(tokenizer: Tokenizer, edit) -> Tokenizer:
    spec = json.loads(tokenizer.to_str())
    edit(spec)
    return Tokenizer.from_str(json.dumps(spec))


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["pre_tokenizer"]["pretokenizers"][1].update(add_prefix_space=True),
        lambda s: s["pre_tokenizer"]["pretokenizers"][0].update(individual_digits=False),
        lambda s: s.update(pre_tokenizer=s["pre_tokenizer"]["pretokenizers"][1]),  # ByteLevel alone: GPT-2's
    ],
    ids=["prefix-space", "digit-runs", "no-digits"],
)
def test_other_pre_tokenizers_are_refused(tokenizer, tmp_path, edit):
    other = with_json(tokenizer, edit)
    message = refusal(llama_model(other), other, tmp_path / "m.gguf")
    assert "pre-tokenizer" in message and "smollm" in message


def test_normalizer_is_refused(tokenizer, tmp_path):
    other = with_json(tokenizer, lambda s: s.update(normalizer={"type": "NFC"}))
    assert "normalizer" in refusal(llama_model(other), other, tmp_path / "m.gguf")


def test_unknown_quant_is_refused(tokenizer, tmp_path):
    assert "'q4_0'" in refusal(llama_model(tokenizer), tokenizer, tmp_path / "m.gguf", "q4_0")


def test_weight_beyond_f16_range_is_refused(tokenizer, tmp_path):
    model = llama_model(tokenizer)
    with torch.no_grad():
        model.blocks[1].mlp.gate.weight[0, 0] = 1e6
    assert "blk.1.ffn_gate.weight" in refusal(model, tokenizer, tmp_path / "m.gguf")


def test_missing_gguf_package_is_one_line_import_error(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # what `import gguf` meets when it is not installed
    with pytest.raises(ImportError, match=r"^GGUF export needs the gguf package: pip install 'lightningllm\[gguf\]'$"):
        write_gguf(llama_model(tokenizer), tokenizer, tmp_path / "m.gguf")
