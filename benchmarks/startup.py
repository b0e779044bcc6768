"""Benchmark: start-up time of the ``lightningllm`` command.

- ``lightningllm --help``: wall time of the whole command (target: under 2 s).
- ``lightningllm fit`` up to its first optimizer step on an already prepared corpus (target:
  within 8 s): the command runs ``configs/shakespeare-char.yaml`` for 3 steps, logging every
  step, and the first step's time is the wall-clock stamp of its first ``train/loss`` event in
  the TensorBoard file, minus the moment the command was started.

Medians over ``--repeats`` runs (the corpus is prepared once, untimed, first)::

    python benchmarks/startup.py             # 5 repeats
    python benchmarks/startup.py --quick     # 2 repeats
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHAKESPEARE, machine, spread, write_json  # noqa: E402

COMMAND = [sys.executable, "-m", "lightningllm"]


def fit_args(workdir: Path, steps: int) -> list[str]:
    return [
        "fit",
        f"--config={REPO / 'configs' / 'shakespeare-char.yaml'}",
        f"--data.sources={SHAKESPEARE}",
        f"--data.cache_dir={workdir / 'cache'}",
        f"--trainer.default_root_dir={workdir / 'logs'}",
        f"--trainer.max_steps={steps}",
        "--trainer.log_every_n_steps=1",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_checkpointing=false",
        "--trainer.callbacks=[]",
        "--model.train_minutes=null",
    ]


def first_step_seconds(workdir: Path, started: float) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    newest = max((workdir / "logs").rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    events = EventAccumulator(str(newest))
    events.Reload()
    return events.Scalars("train/loss")[0].wall_time - started


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """(start time, seconds) of one run of the command; a failure stops the benchmark with its output."""
    started = time.time()
    result = subprocess.run(COMMAND + args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")
    return started, time.time() - started


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 repeats")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        timed(fit_args(workdir, 1), workdir)  # prepares the corpus (untimed) and warms the file cache
        help_seconds = [timed(["--help"], workdir)[1] for _ in range(repeats)]
        first_step = []
        for _ in range(repeats):
            started, _ = timed(fit_args(workdir, 3), workdir)
            first_step.append(first_step_seconds(workdir, started))
    results = {
        "machine": machine(),
        "help_s": spread(help_seconds, 2),
        "first_step_s": spread(first_step, 2),
    }
    print(f"lightningllm --help: {results['help_s'][0]:.2f} s median (max {results['help_s'][2]:.2f} s; target < 2 s)")
    print(
        f"fit to its first step, corpus prepared: {results['first_step_s'][0]:.2f} s median "
        f"(max {results['first_step_s'][2]:.2f} s; target <= 8 s)"
    )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
