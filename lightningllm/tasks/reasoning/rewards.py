"""ReasoningReward: the reasoning task's reward for reinforcement learning, exact match plus a small format bonus.

A completion earns 1.0 when its last ``Answer: N`` is the problem's answer (the task's own exact
match, ``ReasoningTask.score``), plus ``format_weight`` when it ends with a well-formed
``Answer: N`` line (an integer and nothing after it but whitespace), right or wrong. The bonus
rewards finishing in the format the checker reads, which helps a model that rambles on or
leaves its answer malformed; it stays small so that a right answer always outweighs it. A
plug-in of the reasoning task, written against the generic ``lightningllm.training.rewards.Reward``
protocol: ``--model.reward.class_path lightningllm.tasks.reasoning.ReasoningReward``.
"""

from __future__ import annotations

import math
import re

from lightningllm.tasks.base import Example
from lightningllm.tasks.reasoning.corpus import parse_answer

_FINAL_ANSWER = re.compile(r"Answer:[ \t]*-?\d+\s*")
"""What follows the last ``Answer:`` of a well-formed completion: the integer, then only whitespace."""


def well_formed(completion: str) -> bool:
    """Whether ``completion`` ends with a well-formed ``Answer: N`` line."""
    last = completion.rfind("Answer:")
    return last >= 0 and _FINAL_ANSWER.fullmatch(completion, last) is not None


class ReasoningReward:
    """1.0 for the right answer, plus ``format_weight`` for a completion ending in a well-formed ``Answer: N``."""

    def __init__(self, format_weight: float = 0.1):
        """
        Args:
            format_weight: bonus for a completion that ends with a well-formed ``Answer: N`` line (right or wrong);
                0 rewards the right answer alone.
        """
        valid = isinstance(format_weight, int | float) and not isinstance(format_weight, bool)
        if not valid or not math.isfinite(format_weight) or format_weight < 0:
            raise ValueError(f"ReasoningReward.format_weight must be a number >= 0 (got {format_weight!r})")
        self.format_weight = float(format_weight)

    def __call__(self, example: Example, completion: str) -> float:
        answer = parse_answer(completion)
        right = float(answer is not None and str(answer) == example.answer)
        return right + self.format_weight * well_formed(completion)
