"""AtomicCheckpointIO: Lightning saves checkpoints to a temporary file beside them, then renames it into place.

Lightning's ``TorchCheckpointIO`` writes a checkpoint through fsspec, which writes to a temporary
file in ``$TMPDIR`` and then moves it; when ``$TMPDIR`` is on another filesystem the move is a copy
into the target, so a ``kill -9`` during it leaves ``last.ckpt`` at 0 bytes, a full disk leaves it
truncated, and killed saves leave orphans in ``$TMPDIR``. This plugin writes a local checkpoint to
``.NAME.tmp-*`` in the checkpoint's own folder, syncs it and ``os.replace``s it over the target
(``lightningllm.atomic.atomic_file``): the previous checkpoint survives any crash or full disk,
temporary files of killed saves are removed at the next save, and a failed save is one line
naming the checkpoint. Remote paths (``s3://`` and the like) go to ``TorchCheckpointIO``.

    L.Trainer(plugins=[AtomicCheckpointIO()], ...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.plugins import TorchCheckpointIO

from lightningllm.atomic import atomic_file


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` with ``torch.save``, all at once.

        Raises:
            OSError: one line, ``cannot save checkpoint PATH: REASON`` (``No space left on device``);
                the file at ``path`` is left as it was.
        """
        fs, local_path = url_to_fs(str(path))
        if not isinstance(fs, LocalFileSystem) or storage_options is not None:
            super().save_checkpoint(checkpoint, path, storage_options)  # which refuses storage_options
            return
        try:
            with atomic_file(Path(local_path)) as file:
                writer = _RecordingWriter(file)
                try:
                    torch.save(checkpoint, writer)
                except RuntimeError:
                    if writer.error is None:
                        raise
                    raise writer.error from None
        except OSError as err:
            raise OSError(f"cannot save checkpoint {path}: {err.strerror or err}") from None


class _RecordingWriter:
    """A binary file for ``torch.save`` that keeps the ``OSError`` of a failed write.

    ``torch.save`` turns it into ``RuntimeError("... unexpected pos ...")``, losing the reason.
    """

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()
