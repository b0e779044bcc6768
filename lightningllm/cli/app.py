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
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_only

from lightningllm.checkpoint import RUN_CONFIG_KEY, read_checkpoint
from lightningllm.cli.errors import config_error_line
from lightningllm.sharded_checkpoint import is_sharded_checkpoint
from lightningllm.training import LastCheckpoint, LitGPT, PredictionWriter

DEFAULT_ROOT_DIR = "logs/default"
EXPORT_HELP = (
    "Also: `lightningllm export --ckpt_path X --out DIR` writes a portable model folder (config.json, "
    "model.safetensors, tokenizer.json) for GPT.from_pretrained and --model.init_from; "
    "see `lightningllm export --help`."
)
TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
ATOMIC_CHECKPOINT_IO = "lightningllm.training.AtomicCheckpointIO"


class RunConfigSaver(SaveConfigCallback):
    """Saves the run's config as ``config.yaml`` in the log folder and, as YAML, in every checkpoint.

    ``predict`` leaves no files but its output, so it saves no config. ``run_config`` is the config as
    given, before ``LightningLLMCLI`` placed the logger and checkpoint folders under
    ``default_root_dir``: a ``validate``/``test`` from the checkpoint then writes under its own
    ``--trainer.default_root_dir``, not the training run's folder.
    """

    def __init__(self, *args, run_config: Namespace | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.given_config = run_config if run_config is not None else self.config

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if stage != "predict":
            super().setup(trainer, module, stage)

    @functools.cached_property
    def run_config(self) -> str:
        """The run's config as YAML, dumped once for all the checkpoints of the run."""
        return self.parser.dump(self.given_config, skip_none=False)

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

    def add_arguments_to_parser(self, parser) -> None:
        """The model is ``LitGPT`` unless a config names another class (``model: class_path: ...DPO``)."""
        parser.set_defaults({"model": {"class_path": f"{LitGPT.__module__}.{LitGPT.__name__}"}})

    def _parse_ckpt_path(self) -> None:
        """A checkpoint's hyperparameters (the model's shape) apply over the command line's, as in LightningCLI.

        They apply to the model class the run names (``DPO``, ``GRPO``, or ``LitGPT`` by default): LightningCLI's
        own merge would parse them without a ``class_path`` and so fall back to ``LitGPT``, and a DPO run would
        resume as plain training. A shape the command line gives that differs would be silently replaced: refuse
        it in one line. (LightningCLI has no public hook between parsing and this merge.)
        """
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        given = self.config[subcommand].get("model.init_args.config")
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if ckpt_path and (is_sharded_checkpoint(ckpt_path) or Path(ckpt_path).is_file()):
            hparams = read_checkpoint(ckpt_path, weights=False).get("hyper_parameters") or {}
            hparams.pop("_instantiator", None)
            if hparams:
                model = {"class_path": self.config[subcommand].model.class_path, "init_args": hparams}
                self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)
        stored = self.config[subcommand].get("model.init_args.config")
        if given is None or stored is None:
            return
        changed = [
            f"model.config.{key} {stored[key]!r} -> {value!r}"
            for key, value in vars(given).items()
            if value is not None and stored.get(key) != value
        ]
        if changed:
            raise ValueError(
                f"--ckpt_path {self.config[subcommand].ckpt_path} holds a model of another shape: "
                f"{', '.join(changed)}; "
                "a checkpoint keeps its shape (drop those options), or start a new model from its weights "
                "with `lightningllm export` and --model.init_from"
            )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.get("default_root_dir")
        if root and Path(root).exists() and not Path(root).is_dir():
            raise ValueError(f"trainer.default_root_dir {root} is a file: name a folder for the run's outputs")
        accelerator = config.trainer.get("accelerator")
        if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"trainer.accelerator={accelerator}, but torch finds no CUDA GPU on this machine: "
                "use --trainer.accelerator cpu (or auto)"
            )
        self._default_tokenizer_from_init_from(config)
        self.save_config_kwargs = {**self.save_config_kwargs, "run_config": config.clone()}
        self._place_run_outputs(config)

    @staticmethod
    def _default_tokenizer_from_init_from(config: Namespace) -> None:
        """With ``--model.init_from DIR``, a data module taking ``tokenizer_path`` defaults to DIR's tokenizer."""
        init_from = config.get("model.init_args.init_from")
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
        self.model.check_strategy(self.trainer.strategy)  # before any process is launched or data prepared
        self.model.check_resume_strategy(self.trainer.strategy, self.config.fit.get("ckpt_path"))
        if not any(isinstance(cb, LastCheckpoint) for cb in self.trainer.callbacks):
            self.trainer.callbacks.append(LastCheckpoint())  # after the ModelCheckpoints, which Lightning puts last
        if self.config.fit.get("ckpt_path"):
            return  # resuming: the checkpoints in the folder are this run's
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                keep_earlier_checkpoints(Path(callback.dirpath))

    def before_predict(self) -> None:
        self.model.check_strategy(self.trainer.strategy, "predict")
        writers = [cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)]
        if not writers:
            writers = [PredictionWriter(self.predict_output or "predictions.jsonl")]
            self.trainer.callbacks.append(writers[0])
        elif self.predict_output:
            writers[0].output = Path(self.predict_output)
        writers[0].check_output()  # before the model loads


