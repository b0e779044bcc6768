"""Benchmark: how fast a small GPT learns the built-in reasoning corpus on CPU, as a learning curve.

Trains ``lightningllm.model.GPT`` in a plain loop on the same data the demo uses: the product's
tokenizer (BPE with single-digit tokens by default, or characters), the problems joined into one
EOS-separated stream, cut into consecutive windows of ``block_size + 1`` tokens, the loss on
answer tokens only (``--answer-only 0`` trains on every token), batches read in order so the
corpus curriculum is kept (unless ``--shuffle``). The learning rate warms up over steps and then
follows a cosine over the *time* budget, so ``--minutes`` alone sets the run length (``--steps``
sets it in optimizer steps instead, fairer when other processes share the CPU). Every
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

from lightningllm.data.reasoning import WORKING_STYLES, Problem, ReasoningCorpus, exact_match_by_steps
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig, generate, lr_at, param_groups


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=6.0, help="training wall-clock budget (eval excluded)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps instead of --minutes")
    p.add_argument("--quick", action="store_true", help="smoke run: 0.3 minutes, small model and eval")
    p.add_argument("--working", choices=WORKING_STYLES, default="digits")
    p.add_argument("--tokenizer", choices=("bpe", "char"), default="bpe")
    p.add_argument("--vocab-size", type=int, default=512, help="BPE vocabulary size")
    p.add_argument("--answer-only", type=int, default=1, help="1: loss on answer tokens only (as the demo)")
    p.add_argument("--max-steps", type=int, default=3, choices=(1, 2, 3), help="most steps per problem")
    p.add_argument("--curriculum", choices=("staged", "none"), default="staged")
    p.add_argument("--num-train", type=int, default=60_000, help="training problems (the stream cycles)")
    p.add_argument("--shuffle", action="store_true", help="shuffle windows instead of reading them in order")
    p.add_argument("--seed", type=int, default=1234)
    # model
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--pos-emb", choices=("learned", "sinusoidal", "rope"), default="rope")
    p.add_argument("--mlp", choices=("gelu", "swiglu"), default="gelu")
    p.add_argument("--norm", choices=("layernorm", "rmsnorm"), default="layernorm")
    # optimization
    p.add_argument("--batch-size", type=int, default=16, help="windows per optimizer step")
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


def build_tokenizer(train: list[Problem], test: list[Problem], kind: str, vocab_size: int) -> Tokenizer:
    """The product's tokenizer: BPE trained on training texts (digits one per token), or characters."""
    if kind == "bpe":
        return Tokenizer.train([p.text for p in train], vocab_size=vocab_size, kind="bpe")
    return Tokenizer.train([p.text for p in train + test], kind="char")


def windows(problems: list[Problem], tok: Tokenizer, block_size: int, answer_only: bool) -> torch.Tensor:
    """(N, 2, block_size) inputs and targets cut from the EOS-joined stream, as the data module does.

    With ``answer_only`` the question's targets are ``IGNORE_INDEX``: read, never predicted.
    """
    ids: list[int] = []
    trained: list[bool] = []
    for p in problems:
        prompt, answer = tok.encode(p.prompt), tok.encode(p.completion) + [tok.eos_id]
        ids += prompt + answer
        trained += [not answer_only] * len(prompt) + [True] * len(answer)
    n = len(ids) // (block_size + 1)
    ids_t = torch.tensor(ids[: n * (block_size + 1)]).view(n, block_size + 1)
    keep = torch.tensor(trained[: n * (block_size + 1)]).view(n, block_size + 1)
    targets = torch.where(keep[:, 1:], ids_t[:, 1:], IGNORE_INDEX)
    return torch.stack([ids_t[:, :-1], targets], dim=1)


def evaluate(model: GPT, vocab: Tokenizer, problems: list[Problem], batch: int = 100) -> dict:
    """Greedy-decode every prompt and score the parsed answers per step count."""
    completions = []
    for i in range(0, len(problems), batch):
        chunk = problems[i : i + batch]
        prompts = [vocab.encode(p.prompt) for p in chunk]
        room = model.config.block_size - max(len(x) for x in prompts)
        budget = min(room, max(len(p.completion) for p in chunk) + 8)  # a little slack to go wrong in
        new = generate(model, prompts, max_new_tokens=budget, temperature=0, eos_id=vocab.eos_id)
        completions.extend(vocab.decode(ids) for ids in new)
    model.train()
    return exact_match_by_steps(problems, completions) | {"samples": completions[:2]}


