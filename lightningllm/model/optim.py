"""Optimizer parameter groups and learning-rate schedules for GPT training (plain PyTorch).

Weight decay applies to matmul weights only: never to norms, biases or embeddings, as in
GPT-3 and Llama training. Schedules are pure functions of the step, so they can be tested
and resumed exactly.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

Schedule = Literal["cosine", "linear", "constant"]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed 2-D matmul weights, and everything else (norms, biases, embeddings)."""
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():  # tied weights appear once
        if not param.requires_grad:
            continue
        if param.dim() >= 2 and id(param) not in embedding_params:
            decay.append(param)
        else:
            no_decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(
    step: int,
    max_lr: float,
    warmup_steps: int,
    total_steps: int,
    min_lr: float = 0.0,
    schedule: Schedule = "cosine",
    progress: float | None = None,
) -> float:
    """Learning rate at optimizer step ``step``: linear warmup, then cosine/linear decay or constant.

    ``progress`` (0..1) replaces the step-based position in the decay, for schedules that run
    over a wall-clock budget instead of a step count.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return max_lr
    if progress is None:
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    if schedule == "linear":
        return max_lr + (min_lr - max_lr) * progress
    if schedule == "cosine":
        return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}; choose cosine, linear or constant")
