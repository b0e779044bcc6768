"""FSDP2 for ``GPT``: the sharding plan LitGPT applies under Lightning's ``ModelParallelStrategy``, and its helpers.

``shard(gpt, mesh)`` follows torchtitan's order and Lightning's own FSDP2 example: each transformer
block is compiled (``compile=True``), then ``fully_shard``-ed over the data-parallel mesh, then the
root (embeddings, final norm, the tied head) is. Activation checkpointing needs no wrapper here:
``GPT`` checkpoints each block from its own forward (``gpt.activation_checkpointing``), so it
stays outermost and parameter names stay plain; FSDP2's hooks know a recomputation (they skip it
in pre-backward, where the block's weights are already gathered). Each parameter becomes a
``DTensor`` sharded on its first dimension: a rank holds 1/N of the weights, gradients and AdamW
state, and gathers a block's weights only while it runs.

Decoding runs a different number of forward passes on each rank (its own prompts, its own EOS),
and FSDP2 all-gathers in every forward, so ``gathered(gpt)`` lends the callbacks that generate an
unsharded copy instead (every rank must enter it at the same point; it costs one full copy of
the weights while it lasts). ``full(t)`` and ``local(t)`` turn a ``DTensor`` into the whole tensor
or this rank's shard, and leave plain tensors alone. FSDP2 cannot run under ``torch.inference_mode``,
so ``evaluate_under_no_grad(trainer)`` has the trainer evaluate under ``no_grad``.

Every forward pass all-gathers, so every rank must run the same number of them: validation and
test need the same number of batches on each rank (an integer ``trainer.limit_val_batches`` no
larger than any rank's share does it), or the ranks' collectives mismatch and the run fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import lightning as L
import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from lightningllm.model import GPT


def is_sharded(model: torch.nn.Module) -> bool:
    """True when ``fully_shard`` has been applied to ``model`` (its parameters are ``DTensor`` shards)."""
    return isinstance(model, FSDPModule)


def shard(gpt: GPT, mesh: DeviceMesh, compile: bool = False) -> None:
    """Apply FSDP2 to ``gpt`` in place: each block (compiled first, with ``compile``), then the root.

    The last block keeps its weights gathered after forward: backward needs them at once (as in
    torchtitan and Lightning's example). ``mesh`` is the 1-D data-parallel mesh.
    """
    if mesh.ndim != 1:
        raise ValueError(f"shard needs a 1-D data-parallel mesh, got {mesh.ndim} dimensions")
    last = len(gpt.blocks) - 1
    for i, block in enumerate(gpt.blocks):
        if compile:
            block.compile()  # in place (nn.Module.compile): parameter names keep no _orig_mod. prefix
        fully_shard(block, mesh=mesh, reshard_after_forward=i < last)
    fully_shard(gpt, mesh=mesh)


def evaluate_under_no_grad(trainer: L.Trainer) -> None:
    """Make the trainer's evaluation loops run under ``torch.no_grad`` instead of ``torch.inference_mode``.

    FSDP2 cannot run under inference mode: its all-gather buffers become inference tensors, and the
    next training step's in-place all-gather into them fails. Lightning makes that exception for its
    own ``FSDPStrategy`` (and for gloo), not for ``ModelParallelStrategy``, so a sharded LitGPT
    evaluates as ``Trainer(inference_mode=False)`` would, whatever the trainer was given.
    """
    for loop in (trainer.fit_loop.epoch_loop.val_loop, trainer.validate_loop, trainer.test_loop, trainer.predict_loop):
        if loop.inference_mode:  # read first: a renamed attribute fails here instead of being set unnoticed
            loop.inference_mode = False


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a ``DTensor`` is gathered (a collective: every rank must call it), others are returned."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a ``DTensor``, or the tensor itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


@contextlib.contextmanager
def gathered(gpt: GPT) -> Iterator[GPT]:
    """``gpt`` itself, or, when it is sharded, an unsharded eager copy on the same device (for decoding).

    The copy is built with the global random state forked (the training RNG stream is untouched),
    loaded with every parameter gathered, and dropped on exit. All ranks must enter together.
    """
    if not is_sharded(gpt):
        yield gpt
        return
    weights = {name: full(value) for name, value in gpt.state_dict().items()}  # every rank, in one order
    device = gpt.lm_head.weight.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        copy = GPT(gpt.config)
    copy.load_state_dict(weights)
    del weights
    yield copy.train(gpt.training)
