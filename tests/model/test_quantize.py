"""int8 quantization: logits stay close to float32, KV-cache decoding matches the full forward, the saved
weights shrink to int8, and what cannot be quantized is refused in one line."""

import copy
import io

import pytest
import torch
from torch import nn

from lightningllm.model import GPT, GPTConfig, LoRAConfig, apply_lora, generate
from lightningllm.model.pretrained import read_header, read_metadata
from lightningllm.model.quantize import is_int8, quantize_int8

# torch.save / torch.load of quantized tensors go through torch's own TypedStorage and warn about it.
pytestmark = pytest.mark.filterwarnings("ignore:TypedStorage is deprecated:UserWarning")


def trained(steps: int = 60, **overrides) -> GPT:
    """A debug GPT trained a little on a fixed token cycle, so its logits have the spread of a real model."""
    gpt = GPT(GPTConfig.from_name("debug", **overrides))
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    cycle = (torch.arange(33 * 8) * 7 + 3) % gpt.config.vocab_size
    idx = cycle.view(8, 33)
    for _ in range(steps):
        gpt(idx[:, :-1], idx[:, 1:]).backward()
        optimizer.step()
        optimizer.zero_grad()
    return gpt.eval()


def saved_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


LLAMA = {"mlp": "swiglu", "norm": "rmsnorm", "pos_emb": "rope", "bias": False}


# int8 weights (one scale per row) and 7-bit activations (fbgemm's reduced range, one scale per
# tensor) each round to ~1/127 of their range: ~1% relative error per matmul. GELU models measured
# 0.9-1.2% of the logits' range over 20 seeds, so 3% still catches a wrong scale or a lost bias.
# SwiGLU's gate * up products are heavy-tailed: their largest values set the one activation scale
# and round the rest coarser, measured 2.6-5.7%; 10% for it.
@pytest.mark.parametrize(("overrides", "bound"), [({}, 0.03), (LLAMA, 0.10)], ids=["gpt2", "llama"])
def test_quantized_logits_stay_close_to_float32(overrides, bound):
    fp32 = trained(**overrides)
    int8 = quantize_int8(copy.deepcopy(fp32))
    idx = torch.randint(0, 128, (4, 32))
    with torch.no_grad():
        ref, out = fp32(idx), int8(idx)
    error = (out - ref).abs().max()
    assert error < bound * (ref.max() - ref.min())
    assert error > 0  # the weights really are int8 now, not the float32 ones
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.95


def test_greedy_decoding_with_the_kv_cache_follows_the_quantized_full_forward():
    int8 = quantize_int8(trained())
    prompts = torch.randint(0, 128, (3, 6))
    new = torch.tensor(generate(int8, prompts, max_new_tokens=10, temperature=0, use_kv_cache=True))
    with torch.no_grad():
        logits = int8(torch.cat([prompts, new], dim=1))  # (B, T, V), the whole sequence at once
    assert torch.equal(logits[:, prompts.size(1) - 1 : -1].argmax(-1), new)


def test_the_saved_weights_shrink_to_int8():
    fp32 = GPT(GPTConfig.from_name("debug", n_embd=64))
    linears = [m for m in fp32.blocks.modules() if isinstance(m, nn.Linear)]
    weight_bytes = sum(m.weight.numel() * 4 for m in linears)
    rows = sum(m.out_features for m in linears)
    before = saved_bytes(fp32)
    int8 = quantize_int8(copy.deepcopy(fp32))
    qkv = int8.blocks[0].attn.qkv.weight()  # the dynamic linear unpacks its weight on request
    assert qkv.dtype == torch.qint8 and qkv.q_per_channel_scales().numel() == qkv.size(0)
    # Each weight keeps 1 of its 4 bytes; each row gains a float64 scale and an int64 zero point,
    # each linear ~1.3 kB of pickled bookkeeping for its packed parameters (2 kB allowed).
    assert before - saved_bytes(int8) >= 0.75 * weight_bytes - 16 * rows - 2048 * len(linears)
    assert int8.lm_head.weight is int8.wte.weight  # the tied head stays shared, in float32
    assert is_int8(int8) and not is_int8(fp32)


