"""Checkpoints and exports: read a training checkpoint, load its model, export it, load an export.

A lightningllm checkpoint is a Lightning checkpoint whose ``hyper_parameters`` hold exactly one
entry, ``config`` (the model's ``GPTConfig``: the shape, stored once), with the tokenizer JSON
under ``tokenizer``, the training wall-clock under ``train_seconds`` and, when the run came from
the ``lightningllm`` command, its whole config under ``lightningllm_config`` (so ``validate`` and
``test`` need nothing but the checkpoint). A LoRA run's checkpoint also holds its ``LoRAConfig``
under ``lora`` and the adapters beside the frozen base weights; reading it for inference or
export folds them in (``model_state``). Parameter names never carry ``torch.compile``'s
``_orig_mod.`` prefix (``LitGPT`` compiles its step function, or its blocks in place);
``plain_key`` drops it from files that have it. A checkpoint is a ``.ckpt`` file, or, from
``ModelParallelStrategy`` (FSDP2), a folder of shards that ``read_checkpoint`` consolidates
(``lightningllm.sharded_checkpoint``): everything below takes either.

An export is a folder another project loads without Lightning or pickle: ``config.json`` (the
``GPTConfig``), ``model.safetensors`` (the weights; a tied embedding stored once) and
``tokenizer.json`` (a standard Hugging Face ``tokenizers`` file), with ``.lightningllm-export``
listing them: a later export into the folder replaces exactly those and keeps whatever else the
user put there (a README, evaluations); any other non-empty folder (bar an older export of exactly
those files) is refused. ``--format hf`` writes a transformers folder the same way
(``lightningllm.interop.hf``), ``--format gguf`` one GGUF file (``lightningllm.interop.gguf``), and
``fit --model.init_from`` reads a transformers folder too. ``--quantize int8`` writes our folder with
int8 block weights (``lightningllm.model.quantize``), for inference only: it converts to no other format.
``GPT.from_pretrained(DIR)`` and ``Tokenizer.from_file(DIR)`` read it (checking the files against
each other first); ``fit --model.init_from DIR`` trains on from it.
Everything is read with ``torch.load(weights_only=True)``, safetensors or an allowlist unpickler:
no code runs from a file. This module imports no Lightning.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import secrets
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from lightningllm.atomic import atomic_directory, fsync_path
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, GPTConfig, LoRAConfig, is_int8, quantize_int8
from lightningllm.model.lora import apply_lora, merge_lora_state, save_adapter
from lightningllm.sharded_checkpoint import SHARDED_METADATA, is_sharded_checkpoint, read_sharded_weights

EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json")
"""What a native export folder holds; ``tokenizer.json`` is absent when the checkpoint had no tokenizer."""

HF_EXPORT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
"""What a ``--format hf`` export folder may hold, besides the weight shards ``model-NNNNN-of-NNNNN.safetensors``."""

EXPORT_MARKER = ".lightningllm-export"
"""The export's record of the files it wrote (JSON): a later export replaces only those, only where it is."""

STAGING_PREFIX = f"{EXPORT_MARKER}.tmp-"
"""Folder inside an earlier export where a re-export writes its files before renaming them into place."""

COMPILED_PREFIX = "_orig_mod."
"""torch.compile's wrapper prefix on parameter names of a compiled module."""

LORA_KEY = "lora"
"""Checkpoint key of the ``LoRAConfig`` (a dict) of a run that trained adapters: its ``state_dict`` then holds
each adapted linear as ``<path>.base.weight`` plus ``<path>.lora_A.weight`` and ``<path>.lora_B.weight``."""

RUN_CONFIG_KEY = "lightningllm_config"
"""Checkpoint key of the ``lightningllm`` command's config (YAML) for the run that wrote it."""


def plain_key(key: str) -> str:
    """A parameter name without ``torch.compile``'s prefix (``model._orig_mod.wte.weight`` → ``model.wte.weight``)."""
    return key.replace(COMPILED_PREFIX, "")


