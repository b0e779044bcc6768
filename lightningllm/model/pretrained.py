"""The portable model folder: ``config.json`` (the ``GPTConfig``) and ``model.safetensors`` (the weights).

``GPT.save_pretrained(DIR)`` and ``GPT.from_pretrained(DIR)`` call ``save_pretrained`` and
``load_pretrained`` here. Loading trusts neither file: ``config.json`` must list every
``GPTConfig`` field with a value of the field's type, and the safetensors header (read by hand:
an 8-byte little-endian length, then JSON) must describe exactly the file's size and at least the
config's parameter count before any model is built, so a tampered 300-byte config cannot make it
allocate gigabytes; the built model's tensor names and shapes are then checked against the header
before any weight is read. Every problem is a one-line ``ValueError`` (or ``FileNotFoundError``)
naming the file. No pickle is read and no code runs from a file.

A model ``quantize_int8`` has converted saves its block linears as int8 rows with their scales
(``lightningllm.model.quantize.int8_tensors``) and says so in the safetensors metadata
(``"quantization": "int8"``); ``from_pretrained`` then returns the int8 model, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import torch

from lightningllm.model.config import GPTConfig

if TYPE_CHECKING:
    from lightningllm.model.gpt import GPT

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

MAX_HEADER_BYTES = 100_000_000
"""Largest safetensors header accepted (the safetensors library's own limit)."""

MAX_TABLE_VALUES = 2**24
"""Position tables (rope, sinusoidal) a loaded config may make a GPT compute, unless its weights are even larger."""

FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
"""Safetensors dtypes a GPT's weights may be stored in, with their sizes in bytes (loading casts to the model's)."""

INT8_DTYPES = {**FLOAT_DTYPES, "I8": 1, "I64": 8}
"""Also allowed in an int8 folder: the int8 weight rows and their (int64) zero points."""

QUANTIZATION_KEY = "quantization"
"""Safetensors metadata key of an int8 folder (value ``int8``); a float folder has none."""

_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int8: "I8", torch.int64: "I64",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header."""

    dtype: str
    shape: tuple[int, ...]


# --- writing -----------------------------------------------------------------------------------
def save_pretrained(model: GPT, directory: str | Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (tied weights stored once) to ``directory``.

    Plain writes with the usual file mode; ``lightningllm export`` makes the folder appear whole.
    """
    from safetensors.torch import save

    from lightningllm.model.quantize import int8_tensors, is_int8

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    int8 = is_int8(model)
    state = int8_tensors(model) if int8 else model.state_dict(keep_vars=True)
    tensors, metadata = {}, {}
    for names in _tied_groups(state):
        kept = names[0]  # safetensors' save_model keeps the same name, so earlier exports read the same way
        tensors[kept] = state[kept].detach().cpu().contiguous()
        metadata.update({name: kept for name in names[1:]})  # the aliases, for a reader's information
    if int8:
        metadata[QUANTIZATION_KEY] = "int8"
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    # Serialized in memory and written by Python, so a failed write is an OSError with its errno (the
    # safetensors writer reports a full disk as a SafetensorError, and creates its file with mode 0600).
    (directory / WEIGHTS_FILE).write_bytes(save(tensors, metadata=metadata or None))


def _tied_groups(state: dict[str, torch.Tensor]) -> list[list[str]]:
    """State-dict names grouped by the tensor they hold, each group sorted (a tied embedding is one group)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in state.items():
        groups.setdefault(id(tensor), []).append(name)
    return [sorted(names) for names in groups.values()]


# --- reading -----------------------------------------------------------------------------------
def load_pretrained(cls: type[GPT], directory: str | Path, map_location: str = "cpu") -> GPT:
    """The ``cls`` model saved in ``directory``, its files checked against each other before it is built.

    Raises:
        FileNotFoundError: ``directory``, its ``config.json`` or its ``model.safetensors`` does not exist.
        ValueError: a file is malformed, truncated, or does not match the other.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    from lightningllm.model.quantize import int8_tensors, load_int8_tensors, quantize_int8

    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"model folder {directory} does not exist")
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a model folder (config.json and model.safetensors): it is a file")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    config = read_config(config_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} not found: the model folder has a config.json but no weights")
    header, quantization = read_weights_header(weights_path)
    stored = sum(math.prod(entry.shape) for entry in header.values())
    if config.num_params() > stored:  # before building: the config alone must not decide how much memory is used
        raise ValueError(
            f"{config_path} (n_layer {config.n_layer}, n_embd {config.n_embd}) describes {config.num_params():,} "
            f"parameters but {weights_path} holds {stored:,} values: the two files do not belong together"
        )
    # The position tables are computed, not stored: the config's block_size alone sets their size.
    tables = config.block_size * {"rope": config.head_size, "sinusoidal": config.n_embd}.get(config.pos_emb, 0)
    if tables > max(stored, MAX_TABLE_VALUES):
        raise ValueError(
            f"{config_path}: block_size {config.block_size} needs position tables of {tables:,} values, "
            f"more than the {stored:,} weights in {weights_path}"
        )
    model = cls(config)
    if quantization == "int8":
        quantize_int8(model)  # the int8 layers, whose weights the file then fills in
        state = int8_tensors(model)
        check_tensors(state, header, weights_path, config_path, dtypes=True)
    else:
        check_tensors(model.state_dict(keep_vars=True), header, weights_path, config_path)
    try:
        if quantization == "int8":
            tensors = load_file(weights_path, device=map_location)
            for names in _tied_groups(state):
                kept = next(name for name in names if name in tensors)
                tensors.update({name: tensors[kept] for name in names})
            load_int8_tensors(model, tensors)
        else:
            load_model(model, str(weights_path), device=map_location)
    except (SafetensorError, RuntimeError) as err:  # the file changed after it was checked
        raise ValueError(f"cannot read {weights_path}: {str(err).strip().splitlines()[0]}") from None
    return model


