"""Export: a training checkpoint → a portable model folder that needs neither Lightning nor pickle.

``lightningllm export --ckpt_path last.ckpt --out my-model/`` writes three files:
``config.json`` (the ``GPTConfig``), ``model.safetensors`` (the weights; a tied embedding is
stored once) and ``tokenizer.json`` (a standard Hugging Face ``tokenizers`` file). Another
project loads them with ``GPT.from_pretrained("my-model")`` (plain PyTorch) and
``Tokenizer.from_file("my-model")`` or ``tokenizers.Tokenizer.from_file("my-model/tokenizer.json")``,
and ``lightningllm fit --model.init_from my-model`` trains on from them. The checkpoint is read
with ``torch.load(weights_only=True)``, and the folder is written next to its target and renamed
into place, so a failure never leaves half an export behind. This module imports no Lightning.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from lightningllm.atomic import atomic_directory
from lightningllm.model import GPT, GPTConfig

EXPORT_FILES = ("config.json", "model.safetensors", "tokenizer.json")
"""What an export folder holds; ``tokenizer.json`` is absent when the checkpoint had no tokenizer."""

COMPILED_PREFIX = "_orig_mod."
"""torch.compile's wrapper prefix on parameter names; checkpoints are written without it."""


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """A checkpoint's contents, read with ``torch.load(weights_only=True)``: no code runs from the file.

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


def load_checkpoint(ckpt_path: str | Path) -> tuple[GPT, str | None]:
    """The ``GPT`` (on CPU, eval mode) and the tokenizer JSON stored in a lightningllm checkpoint.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        ValueError: it cannot be read, was not written by lightningllm, or its weights do not fit its config.
    """
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    if "gpt_config" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} was not written by lightningllm (it has no 'gpt_config')")
    model = GPT(GPTConfig.from_dict(checkpoint["gpt_config"]))
    state = {
        key.removeprefix("model.").replace(COMPILED_PREFIX, ""): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("model.")
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path}: its weights do not match its model config "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return model.eval(), checkpoint.get("tokenizer")


def export_checkpoint(ckpt_path: str | Path, out: str | Path) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``tokenizer.json`` of a checkpoint to the folder ``out``.

    ``out`` may be new, empty, or an earlier export (which is replaced); any other existing path
    is refused rather than overwritten.
    """
    out = Path(out)
    model, tokenizer_json = load_checkpoint(ckpt_path)
    _check_target(out)
    with atomic_directory(out, "the export") as tmp:
        model.save_pretrained(tmp)
        if tokenizer_json is not None:
            (tmp / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    return out


def _check_target(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if any(out.iterdir()) and not (out / "config.json").is_file():
        raise ValueError(f"--out {out} is a non-empty folder that is not a lightningllm export: choose a new folder")