def read_checkpoint(ckpt_path: str | Path, weights: bool = True) -> dict:
    """A checkpoint's contents, read with ``torch.load(weights_only=True)`` and memory-mapped tensors.

    A sharded checkpoint (a folder that ``ModelParallelStrategy`` wrote, see
    ``lightningllm.sharded_checkpoint``) is consolidated: its ``meta.pt``, with the whole weights
    under ``state_dict`` and no optimizer state. ``weights=False`` leaves those weights on the
    ``meta`` device (names, shapes and dtypes only: all ``check_checkpoint`` needs); a ``.ckpt``
    file is memory-mapped either way.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it is not a ``torch.save`` file, holds Python objects, or cannot be read.
    """
    path = Path(ckpt_path)
    if path.is_dir():
        if not is_sharded_checkpoint(path):
            raise ValueError(
                f"checkpoint {path} is a folder without {SHARDED_METADATA}, so not a sharded checkpoint: give a .ckpt "
                f"file (e.g. {path / 'last.ckpt'}) or a folder that ModelParallelStrategy wrote"
            )
        checkpoint = _read_file(path / SHARDED_METADATA, f"checkpoint {path} ({SHARDED_METADATA})")
        checkpoint["state_dict"] = read_sharded_weights(path, load=weights)
        return checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return _read_file(path, f"checkpoint {path}")


def _read_file(path: Path, what: str) -> dict:
    """A ``torch.save`` file's dictionary, read with ``weights_only=True`` and memory-mapped (``what`` names it)."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read {what}: it is not a file written by torch.save (no zip archive)")
    with zipfile.ZipFile(path) as archive:
        if not any(name.endswith("/data.pkl") for name in archive.namelist()):
            raise ValueError(f"cannot read {what}: it is a zip archive, but not one written by torch.save")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"cannot read {what}: it holds Python objects other than tensors and plain values, "
            "which are not loaded because that could run arbitrary code"
        ) from None
    except Exception as err:  # a truncated file raises anything from zip to runtime errors
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read {what}: {message}") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{what} was not written by lightningllm (it is not a dictionary)")
    return checkpoint


def model_config(checkpoint: dict, path: str | Path = "checkpoint") -> GPTConfig:
    """The model shape a lightningllm checkpoint stores in ``hyper_parameters["config"]``."""
    config = (checkpoint.get("hyper_parameters") or {}).get("config")
    if config is None:
        config = checkpoint.get("gpt_config")  # checkpoints written before the shape was stored once
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint {path} was not written by lightningllm (it has no model config)")
    try:
        config = GPTConfig.from_dict(config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: its model config is invalid: {err}") from None
    if config.vocab_size is None:
        raise ValueError(f"checkpoint {path}: its model config has no vocab_size (it was not written by a trained run)")
    return config


def model_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The GPT's weights in a LitGPT checkpoint, under the GPT's own names (``model.`` and compile prefixes dropped).

    A checkpoint of a LoRA run holds the frozen base weights and the adapters: they come back folded
    into plain ``GPT`` weights (``merge_lora_state``), what inference and export read.
    """
    state = {
        plain_key(key).removeprefix("model."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("model.")
    }
    lora = checkpoint_lora(checkpoint)
    return state if lora is None else merge_lora_state(state, lora)


def checkpoint_lora(checkpoint: dict, path: str | Path = "checkpoint") -> LoRAConfig | None:
    """The ``LoRAConfig`` of a checkpoint written by a LoRA run (under ``LORA_KEY``), else None."""
    stored = checkpoint.get(LORA_KEY)
    if stored is None:
        return None
    try:
        return LoRAConfig(**stored)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: its LoRA config is invalid: {err}") from None


def check_checkpoint(checkpoint: dict, path: str | Path = "checkpoint") -> GPTConfig:
    """The checkpoint's model config, once its weights are checked against it (names and shapes).

    The model is laid out on the ``meta`` device, so nothing is allocated. Raises a one-line
    ``ValueError`` naming ``path`` for a checkpoint lightningllm did not write or whose weights do
    not fit its config.
    """
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(f"checkpoint {path} was not written by lightningllm (it has no 'state_dict')")
    config = model_config(checkpoint, path)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in GPT(config).state_dict().items()}
    stored = model_state(checkpoint)
    missing, unexpected = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path}: its weights do not match its model config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, shape in expected.items():
        value = stored[name]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"checkpoint {path}: weight {name} is {got}, but its model config needs {list(shape)}")
    return config


