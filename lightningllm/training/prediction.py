"""PredictionWriter: ``lightningllm predict``'s output, one JSON line per completion, also printed.

The lines go to a temporary file beside ``output``, renamed over it only when prediction ends, so
a failing run leaves an existing ``output`` as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Writes each completion as a JSON line (id, prompt, completion, token counts) and prints it."""

    def __init__(self, output: str = "predictions.jsonl", echo: bool = True):
        """
        Args:
            output: JSONL file the completions are written to (overwritten each run).
            echo: also print each prompt and completion.
        """
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.echo = echo

    @property
    def _partial(self) -> Path:
        return self.output.with_name(f".{self.output.name}.partial")

    def check_output(self) -> None:
        """A one-line ``OSError`` when ``output`` cannot be written: a folder, or under a file, or not writable."""
        if self.output.is_dir():
            raise OSError(f"--output {self.output} is a folder: name a file, e.g. {self.output / 'predictions.jsonl'}")
        ancestor = self.output.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise OSError(f"cannot write --output {self.output}: {ancestor} is a file, not a folder")
        if not os.access(ancestor, os.W_OK):
            raise OSError(f"cannot write --output {self.output}: {ancestor} is not writable")

    def _write(self, mode: str, text: str) -> None:
        try:
            if mode == "w":
                self.output.parent.mkdir(parents=True, exist_ok=True)
            with self._partial.open(mode, encoding="utf-8") as handle:
                handle.write(text)
        except OSError as err:
            raise OSError(f"cannot write --output {self.output}: {err.strerror or err}") from None

    def on_predict_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.check_output()
        self._write("w", "")

    def write_on_batch_end(self, trainer, module, prediction: list[dict], batch_indices, batch: Any, *args) -> None:
        self._write("a", "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in prediction))
        if self.echo:
            for record in prediction:
                print(f"--- [{record['id']}]\n{record['prompt']}{record['completion']}")

    def on_predict_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        try:
            os.replace(self._partial, self.output)
        except OSError as err:
            raise OSError(f"cannot write --output {self.output}: {err.strerror or err}") from None
        print(f"predict: wrote completions to {self.output}")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self._partial.unlink(missing_ok=True)  # the output the user had stays as it was
