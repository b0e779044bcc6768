"""Optimizers, parameter groups and learning-rate schedules for GPT training (plain PyTorch).

Weight decay applies to matmul weights only: never to norms, biases or embeddings, as in
GPT-3 and Llama training. ``Muon`` orthogonalizes the updates of the transformer blocks'
matrices and keeps AdamW for the rest, in one optimizer. Schedules are pure functions of the
step, so they can be tested and resumed exactly.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn
from torch.optim.adamw import adamw

Schedule = Literal["cosine", "linear", "constant"]


def param_groups(model: nn.Module, weight_decay: float, muon: bool = False) -> list[dict]:
    """Decayed 2-D matmul weights and everything else (norms, biases, embeddings), as optimizer groups.

    With ``muon``, the decayed weights inside ``model.blocks`` form a third group flagged
    ``use_muon`` for :class:`Muon`; the embeddings and the output head stay with AdamW, as in
    Muon's own recipe (they are lookups and a classifier, not hidden linear maps).
    """
    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden_params = {id(p) for p in model.blocks.parameters()} if muon else set()
    decay, no_decay, hidden = [], [], []
    for param in model.parameters():  # tied weights appear once
        if not param.requires_grad:
            continue
        if param.dim() >= 2 and id(param) not in embedding_params:
            (hidden if id(param) in hidden_params else decay).append(param)
        else:
            no_decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if muon:
        groups = [{"params": hidden, "weight_decay": weight_decay, "use_muon": True}] + [
            {**group, "use_muon": False} for group in groups if group["params"]
        ]
    return groups


def orthogonalize(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Push a matrix's singular values toward 1 with a quintic Newton-Schulz iteration (Muon's).

    ``update`` is one matrix (A, B) or a stack of them (N, A, B). The coefficients (Keller
    Jordan's) favour speed over exact convergence: singular values end between about 0.7 and
    1.2, which trains as well as the exact ``U @ V.T``. Runs in bfloat16 on GPUs and in float32
    elsewhere (CPUs without bf16 matmul units are several times slower in it).
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = update.to(torch.bfloat16 if update.is_cuda else torch.float32)
    x = x if x.dim() == 3 else x.unsqueeze(0)  # (N, A, B)
    transposed = x.size(-2) > x.size(-1)
    if transposed:  # iterate on the smaller Gram matrix
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = torch.bmm(x, x.mT)
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    x = x.mT if transposed else x
    return x.reshape(update.shape).to(update.dtype)


class Muon(torch.optim.Optimizer):
    """Muon on the groups flagged ``use_muon`` (2-D hidden weights), AdamW on the other groups.

    One optimizer, so one state dict, one LR schedule and one ``step`` for Lightning. Muon's
    update is momentum (Nesterov) orthogonalized by :func:`orthogonalize`, scaled by
    ``0.2 * sqrt(max(rows, cols))`` so its RMS matches AdamW's: both kinds of group share the
    learning rate and weight decay tuned for AdamW (Moonshot AI, "Muon is Scalable for LLM
    Training", 2025). torch's own ``torch.optim.Muon`` takes only 2-D parameters and runs its
    iteration in bfloat16, which is slow on CPUs.

    Under FSDP2 (parameters that are ``DTensor`` shards) momentum and weight decay work on the
    shards; the Newton-Schulz iteration needs whole matrices, so each one is gathered, every rank
    orthogonalizes it (the same work on every rank) and keeps its own shard of the update: the same
    step as unsharded, up to floating-point rounding.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        ns_steps: int = 5,
    ):
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum=momentum, ns_steps=ns_steps, use_muon=False
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["use_muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon: groups with use_muon=True must hold only 2-D weights")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["use_muon"] else self._adamw_step)(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        for param in params:
            if not self.state[param]:
                self.state[param]["momentum_buffer"] = torch.zeros_like(param)
        grads = [p.grad for p in params]
        buffers = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_lerp_(buffers, grads, 1 - momentum)
        nesterov = torch._foreach_lerp(grads, buffers, momentum)
        by_shape: dict[torch.Size, list[int]] = {}
        for i, param in enumerate(params):
            by_shape.setdefault(param.shape, []).append(i)
        torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        for shape, indices in by_shape.items():  # one batched iteration per shape: fewer, larger matmuls
            updates = orthogonalize(torch.stack([_whole(nesterov[i]) for i in indices]), group["ns_steps"])
            updates = [_like(update, params[i]) for update, i in zip(updates.unbind(), indices, strict=True)]
            scaled_lr = lr * 0.2 * math.sqrt(max(shape))  # the RMS of an AdamW update
            torch._foreach_add_([params[i] for i in indices], updates, alpha=-scaled_lr)

    def _adamw_step(self, group: dict, params: list[torch.Tensor]) -> None:
        """torch's own AdamW arithmetic (its functional form) on this group, with AdamW's state layout."""
        for param in params:
            if not self.state[param]:
                self.state[param].update(
                    step=torch.tensor(0.0), exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param)
                )
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            foreach=True,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """The whole matrix of a sharded ``DTensor`` (FSDP2), gathered from every rank; a plain tensor as it is."""
    return tensor.full_tensor() if _is_dtensor(tensor) else tensor


def _like(update: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``update`` (a whole matrix) laid out as ``param``: under FSDP2 this rank's shard of it, cut locally.

    Every rank orthogonalized the same gathered matrix, so each keeps its own piece without
    communicating (``src_data_rank=None``).
    """
    if not _is_dtensor(param):
        return update
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(update, param.device_mesh, param.placements, src_data_rank=None)


def _is_dtensor(tensor: torch.Tensor) -> bool:
    if not torch.distributed.is_available():  # builds without torch.distributed have no DTensor
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


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
