"""Benchmark: peak resident memory of ``lightningllm fit``, summed over its process tree.

Runs the command for each shape of the throughput benchmark (``--steps`` steps, data loader
workers as ``--num-workers``) on an already prepared corpus, sampling the summed RSS of the
process and all its children every 50 ms. Target: 600 MiB or less on the baby shape::

    python benchmarks/memory.py                 # baby, demo, small
    python benchmarks/memory.py --quick         # baby only
    python benchmarks/memory.py --lora          # fine-tuning small-10m: all weights vs LoRA adapters

``--lora`` exports a ``configs/small-10m.yaml`` model (one step of training on the reference
corpus), then fine-tunes it from that export (``--model.init_from``) for ``--steps`` steps, all
weights against LoRA (r 8 on every linear of every block), alternating ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHAKESPEARE, PeakMemory, machine, write_json  # noqa: E402
from throughput import SHAPES, cli_args  # noqa: E402


def peak_rss(args: list[str], cwd: Path) -> int:
    process = subprocess.Popen(
        [sys.executable, "-m", "lightningllm", "fit", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    with PeakMemory(process.pid) as memory:
        _, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"fit failed:\n{stderr.decode()[-2000:]}")
    return memory.peak


def lora_against_full(steps: int, repeats: int) -> dict:
    """Peak RSS of fine-tuning small-10m from an export: every weight trained vs LoRA adapters only."""
    import statistics

    results: dict = {"full": [], "lora": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        common = [
            f"--config={REPO / 'configs' / 'small-10m.yaml'}",
            f"--data.sources={SHAKESPEARE}",
            f"--data.cache_dir={workdir / 'cache'}",
            "--trainer.val_check_interval=100000",
            "--trainer.limit_val_batches=0",
            "--trainer.logger=false",
        ]
        peak_rss([*common, "--trainer.max_steps=1"], workdir)  # prepares the corpus too
        ckpt = workdir / "logs" / "small-10m" / "checkpoints" / "last.ckpt"
        export = subprocess.run(
            [sys.executable, "-m", "lightningllm", "export", f"--ckpt_path={ckpt}", f"--out={workdir / 'base'}"],
            cwd=workdir, capture_output=True, text=True,
        )  # fmt: skip
        if export.returncode != 0:
            raise SystemExit(f"export failed:\n{export.stderr[-2000:]}")
        tuned = [*common, f"--model.init_from={workdir / 'base'}", f"--trainer.max_steps={steps}"]
        lora = ["--model.lora.r=8", "--model.lora.alpha=16", "--model.lora.targets=[attn.*, mlp.*]"]
        for _ in range(repeats):
            results["full"].append(peak_rss(tuned, workdir) / 2**20)
            results["lora"].append(peak_rss([*tuned, *lora], workdir) / 2**20)
    medians = {name: round(statistics.median(values)) for name, values in results.items()}
    print(f"small-10m fine-tuning, peak RSS of fit (median of {repeats}, {steps} steps):")
    print(f"  all weights: {medians['full']:,} MiB   LoRA r=8 (attn.*, mlp.*): {medians['lora']:,} MiB")
    return {"steps": steps, "repeats": repeats, "peak_rss_mib": medians, "runs_mib": results}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--quick", action="store_true", help="baby only")
    p.add_argument("--lora", action="store_true", help="small-10m fine-tuning: all weights vs LoRA adapters")
    p.add_argument("--repeats", type=int, default=2, help="with --lora: runs of each, alternating")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.shapes = ["baby"]
    print(machine())
    if args.lora:
        results = {"machine": machine(), "lora": lora_against_full(args.steps, args.repeats)}
        write_json(args.json, results)
        return results
    results = {"machine": machine(), "num_workers": args.num_workers, "peak_rss_mib": {}}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.shapes:
            fit_args = cli_args(SHAPES[name], args.steps, workdir) + [f"--data.num_workers={args.num_workers}"]
            peak_rss(cli_args(SHAPES[name], 1, workdir), workdir)  # prepare the corpus first, unmeasured
            mib = peak_rss(fit_args, workdir) / 2**20
            results["peak_rss_mib"][name] = round(mib)
            print(f"{name:6s} peak RSS of fit (all processes): {mib:,.0f} MiB (workers: {args.num_workers})")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
