"""Write a folder all at once: build it under a temporary name beside its target, rename it into place.

A crash, a full disk or Ctrl-C part-way leaves the target as it was (missing, or the previous
complete version), never half-written. Prepared data shards and model exports both use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(target: Path, what: str = "the folder") -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it replaces ``target``.

    An existing ``target`` is moved aside before the new folder moves in, and deleted after. ``what``
    names the folder in the one-line error raised when its parent cannot be written.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as err:
        raise OSError(f"cannot write {what} to {target}: {err.strerror or err}") from None
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes the folder private; its files already have the usual mode
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already on success
