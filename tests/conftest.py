"""Shared fixtures: the tiny model config every test uses, a small text corpus, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from lightningllm.model import GPTConfig

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> GPTConfig:
    return GPTConfig.from_name("debug")


@pytest.fixture
def text_corpus(tmp_path: Path) -> Path:
    """A folder of small English-like documents: .txt, .md and .jsonl."""
    root = tmp_path / "corpus"
    (root / "nested").mkdir(parents=True)
    words = "the quick brown fox jumps over a lazy dog while seven wise owls count 12 stars".split()
    for i in range(24):
        line = " ".join(words[(i + j) % len(words)] for j in range(60))
        (root / f"doc{i:02d}.txt").write_text(f"Document {i}.\n{line}\n" * 4)
    (root / "nested" / "notes.md").write_text("# Notes\n\nSome *markdown* text with digits 2024.\n")
    (root / "records.jsonl").write_text('{"text": "a jsonl record"}\n{"text": "another record, 42"}\n')
    return root


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m lightningllm ARGS`` in ``cwd`` (so logs/ and .cache/ land there)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LIGHTNINGLLM_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "lightningllm", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class StopAt(L.Callback):
    """Ends training after ``step`` optimizer steps, as an interruption would (the schedule still targets max_steps)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
