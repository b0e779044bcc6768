"""lightningllm: build and train small GPT-style language models from scratch with Lightning.

``lightningllm.model`` is pure PyTorch (``GPT``, ``GPTConfig``); Lightning pieces live in
``lightningllm.training`` (``LitGPT`` and its callbacks) and ``lightningllm.data`` (the data
modules); ``lightningllm.tasks`` holds the task interface and the built-in reasoning task.
Names are imported lazily so ``import lightningllm.model`` never pulls in Lightning.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "GPT": "lightningllm.model",
    "GPTConfig": "lightningllm.model",
    "generate": "lightningllm.model",
    "Tokenizer": "lightningllm.data",
    "TextDataModule": "lightningllm.data",
    "ReasoningDataModule": "lightningllm.tasks.reasoning",
    "PromptDataModule": "lightningllm.data",
    "LitGPT": "lightningllm.training",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightningllm' has no attribute {name!r}")
