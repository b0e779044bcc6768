"""Run a function in a child process with a process group of its own, which ends with its caller.

litdata's ``optimize`` (the shard writer) starts worker processes, which a ``SystemExit`` in the
caller leaves running (they are joined at exit, so the process hangs), and installs a SIGINT
handler that exits with code 0 without cleaning up, which outlives the call. ``run_isolated``
keeps both away from the caller: the function runs in a child, in a new process group, that
resets SIGTERM and SIGINT to their defaults. When the caller is interrupted while it waits (an
exception, a SIGTERM turned into ``SystemExit``, Ctrl-C), the whole group is killed before the
exception goes on, so no process writes into a folder that is being removed. A child whose caller
was killed outright (``kill -9``) notices within a fraction of a second and kills its group too.
An error in the child comes back as a one-line ``OSError`` (with its ``errno``), ``ValueError`` or
``RuntimeError``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_ERRORS: dict[str, type[Exception]] = {"OSError": OSError, "ValueError": ValueError, "RuntimeError": RuntimeError}
_WATCH_SECONDS = 0.2


def run_isolated(fn: Callable[..., None], *args: Any) -> None:
    """Call ``fn(*args)`` in a child process group and wait for it; raise its error in one line.

    ``fn`` and ``args`` must be picklable where processes are spawned (not on Linux, which forks).
    """
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(sender, os.getpid(), fn, args))
    try:
        child.start()
        sender.close()
        _own_group(child.pid)
        child.join()
    except BaseException:
        if child.pid is not None:
            _kill(child)
        raise
    finally:
        error = _message(receiver)
    if error is not None:
        kind, message, number = error
        raise OSError(number, message) if number is not None else _ERRORS[kind](message)
    if child.exitcode != 0:
        cause = f"signal {signal.Signals(-child.exitcode).name}" if child.exitcode < 0 else f"code {child.exitcode}"
        raise RuntimeError(f"a worker process ended with {cause}")


def _own_group(pid: int) -> None:
    """Put the child in a process group of its own (it does so too: whichever runs first)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already, or it did so first
        os.setpgid(pid, pid)


def _kill(child: multiprocessing.process.BaseProcess) -> None:
    """Kill the child and everything it started (before reaping it, so its group id cannot be reused)."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # not a group leader yet: it has started nothing
        child.kill()
    child.join()


def _message(receiver) -> tuple[str, str, int | None] | None:
    """The child's ``(kind, message, errno)``, if it sent one; closes the pipe."""
    try:
        return receiver.recv() if receiver.poll() else None
    except EOFError:  # it ended without a word
        return None
    finally:
        receiver.close()


def _child_main(sender, parent: int, fn: Callable[..., None], args: tuple) -> None:
    """In the child: a group of its own, default signal handlers, a watch on the caller, then ``fn``."""
    os.setpgid(0, 0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    threading.Thread(target=_die_with, args=(parent,), daemon=True).start()
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - every failure goes back to the caller as one line
        kind = next((name for name, cls in _ERRORS.items() if isinstance(err, cls)), "RuntimeError")
        number = err.errno if isinstance(err, OSError) else None
        lines = str(err.strerror if number is not None else err).strip().splitlines()
        sender.send((kind, lines[0] if lines else type(err).__name__, number))
        sender.close()
        os.killpg(0, signal.SIGKILL)  # and whatever it started and left running (litdata's workers, say)
    sender.close()


def _die_with(parent: int) -> None:
    """Kill this process group once the caller is gone (its children are re-parented when it dies)."""
    while os.getppid() == parent:
        time.sleep(_WATCH_SECONDS)
    os.killpg(0, signal.SIGKILL)
