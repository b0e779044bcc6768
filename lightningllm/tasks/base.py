"""The task interface: examples with a checker, and ``evaluate``, which scores a model on them.

A ``Task`` gives examples per split (``train``, ``val``, ``test``, and any more it offers): a prompt, the reference
completion, the short answer a reader checks against, and a group (scores are also reported
per group, e.g. per number of reasoning steps). ``score(example, completion)`` returns 1.0 for
a right completion and 0.0 for a wrong one; values in between are allowed (a partial reward).
``evaluate`` works on a plain ``GPT`` and ``Tokenizer``: no Lightning, usable from benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from lightningllm.data.tokenizer import Tokenizer
    from lightningllm.model import GPT


@dataclass(frozen=True)
class Example:
    """One held-out example of a task."""

    prompt: str
    """The text the model continues."""
    completion: str
    """A reference completion (it sets the generation budget: its length in tokens, plus a margin)."""
    answer: str
    """The short answer a reader checks the completion against (printed beside samples)."""
    group: str = "all"
    """Scores are reported per group too (e.g. ``2-step``)."""


@runtime_checkable
class Task(Protocol):
    """A task with checkable answers: what ``TaskEval`` scores and what post-training rewards."""

    name: str
    """Short name, for messages."""
    metric: str
    """Name of the mean score in logs, e.g. ``exact_match`` (logged as ``val/exact_match``)."""

    def examples(self, split: str) -> Sequence[Example]:
        """The examples of ``split``: ``train``, ``val``, ``test``, or another held-out split the task offers
        (``TaskEval(test_splits=...)`` scores them; an unknown split is a ``ValueError``)."""
        ...

    def score(self, example: Example, completion: str) -> float:
        """How right ``completion`` is for ``example``: 1.0 right, 0.0 wrong."""
        ...


def group_tag(group: str) -> str:
    """A group name as a metric tag suffix: ``2-step`` → ``2step``."""
    return "".join(ch for ch in group if ch.isalnum() or ch == "_")


def evaluate(
    model: GPT,
    tokenizer: Tokenizer,
    task: Task,
    examples: Sequence[Example],
    batch_size: int = 64,
    margin: int = 8,
) -> tuple[dict[str, float], list[str]]:
    """Greedy completions of ``examples`` and their mean scores: ``{"all": s, "<group>": s, ...}``.

    Each completion may run to the longest reference completion plus ``margin`` tokens, and
    stops at EOS. Raises ``ValueError`` when a prompt and that budget do not fit the context.
    """
    completions = complete(model, tokenizer, task, examples, batch_size, margin)
    return mean_scores(task, examples, completions), completions


@torch.no_grad()
def complete(
    model: GPT,
    tokenizer: Tokenizer,
    task: Task,
    examples: Sequence[Example],
    batch_size: int = 64,
    margin: int = 8,
) -> list[str]:
    """The greedy completions ``evaluate`` scores, unscored (for scoring over several processes)."""
    if not examples:
        raise ValueError(f"task {task.name} has no examples to evaluate")
    prompts, budget = _prompts_and_budget(tokenizer, examples, margin)
    check_context(task, prompts, budget, model.config.block_size)
    from lightningllm.model import generate

    order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))  # similar lengths pad little
    completions = [""] * len(examples)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        outs = generate(model, [prompts[i] for i in rows], budget, temperature=0, eos_id=tokenizer.eos_id)
        for i, ids in zip(rows, outs, strict=True):
            completions[i] = tokenizer.decode(ids)
    return completions


def _prompts_and_budget(tokenizer: Tokenizer, examples: Sequence[Example], margin: int) -> tuple[list, int]:
    """The prompts' token ids, and the most tokens a completion may run to: the longest reference + ``margin``."""
    prompts = [tokenizer.encode(e.prompt) for e in examples]
    return prompts, max(len(tokenizer.encode(e.completion)) for e in examples) + margin


def check_context(
    task: Task, prompts: Sequence[Sequence[int]], budget: int, block_size: int, split: str | None = None
) -> None:
    """A ``ValueError`` when the longest prompt plus ``budget`` answer tokens does not fit ``block_size``."""
    need = max(len(p) for p in prompts) + budget
    if need > block_size:
        where = f" split {split!r}" if split else ""
        raise ValueError(
            f"task {task.name}{where} needs {need} tokens of context (prompt + answer) but the model's "
            f"block_size is {block_size}: raise model.config.block_size to at least {need}"
        )


def check_task_fits(
    model: GPT, tokenizer: Tokenizer, task: Task, splits: dict[str, Sequence[Example]], margin: int = 8
) -> None:
    """Before training: a ``ValueError`` naming the first split whose examples ``complete`` could not decode."""
    for split, examples in splits.items():
        if examples:
            check_context(task, *_prompts_and_budget(tokenizer, examples, margin), model.config.block_size, split)


def score_totals(task: Task, examples: Sequence[Example], completions: Sequence[str]) -> dict[str, list[float]]:
    """``{group: [sum of scores, count]}``, groups in sorted order: what adds up over several processes."""
    if len(examples) != len(completions):
        raise ValueError(f"got {len(examples)} examples but {len(completions)} completions")
    totals: dict[str, list[float]] = {}
    for example, completion in zip(examples, completions, strict=True):
        total = totals.setdefault(example.group, [0.0, 0])
        total[0] += float(task.score(example, completion))
        total[1] += 1
    return dict(sorted(totals.items()))


def means(totals: dict[str, list[float]]) -> dict[str, float]:
    """Mean score per group and overall (``all``: every example counts once) from ``score_totals``."""
    scores = {group: total / count for group, (total, count) in totals.items() if count}
    scores["all"] = sum(total for total, _ in totals.values()) / sum(count for _, count in totals.values())
    return scores


def mean_scores(task: Task, examples: Sequence[Example], completions: Sequence[str]) -> dict[str, float]:
    """Mean score overall (``all``) and per group, groups in sorted order."""
    return means(score_totals(task, examples, completions))


def format_scores(task: Task, scores: dict[str, float]) -> str:
    """``exact match 92.0% (1-step 100.0%, 2-step 90.0%)``."""
    groups = [f"{group} {value:.1%}" for group, value in scores.items() if group != "all"]
    detail = f" ({', '.join(groups)})" if groups else ""
    return f"{task.metric.replace('_', ' ')} {scores['all']:.1%}{detail}"
