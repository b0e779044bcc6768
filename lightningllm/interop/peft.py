"""LoRA adapters for the transformers model of an HF export, in peft's files: ``PeftModel.from_pretrained`` loads them.

Our adapters sit on our linears (``lightningllm.model.lora``); peft's must sit on the transformers
model's modules, so ``save_hf_adapter`` renames them as ``lightningllm.interop.hf`` renames the
weights:

- GPT-2: each adapter keeps its ``A`` (r, in) and ``B`` (out, r) and moves to the matching
  ``Conv1D`` (``attn.qkv`` → ``attn.c_attn``, ...). ``Conv1D`` stores its weight as (in, out), which
  peft is told with ``fan_in_fan_out: true``; the adapter itself is unchanged.
- GPT-NeoX: the same modules, one to one; ``B``'s rows of the fused ``query_key_value`` are
  regrouped per head, as its weight's rows are.
- Llama: an adapter on the fused ``attn.qkv`` becomes three, on ``q_proj``, ``k_proj`` and
  ``v_proj``: each gets the same ``A`` and its rows of ``B``, so ``B_q @ A`` is exactly the q rows of
  ``B @ A``. The other linears map one to one (``attn.proj`` → ``self_attn.o_proj``, ...).

The base model is the HF export of the weights the adapters were trained on (``lightningllm export
--format hf`` of the run's ``--model.init_from`` folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lightningllm.interop.hf import GPT2_LINEARS, LLAMA_LINEARS, NEOX_LINEARS, architecture, per_head
from lightningllm.model.lora import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, PEFT_PREFIX, LoRAConfig, lora_layers


def hf_adapters(gpt: nn.Module, config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{transformers module path: (A, B)}`` for the adapters of ``gpt`` (a ``GPT`` of ``config`` with LoRA)."""
    arch = architecture(config)
    hs, nh, nkv = config.head_size, config.n_head, config.n_kv_head
    renames = dict({"gpt2": GPT2_LINEARS, "llama": LLAMA_LINEARS, "gpt_neox": NEOX_LINEARS}[arch])
    blocks = {"gpt2": "transformer.h", "llama": "model.layers", "gpt_neox": "gpt_neox.layers"}[arch]
    adapters: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for path, layer in lora_layers(gpt).items():
        _, index, linear = path.split(".", 2)  # blocks.<i>.<attn.qkv>
        a, b = layer.lora_A.weight.detach(), layer.lora_B.weight.detach()
        block = f"{blocks}.{index}"
        if arch == "gpt_neox" and linear == "attn.qkv":  # B's rows regrouped per head, as the weight's
            adapters[f"{block}.{renames[linear]}"] = (a, per_head(b, nh, hs))
        elif arch == "llama" and linear == "attn.qkv":
            rows = b.split([nh * hs, nkv * hs, nkv * hs])
            for name, part in zip(("q_proj", "k_proj", "v_proj"), rows, strict=True):
                adapters[f"{block}.self_attn.{name}"] = (a, part)
        else:
            adapters[f"{block}.{renames[linear]}"] = (a, b)
    return adapters


def save_hf_adapter(gpt: nn.Module, lora: LoRAConfig, directory: str | Path) -> list[str]:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` for the HF export of ``gpt``'s base model.

    Returns the names written. Raises ``ValueError`` when ``gpt`` has no adapters or its shape has no
    transformers class.
    """
    from safetensors.torch import save

    if not lora_layers(gpt):
        raise ValueError("save_hf_adapter: the model has no LoRA adapters")
    adapters = hf_adapters(gpt, gpt.config)
    fan_in_fan_out = architecture(gpt.config) == "gpt2"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    peft_config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": None,
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": sorted(adapters),
        "use_rslora": lora.rslora,
        "bias": "none",
        "fan_in_fan_out": fan_in_fan_out,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    tensors = {}
    for path, (a, b) in adapters.items():
        tensors[f"{PEFT_PREFIX}{path}.lora_A.weight"] = a.cpu().clone()  # q, k and v share A: one copy each
        tensors[f"{PEFT_PREFIX}{path}.lora_B.weight"] = b.cpu().contiguous()
    (directory / ADAPTER_CONFIG_FILE).write_text(json.dumps(peft_config, indent=2) + "\n", encoding="utf-8")
    (directory / ADAPTER_WEIGHTS_FILE).write_bytes(save(tensors, metadata={"format": "pt"}))
    return [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]
