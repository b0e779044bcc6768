"""Benchmark: post-training a weak reasoning model: continued SFT vs DPO vs GRPO, at equal minutes.

1. Pretrain ``configs/demo.yaml`` for ``--pretrain-steps`` (500 of its 1,500: a deliberately weak model,
   which got about half the held-out problems right on the earlier 1- to 3-step corpus) and export it: the
   starting checkpoint of every method (or ``--base DIR``: start from that export).
2. Give each method ``--minutes`` of training wall-clock on these CPUs, from that export:
   - ``sft``: continued supervised training on the built-in corpus (``configs/demo.yaml``, the problems mixed);
   - ``dpo``: pairs built by the checker first (for ``--pair-prompts`` training prompts, ``--samples``
     completions of the starting model at temperature 1; a verified-correct and an incorrect one of the
     same prompt make a pair), then ``configs/dpo-reasoning.yaml``; building the pairs is part of its minutes;
   - ``grpo``: ``configs/grpo-reasoning.yaml``, on the demo's 1- to 5-step problems (the config keeps to 1 to 3
     steps, for cheap sampling; here every method trains on the mix it is scored on).
3. Every ``--eval-every`` minutes of training the clock stops for greedy exact match on
   ``--eval-examples`` held-out test problems (the same ones for every method).

Prints one table (exact match against minutes, and the steps each method took) and writes
``--json``. Runs the ``lightningllm`` CLI objects in this process (``build_cli(run=False)``)
with one extra callback for the curve; ``--sft-args``, ``--dpo-args``, ``--grpo-args`` add CLI
arguments to a method's run. About ``pretrain + 3 × minutes`` plus evaluations::

    python benchmarks/post_training.py                       # 500 steps + 3 x 5 minutes
    python benchmarks/post_training.py --quick               # smoke run: 300 steps + 3 x 0.5 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, write_json  # noqa: E402

from lightningllm.cli import build_cli  # noqa: E402
from lightningllm.model import generate  # noqa: E402
from lightningllm.tasks import evaluate  # noqa: E402
from lightningllm.tasks.reasoning import ReasoningDataModule  # noqa: E402

CONFIGS = REPO / "configs"
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
GRPO_ALL_STEPS = ["--data.init_args.task_data.init_args.step_mix=[1,1,1,1,1]", "--model.init_args.max_new_tokens=400"]
"""The demo's step mix for GRPO, and room for a 5-step answer (up to ~360 tokens)."""
NO_VALIDATION = ["--trainer.limit_val_batches=0", "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false"]


class ExactMatchCurve(L.Callback):
    """Every ``every_seconds`` of training (the module's clock), greedy exact match on held-out examples.

    The evaluation runs before a step starts, and the clock is paused after it, so it is never training
    time. ``offset_seconds`` shifts the curve (time spent before training, e.g. building DPO's pairs).
    """

    def __init__(self, task, examples, every_seconds: float, offset_seconds: float = 0.0):
        self.task, self.examples, self.every, self.offset = task, examples, every_seconds, offset_seconds
        self.points: list[dict] = []
        self._next = every_seconds

    def _record(self, trainer: L.Trainer, module) -> None:
        scores, _ = evaluate(module.model, module.tokenizer, self.task, self.examples)
        minutes = (module.clock.seconds + self.offset) / 60
        self.points.append({"minutes": round(minutes, 2), "step": trainer.global_step, "exact_match": scores["all"]})
        print(f"  {minutes:5.2f} min, step {trainer.global_step:4d}: exact match {scores['all']:.1%}", flush=True)
        module.clock.pause()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if module.clock.seconds >= self._next:
            self._record(trainer, module)
            while self._next <= module.clock.seconds:
                self._next += self.every

    def on_train_end(self, trainer, module) -> None:
        self._record(trainer, module)


def cli_fit(args: list[str], curve: ExactMatchCurve) -> None:
    """``lightningllm fit ARGS`` in this process, with ``curve`` added to its callbacks."""
    L.seed_everything(0, verbose=False)
    errors = io.StringIO()  # Lightning's warnings; shown if the run fails
    try:
        with contextlib.redirect_stderr(errors):
            cli = build_cli(args, run=False)
            cli.trainer.callbacks.append(curve)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except BaseException:
        sys.stderr.write(errors.getvalue()[-3000:])
        raise


