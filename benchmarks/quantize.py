"""Benchmark: int8 weights (``lightningllm.model.quantize``) against float32 for CPU inference.

For one model — a checkpoint (``--ckpt``), an export folder (``--export``) or a freshly built
shape from a config in ``configs/`` (``--preset demo``, ``--preset small-10m``: random weights,
the config's ``model.config`` and its data's ``vocab_size``) — it reports the size of its export's
``model.safetensors`` (``lightningllm export [--quantize int8]``) and of the tensors in memory,
greedy ``generate`` speed (new tokens per second, median of the repeats, float32 and int8
repeats interleaved in the same run) at each batch size, the largest logit difference on random
tokens, and, for a checkpoint whose data module declares a task (``TokenDataModule.task``), the
task's score on its test split for both::

    python benchmarks/quantize.py --preset small-10m
    python benchmarks/quantize.py --ckpt logs/demo/checkpoints/last.ckpt --task-examples 300
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, write_json  # noqa: E402

from lightningllm.model import GPT, GPTConfig, generate  # noqa: E402
from lightningllm.model.quantize import quantize_int8  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="a lightningllm checkpoint")
    source.add_argument("--export", help="a folder written by `lightningllm export`")
    source.add_argument("--preset", default="small-10m", help="a config in configs/ whose shape to build")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--task-examples", type=int, default=0, help="score this many test examples (--ckpt only)")
    p.add_argument("--json", help="also write the results to this JSON file")
    return p.parse_args(argv)


def preset_model(name: str) -> GPT:
    """Random weights in the shape of ``configs/<name>.yaml`` (its model config and its data's vocabulary)."""
    path = REPO / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"--preset {name}: no {path}")
    config = yaml.safe_load(path.read_text())
    vocab = config["data"]["init_args"]["vocab_size"]
    return GPT(GPTConfig(vocab_size=vocab, **config["model"]["config"])).eval()


def checkpoint_task(ckpt: str):
    """The task of the data module a checkpoint was trained with, if it declares one (else None)."""
    from lightningllm.checkpoint import read_checkpoint
    from lightningllm.data.contract import TokenDataModule

    hparams = dict(read_checkpoint(ckpt, weights=False).get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        return None
    module, _, name = class_path.rpartition(".")
    data = getattr(importlib.import_module(module), name)(**{k: v for k, v in hparams.items() if k[0] != "_"})
    return data.task if isinstance(data, TokenDataModule) else None


def saved_bytes(model: GPT) -> int:
    """Bytes of the ``model.safetensors`` that ``lightningllm export`` (``--quantize int8``) writes for it."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return (Path(folder) / "model.safetensors").stat().st_size


def tensor_bytes(model: GPT) -> int:
    """Bytes of the distinct tensors of the state dict, the int8 layers' (unpacked) weights and scales included."""
    seen, total = set(), 0

    def add(value) -> None:
        nonlocal total
        if isinstance(value, (tuple, list)):
            for item in value:
                add(item)
        elif isinstance(value, torch.Tensor) and (value.data_ptr(), value.numel()) not in seen:
            seen.add((value.data_ptr(), value.numel()))
            total += value.numel() * value.element_size()
            if value.is_quantized and value.qscheme() == torch.per_channel_affine:
                total += value.q_per_channel_scales().nbytes + value.q_per_channel_zero_points().nbytes

    for value in model.state_dict(keep_vars=True).values():
        add(value)
    return total


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = None
    if args.ckpt:
        from lightningllm.checkpoint import load_checkpoint

        fp32, tokenizer = load_checkpoint(args.ckpt)
        source = args.ckpt
    elif args.export:
        fp32, source = GPT.from_pretrained(args.export).eval(), args.export
    else:
        fp32, source = preset_model(args.preset), f"preset {args.preset} (random weights)"
    int8 = quantize_int8(copy.deepcopy(fp32))
    models = {"fp32": fp32, "int8": int8}
    vocab = fp32.config.vocab_size
    print(machine())
    print(f"model: {source}, {fp32.num_params():,} params; prompt {args.prompt_tokens} + {args.new_tokens} new tokens")
    results = {"machine": machine(), "source": source, "params": fp32.num_params(), "models": {}}
    for name, model in models.items():
        sizes = {"saved_mb": saved_bytes(model) / 1e6, "tensor_mb": tensor_bytes(model) / 1e6}
        results["models"][name] = {k: round(v, 3) for k, v in sizes.items()}

    idx = torch.randint(0, vocab, (4, min(128, fp32.config.block_size)))
    with torch.inference_mode():
        ref, out = fp32(idx), int8(idx)
    results["max_logit_diff"] = round((out - ref).abs().max().item(), 4)
    results["logit_range"] = round((ref.max() - ref.min()).item(), 3)
    results["argmax_agreement"] = round((out.argmax(-1) == ref.argmax(-1)).float().mean().item(), 4)

    results["rows"] = []
    for batch in args.batch_sizes:
        prompts = torch.randint(0, vocab, (batch, args.prompt_tokens))
        seconds = {name: [] for name in models}
        for model in models.values():
            generate(model, prompts, 4, temperature=0)  # warm up
        for _ in range(args.repeats):
            for name, model in models.items():  # interleaved: both see the same machine load
                start = time.perf_counter()
                generate(model, prompts, args.new_tokens, temperature=0)
                seconds[name].append(time.perf_counter() - start)
        row = {"batch": batch}
        for name in models:
            row[f"{name}_tok_s"] = round(batch * args.new_tokens / statistics.median(seconds[name]), 1)
        row["speedup"] = round(row["int8_tok_s"] / row["fp32_tok_s"], 2)
        results["rows"].append(row)

    task = checkpoint_task(args.ckpt) if args.ckpt and args.task_examples else None
    if task is not None and tokenizer is not None:
        from lightningllm.tasks.base import evaluate

        examples = task.examples("test")[: args.task_examples]
        for name, model in models.items():
            scores, _ = evaluate(model, tokenizer, task, examples)
            results["models"][name][task.metric] = {k: round(v, 4) for k, v in scores.items()}

    for name, row in results["models"].items():
        extra = {k: v for k, v in row.items() if k not in ("saved_mb", "tensor_mb")}
        sizes = f"model.safetensors {row['saved_mb']:.2f} MB, tensors in memory {row['tensor_mb']:.2f} MB"
        print(f"{name}: {sizes} {extra}")
    print(
        f"max |logit difference| {results['max_logit_diff']} (fp32 logits span {results['logit_range']}), "
        f"argmax agreement {results['argmax_agreement']:.2%}"
    )
    for row in results["rows"]:
        print(
            f"batch {row['batch']}: fp32 {row['fp32_tok_s']:,.0f} tok/s, int8 {row['int8_tok_s']:,.0f} tok/s, "
            f"int8/fp32 {row['speedup']:.2f}x"
        )
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
