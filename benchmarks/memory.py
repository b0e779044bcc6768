"""Benchmark: peak resident memory of ``lightningllm fit``, summed over its process tree.

Runs the command for each shape of the throughput benchmark (``--steps`` steps, data loader
workers as ``--num-workers``) on an already prepared corpus, sampling the summed RSS of the
process and all its children every 50 ms. Target: 600 MiB or less on the baby shape::

    python benchmarks/memory.py                 # baby, demo, small
    python benchmarks/memory.py --quick         # baby only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakMemory, machine, write_json  # noqa: E402
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


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--quick", action="store_true", help="baby only")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.shapes = ["baby"]
    print(machine())
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