def read_config(path: Path) -> GPTConfig:
    """The ``GPTConfig`` in a ``config.json``: every field present, each of its field's type, all of them valid."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {path.parent} is not a model folder written by save_pretrained")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a config.json: it is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of GPTConfig fields, not {type(data).__name__}")
    if "model_type" in data:
        raise ValueError(
            f"{path} is a Hugging Face transformers config (model_type {data['model_type']!r}): read the folder with "
            "lightningllm.interop.hf.load_hf (fit --model.init_from and export --ckpt_path take it as it is)"
        )
    fields = [field.name for field in dataclasses.fields(GPTConfig)]
    if unknown := sorted(set(data) - set(fields)):
        raise ValueError(f"{path}: unknown field(s) {unknown}: GPTConfig has no such field")
    if missing := [name for name in fields if name not in data]:
        raise ValueError(f"{path}: missing field(s) {missing}: a saved config.json lists every GPTConfig field")
    hints = typing.get_type_hints(GPTConfig)
    for name in fields:
        if not _has_type(data[name], hints[name]):
            raise ValueError(f"{path}: field {name} must be {_describe(hints[name])}, got {json.dumps(data[name])}")
    try:
        config = GPTConfig.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    if config.vocab_size is None:
        raise ValueError(f"{path}: field vocab_size is null, but a saved model has a vocabulary size")
    return config


def _has_type(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a ``GPTConfig`` field type: int, float, bool, a ``Literal``, ``X | None``."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return isinstance(value, str) and value in typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_has_type(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    raise TypeError(f"GPTConfig field type {hint} has no JSON check: add one to lightningllm.model.pretrained")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(arg) for arg in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number"}[hint]


def read_header(path: Path, int8: bool = False) -> dict[str, TensorEntry]:
    """The tensors a safetensors file's header lists, after checking the header against the file's size.

    Reads the header only (never the tensors). Raises a one-line ``ValueError`` naming ``path`` when
    the file is truncated, has bytes past its tensors, or its header is malformed. Float dtypes
    only, unless ``int8`` (an int8 folder's weights).
    """
    return _entries(path, *_header_json(path), INT8_DTYPES if int8 else FLOAT_DTYPES)


def read_weights_header(path: Path) -> tuple[dict[str, TensorEntry], str | None]:
    """A model file's tensors (as ``read_header``) and its quantization (None or ``int8``), the header read once."""
    header, length = _header_json(path)
    quantization = _metadata(path, header).get(QUANTIZATION_KEY)
    if quantization not in (None, "int8"):
        raise ValueError(f"{path}: unknown quantization {quantization!r} in its metadata (int8 is known)")
    return _entries(path, header, length, INT8_DTYPES if quantization else FLOAT_DTYPES), quantization


def _entries(path: Path, header: dict, length: int, dtypes: dict[str, int]) -> dict[str, TensorEntry]:
    """The entries of a parsed header (its ``__metadata__`` aside), checked against each other and the file's size."""
    entries, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        entries[name], span = _entry(path, name, info, dtypes)
        spans.append(span)
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise ValueError(f"{path}: its header's tensors overlap or leave gaps (at byte {begin:,} of the data)")
        end = stop
    expected, size = 8 + length + end, path.stat().st_size
    if size < expected:
        raise ValueError(f"{path} is truncated: its header describes {expected:,} bytes, the file has {size:,}")
    if size > expected:
        raise ValueError(f"{path} has {size - expected:,} bytes past the tensors its header describes")
    return entries


def read_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` string map of a safetensors file's header (empty when it has none)."""
    return _metadata(path, _header_json(path)[0])


def _metadata(path: Path, header: dict) -> dict[str, str]:
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path} is not a safetensors file: its __metadata__ is not a map of strings")
    return metadata


def _header_json(path: Path) -> tuple[dict, int]:
    """The JSON object of a safetensors header and its length in bytes, checked against the file's size."""
    size = path.stat().st_size
    with path.open("rb") as file:
        length_bytes = file.read(8)
        if len(length_bytes) < 8:
            raise ValueError(f"{path} is truncated: {size} bytes, shorter than a safetensors header")
        (length,) = struct.unpack("<Q", length_bytes)
        if length > MAX_HEADER_BYTES:
            raise ValueError(f"{path} is not a safetensors file: its header length {length:,} is implausible")
        if 8 + length > size:
            raise ValueError(f"{path} is truncated: its header needs {8 + length:,} bytes, the file has {size:,}")
        raw = file.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file: its header is not a JSON object")
    return header, length


def _entry(path: Path, name: str, info: Any, dtypes: dict[str, int]) -> tuple[TensorEntry, tuple[int, int]]:
    """A header entry as a ``TensorEntry`` and its byte span; a one-line ``ValueError`` when it is malformed
    or its dtype is not one of ``dtypes`` (names and sizes in bytes)."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{path}: the header entry of tensor {name} is not (dtype, shape, data_offsets)")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in dtypes:
        raise ValueError(f"{path}: tensor {name} has dtype {dtype}, not one of a model's {', '.join(dtypes)}")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"{path}: tensor {name} has shape {shape}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)):
        raise ValueError(f"{path}: tensor {name} has data_offsets {offsets}, not [begin, end]")
    nbytes = math.prod(shape) * dtypes[dtype]
    if not 0 <= offsets[0] <= offsets[1] or offsets[1] - offsets[0] != nbytes:
        raise ValueError(
            f"{path}: tensor {name} ({dtype}, shape {shape}) needs {nbytes:,} bytes, "
            f"but its header gives it bytes {offsets[0]:,} to {offsets[1]:,}"
        )
    return TensorEntry(dtype, tuple(shape)), (offsets[0], offsets[1])


def check_tensors(
    state: dict[str, torch.Tensor], header: dict[str, TensorEntry], path: Path, config_path: Path, dtypes: bool = False
) -> None:
    """Refuse, in one line, a header whose tensor names or shapes are not exactly those of a model's ``state``
    (its ``state_dict(keep_vars=True)``, or ``int8_tensors``); with ``dtypes``, its dtypes too (int8 weights
    are not cast: each must be stored as the int8 model holds it).

    Tied weights (one tensor under several names) must be stored under exactly one of their names.
    """
    names_in_file = set(header)
    for names in _tied_groups(state):
        stored = [name for name in names if name in names_in_file]
        if not stored:
            raise ValueError(f"{path} has no tensor {names[0]}, which the model of {config_path} needs")
        if len(stored) > 1:
            raise ValueError(f"{path} stores the tied tensors {stored} separately: it was not saved from this model")
        name = stored[0]
        expected = tuple(state[name].shape)
        if header[name].shape != expected:
            raise ValueError(
                f"{path}: tensor {name} has shape {list(header[name].shape)}, but {config_path} "
                f"needs {list(expected)}: the two files do not belong together"
            )
        wanted = _SAFETENSORS_DTYPES[state[name].dtype]
        if dtypes and header[name].dtype != wanted:
            raise ValueError(f"{path}: tensor {name} is {header[name].dtype}, but an int8 model holds it as {wanted}")
        names_in_file.discard(name)
    if names_in_file:
        raise ValueError(f"{path} has tensors the model of {config_path} does not: {sorted(names_in_file)[:3]}")
