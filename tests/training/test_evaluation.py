"""TaskEval refuses to run where it would score nothing."""

import lightning as L
import pytest
import torch

from lightningllm.data import Tokenizer
from lightningllm.data.contract import TokenDataModule
from lightningllm.model import GPTConfig
from lightningllm.training import LitGPT, TaskEval


class PlainText(TokenDataModule):
    """Token data with no task."""

    block_size = 8

    def setup(self, stage: str) -> None:
        self.tokenizer = Tokenizer.train(["abc"], kind="char")

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randint(0, 8, (8, 9)), batch_size=4)


def test_task_eval_on_data_without_a_task_is_refused_in_one_line():
    trainer = L.Trainer(max_steps=1, callbacks=[TaskEval()], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"^TaskEval needs a data module with a task .* PlainText has none"):
        trainer.fit(LitGPT(GPTConfig.from_name("debug", vocab_size=None)), datamodule=PlainText())
