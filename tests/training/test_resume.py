"""Resume equals uninterrupted: stop at step K, `fit(ckpt_path=last)`, and land on identical weights."""

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightningllm.data import ReasoningDataModule
from lightningllm.model import GPTConfig
from lightningllm.training import LitGPT


class StopAt(L.Callback):
    """Ends training after ``step`` optimizer steps, as an interruption would (the schedule still targets 20)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def fit(tmp_path, checkpoints: str, stop: int | None = None, ckpt_path: str | None = None) -> LitGPT:
    L.seed_everything(0)
    data = ReasoningDataModule(
        num_train=1000, num_val=30, num_test=30, block_size=48, batch_size=4, tokenizer_kind="bpe", vocab_size=320,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    module = LitGPT(GPTConfig.from_name("debug", block_size=48), warmup_steps=3)
    callbacks = [ModelCheckpoint(dirpath=tmp_path / checkpoints, save_last=True)]
    callbacks += [StopAt(stop)] if stop else []
    trainer = L.Trainer(
        max_steps=20, callbacks=callbacks, logger=False, enable_progress_bar=False, limit_val_batches=0,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module


def test_resume_mid_epoch_equals_uninterrupted_training(tmp_path):
    straight = fit(tmp_path, "straight")
    fit(tmp_path, "resumed", stop=8)
    resumed = fit(tmp_path, "resumed", ckpt_path=str(tmp_path / "resumed" / "last.ckpt"))
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