def _tidy_lightning_output() -> None:
    """Lightning's notices ("GPU available", "Seed set to") go to stdout, so stderr holds only what went wrong;
    drop its advertising tips, its SIGTERM notice (LastCheckpoint says what it did) and two warnings that
    do not apply to token streams."""
    import logging
    import warnings

    class _NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            return "Tip:" not in message and "Received SIGTERM" not in message

    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_NoTips())
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")
    # Notices about what the command does on purpose: predict samples unseeded unless --model.sample_seed;
    # a checkpoint's shape replaces the command line's (checked first: LightningLLMCLI._parse_ckpt_path);
    # a resumed or repeated run writes into its own checkpoint folder.
    warnings.filterwarnings("ignore", message=r".*No seed found, seed set to.*")
    warnings.filterwarnings("ignore", message=r".*Be aware that when using `ckpt_path`, hyperparameters.*")
    warnings.filterwarnings("ignore", message=r".*Be aware that when using `ckpt_path`, callbacks used to create.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*The dirpath has changed from .* won't be reloaded.*")


def run(argv: list[str], predict_output: str | None = None) -> LightningLLMCLI:
    """Run a subcommand; ``argv`` starts with it (``fit``, ``validate``, ``test``, ``predict``).

    A parser error is a ``ValueError`` of one line naming the key and the config file; so is a trainer
    setting Lightning refuses.
    """
    from jsonargparse import ArgumentError
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from torch.multiprocessing import ProcessRaisedException

    _tidy_lightning_output()
    sys.argv = [sys.argv[0], *argv]  # LightningCLI reads sys.argv; passing args= as well makes it warn
    try:
        return build_cli(None, predict_output=predict_output, exit_on_error=False)
    except ArgumentError as err:
        raise ValueError(config_error_line(str(err), argv)) from None
    except MisconfigurationException as err:
        raise ValueError(f"trainer: {str(err).strip().splitlines()[0]}") from None
    except ProcessRaisedException as err:  # ddp_spawn: a rank's exception, as its traceback text
        last = str(err).strip().splitlines()[-1] if str(err).strip() else "a training process failed"
        kind, _, message = last.partition(": ")
        if kind.rsplit(".", 1)[-1] in ("ValueError", "DataError", "FileNotFoundError", "OSError", "RuntimeError"):
            raise ValueError(message.strip()) from None
        raise


def build_cli(
    args: list[str] | None, run: bool = True, predict_output: str | None = None, exit_on_error: bool = True
) -> LightningLLMCLI:
    """The LightningCLI object; ``run=False`` only parses and instantiates (used by tests and benchmarks).

    ``exit_on_error=False``: a parser error raises jsonargparse's ``ArgumentError`` instead of printing the usage.
    """
    parser = {"exit_on_error": exit_on_error}
    return LightningLLMCLI(
        LitGPT,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        predict_output=predict_output,
        save_config_callback=RunConfigSaver,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": EXPORT_HELP, **parser, **{name: parser for name in SUBCOMMANDS}},
        # Checkpoints written beside their target and renamed over it: a crash or a full disk never truncates
        # last.ckpt (Lightning's own writer goes through $TMPDIR and copies across filesystems).
        trainer_defaults={"default_root_dir": DEFAULT_ROOT_DIR, "plugins": [{"class_path": ATOMIC_CHECKPOINT_IO}]},
        auto_configure_optimizers=False,
    )
