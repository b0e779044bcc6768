"""The built-in reasoning task: a generated corpus of arithmetic word problems, its data module and its checker.

A plug-in written against the same interfaces a user's own task would use: ``ReasoningCorpus``
(``corpus.py``, worded by ``wording.py`` from the words of ``lexicon.py``, read back by
``parse.py``) is a ``lightningllm.data.prepare.Corpus``, ``ReasoningDataModule`` (``data.py``)
a ``CorpusDataModule`` whose ``task`` is a ``ReasoningTask`` (``task.py``), a
``lightningllm.tasks.Task``, and ``ReasoningReward`` (``rewards.py``) its reward for RL (a
``lightningllm.training.rewards.Reward``). Names are imported lazily: the corpus and the task load without
Lightning; the data module pulls it in.
"""

from importlib import import_module

_EXPORTS = {
    "ReasoningCorpus": "lightningllm.tasks.reasoning.corpus",
    "Problem": "lightningllm.tasks.reasoning.corpus",
    "parse_answer": "lightningllm.tasks.reasoning.corpus",
    "parse_question": "lightningllm.tasks.reasoning.parse",
    "parse_working": "lightningllm.tasks.reasoning.parse",
    "ReasoningTask": "lightningllm.tasks.reasoning.task",
    "ReasoningDataModule": "lightningllm.tasks.reasoning.data",
    "ReasoningReward": "lightningllm.tasks.reasoning.rewards",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightningllm.tasks.reasoning' has no attribute {name!r}")
