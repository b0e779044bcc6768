"""Benchmark: data preparation throughput against raw Hugging Face ``tokenizers`` ``encode_batch``.

Prepares a corpus (default ``../shared/corpora/shakespeare``) with ``TextDataModule`` in a fresh
cache: read and clean, train the BPE tokenizer, then tokenize and write litdata shards in
worker processes. In the same run it times the tokenizer's raw ``encode_batch`` (and
``encode_batch_fast``) on the same cleaned documents in this process, which uses every core
through the library's own thread pool. The target: the tokenize+write phase reaches at least
60% of raw ``encode_batch`` speed. Last, it times a second, cached ``prepare_data`` + ``setup``
(target: under 1 second). Repeats alternate the two measurements and report medians::

    python benchmarks/data_prep.py                # 5 repeats, the figures in BENCHMARKS.md
    python benchmarks/data_prep.py --quick        # 1 repeat
    python benchmarks/data_prep.py --corpus my_texts/ --vocab-size 8192
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, machine, spread, write_json  # noqa: E402

from lightningllm.data import TextDataModule  # noqa: E402
from lightningllm.data.sources import CleaningReport, iter_documents, resolve_sources  # noqa: E402
from lightningllm.data.tokenizer import Tokenizer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=str(SHAKESPEARE), help="files, folder or glob to prepare")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--workers", type=int, default=2, help="tokenizing worker processes (data.prepare_workers)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one repeat")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def time_raw_encode(tokenizer: Tokenizer, texts: list[str]) -> dict[str, float]:
    """Seconds for the library's own batch encoders on the whole corpus, in this process."""
    out = {}
    for name in ("encode_batch", "encode_batch_fast"):
        encode = getattr(tokenizer.hf, name)
        start = time.perf_counter()
        encode(texts, add_special_tokens=False)
        out[name] = time.perf_counter() - start
    return out


def prepare_once(args: argparse.Namespace, cache: Path) -> tuple[dict, float]:
    """A cold prepare in an empty cache, then a cached prepare + setup; returns the report and the cached time."""
    shutil.rmtree(cache, ignore_errors=True)
    settings = {"sources": [args.corpus], "vocab_size": args.vocab_size, "prepare_workers": args.workers}
    TextDataModule(**settings, cache_dir=str(cache)).prepare_data()
    start = time.perf_counter()
    cached = TextDataModule(**settings, cache_dir=str(cache))
    cached.prepare_data()
    cached.setup("fit")
    return cached.report, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    report = CleaningReport()
    texts = ["".join(doc.text_chunks()) for doc in iter_documents(resolve_sources([args.corpus]), "text", report)]
    megabytes = report.bytes_kept / 1e6
    rows: dict[str, list[float]] = {k: [] for k in ("read_clean", "tokenizer", "tokenize_write", "cached")}
    rows |= {"encode_batch": [], "encode_batch_fast": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            prepared, cached_seconds = prepare_once(args, Path(tmp) / "cache")
            for phase, seconds in prepared["seconds"].items():
                rows[phase].append(seconds)
            rows["cached"].append(cached_seconds)
            tokenizer = Tokenizer.from_file(next((Path(tmp) / "cache").glob("text-*")) / "tokenizer.json")
            for name, seconds in time_raw_encode(tokenizer, texts).items():
                rows[name].append(seconds)

    ratios = [e / w for e, w in zip(rows["encode_batch"], rows["tokenize_write"], strict=True)]

    results = {
        "corpus": args.corpus,
        "megabytes": round(megabytes, 2),
        "documents": report.documents_kept,
        "vocab_size": args.vocab_size,
        "workers": args.workers,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "machine": machine(),
        "MB_per_s": {k: spread([megabytes / s for s in v], 2) for k, v in rows.items() if k != "cached"},
        "tokenize_write_vs_encode_batch": spread(ratios),
        "cached_seconds": spread(rows["cached"]),
    }
    print(f"corpus {args.corpus}: {megabytes:.2f} MB in {report.documents_kept} documents, {repeats} repeat(s)")
    print(f"{'phase':<22}{'MB/s median':>12}{'min':>8}{'max':>8}")
    for name, (median, low, high) in results["MB_per_s"].items():
        print(f"{name:<22}{median:>12.2f}{low:>8.2f}{high:>8.2f}")
    ratio = results["tokenize_write_vs_encode_batch"]
    print(f"tokenize+write / raw encode_batch: {ratio[0]:.0%} (min {ratio[1]:.0%}, max {ratio[2]:.0%}; target >= 60%)")
    cached = results["cached_seconds"]
    print(f"cached prepare_data + setup: {cached[0]:.3f} s median (max {cached[2]:.3f} s; target < 1 s)")
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
