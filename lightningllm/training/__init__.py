"""Training: the LightningModule around GPT and its callbacks."""

from lightningllm.training.callbacks import PredictionWriter, SampleGenerations
from lightningllm.training.module import LitGPT
from lightningllm.training.reasoning_eval import ReasoningEval, evaluate_reasoning

__all__ = ["LitGPT", "PredictionWriter", "ReasoningEval", "SampleGenerations", "evaluate_reasoning"]
