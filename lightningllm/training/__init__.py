"""Training: the LightningModule around GPT and the generic callbacks (evaluation, monitoring, prediction)."""

from lightningllm.training.evaluation import TaskEval
from lightningllm.training.module import LitGPT
from lightningllm.training.monitoring import SampleGenerations
from lightningllm.training.prediction import PredictionWriter

__all__ = ["LitGPT", "PredictionWriter", "SampleGenerations", "TaskEval"]
