"""Log-probabilities of given tokens under a model: what preference tuning and RL optimize.

``token_logprobs(logits, targets)`` is ``log p(target_t | tokens < t)`` per position, 0 where the
target is ``IGNORE_INDEX`` (a prompt token, or right padding). ``sequence_logprobs`` sums them per
row: the log-probability of a response given its prompt. Both compute the log-softmax in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightningllm.model import IGNORE_INDEX


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits and (B, T) targets -> (B, T) float32 log-probabilities, 0 at ignored targets."""
    keep = targets != IGNORE_INDEX
    picked = torch.where(keep, targets, 0)
    logprobs = F.log_softmax(logits.float(), dim=-1).gather(-1, picked.unsqueeze(-1)).squeeze(-1)
    return torch.where(keep, logprobs, 0.0)


def sequence_logprobs(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) summed log-probabilities of the non-ignored ``targets`` given ``inputs`` (both (B, T)) under ``model``."""
    return token_logprobs(model(inputs), targets).sum(dim=-1)
