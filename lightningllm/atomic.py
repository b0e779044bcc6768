"""Write a file or a folder all at once: build it under a temporary name beside its target, rename it into place.

A crash, a ``kill -9``, a full disk or Ctrl-C part-way leaves the target as it was (missing, or
the previous complete version), never half-written. The temporary name is in the target's own
folder, so the rename never becomes a copy across filesystems (``$TMPDIR`` is not used).
Checkpoints use ``atomic_file``, new model exports (and any folder built whole) ``atomic_directory``.
New files and folders get the usual mode (0666 / 0777 less the umask).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def temporary_name(target: Path, kind: str = "tmp") -> Path:
    """A fresh hidden name beside ``target``: ``.NAME.tmp-1a2b3c4d`` (``kind`` "old" for a replaced folder)."""
    return target.parent / f".{target.name}.{kind}-{secrets.token_hex(4)}"


def stale_temporaries(target: Path) -> list[Path]:
    """Files named like ``temporary_name(target)``: left behind by writes that were killed."""
    return [path for path in target.parent.glob(f".{glob.escape(target.name)}.tmp-*") if path.is_file()]


def fsync_path(path: Path) -> None:
    """Flush a file's or folder's contents to disk (a folder's: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # some filesystems cannot sync a folder; the rename has happened anyway
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[BinaryIO]:
    """Yield a new file open for writing beside ``target``; on success it is synced and replaces ``target``.

    Temporary files of earlier writes to ``target`` that were killed are removed first; on any
    error (or interrupt) the new one is removed too, and ``target`` is left untouched. Errors are
    the ``OSError`` of the failing call: callers name the file in their message.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(target):
        stale.unlink(missing_ok=True)
    tmp = temporary_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any new file
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)


@contextlib.contextmanager
def atomic_directory(target: Path, what: str = "the folder") -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it replaces ``target``.

    An existing ``target`` is moved aside before the new folder moves in, and deleted after. ``what``
    names the folder in the one-line error raised when its parent cannot be written or the new
    folder cannot be moved in; errors inside the ``with`` block are the caller's to word.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(target)
        tmp.mkdir(mode=0o777)  # the umask applies
    except OSError as err:
        raise OSError(f"cannot write {what} to {target}: {err.strerror or err}") from None
    old = temporary_name(target, "old")
    try:
        yield tmp
        try:
            if target.exists():
                old.mkdir()
                os.replace(target, old / target.name)
                try:
                    os.replace(tmp, target)
                except OSError:
                    os.replace(old / target.name, target)  # the previous version goes back
                    raise
            else:
                os.replace(tmp, target)
            fsync_path(target.parent)
        except OSError as err:
            raise OSError(f"cannot write {what} to {target}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already on success
        if target.exists():  # the new folder or the previous one is in place: the copy aside is not needed
            shutil.rmtree(old, ignore_errors=True)
