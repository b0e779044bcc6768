"""AtomicCheckpointIO: Lightning saves checkpoints to a temporary file beside them, then renames it into place.

Lightning's ``TorchCheckpointIO`` writes a checkpoint through fsspec, which writes to a temporary
file in ``$TMPDIR`` and then moves it; when ``$TMPDIR`` is on another filesystem the move is a copy
into the target, so a ``kill -9`` during it leaves ``last.ckpt`` at 0 bytes, a full disk leaves it
truncated, and killed saves leave orphans in ``$TMPDIR``. This plugin writes a local checkpoint to
``.NAME.tmp-*`` in the checkpoint's own folder, syncs it and ``os.replace``s it over the target
(``lightningllm.atomic.atomic_file``): the previous checkpoint survives any crash or full disk,
temporary files of killed saves are removed at the next save, and a failed save is one line
naming the checkpoint. Remote paths (``s3://`` and the like) go to ``TorchCheckpointIO``.

It also loads a sharded checkpoint (a folder that ``ModelParallelStrategy`` wrote) on a strategy
that does not shard: ``validate``/``test``/``predict --ckpt_path last.ckpt/`` on one device read
its weights consolidated (``lightningllm.checkpoint.read_checkpoint``; no optimizer state).
``ModelParallelStrategy`` itself uses this plugin only with ``save_distributed_checkpoint=False``
(rank 0 then saves one whole file through it); its sharded saves and loads go through
``torch.distributed.checkpoint`` and bypass any plugin, so they are not atomic.

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
from lightningllm.checkpoint import read_checkpoint
from lightningllm.sharded_checkpoint import is_sharded_checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    def load_checkpoint(self, path: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A ``.ckpt`` file as ``TorchCheckpointIO`` reads it; a sharded folder consolidated, on CPU, weights only."""
        if is_sharded_checkpoint(path):
            return read_checkpoint(path)
        return super().load_checkpoint(path, *args, **kwargs)

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
