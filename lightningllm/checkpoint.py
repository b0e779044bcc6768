"""Checkpoints and exports: read a training checkpoint, load its model, export it, load an export.

A lightningllm checkpoint is a Lightning checkpoint whose ``hyper_parameters`` hold exactly one
entry, ``config`` (the model's ``GPTConfig``: the shape, stored once), with the tokenizer JSON
under ``tokenizer``, the training wall-clock under ``train_seconds`` and, when the run came from
the ``lightningllm`` command, its whole config under ``lightningllm_config`` (so ``validate`` and
``test`` need nothing but the checkpoint). Parameter names never carry ``torch.compile``'s
``_orig_mod.`` prefix (``LitGPT`` compiles its step function, not the module); ``plain_key``
drops it from files that have it.

An export is a folder another project loads without Lightning or pickle: ``config.json`` (the
``GPTConfig``), ``model.safetensors`` (the weights; a tied embedding stored once) and
``tokenizer.json`` (a standard Hugging Face ``tokenizers`` file). ``GPT.from_pretrained(DIR)``
and ``Tokenizer.from_file(DIR)`` read it; ``fit --model.init_from DIR`` trains on from it.
Everything is read with ``torch.load(weights_only=True)`` or safetensors: no code runs from a
file. This module imports no Lightning.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from lightningllm.atomic import atomic_directory
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, GPTConfig

EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json")
"""What an export folder holds; ``tokenizer.json`` is absent when the checkpoint had no tokenizer."""

COMPILED_PREFIX = "_orig_mod."
"""torch.compile's wrapper prefix on parameter names of a compiled module."""

RUN_CONFIG_KEY = "lightningllm_config"
"""Checkpoint key of the ``lightningllm`` command's config (YAML) for the run that wrote it."""


def plain_key(key: str) -> str:
    """A parameter name without ``torch.compile``'s prefix (``model._orig_mod.wte.weight`` → ``model.wte.weight``)."""
    return key.replace(COMPILED_PREFIX, "")


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """A checkpoint's contents, read with ``torch.load(weights_only=True)`` and memory-mapped tensors.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it is not a ``torch.save`` file, holds Python objects, or cannot be read.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read checkpoint {path}: it is not a file written by torch.save (no zip archive)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"cannot read checkpoint {path}: it holds Python objects other than tensors and plain values, "
            "which are not loaded because that could run arbitrary code"
        ) from None
    except Exception as err:  # a truncated file raises anything from zip to runtime errors
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot read checkpoint {path}: {message}") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {path} was not written by lightningllm (it is not a dictionary)")
    return checkpoint


def model_config(checkpoint: dict, path: str | Path = "checkpoint") -> GPTConfig:
    """The model shape a lightningllm checkpoint stores in ``hyper_parameters["config"]``."""
    config = (checkpoint.get("hyper_parameters") or {}).get("config")
    if config is None:
        config = checkpoint.get("gpt_config")  # checkpoints written before the shape was stored once
    if not isinstance(config, dict):
        raise ValueError(f"checkpoint {path} was not written by lightningllm (it has no model config)")
    return GPTConfig.from_dict(config)


def load_checkpoint(ckpt_path: str | Path) -> tuple[GPT, Tokenizer | None]:
    """The ``GPT`` (on CPU, eval mode) and the tokenizer stored in a lightningllm checkpoint.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it cannot be read, was not written by lightningllm, or its weights do not fit its config.
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    if "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} was not written by lightningllm (it has no 'state_dict')")
    model = GPT(model_config(checkpoint, path))
    state = {
        plain_key(key).removeprefix("model."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("model.")
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path}: its weights do not match its model config "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    tokenizer = checkpoint.get("tokenizer")
    return model.eval(), Tokenizer.from_str(tokenizer) if tokenizer is not None else None


def export_checkpoint(ckpt_path: str | Path, out: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` of a checkpoint to the folder ``out``.

    ``out`` may be new, empty, or an earlier export (which is replaced); any other existing path
    is refused rather than overwritten.
    """
    out = Path(out)
    model, tokenizer = load_checkpoint(ckpt_path)
    _check_target(out)
    with atomic_directory(out, "the export") as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            (tmp / "tokenizer.json").write_text(tokenizer.to_str(), encoding="utf-8")
    return out


def _check_target(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()) and not (out / "config.json").is_file():
        raise ValueError(f"--out {out} is a non-empty folder that is not a lightningllm export: choose a new folder")


def load_export(directory: str | Path, data_tokenizer: Tokenizer | None = None) -> tuple[GPT, Tokenizer | None]:
    """The GPT exported to ``directory`` and its tokenizer; the data's tokenizer, if any, must be the same one.

    Raises:
        FileNotFoundError: ``directory`` holds no export.
        ValueError: the data's tokenizer is not the export's (or, without one, has more ids than the model).
    """
    directory = Path(directory)
    model = GPT.from_pretrained(directory)
    tokenizer_file = directory / "tokenizer.json"
    tokenizer = Tokenizer.from_file(tokenizer_file) if tokenizer_file.is_file() else None
    if data_tokenizer is not None and tokenizer is not None:
        if data_tokenizer.hf.get_vocab(with_added_tokens=True) != tokenizer.hf.get_vocab(with_added_tokens=True):
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
