"""LightningLLMCLI: LightningCLI over ``LitGPT`` and any data module, through LightningCLI's public hooks.

- **One run folder.** ``--trainer.default_root_dir DIR`` (configs set ``logs/<name>``) holds the
  run: TensorBoard logs and the saved config in ``DIR/version_N/``, checkpoints in
  ``DIR/checkpoints/`` (``last.ckpt``, ``best.ckpt``) unless a ``ModelCheckpoint`` names its own
  ``dirpath``. A new ``fit`` (not a resume) moves an earlier run's checkpoints aside to
  ``DIR/checkpoints.N/`` instead of overwriting them. ``predict`` writes no logs unless a logger
  is given.
- **Checkpoints know their run.** The run's config is stored in every checkpoint (see
  ``RunConfigSaver``), so ``validate``/``test --ckpt_path C`` need no ``--config``; a checkpoint's
  only hyperparameter is the model's shape, which LightningCLI applies over the command line,
  while sampling and training settings stay the command line's.
- **Importable.** The class lives at module level, so ``--trainer.strategy ddp_spawn`` can pickle it.
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only

from lightningllm.checkpoint import RUN_CONFIG_KEY
from lightningllm.training import LitGPT, PredictionWriter

DEFAULT_ROOT_DIR = "logs/default"
EXPORT_HELP = (
    "Also: `lightningllm export --ckpt_path X --out DIR` writes a portable model folder (config.json, "
    "model.safetensors, tokenizer.json) for GPT.from_pretrained and --model.init_from; "
    "see `lightningllm export --help`."
)
TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"


class RunConfigSaver(SaveConfigCallback):
    """Saves the run's config as ``config.yaml`` in the log folder and, as YAML, in every checkpoint.

    ``predict`` leaves no files but its output, so it saves no config.
    """

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            super().setup(trainer, module, stage)

    @functools.cached_property
    def run_config(self) -> str:
        """The run's config as YAML, dumped once for all the checkpoints of the run."""
        return self.parser.dump(self.config, skip_none=False)

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[RUN_CONFIG_KEY] = self.run_config


def _is_class(class_path: str, base: type) -> bool:
    module, _, name = class_path.rpartition(".")
    try:
        return issubclass(getattr(importlib.import_module(module), name), base)
    except (ImportError, AttributeError, TypeError):
        return False


@rank_zero_only
def keep_earlier_checkpoints(directory: Path) -> None:
    """Move an earlier run's checkpoints out of the way of a new run: ``DIR/*.ckpt`` → ``DIR.N/`` (first free N).

    Only the ``.ckpt`` files move (those a new run would overwrite); anything else in ``DIR`` stays.
    """
    checkpoints = sorted(directory.glob("*.ckpt")) if directory.is_dir() else []
    if not checkpoints:
        return
    n = 1
    while directory.with_name(f"{directory.name}.{n}").exists():
        n += 1
    target = directory.with_name(f"{directory.name}.{n}")
    target.mkdir()
    for path in checkpoints:
        path.rename(target / path.name)
    print(f"fit: moved the earlier run's checkpoints from {directory} to {target} (resume with --ckpt_path)")


class LightningLLMCLI(LightningCLI):
    """The ``lightningllm`` LightningCLI; ``predict_output`` is the ``--output`` shortcut's file."""

    def __init__(self, *args, predict_output: str | None = None, **kwargs):
        self.predict_output = predict_output
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._default_tokenizer_from_init_from(config)
        self._place_run_outputs(config)

    @staticmethod
    def _default_tokenizer_from_init_from(config: Namespace) -> None:
        """With ``--model.init_from DIR``, a data module taking ``tokenizer_path`` defaults to DIR's tokenizer."""
        init_from = config.get("model.init_from")
        data_args = config.get("data.init_args")
        takes_tokenizer = data_args is not None and "tokenizer_path" in data_args
        if not init_from or not takes_tokenizer or data_args.tokenizer_path is not None:
            return
        tokenizer = Path(init_from) / "tokenizer.json"
        if tokenizer.is_file():
            data_args.tokenizer_path = str(tokenizer)
            print(f"data: using the tokenizer of model.init_from ({tokenizer})")

    def _place_run_outputs(self, config: Namespace) -> None:
        """Checkpoints without a ``dirpath`` and the default TensorBoard logger go under ``default_root_dir``."""
        trainer = config.trainer
        root = trainer.default_root_dir or DEFAULT_ROOT_DIR
        for callback in trainer.callbacks or []:
            if isinstance(callback, Namespace) and _is_class(callback.class_path, ModelCheckpoint):
                if callback.init_args.get("dirpath") is None:
                    callback.init_args.dirpath = str(Path(root) / "checkpoints")
        if trainer.logger is None:  # not given: TensorBoard in the run folder; predict logs nothing
            trainer.logger = (
                False
                if self.subcommand == "predict"
                else Namespace(
                    class_path=TENSORBOARD, init_args=Namespace(save_dir=root, name="", default_hp_metric=False)
                )
            )

    def before_fit(self) -> None:
        if self.config.fit.get("ckpt_path"):
            return  # resuming: the checkpoints in the folder are this run's
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                keep_earlier_checkpoints(Path(callback.dirpath))

    def before_predict(self) -> None:
        writers = [cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)]
        if not writers:
            self.trainer.callbacks.append(PredictionWriter(self.predict_output or "predictions.jsonl"))
        elif self.predict_output:
            writers[0].output = Path(self.predict_output)


def _quiet_lightning() -> None:
    """Drop Lightning's advertising tips and two warnings that do not apply to token streams."""
    import logging
    import warnings

    class _NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Tip:" not in record.getMessage()

    for handler in logging.getLogger("lightning.pytorch").handlers:
        handler.addFilter(_NoTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")


def run(argv: list[str], predict_output: str | None = None) -> LightningLLMCLI:
    """Run a subcommand; ``argv`` starts with it (``fit``, ``validate``, ``test``, ``predict``)."""
    _quiet_lightning()
    sys.argv = [sys.argv[0], *argv]  # LightningCLI reads sys.argv; passing args= as well makes it warn
    return build_cli(None, predict_output=predict_output)


def build_cli(args: list[str] | None, run: bool = True, predict_output: str | None = None) -> LightningLLMCLI:
    """The LightningCLI object; ``run=False`` only parses and instantiates (used by tests and benchmarks)."""
    return LightningLLMCLI(
        LitGPT,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        predict_output=predict_output,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": EXPORT_HELP},
        trainer_defaults={"default_root_dir": DEFAULT_ROOT_DIR},
        auto_configure_optimizers=False,
    )
