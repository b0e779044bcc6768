"""Helpers of the bad-input battery: run the ``lightningllm`` command in-process as a user's process would, and
fingerprint a folder so a test can tell that nothing the user had was changed.

``run_main`` calls ``lightningllm.cli.commands.main`` and returns the exit code a shell would see: an
uncaught exception becomes the interpreter's traceback on stderr and code 1. ``as_a_users_process``
gives Lightning's loggers the stderr handler they install when a fresh process imports Lightning
(under pytest they find pytest's handlers on the root logger and stay silent), shows warnings on
stderr with Python's default filters instead of pytest's recorder, and bounds the address space, so
the stderr a test reads is the stderr a user reads and a memory bomb fails fast instead of swapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import resource
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
"""The loggers Lightning gives a ``StreamHandler`` (stderr) at import time when the root logger has none."""


def run_main(argv: list[str]) -> int:
    """``lightningllm ARGV`` in this process; the exit status a shell would see."""
    from lightningllm.cli.commands import main

    try:
        main(list(argv))
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)  # what the interpreter does with sys.exit("message")
        return 1
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        return 1
    return 0


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def as_a_users_process(memory_gb: float = 6.0) -> Iterator[None]:
    """Lightning's log lines and Python's warnings on (the current) stderr, and at most ``memory_gb`` more
    address space than the process holds now; the environment, ``sys.argv`` and the SIGINT/SIGTERM
    handlers (the command installs its own) are restored afterwards."""
    import lightning.pytorch  # noqa: F401  (its import-time logging setup first, replaced below)

    environ, argv = dict(os.environ), sys.argv
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    saved = {name: (logging.getLogger(name).handlers, logging.getLogger(name).propagate) for name in LIGHTNING_LOGGERS}
    limits = resource.getrlimit(resource.RLIMIT_AS)
    try:
        for name in LIGHTNING_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = [logging.StreamHandler(sys.stderr)], False
        os.environ.pop("LIGHTNINGLLM_DEBUG", None)
        os.environ.pop("PL_GLOBAL_SEED", None)
        sys.argv = ["lightningllm"]
        cap = _address_space() + int(memory_gb * 2**30)
        hard = limits[1]
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults, as in a fresh interpreter
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _show_on_stderr
            yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limits)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
        os.environ.clear()
        os.environ.update(environ)
        sys.argv = argv


def _address_space() -> int:
    """This process's virtual memory size in bytes (``VmSize``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def snapshot(root: Path) -> dict[str, str]:
    """Every file (by content hash) and folder under ``root``, keyed by its path relative to ``root``."""
    entries = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries[key] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            entries[key] = "folder"
        else:
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def changes(before: dict[str, str], after: dict[str, str], new_allowed_under: tuple[str, ...] = ()) -> list[str]:
    """What happened to the entries of ``before`` (changed, gone), and new entries outside ``new_allowed_under``."""
    found = [f"changed: {key}" for key in before if key in after and after[key] != before[key]]
    found += [f"gone: {key}" for key in before if key not in after]
    allowed = tuple(prefix.rstrip("/") for prefix in new_allowed_under)
    found += [
        f"new: {key}"
        for key in after
        if key not in before and not any(key == prefix or key.startswith(prefix + "/") for prefix in allowed)
    ]
    return found
