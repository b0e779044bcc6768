"""Benchmark: the GGUF export run by llama.cpp, against our own generation, for agreement and speed.

A Llama-style model (trained here on the Shakespeare corpus for ``--train-seconds`` with plain
PyTorch, or read from ``--ckpt``/``--export``) is written as f16 and q8_0 GGUF files
(``lightningllm.interop.gguf``) and loaded by llama.cpp through ``llama-cpp-python``. Then:

- **agreement**: greedy continuations of ``--prompts`` prompts (``--prompt-tokens`` tokens from
  the held-out last 10% of the corpus, ``--new-tokens`` new tokens each) by llama.cpp and by
  ``lightningllm.model.generate`` (temperature 0): the fraction of prompts whose continuations
  are identical, and the mean fraction of new tokens before the first difference;
- **speed**: new tokens per second of one prompt's greedy continuation (prefill included, batch
  1), llama.cpp (f16 and q8_0) against ``generate`` with the KV cache (float32), both on
  ``--threads`` threads; medians of ``--repeats``.

On a CPU with AMX, llama.cpp's AMX Q8_0 matmul (llama-cpp-python 0.3.36) segfaults on any
batch of two or more tokens (ggml-org/llama.cpp#20824), so there ``--repack auto`` loads both
files without llama.cpp's extra CPU buffer types (its ``--no-repack``); elsewhere it keeps them.

::

    python benchmarks/llamacpp.py                        # train 120 s, 32 prompts, 3 repeats
    python benchmarks/llamacpp.py --quick                # train 30 s, 8 prompts, 1 repeat
    python benchmarks/llamacpp.py --ckpt logs/.../last.ckpt
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from itertools import islice
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, shakespeare_text, split_90_10, write_json  # noqa: E402

from lightningllm.data.tokenizer import Tokenizer  # noqa: E402
from lightningllm.interop.gguf import write_gguf  # noqa: E402
from lightningllm.model import GPT, GPTConfig, generate  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="a lightningllm checkpoint (file or sharded folder) instead of training")
    source.add_argument("--export", help="an export folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--train-seconds", type=float, default=120.0, help="training budget when neither is given")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--repack",
        choices=("auto", "on", "off"),
        default="auto",
        help="llama.cpp's extra CPU buffer types (repacked/AMX weights); auto: off on AMX CPUs, else on",
    )
    p.add_argument("--out", help="keep the .gguf files in this folder (default: a temporary one)")
    p.add_argument("--quick", action="store_true", help="train 30 s, 8 prompts, 1 repeat")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def train(text: str, vocab_size: int, seconds: float) -> tuple[GPT, Tokenizer, dict]:
    """A Llama-style GPT (GQA, untied head) fitted to ``text`` for ``seconds`` with AdamW, batch 16 x 256."""
    tokenizer = Tokenizer.train([text], vocab_size=vocab_size)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size,
        block_size=256,
        n_layer=6,
        n_head=6,
        n_kv_head=2,
        n_embd=384,
        norm="rmsnorm",
        mlp="swiglu",
        pos_emb="rope",
        bias=False,
        tie_embeddings=False,
    )
    model = GPT(config)
    ids = torch.tensor(tokenizer.encode(text))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    T, steps, deadline = config.block_size, 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        starts = torch.randint(0, len(ids) - T - 1, (16,)).tolist()
        x = torch.stack([ids[s : s + T] for s in starts])  # (16, T)
        y = torch.stack([ids[s + 1 : s + T + 1] for s in starts])
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return model.eval(), tokenizer, {"train_steps": steps, "train_loss": round(loss.item(), 3)}


def load(args: argparse.Namespace, train_text: str) -> tuple[GPT, Tokenizer, dict]:
    if not (args.ckpt or args.export):
        return train(train_text, args.vocab_size, args.train_seconds)
    from lightningllm.checkpoint import load_source

    model, tokenizer = load_source(args.ckpt or args.export)
    if tokenizer is None:
        raise SystemExit(f"{args.ckpt or args.export} holds no tokenizer")
    return model.eval(), tokenizer, {"source": str(args.ckpt or args.export)}


def has_amx() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and " amx_int8" in cpuinfo.read_text()


@contextmanager
def no_extra_buffers(llama_cpp) -> Iterator[None]:
    """Models loaded inside use plain CPU buffers: llama.cpp's ``--no-repack``, which llama-cpp-python lacks."""
    low = llama_cpp.llama_cpp
    default = low.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    low.llama_model_default_params = params
    try:
        yield
    finally:
        low.llama_model_default_params = default


