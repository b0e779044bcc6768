"""Shared pieces of the benchmarks: the machine, its matmul peak, the Shakespeare split, statistics, memory.

Run the benchmarks from the repository root (``python benchmarks/NAME.py``); each imports this
file as ``common``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "shakespeare"


def machine() -> str:
    """CPU model, core count, Python, torch and thread count, in one line."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    if torch.cuda.is_available():
        model += f", GPU {torch.cuda.get_device_name()}"
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def matmul_peak(sizes: tuple[int, ...] = (128, 512, 1024, 2048), seconds: float = 0.5) -> dict[int, float]:
    """fp32 GFLOP/s of square matmuls, per size: the best of several timed bursts."""
    results = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm up
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            reps = max(1, int(2e8 / n**3))
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
        results[n] = best
    return results


def shakespeare_text(corpus: Path = SHAKESPEARE) -> str:
    """The corpus as the peers read it: its files concatenated in sorted-name order."""
    files = sorted(p for p in corpus.iterdir() if p.suffix in (".txt", ".md"))
    if not files:
        raise SystemExit(f"no corpus at {corpus}: pass --corpus")
    return "".join(p.read_text(encoding="utf-8") for p in files)


def split_90_10(text: str) -> tuple[str, str]:
    """First 90% of the characters for training, the last 10% for validation (nanoGPT's split)."""
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


def spread(values: list[float], digits: int = 3) -> list[float]:
    """[median, min, max], rounded: how the results files report repeated measurements."""
    return [round(statistics.median(values), digits), round(min(values), digits), round(max(values), digits)]


def write_json(path: str | None, results: dict) -> None:
    """Write a benchmark's results to ``path`` (its ``--json`` option), if one was given."""
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n")


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(current, []))
    return total


class PeakMemory:
    """Samples the summed RSS of a process tree in a background thread; ``peak`` holds the maximum in bytes."""

    def __init__(self, pid: int | None = None, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid or os.getpid(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss(self.pid))
