"""SIGTERM and SIGINT as an exception raised at a safe point, with the exit code a scheduler expects.

``install()`` (the ``lightningllm`` command calls it first) replaces both signals' handlers with
one that raises ``Interrupted``: a ``SystemExit`` with code 143 (SIGTERM) or 130 (SIGINT), so
``finally`` blocks and context managers clean up (a half-written data folder or export is removed)
and the process exits with that code. Inside ``deferred()`` the handler only records the signal:
training uses it so that a step is never cut in half, and ``LastCheckpoint`` stops the run at the
next step boundary, saves it, and raises ``Interrupted`` itself. This module imports no Lightning.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_deferred = 0
_received: int | None = None
_reported = False


class Interrupted(SystemExit):
    """Raised for SIGTERM or SIGINT; its exit code is 128 + the signal number (143, 130)."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


def _handle(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    if not _deferred:
        raise Interrupted(signum)


def _take_over() -> dict[int, object]:
    """Point both signals at ``_handle``; the handlers they had before."""
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    return previous


def install() -> None:
    """Handle SIGTERM and SIGINT here for the rest of the process (only the main thread may set handlers)."""
    if threading.current_thread() is threading.main_thread():
        _take_over()


def received() -> int | None:
    """The number of the last SIGTERM/SIGINT received since ``install()``, or None."""
    return _received


def report(message: str) -> None:
    """Tell the user (one line on stderr) what was done about the signal; the exit says nothing more."""
    global _reported
    print(message, file=sys.stderr, flush=True)
    _reported = True


def reported() -> bool:
    return _reported


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within this block a signal is only recorded (see ``received``): the caller stops at a safe point.

    The block takes both signals over (Lightning's own SIGTERM handler, installed when a run starts,
    would otherwise end the run its way) and gives them back on exit.
    """
    global _deferred
    previous = _take_over() if threading.current_thread() is threading.main_thread() else {}
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
