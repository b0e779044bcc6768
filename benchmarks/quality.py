"""Benchmark: quality per training budget, through the ``lightningllm fit`` command's own objects.

- **Shakespeare**: ``configs/shakespeare-char.yaml`` (or ``--shakespeare-config``) on
  ``../shared/corpora/shakespeare`` with nanoGPT's split (the last 10% of the characters, in
  sorted file order, is validation: ``data.split=tail``), trained for ``--seconds`` of training
  wall-clock each (the learning rate decays over that budget; the corpus is prepared first,
  untimed). Then the whole validation split is evaluated: loss per character (nats) and bits
  per byte (the corpus is ASCII, so a byte is a character). Target: 1.35 or less at 300 s.
- **Reasoning**: ``configs/demo.yaml`` trained for ``--minutes`` each, then exact match (greedy
  decoding) overall and by number of steps on the ``test`` split (1–5 steps, the training
  wordings), ``heldout`` (names, objects, verbs and sentence structures no training problem
  uses) and ``long`` (6–8 steps, beyond training). A learning curve (exact match on the first
  ``--curve-count`` problems of test and heldout every ``--curve-every`` minutes of training,
  evaluation time excluded) is printed as it goes. Targets within 10 minutes: test ≥ 95%,
  heldout ≥ 90%; ``make demo``'s 6.5 minutes: heldout ≥ 90%.

Every budget is its own run from scratch::

    python benchmarks/quality.py                              # Shakespeare 120 s and 300 s, reasoning 6.5 and 10 min
    python benchmarks/quality.py --quick                      # Shakespeare 30 s only
    python benchmarks/quality.py --only reasoning --minutes 10
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import sys
import tempfile
from pathlib import Path

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHAKESPEARE, machine, write_json  # noqa: E402

from lightningllm.cli import build_cli  # noqa: E402
from lightningllm.tasks.base import check_task_fits, evaluate, group_tag  # noqa: E402
from lightningllm.tasks.reasoning.parse import parse_question, parse_working  # noqa: E402


def fit(args: list[str], callbacks: list[L.Callback] = ()):
    """Run fit as the ``lightningllm fit`` command would, quietly; returns the CLI object."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli = build_cli(args, run=False)
        cli.trainer.callbacks.extend(callbacks)
        cli.datamodule.prepare_data()  # untimed: the budget counts training only
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


def shakespeare(config: str, seconds: float, workdir: Path, overrides: list[str]) -> dict:
    cli = fit(
        [
            f"--config={config}",
            f"--data.sources={SHAKESPEARE}",
            "--data.split=tail",
            "--data.val_fraction=0.1",
            "--data.test_fraction=0",  # nanoGPT's split: the last 10% validates, nothing is held out beyond it
            f"--data.cache_dir={workdir / 'cache'}",
            f"--model.train_minutes={seconds / 60}",
            f"--trainer.default_root_dir={workdir / 'logs'}",
            f"--trainer.callbacks=[{{class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: {{dirpath: {workdir / 'ckpt'}, save_last: true}}}}]",  # noqa: E501
            *overrides,
        ]
    )
    evaluator = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1.0)
    with contextlib.redirect_stdout(io.StringIO()):
        (metrics,) = evaluator.validate(cli.model, datamodule=cli.datamodule)
    bpb = metrics["val/bpb"]
    return {
        "seconds": seconds,
        "steps": cli.trainer.global_step,
        "val_loss_per_char": round(bpb * math.log(2), 4),  # ASCII: bytes are characters
        "val_bpb": round(bpb, 4),
        "params": cli.model.model.num_params(),
    }


def error_kinds(task, examples, completions) -> dict[str, int]:
    """The wrong answers by what the working got wrong first, read back with ``parse_working`` against
    the question: ``unparsable``, ``step count`` (a step restated twice or skipped), ``step`` (an operand
    or operation misread), ``start``, ``name`` (copied wrongly; the rest right) or ``arithmetic`` (all
    restated right, then miscomputed)."""
    kinds: dict[str, int] = {}
    for example, completion in zip(examples, completions, strict=True):
        if task.score(example, completion):
            continue
        name, start, steps = parse_question(example.prompt)
        read = parse_working(completion)
        if read is None:
            kind = "unparsable"
        elif len(read[2]) != len(steps):
            kind = "step count"
        elif read[2] != steps:
            kind = "step"
        elif read[1] != start:
            kind = "start"
        elif read[0] != name:
            kind = "name"
        else:
            kind = "arithmetic"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


