"""Staging folders: a prepared corpus is built in a locked folder beside the cache, gone however preparation ends.

``staging_directory(parent, name)`` makes ``<parent>/.<name>.preparing-<random>/`` and holds an
exclusive ``flock`` on its ``owner.lock`` for as long as the folder is in use, writing the owner's
process id there once the lock is held. The folder is removed when the block ends, by an error,
a full disk, Ctrl-C or a SIGTERM that the ``lightningllm`` command turns into ``SystemExit``.

A process killed outright (``kill -9``, a lost node) cannot remove its folder; the next staging
folder made in the same ``parent`` removes it. Only a folder that is provably ours and provably
abandoned goes: its name has the staging pattern, its ``owner.lock`` names an owner, and the lock
can be taken, which the kernel allows only once every process that held it has ended (processes
forked while the folder is in use, such as tokenizing workers, hold it too). The folder of a
preparation still running, in another run or on another rank, stays locked and is never touched.
Where the file system has no ``flock`` (or on Windows), no folder is ever judged abandoned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so abandoned folders are left to the user
    fcntl = None

STAGING_INFIX = ".preparing-"
LOCK_NAME = "owner.lock"
OWNER_RECORD = "lightningllm data preparation, pid "


@contextlib.contextmanager
def staging_directory(parent: Path, name: str) -> Iterator[Path]:
    """Yield a new, locked, empty folder in ``parent`` (made if missing) for building ``name``; removed on exit.

    Abandoned staging folders of earlier, killed runs in ``parent`` are removed first.

    Raises:
        OSError: one line naming ``parent`` when it cannot be made or written.
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(parent)
        folder = Path(tempfile.mkdtemp(prefix=f".{name}{STAGING_INFIX}", dir=parent))
    except OSError as err:
        raise OSError(f"cannot write the prepared data in {parent}: {err.strerror or err}") from None
    try:
        with _owned(folder / LOCK_NAME):
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _owned(lock_path: Path) -> Iterator[None]:
    """Hold the lock on ``lock_path`` and record this process as its owner, until the block ends."""
    try:
        handle = lock_path.open("a+")
    except OSError as err:
        raise OSError(f"cannot write the prepared data in {lock_path.parent.parent}: {err.strerror}") from None
    with handle:
        if _lock(handle, wait=True):  # without the record (no flock here) nobody ever removes the folder
            try:
                handle.write(f"{OWNER_RECORD}{os.getpid()}\n")
                handle.flush()
            except OSError as err:
                raise OSError(f"cannot write the prepared data in {lock_path.parent.parent}: {err.strerror}") from None
        yield


def _lock(handle, wait: bool) -> bool:
    """Take the exclusive lock of an open file; False when it is held elsewhere or cannot be had here."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live process (without waiting), or the file system has no flock
        return False
    return True


def remove_abandoned(parent: Path) -> list[Path]:
    """Remove the staging folders in ``parent`` whose owners have all ended; return them."""
    removed = []
    if fcntl is None:
        return removed
    for folder in parent.glob(f".*{STAGING_INFIX}*"):
        if folder.is_dir() and _abandoned_removed(folder):
            removed.append(folder)
    return removed


def _abandoned_removed(folder: Path) -> bool:
    """Take the lock of ``folder`` without waiting; if it names an owner, the owner is gone: remove the folder."""
    try:
        handle = (folder / LOCK_NAME).open("r")
    except OSError:  # no lock file (not ours, or its owner is still creating it), or gone already
        return False
    with handle:
        if not _lock(handle, wait=False):
            return False
        if not handle.read().startswith(OWNER_RECORD):  # its owner has not locked it yet
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True
