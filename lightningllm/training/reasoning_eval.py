"""Exact-match evaluation on the reasoning corpus: greedy-decode ``Q: ...\\nA:`` and check ``Answer: N``.

``evaluate_reasoning`` works on a plain ``GPT`` and ``Tokenizer``; the ``ReasoningEval`` callback
runs it during training (logged as ``val/exact_match*``) and at ``lightningllm test``, where it
prints sample answers and the accuracy per number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from lightningllm.data.reasoning import Problem, exact_match_by_steps, parse_answer
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, generate


@torch.no_grad()
def evaluate_reasoning(
    model: GPT, tokenizer: Tokenizer, problems: Sequence[Problem], batch_size: int = 64
) -> tuple[dict, list[str]]:
    """Greedy completions of each problem's prompt and the exact-match scores by step count.

    Raises ``ValueError`` when a problem's prompt plus worked answer cannot fit the model's context.
    """
    prompts = [tokenizer.encode(p.prompt) for p in problems]
    budget = max(len(tokenizer.encode(p.completion)) for p in problems) + 8
    longest = max(len(p) for p in prompts)
    if longest + budget > model.config.block_size:
        raise ValueError(
            f"reasoning problems need {longest + budget} tokens of context (prompt + answer) but the model's "
            f"block_size is {model.config.block_size}"
        )
    # Batches of similar prompt length waste little on padding.
    order = sorted(range(len(problems)), key=lambda i: len(prompts[i]))
    completions: list[str] = [""] * len(problems)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        outs = generate(model, [prompts[i] for i in rows], budget, temperature=0, eos_id=tokenizer.eos_id)
        for i, ids in zip(rows, outs, strict=True):
            completions[i] = tokenizer.decode(ids)
    return exact_match_by_steps(problems, completions), completions


def format_scores(scores: dict) -> str:
    parts = [f"{k}-step {scores[k]:.1%}" for k in ("1", "2", "3") if k in scores]
    return f"exact match {scores['all']:.1%} ({', '.join(parts)})"


class ReasoningEval(L.Callback):
    """Scores greedy answers on held-out reasoning problems during validation and test."""

    def __init__(self, every_n_val: int = 1, num_val_problems: int = 150, num_samples: int = 6, batch_size: int = 64):
        """
        Args:
            every_n_val: evaluate exact match on every n-th validation run during fit.
            num_val_problems: problems scored during fit (the test run scores the whole test split).
            num_samples: sample answers printed at test time.
            batch_size: prompts decoded together.
        """
        self.every_n_val = every_n_val
        self.num_val_problems = num_val_problems
        self.num_samples = num_samples
        self.batch_size = batch_size
        self._val_runs = 0

    def _run(self, trainer: L.Trainer, module: L.LightningModule, split: str, limit: int | None):
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "problems") or module.tokenizer is None:
            return None
        problems = datamodule.problems(split)[:limit]
        gpt = module.gpt
        scores, completions = evaluate_reasoning(gpt, module.tokenizer, problems, self.batch_size)
        for key in ("1", "2", "3", "all"):
            if key in scores:
                value = scores[key]
                name = "exact_match" if key == "all" else f"exact_match_{key}step"
                module.log(f"{split if split == 'test' else 'val'}/{name}", float(value))
        return problems, completions, scores

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._val_runs += 1
        if self._val_runs % self.every_n_val == 0:
            result = self._run(trainer, module, "val", self.num_val_problems)
            if result is not None and trainer.is_global_zero:
                print(f"\nstep {trainer.global_step}: val {format_scores(result[2])}")

    def on_test_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        result = self._run(trainer, module, "test", None)
        if result is None or not trainer.is_global_zero:
            return
        problems, completions, scores = result
        print()
        stride = max(1, len(problems) // max(1, self.num_samples))  # samples from every step count
        for problem, completion in list(zip(problems, completions, strict=True))[::stride][: self.num_samples]:
            verdict = "right" if parse_answer(completion) == problem.answer else "WRONG"
            print(f"{problem.prompt}{completion}\n  [{verdict}: expected {problem.answer}]\n")
        print(f"held-out test split ({len(problems)} problems): {format_scores(scores)}")
