"""Training: the LightningModule around GPT and the generic callbacks (evaluation, checkpoints, samples, prediction)."""

from lightningllm.training.checkpoint_io import AtomicCheckpointIO
from lightningllm.training.dpo import DPO
from lightningllm.training.evaluation import TaskEval
from lightningllm.training.grpo import GRPO
from lightningllm.training.last_checkpoint import LastCheckpoint
from lightningllm.training.module import LitGPT
from lightningllm.training.monitoring import SampleGenerations
from lightningllm.training.prediction import PredictionWriter
from lightningllm.training.rewards import Reward, TaskReward

__all__ = [
    "AtomicCheckpointIO",
    "DPO",
    "GRPO",
    "LastCheckpoint",
    "LitGPT",
    "PredictionWriter",
    "Reward",
    "SampleGenerations",
    "TaskEval",
    "TaskReward",
]
