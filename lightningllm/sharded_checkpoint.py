"""Sharded checkpoints: the weights of a folder that Lightning's ``ModelParallelStrategy`` (FSDP2) wrote, read whole.

With ``save_distributed_checkpoint=True`` (its default) the strategy writes ``last.ckpt/`` as a
folder in ``torch.distributed.checkpoint`` (DCP) format: one ``__<rank>_0.distcp`` file of shards
per rank, ``.metadata`` (where each shard lies) and ``meta.pt`` (everything else Lightning saves:
the hyperparameters, the tokenizer, the loops; a ``torch.save`` file). ``read_sharded_weights``
assembles the whole ``state_dict`` tensors in one process, on CPU, without a process group, and
reads no optimizer state. It reads what it loads safely: ``.metadata`` is a pickle, which
torch's own reader loads with plain ``pickle``, so it is read here with an unpickler that knows
only DCP's metadata classes; the shards are read by DCP with ``torch.load(weights_only=True)``.
This module imports no Lightning.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import CheckpointException, FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata

SHARDED_METADATA = "meta.pt"
"""The file of a sharded checkpoint that holds everything but the weights and optimizer state (Lightning's name)."""

DCP_METADATA = ".metadata"
"""DCP's index of the shards: each tensor's shape, dtype, and the file and offset of each of its pieces."""

WEIGHTS_PREFIX = "state_dict."
"""Lightning saves the module's weights under ``state_dict`` (DCP flattens nested keys with dots)."""

_METADATA_CLASSES = {
    ("torch.distributed.checkpoint.metadata", name)
    for name in (
        "Metadata",
        "StorageMeta",
        "MetadataIndex",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "_MEM_FORMAT_ENCODING",
    )
} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
}
"""What DCP's ``.metadata`` pickle may name: its own dataclasses and enums, and the torch and path types in them."""


def is_sharded_checkpoint(ckpt_path: str | Path) -> bool:
    """True for a folder that ``ModelParallelStrategy`` wrote: its ``meta.pt`` beside the shards (Lightning's test)."""
    path = Path(ckpt_path)
    return path.is_dir() and (path / SHARDED_METADATA).is_file()


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if (module, name) in _METADATA_CLASSES or dtype:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


class _SafeReader(FileSystemReader):
    """DCP's file reader with ``.metadata`` read by ``_MetadataUnpickler`` instead of ``pickle.load``."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.folder = folder

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        with open(self.folder / DCP_METADATA, "rb") as file:
            metadata = _MetadataUnpickler(file).load()
        if not isinstance(metadata, Metadata):
            raise pickle.UnpicklingError(f"it holds a {type(metadata).__name__}, not DCP metadata")
        if metadata.storage_meta is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def read_sharded_weights(folder: str | Path, load: bool = True) -> dict[str, torch.Tensor]:
    """The whole weights (``state_dict``) in a sharded checkpoint folder, as CPU tensors under Lightning's names.

    ``load=False`` returns them on the ``meta`` device: names, shapes and dtypes, nothing read but
    the index.

    Raises:
        ValueError: one line naming the folder: its index or a shard is missing, cannot be read, or
            names Python objects other than DCP's metadata.
    """
    folder = Path(folder)
    reader = _SafeReader(folder)
    try:
        metadata = reader.read_metadata()
    except FileNotFoundError:
        raise ValueError(
            f"checkpoint {folder} has no {DCP_METADATA} (its index of the shards): the save did not finish"
        ) from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as err:
        raise ValueError(f"cannot read checkpoint {folder}: its {DCP_METADATA} is not DCP metadata ({err})") from None
    device = "cpu" if load else "meta"
    weights = {
        key.removeprefix(WEIGHTS_PREFIX): torch.empty(item.size, dtype=item.properties.dtype, device=device)
        for key, item in metadata.state_dict_metadata.items()
        if key.startswith(WEIGHTS_PREFIX) and isinstance(item, TensorStorageMetadata)
    }
    if load and weights:
        try:
            with warnings.catch_warnings():  # DCP warns that no_dist means one process, which is what is asked
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.load({"state_dict": weights}, storage_reader=reader, no_dist=True)
        except CheckpointException as err:  # a missing or truncated shard: DCP wraps what went wrong
            cause = _line(next(iter(err.failures.values()))[0])
            raise ValueError(f"cannot read checkpoint {folder}: a shard is missing or damaged ({cause})") from None
        except (OSError, RuntimeError, ValueError) as err:
            raise ValueError(f"cannot read checkpoint {folder}: {_line(err)}") from None
    return weights


def _line(err: BaseException) -> str:
    """The error's type and the first line of its message."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