def llama_greedy(llm, prompt: list[int], new_tokens: int) -> list[int]:
    llm.reset()  # no prefix reuse from the previous prompt: every run prefills its whole prompt
    return list(islice(llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0), new_tokens))


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> dict:
    """Fraction of identical continuations, and mean fraction of tokens before the first difference."""
    prefix = []
    for a, b in zip(ours, theirs, strict=True):
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        prefix.append(same / len(a))
    identical = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)
    return {"identical": round(identical, 3), "mean_prefix": round(statistics.mean(prefix), 3)}


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.train_seconds, args.prompts, args.repeats = 30.0, 8, 1
    try:
        import llama_cpp
    except ImportError:
        raise SystemExit("this benchmark needs llama-cpp-python: pip install llama-cpp-python==0.3.36") from None
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_text, val_text = split_90_10(shakespeare_text())
    model, tokenizer, info = load(args, train_text)
    config = model.config
    print(machine())
    origin = info.get("source") or f"trained {info['train_steps']} steps (loss {info['train_loss']})"
    print(f"model: {model.num_params():,} params, {config.n_layer} layers, width {config.n_embd}, {origin}")

    val = tokenizer.encode(val_text)
    stride = (len(val) - args.prompt_tokens) // args.prompts
    prompts = [val[i * stride : i * stride + args.prompt_tokens] for i in range(args.prompts)]
    ours = generate(model, prompts, args.new_tokens, temperature=0)
    our_speed = args.new_tokens / timed(
        lambda: generate(model, prompts[:1], args.new_tokens, temperature=0), args.repeats
    )
    repack = args.repack == "on" or (args.repack == "auto" and not has_amx())
    results = {"machine": machine(), "params": model.num_params(), **info, "prompts": args.prompts, "repack": repack}
    print(f"llama.cpp extra CPU buffer types (repack): {'on' if repack else 'off'}")
    results["ours_tok_s"] = round(our_speed, 1)
    print(f"ours (float32, KV cache, {args.threads} threads): {our_speed:,.1f} new tok/s")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for quant in ("f16", "q8_0"):
            path = folder / f"model-{quant}.gguf"
            path.unlink(missing_ok=True)
            write_gguf(model, tokenizer, path, quant)
            with nullcontext() if repack else no_extra_buffers(llama_cpp):
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=config.block_size,
                    n_threads=args.threads,
                    n_threads_batch=args.threads,
                    verbose=False,
                )
            theirs = [llama_greedy(llm, p, args.new_tokens) for p in prompts]
            agree = agreement(ours, theirs)
            speed = args.new_tokens / timed(
                lambda llm=llm: llama_greedy(llm, prompts[0], args.new_tokens), args.repeats
            )
            llm.close()
            size_mb = path.stat().st_size / 2**20
            results[quant] = {**agree, "tok_s": round(speed, 1), "file_mb": round(size_mb, 2)}
            print(
                f"llama.cpp {quant:>4} ({size_mb:.1f} MB): identical continuations {agree['identical']:.1%}, "
                f"tokens before the first difference {agree['mean_prefix']:.1%}; {speed:,.1f} new tok/s "
                f"({speed / our_speed:.1f}x ours)"
            )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
