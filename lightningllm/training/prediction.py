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

    def on_predict_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._partial.write_text("")

    def write_on_batch_end(self, trainer, module, prediction: list[dict], batch_indices, batch: Any, *args) -> None:
        with self._partial.open("a", encoding="utf-8") as handle:
            for record in prediction:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                if self.echo:
                    print(f"--- [{record['id']}]\n{record['prompt']}{record['completion']}")

    def on_predict_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        os.replace(self._partial, self.output)
        print(f"predict: wrote completions to {self.output}")

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self._partial.unlink(missing_ok=True)  # the output the user had stays as it was
