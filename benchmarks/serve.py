"""Benchmark: ``lightningllm serve`` under concurrent clients: requests/s, tokens/s, latency, time to first token.

A server process (``--model`` export or ``--ckpt``; by default a freshly initialized model of the
demo's shape with a BPE tokenizer trained on the Shakespeare corpus) is started on 127.0.0.1 and
queried with the official ``openai`` client from ``--concurrency`` threads at once, each sending
``--requests`` streamed completions of ``--max-tokens`` tokens (sampled, so no early end is
likely; tokens are counted from the stream's final ``usage`` chunk). Reported per
concurrency: requests/s, generated tokens/s, p50/p99 request latency and p50 time to the first
token. ``--compare-unbatched`` also runs the highest concurrency against a server started with
``--max_batch 1`` (one request at a time), in the same run.

::

    python benchmarks/serve.py                       # concurrency 1, 8, 32
    python benchmarks/serve.py --model models/demo --compare-unbatched
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, shakespeare_text  # noqa: E402


def demo_shaped_export(folder: Path) -> Path:
    """A randomly initialized model of configs/demo.yaml's shape, with a BPE tokenizer of Shakespeare."""
    import yaml

    from lightningllm.data import Tokenizer
    from lightningllm.model import GPT, GPTConfig

    shape = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]["config"]
    tokenizer = Tokenizer.train([shakespeare_text()[:2_000_000]], vocab_size=2048)
    torch.manual_seed(0)
    GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **shape)).save_pretrained(folder)
    tokenizer.save(folder / "tokenizer.json")
    return folder


def start(source: list[str], max_batch: int) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "lightningllm", "serve", *source, "--port", "0", "--max_batch", str(max_batch)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if " on http://" not in line:
        raise SystemExit(f"the server did not start: {line}")
    return process, line.split(" on ", 1)[1].split()[0]


def load(url: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    import openai

    prompts = ["ROMEO:", "To be, or not", "Friends, Romans,", "Now is the winter", "KING LEAR:", "O, what a"]

    def client_run(k: int) -> list[tuple[float, float, int]]:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        out = []
        for j in range(requests):
            start, first, tokens = time.perf_counter(), None, 0
            stream = client.completions.create(
                model="m", prompt=prompts[(k + j) % len(prompts)], max_tokens=max_tokens, temperature=1.0,
                seed=k * 1000 + j, stream=True, stream_options={"include_usage": True},
            )  # fmt: skip
            for chunk in stream:
                if chunk.usage is not None:
                    tokens = chunk.usage.completion_tokens
                elif chunk.choices[0].text:
                    first = first or time.perf_counter()
            out.append((time.perf_counter() - start, (first or time.perf_counter()) - start, tokens))
        return out

    begin = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for rs in pool.map(client_run, range(concurrency)) for r in rs]
    wall = time.perf_counter() - begin
    latencies = sorted(r[0] for r in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "requests_per_s": len(results) / wall,
        "tokens_per_s": sum(r[2] for r in results) / wall,
        "p50_latency_s": statistics.median(latencies),
        "p99_latency_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "p50_ttft_s": statistics.median(r[1] for r in results),
    }


def stop(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGTERM)
    process.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="an export folder")
    source.add_argument("--ckpt", help="a checkpoint")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--compare-unbatched", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        if args.ckpt:
            source = ["--ckpt_path", args.ckpt]
        else:
            source = ["--model", args.model or str(demo_shaped_export(Path(tmp) / "model"))]
        results = {"machine": machine(), "batched": [], "unbatched": None}
        process, url = start(source, 32)
        try:
            for concurrency in args.concurrency:
                row = load(url, concurrency, args.requests, args.max_tokens)
                results["batched"].append(row)
                print(
                    f"concurrency {concurrency:>3}: {row['requests_per_s']:.2f} req/s, "
                    f"{row['tokens_per_s']:.0f} tok/s, "
                    f"latency p50 {row['p50_latency_s']:.2f} s p99 {row['p99_latency_s']:.2f} s, "
                    f"first token p50 {row['p50_ttft_s'] * 1000:.0f} ms"
                )
        finally:
            stop(process)
        if args.compare_unbatched:
            process, url = start(source, 1)
            try:
                row = load(url, max(args.concurrency), args.requests, args.max_tokens)
            finally:
                stop(process)
            results["unbatched"] = row
            batched = results["batched"][-1]
            print(
                f"one at a time (--max_batch 1), concurrency {row['concurrency']}: {row['tokens_per_s']:.0f} tok/s, "
                f"p50 latency {row['p50_latency_s']:.2f} s; batching gives "
                f"{batched['tokens_per_s'] / row['tokens_per_s']:.1f}x the tokens/s"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
