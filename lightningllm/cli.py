"""The ``lightningllm`` command: LightningCLI over ``LitGPT`` and any data module.

``lightningllm fit|validate|test|predict --config configs/X.yaml``. Lightning's Trainer does the
rest (strategies, precision, checkpointing); TensorBoard logs land under ``logs/``. ``predict``
also takes the shortcuts ``--prompt TEXT`` (repeatable), ``--prompt_file FILE`` and
``--output FILE``, and needs only ``--ckpt_path``: the checkpoint carries the model's shape and
its tokenizer. ``lightningllm export --ckpt_path X --out DIR`` writes a portable model folder
(see ``lightningllm.export``); it is handled here, before LightningCLI, and loads no Lightning.
Errors in the user's data, config or checkpoint end in one line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PREDICT_SHORTCUTS = ("--prompt", "--prompt_file", "--output")
EXPORT_HELP = (
    "Also: `lightningllm export --ckpt_path X --out DIR` writes a portable model folder (config.json, "
    "model.safetensors, tokenizer.json) for GPT.from_pretrained and --model.init_from; "
    "see `lightningllm export --help`."
)


def _expand_predict_shortcuts(argv: list[str]) -> tuple[list[str], str | None]:
    """Turn ``--prompt X --prompt_file F --output O`` into the data-module arguments they stand for."""
    if not argv or argv[0] != "predict":
        return argv, None
    prompts, prompt_file, output, rest = [], None, None, []
    i = 0
    while i < len(argv):
        arg, value = argv[i], None
        name = arg.split("=", 1)[0]
        if name in PREDICT_SHORTCUTS:
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise SystemExit(f"error: {name} needs a value")
            if name == "--prompt":
                prompts.append(value)
            elif name == "--prompt_file":
                prompt_file = value
            else:
                output = value
        else:
            rest.append(arg)
        i += 1
    if prompts or prompt_file:
        import json

        data = ["--data=lightningllm.data.PromptDataModule", f"--data.prompts={json.dumps(prompts)}"]
        if prompt_file:
            data.append(f"--data.prompt_file={prompt_file}")
        # Before any --data.* option the user gave (e.g. --data.chat true), which needs the class set first.
        at = next((i for i, arg in enumerate(rest) if arg.startswith("--data.")), len(rest))
        rest[at:at] = data
    return rest, output


def _build_cli_class():
    from lightning.pytorch.cli import LightningCLI

    from lightningllm.training.callbacks import PredictionWriter

    class LightningLLMCLI(LightningCLI):
        predict_output: str | None = None

        def _parse_ckpt_path(self) -> None:
            """Take only the model's shape from ``--ckpt_path``; the command line keeps the rest.

            Lightning's default replaces every model argument with the checkpoint's, which
            would silently override ``--model.temperature`` and friends.
            """
            subcommand = self.config.get("subcommand")
            ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if not ckpt_path or not Path(ckpt_path).is_file():
                return
            from lightningllm.export import read_checkpoint

            config = read_checkpoint(ckpt_path).get("hyper_parameters", {}).get("config")
            if config is None:
                raise ValueError(f"checkpoint {ckpt_path} was not written by lightningllm (no model config)")
            self.config = self.parser.parse_object({subcommand: {"model": {"config": config}}}, self.config)

        def before_instantiate_classes(self) -> None:
            """With ``--model.init_from DIR``, a data module taking ``tokenizer_path`` defaults to DIR's tokenizer."""
            subcommand = self.config.get("subcommand")
            config = self.config[subcommand] if subcommand else self.config
            init_from = config.get("model.init_from")
            data_args = config.get("data.init_args")
            takes_tokenizer = data_args is not None and "tokenizer_path" in data_args
            if not init_from or not takes_tokenizer or data_args.tokenizer_path is not None:
                return
            tokenizer = Path(init_from) / "tokenizer.json"
            if tokenizer.is_file():
                data_args.tokenizer_path = str(tokenizer)
                print(f"data: using the tokenizer of model.init_from ({tokenizer})")

        def before_predict(self) -> None:
            writers = [cb for cb in self.trainer.callbacks if isinstance(cb, PredictionWriter)]
            if not writers:
                self.trainer.callbacks.append(PredictionWriter(self.predict_output or "predictions.jsonl"))
            elif self.predict_output:
                writers[0].output = type(writers[0].output)(self.predict_output)

    return LightningLLMCLI


TOP_LEVEL_HELP = """\
usage: lightningllm {fit,validate,test,predict,export} [options]

Build and train small GPT-style language models with Lightning.

subcommands:
  fit        train a model: lightningllm fit --config configs/demo.yaml
  validate   validation loss (and exact match) of a checkpoint: --config X --ckpt_path C
  test       test metrics of a checkpoint (the reasoning corpus's held-out exact match)
  predict    generate: --ckpt_path C --prompt TEXT [--prompt_file F] [--output F.jsonl]
  export     a portable model folder (config.json, model.safetensors, tokenizer.json):
             lightningllm export --ckpt_path C --out DIR

Every option of a subcommand, with its documentation: lightningllm SUBCOMMAND --help.
Configs (commented YAML) live in configs/; `lightningllm fit --config X --print_config` prints
a complete, re-runnable config.
"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(TOP_LEVEL_HELP, end="")  # without importing Lightning: answers in a fraction of a second
        return
    try:
        if argv[:1] == ["export"]:
            export(argv[1:])
        else:
            argv, predict_output = _expand_predict_shortcuts(argv)
            run(argv, predict_output)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as err:
        if os.environ.get("LIGHTNINGLLM_DEBUG"):
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)


def _one_line(err: BaseException) -> str:
    """The first line of the error that started it all: jsonargparse wraps a class's own ``ValueError``
    (say, a data module refusing ``vocab_size``) in "Does not validate against any of the Union subtypes"."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def export(argv: list[str]) -> None:
    """``lightningllm export``: a checkpoint → config.json, model.safetensors and tokenizer.json in one folder."""
    parser = argparse.ArgumentParser(
        prog="lightningllm export",
        description="Write a portable model folder (config.json, model.safetensors, tokenizer.json; no pickle) "
        "that GPT.from_pretrained(DIR) loads without Lightning and `fit --model.init_from DIR` trains on from.",
    )
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by `lightningllm fit`")
    parser.add_argument("--out", required=True, help="folder to write (new, empty, or an earlier export to replace)")
    args = parser.parse_args(argv)
    from lightningllm.export import EXPORT_FILES, export_checkpoint

    out = export_checkpoint(args.ckpt_path, args.out)
    files = ", ".join(name for name in EXPORT_FILES if (out / name).is_file())
    print(f"exported {args.ckpt_path} to {out}/ ({files})")
    if not (out / "tokenizer.json").is_file():
        print("note: the checkpoint holds no tokenizer (its data module had none), so neither does the export")


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


def run(argv: list[str], predict_output: str | None = None):
    import lightning.pytorch  # noqa: F401  (sets up the logger whose tips we filter)

    _quiet_lightning()
    sys.argv = [sys.argv[0], *argv]  # LightningCLI reads sys.argv; passing args= as well makes it warn
    return build_cli(None, predict_output=predict_output)


def build_cli(args: list[str] | None, run: bool = True, predict_output: str | None = None):
    """The LightningCLI object; ``run=False`` only parses and instantiates (used by tests)."""
    import lightning as L

    from lightningllm.training.module import LitGPT

    cli_class = _build_cli_class()
    cli_class.predict_output = predict_output
    return cli_class(
        LitGPT,
        L.LightningDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"epilog": EXPORT_HELP},
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "logs", "name": "default"},
            },
        },
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()
