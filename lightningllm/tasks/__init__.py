"""Tasks: held-out prompts with a checker, plugged in through one declared interface.

A task is a ``Task`` (``lightningllm.tasks.base``): examples per split and a ``score`` of a
completion. Its data module (a ``TokenDataModule``) trains on the task's corpus and returns
the task from its ``task`` property; the generic ``TaskEval`` callback greedy-decodes the
held-out examples and logs the mean score per group. Generic code (``training/``, ``data/``,
the CLI) never names a particular task. The built-in one, ``lightningllm.tasks.reasoning``,
is written against this interface exactly as a user's own task would be.
"""

from lightningllm.tasks.base import Example, Task, evaluate

__all__ = ["Example", "Task", "evaluate"]