def lightningllm(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lightningllm", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"lightningllm {args[0]} failed:\n{result.stderr[-3000:]}")


def build_pairs(base: Path, task, prompts, samples: int, seed: int, out: Path) -> dict:
    """DPO pairs from the starting model and the checker: per prompt, a correct and an incorrect sample."""
    from lightningllm.data import Tokenizer
    from lightningllm.model import GPT

    model, tokenizer = GPT.from_pretrained(base).eval(), Tokenizer.from_file(base)
    budget = max(len(tokenizer.encode(e.completion)) for e in prompts) + 8
    pairs, correct = [], 0
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(prompts), 32):
        chunk = prompts[start : start + 32]
        ids = [tokenizer.encode(e.prompt) for e in chunk for _ in range(samples)]
        outs = generate(model, ids, budget, temperature=1.0, eos_id=tokenizer.eos_id, generator=generator)
        texts = [tokenizer.decode(o) for o in outs]
        for i, example in enumerate(chunk):
            group = texts[i * samples : (i + 1) * samples]
            right = [t for t in group if task.score(example, t) == 1.0]
            wrong = [t for t in group if task.score(example, t) != 1.0]
            correct += len(right)
            if right and wrong:
                pairs.append({"prompt": example.prompt, "chosen": right[0], "rejected": wrong[0]})
    out.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return {"prompts": len(prompts), "pairs": len(pairs), "sample_accuracy": correct / (len(prompts) * samples)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pretrain-steps", type=int, default=500, help="steps of configs/demo.yaml: a weak start")
    p.add_argument("--minutes", type=float, default=5.0, help="training minutes of each method")
    p.add_argument("--methods", nargs="+", choices=("sft", "dpo", "grpo"), default=["sft", "dpo", "grpo"])
    p.add_argument("--eval-every", type=float, default=1.0, help="minutes of training between evaluations")
    p.add_argument("--eval-examples", type=int, default=200, help="held-out test problems scored")
    p.add_argument("--pair-prompts", type=int, default=1024, help="dpo: training prompts sampled for pairs")
    p.add_argument("--samples", type=int, default=4, help="dpo: samples per prompt")
    p.add_argument("--quick", action="store_true", help="smoke run: 300 steps + 3 x 0.5 minutes, 40 examples")
    p.add_argument("--base", help="start from this export instead of pretraining one (e.g. WORKDIR/base of a run)")
    for method in ("sft", "dpo", "grpo"):
        p.add_argument(f"--{method}-args", default="", help=f"extra CLI arguments of the {method} run, quoted")
    p.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.pretrain_steps, args.minutes, args.eval_every, args.eval_examples = 300, 0.5, 0.25, 40
        args.pair_prompts = 64
    print(machine())
    results: dict = {"machine": machine(), "settings": vars(args), "curves": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        cache = f"--data.cache_dir={work / 'cache'}"
        demo = [f"--config={CONFIGS / 'demo.yaml'}", cache]
        if args.base:
            base = Path(args.base).resolve()
            print(f"starting model: {base}")
        else:
            print(f"pretraining the starting model: {args.pretrain_steps} steps of configs/demo.yaml")
            pretrain = [f"--trainer.max_steps={args.pretrain_steps}", "--model.train_minutes=null"]
            pretrain += [f"--trainer.default_root_dir={work / 'pre'}"]
            pretrain += ["--trainer.val_check_interval=100000", "--trainer.limit_val_batches=0", *QUIET]
            lightningllm("fit", *demo, *pretrain, cwd=work)
            base = work / "base"
            checkpoint = work / "pre" / "checkpoints" / "last.ckpt"
            lightningllm("export", f"--ckpt_path={checkpoint}", f"--out={base}", cwd=work)
        task = ReasoningDataModule(working="digits", tokenizer_kind="bpe", vocab_size=512).task
        held_out = random.Random(0).sample(list(task.examples("test")), args.eval_examples)
        every = 60 * args.eval_every
        budget = [f"--model.init_from={base}", "--trainer.max_steps=-1", "--trainer.max_epochs=1000"]
        budget += [*QUIET, *NO_VALIDATION]

        from lightningllm.data import Tokenizer
        from lightningllm.model import GPT

        start_scores, _ = evaluate(GPT.from_pretrained(base).eval(), Tokenizer.from_file(base), task, held_out)
        results["start_exact_match"] = start_scores["all"]
        print(f"starting model: exact match {start_scores['all']:.1%} on {len(held_out)} held-out test problems")

        for method in args.methods:
            print(f"{method}: {args.minutes} minutes")
            root = [f"--trainer.default_root_dir={work / method}"]
            offset, minutes = 0.0, args.minutes
            if method == "sft":
                config = [*demo, "--data.curriculum=none", "--data.shuffle=true", "--model.warmup_steps=20"]
            elif method == "dpo":
                began = time.perf_counter()
                pairs = work / "pairs.jsonl"
                prompts = random.Random(0).sample(list(task.examples("train")), args.pair_prompts)
                built = build_pairs(base, task, prompts, args.samples, 0, pairs)
                offset = time.perf_counter() - began
                results["dpo_pairs"] = {**built, "seconds": round(offset, 1)}
                print(f"  {built['pairs']} pairs from {built['prompts']} prompts in {offset:.0f} s "
                      f"(sample accuracy {built['sample_accuracy']:.1%})")  # fmt: skip
                minutes = max(args.minutes - offset / 60, 0.05)  # building the pairs took the rest
                config = [f"--config={CONFIGS / 'dpo-reasoning.yaml'}", f"--data.train_file={pairs}"]
            else:
                task_cache = f"--data.init_args.task_data.init_args.cache_dir={work / 'cache'}"
                config = [f"--config={CONFIGS / 'grpo-reasoning.yaml'}", task_cache, *GRPO_ALL_STEPS]
            curve = ExactMatchCurve(task, held_out, every, offset)
            curve.points.append({"minutes": round(offset / 60, 2), "step": 0, "exact_match": start_scores["all"]})
            extra = shlex.split(getattr(args, f"{method}_args"))
            cli_fit([*config, *budget, f"--model.train_minutes={minutes}", *root, *extra], curve)
            results["curves"][method] = curve.points
    print_table(results)
    write_json(args.json, results)
    return results


def print_table(results: dict) -> None:
    """Exact match at each evaluation, per method (minutes of training, steps in brackets)."""
    print(f"\nheld-out exact match (start: {results['start_exact_match']:.1%})")
    for method, points in results["curves"].items():
        row = ", ".join(f"{p['minutes']:.1f} min {p['exact_match']:.1%} (step {p['step']})" for p in points)
        print(f"  {method:5s} {row}")


if __name__ == "__main__":
    main()
