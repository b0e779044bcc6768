"""int8 weights for CPU inference: ``quantize_int8(gpt)`` swaps the blocks' linears for int8 ones, in place.

Every ``nn.Linear`` inside ``gpt.blocks`` (attention ``qkv``/``proj``, the MLP's) becomes PyTorch's
dynamically quantized linear (``torch.ao.quantization.quantize_dynamic`` with per-channel weights
on the x86/fbgemm backend): weights stored as int8 with one scale per output row, activations
quantized to 8 bits per call (one scale per tensor), an int8 matmul accumulating in int32. It was
the fastest option without ``torch.compile``: on a 2-thread Xeon (AVX-512 VNNI, AMX), greedy
``generate`` (32-token prompt, 64 new tokens) of a small-10m-shaped model (6 x 384, vocab 4096) ran
at 460 vs 400 tok/s for float32 at batch 1 and 2,280 vs 1,790 at batch 8, its saved weights 2.8x
smaller (``benchmarks/quantize.py``). torchao 0.18 in eager mode was slower than float32
(``Int8WeightOnlyConfig`` 250 / 1,420 tok/s, ``Int8DynamicActivationInt8WeightConfig`` 173 /
1,050): it casts the int8 weight back to float, or runs ``torch._int_mm``, on every call. With
the blocks compiled (``block.compile(dynamic=True)``) torchao's dynamic int8 reached 771 / 2,394
tok/s, but only after 10-25 s of compiling per process and with a C++ toolchain at run time, and
it would add a dependency; this module's layers gain nothing from compiling (297 / 1,624). On
the earlier 0.66M-parameter demo shape (3 x 128) int8 is slower than float32 (0.75x at batch 1, 0.85x
at 8): quantizing activations costs more than the int8 matmuls save at that width. torch marks
``torch.ao.quantization`` deprecated in favour of torchao; its warnings are silenced here, and
swapping this one function for torchao's ``quantize_`` (plus compiling) is the migration path.

The ``lm_head`` stays float32: it is tied to the token embedding in every preset, so an int8
copy would sit beside the float32 embedding (a bigger model, not a smaller one), and ``GPT``
reads ``lm_head.weight`` for the KV cache's device and dtype. ``forward``, ``setup_kv_cache`` and
``generate`` work unchanged. Quantizing is one-way and for inference only (the int8 layers have
no gradient); a LoRA model is refused: fold its adapters in first (``merged_state_dict``).
Dynamic per-tensor activation scales mean a row's result depends slightly on the other rows and
tokens fed with it (a batch, or a whole prompt vs one token at a time): greedy outputs can differ
from float32 and between batchings where two logits nearly tie.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from lightningllm.model.gpt import GPT
from lightningllm.model.lora import lora_layers


def quantize_int8(model: GPT) -> GPT:
    """Replace the weights of every ``nn.Linear`` in ``model.blocks`` with int8 ones, in place.

    Args:
        model: a float32 ``GPT`` on the CPU without LoRA adapters; it is put in eval mode.

    Returns:
        ``model`` itself, for chaining (``quantize_int8(GPT.from_pretrained(d))``).

    Raises:
        ValueError: ``model`` is not a ``GPT``, has LoRA adapters, is already quantized, or is
            not float32 on the CPU.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"quantize_int8 needs a GPT, got {type(model).__name__}")
    if lora_layers(model):
        raise ValueError(
            "quantize_int8: the model has LoRA adapters; quantize a plain GPT with them folded in "
            "(GPT(config).load_state_dict(merged_state_dict(model)))"
        )
    if is_int8(model):
        raise ValueError("quantize_int8: the model is int8 already; quantize it once")
    param = model.lm_head.weight
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError(f"quantize_int8 needs a float32 model on the CPU, got {param.dtype} on {param.device}")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model.eval()
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices, raised on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_.*deprecated", category=UserWarning)
        with torch.no_grad():
            quantize_dynamic(model.blocks, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model


def is_int8(model: nn.Module) -> bool:
    """Whether ``quantize_int8`` has converted ``model`` (it holds dynamically quantized linears)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return any(isinstance(module, DynamicQuantizedLinear) for module in model.modules())


# --- saving and loading int8 weights as plain tensors -------------------------------------------
# A quantized linear's own state dict holds a packed fbgemm blob (a pickled tuple), which
# safetensors cannot store. ``int8_tensors`` writes each one as three plain tensors instead:
# ``<path>.weight`` (int8, one row per output), ``<path>.weight_scale`` (float64, one per row) and
# ``<path>.weight_zero_point`` (int64, one per row; 0 with the symmetric observer used here), plus
# ``<path>.bias`` when it has one. Loading rebuilds the very same int8 tensor, so a saved and
# reloaded model computes exactly what the one it was saved from did.
INT8_SUFFIXES = (".weight", ".weight_scale", ".weight_zero_point", ".bias")


def _int8_linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, DynamicQuantizedLinear)}


def _outside(linears: dict[str, nn.Module], name: str) -> bool:
    """Whether the tensor ``name`` belongs to none of the int8 ``linears`` (a plain float tensor)."""
    return not any(name.startswith(path + ".") for path in linears)


def int8_tensors(model: GPT) -> dict[str, torch.Tensor]:
    """Every tensor of an int8 ``model`` under a plain name (tied ones under each of their names), for safetensors."""
    linears = _int8_linears(model)
    if not linears:
        raise ValueError("int8_tensors needs a model quantize_int8 has converted")
    tensors = {name: t for name, t in model.state_dict(keep_vars=True).items() if _outside(linears, name)}
    for path, linear in linears.items():
        weight = linear.weight()
        tensors[f"{path}.weight"] = weight.int_repr()
        tensors[f"{path}.weight_scale"] = weight.q_per_channel_scales()
        tensors[f"{path}.weight_zero_point"] = weight.q_per_channel_zero_points()
        if linear.bias() is not None:
            tensors[f"{path}.bias"] = linear.bias()
    return tensors


def load_int8_tensors(model: GPT, tensors: dict[str, torch.Tensor]) -> None:
    """Put ``int8_tensors``' output into an int8 ``model`` of the same shape (names and shapes already checked)."""
    linears = _int8_linears(model)
    targets = {name: t for name, t in model.state_dict(keep_vars=True).items() if _outside(linears, name)}
    given = {name: t for name, t in tensors.items() if _outside(linears, name)}
    if set(given) != set(targets):
        raise ValueError(f"int8 weights do not fit the model: {sorted(set(given) ^ set(targets))[:3]}")
    with torch.no_grad():
        for name, tensor in given.items():
            targets[name].copy_(tensor)
    for path, linear in linears.items():
        weight = torch._make_per_channel_quantized_tensor(
            tensors[f"{path}.weight"], tensors[f"{path}.weight_scale"], tensors[f"{path}.weight_zero_point"], 0
        )
        linear.set_weight_bias(weight, tensors.get(f"{path}.bias"))
