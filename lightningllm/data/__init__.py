"""Data: tokenizer training, source reading and cleaning, litdata shards, the data modules.

Names are imported lazily: ``from lightningllm.data.tokenizer import Tokenizer`` (or the
tokenizer alone in another project) never pulls in Lightning; the data modules do.
"""

from importlib import import_module

_EXPORTS = {
    "DataError": "lightningllm.data.sources",
    "Tokenizer": "lightningllm.data.tokenizer",
    "TextDataModule": "lightningllm.data.datamodule",
    "ReasoningDataModule": "lightningllm.data.datamodule",
    "PromptDataModule": "lightningllm.data.datamodule",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightningllm.data' has no attribute {name!r}")
