"""Data: tokenizer training, source reading and cleaning, corpus preparation into shards, the data modules.

Names are imported lazily: ``from lightningllm.data.tokenizer import Tokenizer`` (or the
tokenizer alone in another project) never pulls in Lightning; the data modules do. A corpus of
one's own plugs in by implementing ``Corpus`` and subclassing ``CorpusDataModule`` with a
``corpus()`` method that returns it.
"""

from importlib import import_module

_EXPORTS = {
    "DataError": "lightningllm.data.sources",
    "Tokenizer": "lightningllm.data.tokenizer",
    "TokenDataModule": "lightningllm.data.contract",
    "Corpus": "lightningllm.data.prepare",
    "TokenizerSpec": "lightningllm.data.prepare",
    "prepare_corpus": "lightningllm.data.prepare",
    "CorpusDataModule": "lightningllm.data.datamodule",
    "TextDataModule": "lightningllm.data.text",
    "PromptDataModule": "lightningllm.data.prompts",
    "TaskPromptDataModule": "lightningllm.data.task_prompts",
    "PreferenceDataModule": "lightningllm.data.preference",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightningllm.data' has no attribute {name!r}")
