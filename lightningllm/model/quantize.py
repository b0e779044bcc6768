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
the 0.66M-parameter demo shape (width 128) int8 is slower than float32 (0.75x at batch 1, 0.85x
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
