"""Ending a gloo process group before the interpreter does: a finished run's process exits 0, not SIGABRT.

Lightning destroys the default process group at exit only for NCCL. A gloo group left alive
keeps C++ worker threads that the interpreter's teardown can destroy while they are still
joinable, and the process then aborts ("terminate called without an active exception") after
the run has finished and written its outputs (seen in 1 of 7 ``ddp_spawn`` validations on CPU).
``destroy_process_group_at_exit`` registers, once per process, an ``atexit`` handler that
destroys the group while the interpreter is still whole (pytorch/pytorch#179291 describes the cause).
"""

from __future__ import annotations

import atexit

import torch.distributed as dist

_registered = False


def destroy_process_group_at_exit() -> None:
    """Once a process group is up, destroy it at interpreter exit (a no-op if it is gone by then)."""
    global _registered
    if _registered or not dist.is_available() or not dist.is_initialized():
        return
    atexit.register(_destroy)
    _registered = True


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
