"""Pure-PyTorch GPT: config, layers, model, generation and optimizer helpers. Imports no Lightning."""

from lightningllm.model.config import PRESETS, GPTConfig
from lightningllm.model.generate import generate, sample_next
from lightningllm.model.gpt import GPT, IGNORE_INDEX
from lightningllm.model.optim import Muon, lr_at, param_groups

__all__ = ["GPT", "GPTConfig", "IGNORE_INDEX", "Muon", "PRESETS", "generate", "lr_at", "param_groups", "sample_next"]
