"""Benchmark: how fast a small GPT learns the built-in reasoning corpus on CPU, as a learning curve.

Trains ``lightningllm.model.GPT`` in a plain loop on batches from the demo's own
``ReasoningDataModule``: the same tokenizer (BPE with single-digit tokens by default, or
characters), one problem per sample (a batch's rows padded to its longest, a problem longer than
``block_size + 1`` tokens cut), the loss on answer tokens only (``--answer-only 0`` trains on every
token), read in order so the corpus curriculum is kept (unless ``--shuffle``). The learning rate
warms up over steps and then follows a cosine over the *time* budget, so ``--minutes`` alone sets
the run length (``--steps`` sets it in optimizer steps instead, fairer when other processes share
the CPU). Every
``--eval-every`` minutes the clock pauses for batched greedy decoding of held-out test problems;
the run ends with a larger final evaluation. Examples::

    python benchmarks/reasoning_recipe.py --minutes 6
    python benchmarks/reasoning_recipe.py --minutes 6 --max-steps 1 --tokenizer char --working plain
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from lightningllm.model import GPT, GPTConfig, lr_at, param_groups
from lightningllm.tasks import Example, evaluate
from lightningllm.tasks.reasoning import ReasoningDataModule
from lightningllm.tasks.reasoning.corpus import MAX_STEPS, WORKING_STYLES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=6.0, help="training wall-clock budget (eval excluded)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps instead of --minutes")
    p.add_argument("--quick", action="store_true", help="smoke run: 0.3 minutes, small model and eval")
    p.add_argument("--working", choices=WORKING_STYLES, default="digits")
    p.add_argument("--tokenizer", choices=("bpe", "char"), default="bpe")
    p.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size")
    p.add_argument("--answer-only", type=int, default=1, help="1: loss on answer tokens only (as the demo)")
    p.add_argument(
        "--max-steps", type=int, default=MAX_STEPS, choices=range(1, MAX_STEPS + 1), help="most steps per problem"
    )
    p.add_argument("--curriculum", choices=("staged", "none"), default="staged")
    p.add_argument("--num-train", type=int, default=60_000, help="training problems (the stream cycles)")
    p.add_argument("--shuffle", action="store_true", help="shuffle problems instead of reading them in order")
    p.add_argument("--seed", type=int, default=1234)
    # model
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=512, help="most tokens of a training sample (one problem)")
    p.add_argument("--pos-emb", choices=("learned", "sinusoidal", "rope"), default="rope")
    p.add_argument("--mlp", choices=("gelu", "swiglu"), default="gelu")
    p.add_argument("--norm", choices=("layernorm", "rmsnorm"), default="layernorm")
    # optimization
    p.add_argument("--batch-size", type=int, default=16, help="problems per optimizer step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100, help="warmup in optimizer steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--grad-clip", type=float, default=1.0)
    # evaluation
    p.add_argument("--eval-every", type=float, default=1.0, help="minutes of training between evals")
    p.add_argument("--eval-every-steps", type=int, default=250, help="evals interval with --steps")
    p.add_argument("--eval-n", type=int, default=60, help="problems in the periodic eval set")
    p.add_argument("--final-n", type=int, default=300, help="problems in the final eval")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.eval_every, args.eval_n, args.final_n = 0.3, 0.15, 12, 30
        args.n_layer, args.n_embd, args.num_train = 2, 64, 3000
    return args


def balanced(examples: list[Example], n: int, max_steps: int) -> list[Example]:
    """The first n // max_steps test examples of each step count."""
    per = max(1, n // max_steps)
    return [e for k in range(1, max_steps + 1) for e in [x for x in examples if x.group == f"{k}-step"][:per]]


def fmt(result: dict, max_steps: int, n: int) -> str:
    parts = [f"{k}-step {100 * result[f'{k}-step']:5.1f}%" for k in range(1, max_steps + 1)]
    return "  ".join(parts) + f"  all {100 * result['all']:5.1f}% (n={n})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mix = tuple(1.0 if k <= args.max_steps else 0.0 for k in range(1, MAX_STEPS + 1))
    # The demo's own data module: same corpus, tokenizer, shards and loss mask as `lightningllm fit`.
    data = ReasoningDataModule(
        corpus_seed=args.seed,
        working=args.working,
        num_train=args.num_train,
        num_test=max(3 * args.final_n, 300),
        step_mix=mix,
        curriculum=args.curriculum,
        answer_loss_only=bool(args.answer_only),
        tokenizer_kind=args.tokenizer,
        vocab_size=args.vocab_size,
        block_size=args.block_size,
        batch_size=args.batch_size,
        shuffle=args.shuffle,
        seed=args.seed,
    )
    data.setup("fit")
    vocab, task = data.tokenizer, data.task
    test = list(task.examples("test"))
    eval_set = balanced(test[::-1], args.eval_n, args.max_steps)  # disjoint from the final set's head
    final_set = balanced(test, args.final_n, args.max_steps)
    samples = data.num_train_samples()  # one per training problem
    # Room to decode the longest answer of the evaluation sets after their longest question (evaluate's budget).
    longest = {
        part: max(len(vocab.encode(getattr(e, part))) for e in eval_set + final_set)
        for part in ("prompt", "completion")
    }
    config = GPTConfig(
        vocab_size=vocab.vocab_size,
        block_size=max(args.block_size, longest["prompt"] + longest["completion"] + 8),
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        pos_emb=args.pos_emb,
        mlp=args.mlp,
        norm=args.norm,
        bias=False,
        dropout=0.0,
    )
    model = GPT(config)
    groups = param_groups(model, args.weight_decay)
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, args.beta2), foreach=True)
    print(
        f"working={args.working} steps<={args.max_steps} curriculum={args.curriculum} shuffle={args.shuffle} "
        f"vocab={vocab.vocab_size} params={model.num_params():,} samples={samples} "
        f"({data.report['tokens']['train'] / 1e6:.2f}M tokens, {args.num_train} problems)"
    )
    print(f"example: {data.corpus().problems('train')[0].text!r}")

    batches = iter(data.train_dataloader())
    budget_s, trained_s, step, tokens = 60 * args.minutes, 0.0, 0, 0
    next_eval = 60 * args.eval_every

    def progress() -> float:  # fraction of the run done, by steps on a shared machine, else by time
        return step / args.steps if args.steps else trained_s / budget_s

    def eval_due() -> bool:
        if args.steps:
            return step % args.eval_every_steps == 0 or step == args.steps
        return trained_s >= next_eval or trained_s >= budget_s

    while progress() < 1.0:
        t0 = time.perf_counter()
        try:
            inputs, targets = next(batches)
        except StopIteration:  # the stream ran out: start the next epoch
            batches = iter(data.train_dataloader())
            inputs, targets = next(batches)
        warm = min(1.0, (step + 1) / args.warmup)
        # cosine over the time budget (in per-mille so lr_at's integer steps are fine-grained enough)
        lr = warm * lr_at(int(1000 * progress()), args.lr, 0, 1000, args.lr * args.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model(inputs, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step, tokens = step + 1, tokens + inputs.numel()
        trained_s += time.perf_counter() - t0
        if eval_due():
            next_eval += 60 * args.eval_every
            result, _ = evaluate(model, vocab, task, eval_set)
            model.train()
            print(
                f"[{trained_s / 60:5.2f} min] step {step:5d} loss {loss.item():.3f} lr {lr:.2e} "
                f"{tokens / trained_s:,.0f} tok/s epoch {step * args.batch_size / samples:.2f} | "
                f"{fmt(result, args.max_steps, len(eval_set))}",
                flush=True,
            )
    t0 = time.perf_counter()
    result, completions = evaluate(model, vocab, task, final_set)
    print(f"final ({time.perf_counter() - t0:.0f}s to decode): {fmt(result, args.max_steps, len(final_set))}")
    for sample in completions[:2]:
        print(f"  sample: {sample!r}")
    if math.isnan(loss.item()):
        raise SystemExit("training diverged (loss is NaN)")


if __name__ == "__main__":
    main()
