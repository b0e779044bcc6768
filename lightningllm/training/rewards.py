"""Rewards for reinforcement learning on tasks with checkable answers: the ``Reward`` protocol and ``TaskReward``.

A reward is any callable ``reward(example, completion) -> float``: ``example`` is the task's
``Example`` (prompt, reference completion, answer, group) and ``completion`` the decoded text a
model wrote after the prompt. ``GRPO`` compares the rewards of a prompt's completions with each
other, so only their differences matter; they must be finite. The default, ``TaskReward``, is the
task's own checker (``Task.score``: 1.0 right, 0.0 wrong). A task's plug-in may offer a richer one
(a small bonus for a well-formed answer, say), and a user's own plugs in by its import path, from
a config or the command line: a class, ``--model.reward.class_path my_pkg.MyReward`` (its
``__init__`` arguments as ``--model.reward.init_args.*``), or a function, ``--model.reward
my_pkg.my_reward``; anything with that call signature will do, no subclassing needed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from lightningllm.tasks.base import Example, Task


@runtime_checkable
class Reward(Protocol):
    """Scores one completion of one example: higher is better; only differences between completions matter."""

    def __call__(self, example: Example, completion: str) -> float:
        """The reward of ``completion`` (the text after ``example.prompt``): a finite number."""
        ...


class TaskReward:
    """The task's own checker as the reward: ``task.score(example, completion)`` (1.0 right, 0.0 wrong)."""

    def __init__(self, task: Task):
        """
        Args:
            task: the task whose ``score`` rewards completions.
        """
        self.task = task

    def __call__(self, example: Example, completion: str) -> float:
        return float(self.task.score(example, completion))


def reward_name(reward: Reward | None) -> str | None:
    """``my_pkg.MyReward`` (a reward's class) or ``my_pkg.my_reward`` (a function): how logs and messages name it."""
    if reward is None:
        return None
    named = reward if inspect.isfunction(reward) else type(reward)
    return f"{named.__module__}.{named.__qualname__}"


def score_completions(reward: Reward, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
    """The reward of each completion of its example; a one-line ``ValueError`` when one is not a finite number."""
    if len(examples) != len(completions):
        raise ValueError(f"got {len(examples)} examples but {len(completions)} completions")
    scores = []
    for example, completion in zip(examples, completions, strict=True):
        value = reward(example, completion)
        try:
            number = float(value)  # a bool, an int, a numpy or 0-d torch number too
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(
                f"reward {reward_name(reward)} returned {value!r} for a completion of {example.prompt[:40]!r}: "
                "a reward must be a finite number"
            )
        scores.append(number)
    return scores
