"""Benchmark: generation speed with and without the KV cache.

Times ``lightningllm.model.generate`` for a 64-token prompt plus 256 new tokens (sampling at
temperature 1, no early stop) at batch 1 and 8, decoding incrementally with the KV cache and by
re-running the whole sequence for every token. New tokens per second are medians of the
repeats; the target is a cache speed-up of at least 5x at 256 new tokens. The model is the
``small`` shape of the throughput benchmark (6 layers, width 384, context 512 here so that
prompt + new tokens fit), random weights, vocabulary 4096::

    python benchmarks/generation.py            # 3 repeats
    python benchmarks/generation.py --quick    # 1 repeat, 64 new tokens
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_json  # noqa: E402

from lightningllm.model import GPT, GPTConfig, generate  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 repeat, 64 new tokens")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.repeats, args.new_tokens = 1, 64
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=4096, block_size=512, n_layer=6, n_head=6, n_embd=384, pos_emb="rope", bias=False)
    model = GPT(config).eval()
    print(machine())
    print(f"model: {model.num_params():,} params; prompt {args.prompt_tokens} + {args.new_tokens} new tokens")
    results = {"machine": machine(), "params": model.num_params(), "rows": []}
    for batch in args.batch_sizes:
        prompts = torch.randint(0, config.vocab_size, (batch, args.prompt_tokens))
        speed = {}
        for use_cache in (True, False):
            seconds = []
            for repeat in range(args.repeats):
                start = time.perf_counter()
                out = generate(model, prompts, args.new_tokens, temperature=1.0, seed=repeat, use_kv_cache=use_cache)
                seconds.append(time.perf_counter() - start)
                assert all(len(o) == args.new_tokens for o in out)
            speed[use_cache] = batch * args.new_tokens / statistics.median(seconds)
        row = {"batch": batch, "cache_tok_s": round(speed[True], 1), "no_cache_tok_s": round(speed[False], 1)}
        row["speedup"] = round(speed[True] / speed[False], 2)
        results["rows"].append(row)
        print(
            f"batch {batch}: KV cache {speed[True]:,.0f} tok/s, no cache {speed[False]:,.0f} tok/s, "
            f"speed-up {row['speedup']:.1f}x (target >= 5x)"
        )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