def load_checkpoint(ckpt_path: str | Path) -> tuple[GPT, Tokenizer | None]:
    """The ``GPT`` (on CPU, eval mode) and the tokenizer stored in a lightningllm checkpoint.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it cannot be read, was not written by lightningllm, or its weights do not fit its config.
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    model = GPT(check_checkpoint(checkpoint, path))
    model.load_state_dict(model_state(checkpoint))  # names and shapes checked above
    tokenizer = checkpoint.get("tokenizer")
    return model.eval(), Tokenizer.from_str(tokenizer) if tokenizer is not None else None


def export_checkpoint(
    ckpt_path: str | Path,
    out: str | Path,
    format: str = "native",
    max_shard_size: int | None = None,
    quantize: str | None = None,
) -> Path:
    """Write the model and tokenizer of a checkpoint (or of an export folder) to the folder ``out``.

    ``format`` ``native`` writes ``config.json``, ``model.safetensors`` and ``tokenizer.json``
    (``GPT.from_pretrained`` reads it); ``hf`` writes a transformers folder (``lightningllm.interop.hf``;
    weights sharded above ``max_shard_size`` bytes). ``quantize="int8"`` (``native`` only) writes the
    block linears as int8 rows with their scales (``lightningllm.model.quantize``): ``from_pretrained``
    returns the int8 model, for CPU inference (``serve``/``chat``/``predict --model.init_from``).
    ``out`` may be new, empty, or an earlier export: our files in it are replaced, any other file in it is
    kept. A folder that is not provably an export (``EXPORT_MARKER``, or exactly the files of an export
    written before the marker existed) is refused rather than written to.

    Raises:
        ValueError: ``out`` is a file, or a folder with files that are not an export's; the model's
            shape has no transformers class (``hf``).
        OSError: a file cannot be written (a full disk, no permission); ``out`` is left as it was.
    """
    if format not in ("native", "hf"):
        raise ValueError(f"export format must be native or hf here (gguf: export_gguf), got {format!r}")
    if quantize is not None and format != "native":
        raise ValueError(f"int8 weights are lightningllm's own format: export them with format native, not {format}")
    out = Path(out)
    model, tokenizer = load_source(ckpt_path, quantize)
    if format == "hf":
        _refuse_int8(model, ckpt_path, "a transformers folder")
        from lightningllm.interop.hf import DEFAULT_MAX_SHARD_BYTES, architecture

        architecture(model.config)  # refuse an inexpressible shape before anything is written

        def write(folder: Path) -> list[str]:
            from lightningllm.interop.hf import save_hf

            return save_hf(model, tokenizer, folder, max_shard_size or DEFAULT_MAX_SHARD_BYTES)
    else:

        def write(folder: Path) -> list[str]:
            return _write_native(folder, model, tokenizer)

    earlier = _earlier_export(out)
    if earlier is None:
        with atomic_directory(out, "the export") as tmp, _naming(out):
            _write_export(tmp, write)
    else:
        with _naming(out):
            _replace_export(out, earlier, write)
    return out


def export_gguf(ckpt_path: str | Path, out: str | Path, quant: str = "f16") -> Path:
    """Write the model and tokenizer of a checkpoint (or of an export folder) as one GGUF file ``out``.

    The file appears whole (written beside, then renamed). Raises ``ValueError`` for an existing ``out``
    (nothing is overwritten), a checkpoint without a tokenizer, or a shape llama.cpp cannot run.
    """
    out = Path(out)
    if out.exists():
        raise ValueError(f"--out {out} exists: name a new .gguf file (an existing file is never overwritten)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    model, tokenizer = load_source(ckpt_path)
    _refuse_int8(model, ckpt_path, "GGUF (its own q8_0 is --quant q8_0)")
    if tokenizer is None:
        raise ValueError(f"{ckpt_path} holds no tokenizer, and a GGUF file must carry one")
    from lightningllm.interop.gguf import write_gguf

    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        with _naming(out):
            write_gguf(model, tokenizer, tmp, quant)
            fsync_path(tmp)
            os.replace(tmp, out)
            fsync_path(out.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _refuse_int8(model: GPT, source: str | Path, target: str) -> None:
    if is_int8(model):
        raise ValueError(
            f"{source} holds int8 weights, which do not convert to {target}: export from the checkpoint it came from"
        )


def load_source(path: str | Path, quantize: str | None = None) -> tuple[GPT, Tokenizer | None]:
    """The model and tokenizer of what ``export --ckpt_path`` names: a checkpoint (file or sharded folder), or
    an export folder (ours or a transformers one), so an export converts to another format. ``quantize="int8"``
    makes the model int8 (``quantize_int8``) unless it is already (an int8 export); None leaves it as it is."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be int8 (or none), got {quantize!r}")
    path = Path(path)
    if path.is_dir() and not is_sharded_checkpoint(path) and (path / "config.json").is_file():
        model, tokenizer = load_export(path)
        model.eval()
    else:
        model, tokenizer = load_checkpoint(path)
    if quantize == "int8" and not is_int8(model):
        quantize_int8(model)
    return model, tokenizer