def balanced(problems: list[Problem], n: int, max_steps: int) -> list[Problem]:
    """The first n // max_steps test problems of each step count."""
    per = max(1, n // max_steps)
    return [p for k in range(1, max_steps + 1) for p in [q for q in problems if q.num_steps == k][:per]]


def fmt(result: dict, max_steps: int) -> str:
    parts = [f"{k}-step {100 * result[str(k)]:5.1f}%" for k in range(1, max_steps + 1)]
    return "  ".join(parts) + f"  all {100 * result['all']:5.1f}% (n={result['n_all']})"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mix = tuple(1.0 if k <= args.max_steps else 0.0 for k in (1, 2, 3))
    corpus = ReasoningCorpus(
        seed=args.seed,
        working=args.working,
        num_train=args.num_train,
        num_test=max(3 * args.final_n, 300),
        step_mix=mix,
        curriculum=args.curriculum,
    )
    train, test = corpus.problems("train"), corpus.problems("test")
    vocab = build_tokenizer(train, test, args.tokenizer, args.vocab_size)
    data = windows(train, vocab, args.block_size, args.answer_only)
    eval_set = balanced(test[::-1], args.eval_n, args.max_steps)  # disjoint from the final set's head
    final_set = balanced(test, args.final_n, args.max_steps)

    config = GPTConfig(
        vocab_size=64 * math.ceil(vocab.vocab_size / 64),
        block_size=max(args.block_size, 384),  # room to decode a whole 3-step answer
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
        f"vocab={vocab.vocab_size} params={model.num_params():,} windows={len(data)} "
        f"({data.numel() / 1e6:.2f}M tokens, {len(train)} problems)"
    )
    print(f"example: {train[0].text!r}")

    order = torch.randperm(len(data)) if args.shuffle else torch.arange(len(data))
    budget_s, trained_s, step, cursor, tokens = 60 * args.minutes, 0.0, 0, 0, 0
    next_eval = 60 * args.eval_every

    def progress() -> float:  # fraction of the run done, by steps on a shared machine, else by time
        return step / args.steps if args.steps else trained_s / budget_s

    def eval_due() -> bool:
        if args.steps:
            return step % args.eval_every_steps == 0 or step == args.steps
        return trained_s >= next_eval or trained_s >= budget_s

    while progress() < 1.0:
        t0 = time.perf_counter()
        if cursor + args.batch_size > len(order):  # the stream ran out: start the next epoch
            order, cursor = (torch.randperm(len(data)) if args.shuffle else order), 0
        batch = data[order[cursor : cursor + args.batch_size]]
        cursor += args.batch_size
        warm = min(1.0, (step + 1) / args.warmup)
        # cosine over the time budget (in per-mille so lr_at's integer steps are fine-grained enough)
        lr = warm * lr_at(int(1000 * progress()), args.lr, 0, 1000, args.lr * args.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model(batch[:, 0], batch[:, 1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step, tokens = step + 1, tokens + batch[:, 0].numel()
        trained_s += time.perf_counter() - t0
        if eval_due():
            next_eval += 60 * args.eval_every
            result = evaluate(model, vocab, eval_set)
            print(
                f"[{trained_s / 60:5.2f} min] step {step:5d} loss {loss.item():.3f} lr {lr:.2e} "
                f"{tokens / trained_s:,.0f} tok/s epoch {tokens / data[:, 0].numel():.2f} | "
                f"{fmt(result, args.max_steps)}",
                flush=True,
            )
    t0 = time.perf_counter()
    result = evaluate(model, vocab, final_set)
    print(f"final ({time.perf_counter() - t0:.0f}s to decode): {fmt(result, args.max_steps)}")
    for sample in result["samples"]:
        print(f"  sample: {sample!r}")
    if math.isnan(loss.item()):
        raise SystemExit("training diverged (loss is NaN)")


if __name__ == "__main__":
    main()