def test_a_saved_int8_state_dict_loads_into_a_freshly_quantized_gpt():
    int8 = quantize_int8(trained(steps=5))
    buffer = io.BytesIO()
    torch.save(int8.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # no pickled code, as every other load here
    fresh = quantize_int8(GPT(int8.config))
    fresh.load_state_dict(state)
    idx = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        assert torch.equal(fresh(idx), int8(idx))


def test_what_cannot_be_quantized_is_refused_in_one_line():
    with pytest.raises(ValueError, match="needs a GPT, got Linear"):
        quantize_int8(nn.Linear(4, 4))
    lora = apply_lora(GPT(GPTConfig.from_name("debug")), LoRAConfig(r=2))
    with pytest.raises(ValueError, match="LoRA adapters; .*merged_state_dict"):
        quantize_int8(lora)
    once = quantize_int8(GPT(GPTConfig.from_name("debug")))
    with pytest.raises(ValueError, match="int8 already"):
        quantize_int8(once)
    with pytest.raises(ValueError, match="float32 model on the CPU, got torch.bfloat16"):
        quantize_int8(GPT(GPTConfig.from_name("debug")).to(torch.bfloat16))


def test_an_int8_folder_reloads_the_very_same_int8_model(tmp_path):
    fp32 = trained(steps=5, bias=True)
    fp32.save_pretrained(tmp_path / "fp32")
    int8 = quantize_int8(copy.deepcopy(fp32))
    int8.save_pretrained(tmp_path / "int8")
    loaded = GPT.from_pretrained(tmp_path / "int8")
    assert is_int8(loaded) and not is_int8(GPT.from_pretrained(tmp_path / "fp32"))
    assert loaded.lm_head.weight is loaded.wte.weight
    idx = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(idx), int8(idx))  # the same int8 rows and scales, not a re-quantization
    header = read_header(tmp_path / "int8" / "model.safetensors", int8=True)
    assert header["blocks.0.attn.qkv.weight"].dtype == "I8" and header["blocks.0.attn.qkv.bias"].dtype == "F32"
    linears = [m for m in fp32.blocks.modules() if isinstance(m, nn.Linear)]
    shrink = sum(m.weight.numel() * 3 - m.out_features * 16 for m in linears)  # 4 → 1 byte, + scale, zero point
    sizes = [(tmp_path / name / "model.safetensors").stat().st_size for name in ("fp32", "int8")]
    assert sizes[0] - sizes[1] >= shrink - 4096  # the header names three tensors per linear instead of one


def _rewrite(path, tensors, metadata):
    from safetensors.torch import save

    path.write_bytes(save(tensors, metadata=metadata))


def test_tampered_int8_and_float_folders_are_refused_in_one_line(tmp_path):
    from safetensors.torch import load_file

    int8 = quantize_int8(trained(steps=1))
    int8.save_pretrained(tmp_path / "int8")
    weights = tmp_path / "int8" / "model.safetensors"
    tensors, metadata = load_file(weights), read_metadata(weights)
    changed = {**tensors, "blocks.0.mlp.fc.weight": tensors["blocks.0.mlp.fc.weight"].float()}
    _rewrite(weights, changed, metadata)  # an int8 folder with a float weight: not what the int8 model holds
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc\.weight is F32, but an int8 model holds it as I8"):
        GPT.from_pretrained(tmp_path / "int8")
    _rewrite(weights, tensors, {**metadata, "quantization": "int4"})
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        GPT.from_pretrained(tmp_path / "int8")
    fp32 = trained(steps=1)
    fp32.save_pretrained(tmp_path / "fp32")
    weights = tmp_path / "fp32" / "model.safetensors"
    tensors = load_file(weights)
    tensors["blocks.0.mlp.fc.weight"] = tensors["blocks.0.mlp.fc.weight"].to(torch.int8)
    _rewrite(weights, tensors, None)  # int8 values in a float folder (no quantization metadata): refused, not cast
    with pytest.raises(ValueError, match=r"blocks\.0\.mlp\.fc\.weight has dtype I8, not one of a model's F64"):
        GPT.from_pretrained(tmp_path / "fp32")