def export_adapter(ckpt_path: str | Path, out: str | Path, format: str = "native") -> Path:
    """Write the LoRA adapters of a LoRA run's checkpoint alone to ``out``: ``adapter_config.json`` and
    ``adapter_model.safetensors``, in peft's layout.

    ``native``: on our modules (``lightningllm.model.lora.save_adapter``; ``base_model_name_or_path``
    records the run's ``model.init_from`` when the checkpoint has its run config). ``hf``: on the
    modules of the transformers model ``export --format hf`` writes (``lightningllm.interop.peft``),
    which ``PeftModel.from_pretrained`` applies.

    Raises:
        ValueError: the checkpoint trained no adapters, or ``out`` is a file.
    """
    path, out = Path(ckpt_path), Path(out)
    checkpoint = read_checkpoint(path)
    config, lora = check_checkpoint(checkpoint, path), checkpoint_lora(checkpoint, path)
    if lora is None:
        raise ValueError(
            f"checkpoint {path} trained no LoRA adapters (it is a full model): export it without --adapter_only"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: name a folder")
    if format == "hf":
        from lightningllm.interop.hf import architecture

        architecture(config)
    model = GPT(config)
    apply_lora(model, lora)
    weights = checkpoint["state_dict"]
    model.load_state_dict({plain_key(k).removeprefix("model."): v for k, v in weights.items() if k[:6] == "model."})
    if format == "hf":
        from lightningllm.interop.peft import save_hf_adapter

        save_hf_adapter(model, lora, out)
    else:
        save_adapter(model, lora, out, base_model_name_or_path=_run_init_from(checkpoint))
    return out


def _run_init_from(checkpoint: dict) -> str | None:
    """The ``model.init_from`` of the run that wrote ``checkpoint``, from its stored run config (None if unknown)."""
    import yaml

    try:
        run = yaml.safe_load(checkpoint.get(RUN_CONFIG_KEY) or "") or {}
    except yaml.YAMLError:
        return None
    model = run.get("model") or {} if isinstance(run, dict) else {}
    args = model.get("init_args", model) if isinstance(model, dict) else {}
    init_from = args.get("init_from") if isinstance(args, dict) else None
    return init_from if isinstance(init_from, str) else None


def _earlier_export(out: Path) -> set[str] | None:
    """The files of ours in the folder ``out`` (an earlier export, or an empty folder); None when it does not exist."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    names = {path.name for path in out.iterdir() if not _is_staging(path)}
    marker = out / EXPORT_MARKER
    if marker.is_file():
        try:
            files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            files = None
        if not isinstance(files, list) or not all(isinstance(name, str) and _ours(name) for name in files):
            raise ValueError(
                f"--out {out}: its {EXPORT_MARKER} is not one lightningllm export wrote: choose a new folder"
            )
        return {*files, EXPORT_MARKER} & names
    files_only = all((out / name).is_file() for name in names)
    if not names or (files_only and names in ({"config.json", "model.safetensors"}, set(EXPORT_FILES))):
        return names  # empty, or an export from before the marker: exactly our files
    raise ValueError(
        f"--out {out} is a non-empty folder that is not a lightningllm export (no {EXPORT_MARKER}): "
        "choose a new or empty folder"
    )


def _ours(name: str) -> bool:
    """Whether an export may have written a file of this name (a marker listing another is not ours)."""
    return name in {*EXPORT_FILES, *HF_EXPORT_FILES} or bool(re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", name))


def _write_native(folder: Path, model: GPT, tokenizer: Tokenizer | None) -> list[str]:
    """Our own export's files: ``config.json``, ``model.safetensors`` and (with a tokenizer) ``tokenizer.json``."""
    model.save_pretrained(folder)
    files = ["config.json", "model.safetensors"]
    if tokenizer is not None:
        (folder / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
        files.append("tokenizer.json")
    return files


def _write_export(folder: Path, write: Callable[[Path], list[str]]) -> list[str]:
    """Write the export's files to ``folder`` (``write`` returns their names), each synced to disk, then the
    marker; all their names, the marker last."""
    files = write(folder)
    marker = {"written_by": "lightningllm export", "files": files}
    (folder / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    for name in [*files, EXPORT_MARKER]:
        fsync_path(folder / name)
    return [*files, EXPORT_MARKER]


def _replace_export(out: Path, earlier: set[str], write: Callable[[Path], list[str]]) -> None:
    """Replace our files in the existing folder ``out`` and leave every other file in it alone.

    The new files are written in full to a staging folder inside ``out`` first (one left by a
    killed export is removed), then renamed over the old ones, the marker last: a crash or a full
    disk while writing leaves the earlier export as it was. Only a crash within the few renames at
    the end can leave old and new files side by side; the marker still names them all, so the next
    export replaces them.
    """
    for stale in out.iterdir():
        if _is_staging(stale):
            shutil.rmtree(stale, ignore_errors=True)
    staging = out / f"{STAGING_PREFIX}{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        written = _write_export(staging, write)
        for name in written[:-1]:
            os.replace(staging / name, out / name)
        for name in earlier - set(written):  # ours, but not in this export (a tokenizer.json the checkpoint lacks)
            (out / name).unlink(missing_ok=True)
        os.replace(staging / EXPORT_MARKER, out / EXPORT_MARKER)
        fsync_path(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _is_staging(path: Path) -> bool:
    return path.name.startswith(STAGING_PREFIX) and path.is_dir() and not path.is_symlink()


@contextlib.contextmanager
def _naming(out: Path) -> Iterator[None]:
    """Turn an ``OSError`` of writing the export into one line naming ``out``."""
    try:
        yield
    except OSError as err:
        raise OSError(f"cannot write the export to {out}: {err.strerror or err}") from None


def load_export(directory: str | Path, data_tokenizer: Tokenizer | None = None) -> tuple[GPT, Tokenizer | None]:
    """The GPT exported to ``directory`` (our folder, or a transformers folder ``lightningllm.interop.hf`` reads)
    and its tokenizer; the data's tokenizer, if any, must be the same one.

    Raises:
        FileNotFoundError: ``directory`` holds no export.
        ValueError: the data's tokenizer is not the export's (or, without one, has more ids than the model).
    """
    from lightningllm.interop.hf import is_hf_folder, load_hf

    directory = Path(directory)
    tokenizer_file = directory / "tokenizer.json"
    if is_hf_folder(directory):
        model, tokenizer = load_hf(directory)
    else:
        model = GPT.from_pretrained(directory)
        tokenizer = Tokenizer.from_file(tokenizer_file) if tokenizer_file.is_file() else None
    if data_tokenizer is not None and tokenizer is not None:
        if not data_tokenizer.same_vocabulary(tokenizer):
            raise ValueError(
                f"the data's tokenizer ({data_tokenizer.vocab_size} tokens) is not the tokenizer of model.init_from "
                f"{directory} ({tokenizer.vocab_size} tokens): train on it, e.g. --data.tokenizer_path {tokenizer_file}"
            )
    elif data_tokenizer is not None and data_tokenizer.vocab_size > model.config.padded_vocab_size:
        raise ValueError(
            f"the data's tokenizer has {data_tokenizer.vocab_size} tokens, more than the "
            f"{model.config.padded_vocab_size} ids of model.init_from {directory}"
        )
    return model, tokenizer
