"""Benchmark: where a training step's time goes, by kind of operation (``torch.profiler``).

Profiles steady-state steps of the plain training step that ``throughput.py`` times (the same
``GPT``, fused AdamW, clipping at 1.0) on one of its shapes, with random token batches (the
data loader is timed in ``throughput.py``; here only the model and optimizer are looked at).
Operations are grouped by kind, each with its share of the step and, for the matmuls, the rate
they run at against the fp32 matmul peak measured in the same run. The matmul share times the
matmul rate bounds the FLOP utilisation the step can reach::

    python benchmarks/profile_step.py --shape baby
    python benchmarks/profile_step.py --shape small --steps 5
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, matmul_peak, write_json  # noqa: E402
from throughput import SHAPES, plain_optimizer, plain_step  # noqa: E402

from lightningllm.model import GPT, GPTConfig  # noqa: E402

# Leaf operations by kind; anything else counts as "other" (views, copies, adds, embedding, ...).
KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "attention": (
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
    ),  # noqa: E501
    "gelu": ("aten::gelu", "aten::gelu_backward"),
    "layer norm": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "loss (log-softmax, NLL)": (
        "aten::_log_softmax",
        "aten::_log_softmax_backward_data",
        "aten::nll_loss_forward",
        "aten::nll_loss_backward",
    ),  # fmt: skip
    "optimizer and clipping": (
        "aten::_fused_adamw_",
        "aten::_foreach_norm",
        "aten::_foreach_mul_",
        "aten::linalg_vector_norm",
    ),  # noqa: E501
}


def profile_steps(shape: dict, steps: int, warmup: int) -> tuple[dict, float, GPTConfig]:
    """Self CPU time (s) and FLOPs by kind over ``steps`` profiled steps, the time per step, the config."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=65, padding_multiple=1, block_size=shape["block_size"], n_layer=shape["n_layer"],
        n_head=shape["n_head"], n_embd=shape["n_embd"], bias=False, dropout=0.0, pos_emb="learned",
    )  # fmt: skip
    model = GPT(config)
    optimizer = plain_optimizer(model)
    batch = torch.randint(0, 65, (shape["batch_size"], shape["block_size"] + 1))
    for _ in range(warmup):
        plain_step(model, optimizer, batch[:, :-1], batch[:, 1:])
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(steps):
            plain_step(model, optimizer, batch[:, :-1], batch[:, 1:])
    seconds, flops = defaultdict(float), defaultdict(float)
    names = {name: kind for kind, ops in KINDS.items() for name in ops}
    for event in prof.key_averages():
        kind = names.get(event.key, "other")
        seconds[kind] += event.self_cpu_time_total / 1e6
        flops[kind] += event.flops or 0
    total = sum(seconds.values())
    return {kind: {"seconds": seconds[kind], "flops": flops[kind]} for kind in seconds}, total / steps, config


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=list(SHAPES), default="baby")
    p.add_argument("--steps", type=int, default=20, help="profiled steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--quick", action="store_true", help="baby shape, 5 steps")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.shape, args.steps = "baby", 5
    peaks = matmul_peak()
    peak = max(v for n, v in peaks.items() if n >= 512)
    shape = SHAPES[args.shape]
    by_kind, step_seconds, config = profile_steps(shape, args.steps, args.warmup)
    total = sum(v["seconds"] for v in by_kind.values())
    print(machine())
    print("fp32 matmul GFLOP/s: " + ", ".join(f"{n}²: {v:.0f}" for n, v in peaks.items()))
    print(f"{args.shape}: {1000 * step_seconds:.1f} ms per step under the profiler")
    rows = sorted(by_kind.items(), key=lambda kv: -kv[1]["seconds"])
    for kind, v in rows:
        rate = f", {v['flops'] / v['seconds'] / 1e9:.0f} GFLOP/s" if v["flops"] and v["seconds"] else ""
        print(f"  {kind:26s} {v['seconds'] / total:6.1%}{rate}")
    tokens = shape["batch_size"] * shape["block_size"]
    utilisation = config.flops_per_token(shape["block_size"]) * tokens / step_seconds / (peak * 1e9)
    matmul = by_kind.get("matmul", {"seconds": 0.0, "flops": 0.0})
    if matmul["seconds"]:
        share, rate = matmul["seconds"] / total, matmul["flops"] / matmul["seconds"] / 1e9
        print(
            f"FLOP utilisation of the profiled steps: {utilisation:.1%}. The matmuls are {share:.0%} of the step and "
            f"run at {rate / peak:.0%} of the {peak:.0f} GFLOP/s peak: they alone give {share * rate / peak:.0%}, "
            "the rest is attention's FLOPs"
        )
    result = {"machine": machine(), "shape": args.shape, "step_seconds": step_seconds, "matmul_gflops": peaks}
    result["utilisation"] = utilisation
    result["by_kind"] = {kind: v for kind, v in rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
