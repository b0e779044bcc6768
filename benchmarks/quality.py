"""Benchmark: quality per training budget, through the ``lightningllm fit`` command's own objects.

- **Shakespeare**: ``configs/shakespeare-char.yaml`` (or ``--shakespeare-config``) on
  ``../shared/corpora/shakespeare`` with nanoGPT's split (the last 10% of the characters, in
  sorted file order, is validation: ``data.split=tail``), trained for ``--seconds`` of training
  wall-clock each (the learning rate decays over that budget; the corpus is prepared first,
  untimed). Then the whole validation split is evaluated: loss per character (nats) and bits
  per byte (the corpus is ASCII, so a byte is a character). Target: 1.35 or less at 300 s.
- **Reasoning**: ``configs/demo.yaml`` trained for ``--minutes`` each, then exact match on the
  held-out test problems (greedy decoding), overall and by number of steps. Target: 90% overall
  within 10 minutes, 95% on 1-step problems.

Every budget is its own run from scratch::

    python benchmarks/quality.py                              # Shakespeare 120 s and 300 s, reasoning 1, 2, 5 min
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
from lightningllm.tasks.base import evaluate, group_tag  # noqa: E402


def fit(args: list[str]):
    """Run fit as the ``lightningllm fit`` command would, quietly; returns the CLI object."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli = build_cli(args, run=False)
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


def reasoning(minutes: float, workdir: Path, overrides: list[str]) -> dict:
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
        ]
    )
    task = cli.datamodule.task
    score, _ = evaluate(cli.model.model, cli.datamodule.tokenizer, task, task.examples("test"))
    by_steps = {group_tag(group): value for group, value in score.items() if group != "all"}
    return {"minutes": minutes, "steps": cli.trainer.global_step, "all": score["all"], **by_steps}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=("shakespeare", "reasoning"))
    p.add_argument("--seconds", type=float, nargs="+", default=[120, 300], help="Shakespeare training budgets")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 5], help="reasoning training budgets")
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
                row = reasoning(minutes, Path(tmp) / f"reasoning-{minutes}", args.set)
                results["reasoning"].append(row)
                by_steps = ", ".join(f"{k}: {v:.0%}" for k, v in row.items() if k.endswith("step"))
                print(f"reasoning, {minutes:g} min ({row['steps']} steps): exact match {row['all']:.1%} ({by_steps})")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
