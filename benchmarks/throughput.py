"""Benchmark: training throughput and FLOP utilisation of ``lightningllm fit`` against a plain PyTorch loop.

For each shape, in one process and alternating, it times steady-state optimizer steps of

- **plain**: a hand-written loop over the same ``GPT``, the same batches (the same litdata
  loader of the same prepared corpus) and the same optimizer (AdamW on the same parameter
  groups, gradient clipping at 1.0, the learning rate set each step);
- **fit**: the ``lightningllm fit`` command's own objects (``LightningCLI`` on
  ``configs/shakespeare-char.yaml`` with the shape's overrides): ``LitGPT`` on a ``Trainer``
  with its TensorBoard logger and progress bar.

A step is timed from one step's end to the next (data loading included) over the last
``--steps`` steps after ``--warmup``. Lightning's overhead is fit's median step time over the
plain loop's, minus one (target: 5% or less). FLOP utilisation is
``(6·N + 12·layers·width·context) · tokens/s`` over the fp32 matmul peak measured in the same run.
Shapes (character-level Shakespeare, fp32)::

    baby   4 layers, 4 heads, width 128, context 64,  batch 12   (0.8M params)
    demo   4 layers, 4 heads, width 192, context 128, batch 12   (1.8M params)
    small  6 layers, 6 heads, width 384, context 256, batch 12   (10.7M params)

    python benchmarks/throughput.py                  # all shapes, 3 repeats
    python benchmarks/throughput.py --quick          # baby and demo, 1 repeat, fewer steps
    python benchmarks/throughput.py --compile        # both systems with torch.compile (fit: model.compile)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHAKESPEARE, machine, matmul_peak, write_json  # noqa: E402

from lightningllm.cli import build_cli  # noqa: E402
from lightningllm.model import GPT, GPTConfig, lr_at, param_groups  # noqa: E402

SHAPES = {
    "baby": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12},
    "demo": {"n_layer": 4, "n_head": 4, "n_embd": 192, "block_size": 128, "batch_size": 12},
    "small": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 12},
}
LEARNING_RATE, MIN_LR, WARMUP = 2e-3, 2e-4, 100


class StepClock(L.Callback):
    """Wall-clock time of every training step, measured end to end (data loading included)."""

    def __init__(self):
        self.ends: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())


def cli_args(shape: dict, steps: int, workdir: Path, compile: bool = False) -> list[str]:
    return [  # no subcommand: build_cli(run=False) parses the fit arguments alone
        f"--config={REPO / 'configs' / 'shakespeare-char.yaml'}",
        f"--data.sources={SHAKESPEARE}",
        f"--data.cache_dir={workdir / 'cache'}",
        f"--data.block_size={shape['block_size']}",
        f"--data.batch_size={shape['batch_size']}",
        f"--model.config.block_size={shape['block_size']}",
        f"--model.config.n_layer={shape['n_layer']}",
        f"--model.config.n_head={shape['n_head']}",
        f"--model.config.n_embd={shape['n_embd']}",
        "--model.config.pos_emb=learned",
        "--model.train_minutes=null",
        f"--model.compile={str(compile).lower()}",
        f"--trainer.max_steps={steps}",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_checkpointing=false",
        "--trainer.callbacks=[]",
        f"--trainer.default_root_dir={workdir / 'logs'}",
    ]


def run_fit(shape: dict, steps: int, workdir: Path, compile: bool) -> tuple[list[float], int, GPTConfig]:
    """Step times of ``lightningllm fit`` (its LightningCLI objects), the progress bar going to a buffer."""
    L.seed_everything(0, verbose=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        cli = build_cli(cli_args(shape, steps, workdir, compile), run=False)
        clock = StepClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    gpt = cli.model.model
    return [b - a for a, b in zip(clock.ends, clock.ends[1:], strict=False)], gpt.num_params(), gpt.config


def run_plain(shape: dict, steps: int, workdir: Path, config: GPTConfig, compile: bool) -> list[float]:
    """Step times of a hand-written loop: same model config, same batches, same optimizer settings."""
    L.seed_everything(0, verbose=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        datamodule = build_cli(cli_args(shape, steps, workdir), run=False).datamodule
        datamodule.prepare_data()
        datamodule.setup("fit")
    model = GPT(config)
    optimizer = plain_optimizer(model)
    model = torch.compile(model) if compile else model
    ends = []
    batches = iter(datamodule.train_dataloader())
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, LEARNING_RATE, WARMUP, steps, MIN_LR)
        plain_step(model, optimizer, *next(batches))
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


def plain_optimizer(model: GPT) -> torch.optim.AdamW:
    """The optimizer ``fit`` configures for these runs: fused AdamW on the same parameter groups."""
    return torch.optim.AdamW(param_groups(model, 0.1), lr=LEARNING_RATE, betas=(0.9, 0.95), fused=True)


def plain_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs, targets) -> None:
    """One hand-written training step: forward with the loss, backward, clip at 1.0, optimizer step."""
    loss = model(inputs, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--steps", type=int, default=150, help="timed steps per run (after --warmup)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3, help="plain/fit pairs per shape, alternating")
    p.add_argument("--quick", action="store_true", help="baby and demo, 1 repeat, 40 steps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in both systems")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-run banners between the rows
    if args.quick:
        args.shapes, args.repeats, args.steps = [s for s in args.shapes if s != "small"], 1, 40
    peaks = matmul_peak()
    peak = max(v for n, v in peaks.items() if n >= 512)
    print(machine())
    print("fp32 matmul GFLOP/s: " + ", ".join(f"{n}²: {v:.0f}" for n, v in peaks.items()))
    results = {"machine": machine(), "matmul_gflops": peaks, "compile": args.compile, "shapes": {}}
    for name in args.shapes:
        shape = SHAPES[name]
        tokens = shape["batch_size"] * shape["block_size"]
        times = {"plain": [], "fit": []}
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            total = args.warmup + args.steps + 1
            for _ in range(args.repeats):
                fit_times, params, config = run_fit(shape, total, workdir, args.compile)
                times["fit"].append(statistics.median(fit_times[args.warmup :]))
                plain_times = run_plain(shape, total, workdir, config, args.compile)
                times["plain"].append(statistics.median(plain_times[args.warmup :]))
        flops = config.flops_per_token(shape["block_size"])
        row = {"params": params, "tokens_per_step": tokens, "flops_per_token": flops}
        for system, seconds in times.items():
            median = statistics.median(seconds)
            row[system] = {
                "step_ms": [round(1000 * s, 2) for s in seconds],
                "tokens_per_s": round(tokens / median),
                "utilisation": round(flops * tokens / median / (peak * 1e9), 4),
            }
        ratios = [f / p for f, p in zip(times["fit"], times["plain"], strict=True)]
        row["fit_overhead"] = round(statistics.median(ratios) - 1, 4)
        results["shapes"][name] = row
        print(
            f"{name:6s} {params / 1e6:5.2f}M params | plain {row['plain']['tokens_per_s']:>7,} tok/s "
            f"({row['plain']['utilisation']:.1%}) | fit {row['fit']['tokens_per_s']:>7,} tok/s "
            f"({row['fit']['utilisation']:.1%}) | fit overhead {row['fit_overhead']:+.1%} "
            f"(per repeat: {', '.join(f'{r - 1:+.1%}' for r in ratios)})"
        )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
