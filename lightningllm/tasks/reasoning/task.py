"""ReasoningTask: the built-in corpus's held-out problems as a ``Task``, scored by exact match of the answer.

Each problem becomes an ``Example``: its prompt (``Q: ... A:``), its worked completion, the answer
as a string, and its step count as the group (``1-step`` ... ``5-step``, and up to ``8-step`` in the
``long`` split), so scores are reported per number of steps. Besides ``train``, ``val`` and ``test``
it offers the corpus's evaluation-only splits: ``heldout`` (worded with names, objects, verbs and
sentence structures never trained on) and ``long`` (6 to 8 steps). A completion is right when the
integer of its last ``Answer: N`` equals the problem's answer (``parse_answer``); anything else, a
missing or malformed answer included, is wrong.
"""

from __future__ import annotations

from lightningllm.tasks.base import Example
from lightningllm.tasks.reasoning.corpus import ReasoningCorpus, parse_answer


class ReasoningTask:
    """Exact match on the problems of a ``ReasoningCorpus`` (implements ``lightningllm.tasks.Task``)."""

    name = "reasoning"
    metric = "exact_match"

    def __init__(self, corpus: ReasoningCorpus):
        """
        Args:
            corpus: the corpus whose problems are the examples (the one the model trains on).
        """
        self.corpus = corpus

    def examples(self, split: str) -> list[Example]:
        """The problems of ``split`` (``train``, ``val``, ``test``, ``heldout`` or ``long``), in the corpus's order."""
        return [
            Example(prompt=p.prompt, completion=p.completion, answer=str(p.answer), group=f"{p.num_steps}-step")
            for p in self.corpus.problems(split)
        ]

    def score(self, example: Example, completion: str) -> float:
        """1.0 when the last ``Answer: N`` of ``completion`` is the example's answer, else 0.0."""
        parsed = parse_answer(completion)
        return float(parsed is not None and str(parsed) == example.answer)
