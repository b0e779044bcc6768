"""Training: the LightningModule around GPT and the generic callbacks (evaluation, checkpoints, samples, prediction)."""

from lightningllm.training.checkpoint_io import AtomicCheckpointIO
from lightningllm.training.evaluation import TaskEval
from lightningllm.training.last_checkpoint import LastCheckpoint
from lightningllm.training.module import LitGPT
from lightningllm.training.monitoring import SampleGenerations
from lightningllm.training.prediction import PredictionWriter

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "LitGPT", "PredictionWriter", "SampleGenerations", "TaskEval"]