class Curve(L.Callback):
    """Exact match on the first ``count`` problems of each split at every ``every`` minutes of the training
    clock, while training pauses (the clock excludes it, as it excludes validation)."""

    def __init__(self, every: float, count: int, splits: tuple[str, ...]):
        self.every, self.count, self.splits = every, count, splits
        self.points: list[dict] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        minutes = module.clock.seconds / 60
        if self.every and minutes >= self.every * (len(self.points) + 1):
            task = trainer.datamodule.task
            point = {"minutes": round(minutes, 2), "step": trainer.global_step}
            for split in self.splits:
                score, _ = evaluate(module.model, module.tokenizer, task, task.examples(split)[: self.count])
                point[split] = round(score["all"], 4)
            self.points.append(point)
            module.model.train()
            module.clock.pause()
            print("  " + ", ".join(f"{k} {v}" for k, v in point.items()), file=sys.__stdout__, flush=True)


class SplitsFit(L.Callback):
    """Refuse, before training, a model too short for the splits scored after it."""

    def __init__(self, splits: tuple[str, ...]):
        self.splits = splits

    def on_fit_start(self, trainer, module) -> None:
        task = trainer.datamodule.task
        check_task_fits(module.model, module.tokenizer, task, {split: task.examples(split) for split in self.splits})


def reasoning(
    minutes: float, workdir: Path, overrides: list[str], curve: Curve, splits: tuple[str, ...], export: str | None
) -> dict:
    """``configs/demo.yaml`` trained for ``minutes``; exact match per split (and per step count) at the end."""
    cli = fit(
        [
            f"--config={REPO / 'configs' / 'demo.yaml'}",
            f"--data.init_args.cache_dir={workdir / 'cache'}",
            f"--model.train_minutes={minutes}",
            f"--trainer.default_root_dir={workdir / 'logs'}",
            "--trainer.enable_checkpointing=false",
            "--trainer.callbacks=[]",
            "--trainer.limit_val_batches=0",
            *overrides,
        ],
        callbacks=[curve, SplitsFit(splits)],
    )
    task = cli.datamodule.task
    row = {
        "minutes": minutes, "steps": cli.trainer.global_step, "params": cli.model.model.num_params(),
        "train_seconds": round(cli.model.clock.seconds, 1),
    }  # fmt: skip
    for split in splits:
        examples = task.examples(split)
        score, completions = evaluate(cli.model.model, cli.datamodule.tokenizer, task, examples)
        row[split] = {group_tag(group): round(value, 4) for group, value in score.items()}
        row[f"{split}_errors"] = error_kinds(task, examples, completions)
    row["curve"] = curve.points
    if export:
        cli.model.model.save_pretrained(export)
        cli.datamodule.tokenizer.save(Path(export) / "tokenizer.json")
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("shakespeare", "reasoning"))
    p.add_argument("--seconds", type=float, nargs="+", default=[120, 300], help="Shakespeare training budgets")
    p.add_argument("--minutes", type=float, nargs="+", default=[6.5, 10], help="reasoning training budgets")
    p.add_argument("--curve-every", type=float, default=1.0, help="reasoning: minutes between curve points (0: none)")
    p.add_argument("--curve-count", type=int, default=100, help="reasoning: problems per split at each curve point")
    p.add_argument("--splits", nargs="+", default=["test", "heldout", "long"], help="reasoning: splits scored")
    p.add_argument("--export", help="reasoning: save the (last) trained model and tokenizer to this folder")
    p.add_argument("--shakespeare-config", default=str(REPO / "configs" / "shakespeare-char.yaml"))
    p.add_argument("--set", action="append", default=[], help="an extra option for every fit (repeatable): --set=--x=1")
    p.add_argument("--quick", action="store_true", help="Shakespeare for 30 s only")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.only, args.seconds = "shakespeare", [30]
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    print(machine())
    results: dict = {"machine": machine(), "shakespeare": [], "reasoning": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "shakespeare"):
            for seconds in args.seconds:
                row = shakespeare(args.shakespeare_config, seconds, Path(tmp) / f"shakespeare-{seconds}", args.set)
                results["shakespeare"].append(row)
                print(
                    f"shakespeare {Path(args.shakespeare_config).stem}, {seconds:.0f} s ({row['steps']} steps): "
                    f"val loss {row['val_loss_per_char']:.3f} per character, {row['val_bpb']:.3f} bits per byte"
                )
        if args.only in (None, "reasoning"):
            for minutes in args.minutes:
                curve = Curve(args.curve_every, args.curve_count, tuple(s for s in args.splits if s != "long"))
                row = reasoning(
                    minutes, Path(tmp) / f"reasoning-{minutes}", args.set, curve, tuple(args.splits), args.export
                )
                results["reasoning"].append(row)
                trained = f"{row['steps']} steps in {row['train_seconds'] / 60:.1f} min"
                print(f"reasoning, {minutes:g} min budget ({trained}, {row['params']:,} parameters):")
                for split in args.splits:
                    by_steps = ", ".join(f"{k}: {v:.0%}" for k, v in row[split].items() if k.endswith("step"))
                    errors = ", ".join(f"{k} {v}" for k, v in sorted(row[f"{split}_errors"].items()))
                    print(f"  {split}: exact match {row[split]['all']:.1%} ({by_steps}); wrong: {errors or 'none'}")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
