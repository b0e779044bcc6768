"""Data: tokenizer training, source reading and cleaning, litdata shards, the data modules."""

from lightningllm.data.datamodule import PromptDataModule, ReasoningDataModule, TextDataModule
from lightningllm.data.sources import DataError
from lightningllm.data.tokenizer import Tokenizer

__all__ = ["DataError", "PromptDataModule", "ReasoningDataModule", "TextDataModule", "Tokenizer"]
