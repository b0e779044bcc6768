"""Training: the LightningModule around GPT and its callbacks."""

from lightningllm.training.callbacks import PredictionWriter
from lightningllm.training.module import LitGPT
from lightningllm.training.reasoning_eval import ReasoningEval, evaluate_reasoning

__all__ = ["LitGPT", "PredictionWriter", "ReasoningEval", "evaluate_reasoning"]
