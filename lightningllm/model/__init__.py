"""Pure-PyTorch GPT: config, layers, model, generation and optimizer helpers. Imports no Lightning."""

from lightningllm.model.config import PRESETS, GPTConfig
from lightningllm.model.generate import generate, sample_next
from lightningllm.model.gpt import GPT, IGNORE_INDEX
from lightningllm.model.lora import (
    LoRAConfig,
    LoRALinear,
    adapters_disabled,
    apply_lora,
    load_adapter,
    lora_state_dict,
    merge_lora,
    merged_state_dict,
    save_adapter,
    trainable_parameters,
    unmerge_lora,
)
from lightningllm.model.optim import Muon, lr_at, param_groups
from lightningllm.model.quantize import is_int8, quantize_int8

__all__ = [
    "GPT",
    "GPTConfig",
    "IGNORE_INDEX",
    "LoRAConfig",
    "LoRALinear",
    "Muon",
    "PRESETS",
    "adapters_disabled",
    "apply_lora",
    "generate",
    "is_int8",
    "load_adapter",
    "lora_state_dict",
    "lr_at",
    "merge_lora",
    "merged_state_dict",
    "param_groups",
    "quantize_int8",
    "sample_next",
    "save_adapter",
    "trainable_parameters",
    "unmerge_lora",
]
