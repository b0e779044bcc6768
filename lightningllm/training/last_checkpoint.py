"""LastCheckpoint: ``last.ckpt`` always holds the run's latest step, at the end of training and on SIGTERM/SIGINT.

Lightning's ``ModelCheckpoint`` saves on its own schedule, so a run of 25 steps that validates
every 10 ends with ``last.ckpt`` at step 20, and a SIGTERM (Lightning raises a ``SystemExit``
with code 0) stops a run with nothing saved. With this callback:

- when training ends (``max_steps``, ``train_minutes``, ``max_epochs``) at a step no checkpoint
  holds yet, ``last.ckpt`` of each ``ModelCheckpoint(save_last=True)`` is saved at it;
- a SIGTERM or SIGINT while training is recorded (``lightningllm.signals``) and never cuts a step
  in half: at the end of the step in progress (after a validation in progress, the next step) the
  run saves ``last.ckpt`` as ``ModelCheckpoint`` saves mid-epoch, prints one line saying where, and
  raises ``Interrupted`` (exit code 143 or 130). In a multi-process run the ranks agree on that
  step (one boolean all-reduce per step). Resuming continues exactly as the run would have.

The ``lightningllm`` command adds it to every ``fit``. A run that diverged (non-finite loss) raises
before it ends, so this never overwrites a finite checkpoint with a diverged model. Under
``ModelParallelStrategy`` (FSDP2) every rank writes its shards, and ``last.ckpt`` is a folder
(``lightningllm.sharded_checkpoint``) that ``--ckpt_path`` resumes from the same way.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightningllm import signals


class LastCheckpoint(Callback):
    def __init__(self) -> None:
        self._saved_step: int | None = None
        self._stop: int | None = None
        self._deferral = contextlib.ExitStack()

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # After Lightning installed its own SIGTERM handler (which would end the run with exit code 0).
        self._deferral.enter_context(signals.deferred())

    def teardown(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self._deferral.close()

    @staticmethod
    def _last_path(trainer: L.Trainer, every: bool) -> Path | None:
        """``last.ckpt`` of the first ModelCheckpoint that keeps one (``every``: of the first one at all)."""
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath and (callback.save_last or every):
                return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        return None

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._saved_step = trainer.global_step

    def _save_last(self, trainer: L.Trainer, path: Path) -> None:
        trainer.save_checkpoint(path, weights_only=False)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and Path(callback.dirpath) == path.parent:
                callback.last_model_path = str(path)  # Lightning's --ckpt_path last finds it

    # --- a signal: end the run at the next step boundary -----------------------------------
    def _signalled(self, trainer: L.Trainer) -> bool:
        signum = signals.received()
        stop = signum is not None
        if trainer.world_size > 1:  # every rank stops at the same step, whichever of them got the signal
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._stop = signum or signal.SIGTERM
        return stop

    def _exit(self, trainer: L.Trainer, path: Path | None) -> None:
        stopped = f"fit: stopped by {signal.Signals(self._stop).name} at step {trainer.global_step}"
        if trainer.is_global_zero:
            signals.report(
                f"{stopped}; saved {path} (resume: --ckpt_path {path})" if path else f"{stopped}; no checkpoint"
            )
        raise signals.Interrupted(self._stop)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        # The state a ModelCheckpoint saves mid-epoch, from which a resume continues exactly.
        if self._signalled(trainer):
            path = self._last_path(trainer, every=True)
            if path is not None:
                self._save_last(trainer, path)
            self._exit(trainer, path)

    # --- the end of training: the final step saved ------------------------------------------
    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._stop = signals.received()  # a signal during the last validation
        path = self._last_path(trainer, every=self._stop is not None)
        if path is None or trainer.fast_dev_run:
            path = None
        elif self._saved_step != trainer.global_step:
            self._save_last(trainer, path)
        if self._stop is not None:
            self._exit(trainer, path)
