"""Resume equals uninterrupted: stop at step K, `fit(ckpt_path=last)`, and land on identical weights."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightningllm.model import GPTConfig
from lightningllm.tasks.reasoning import ReasoningDataModule
from lightningllm.training import LitGPT
from tests.conftest import StopAt


def fit(
    tmp_path,
    checkpoints: str,
    stop: int | None = None,
    ckpt_path: str | None = None,
    optimizer="adamw",
    callbacks: list | None = None,
    **data_args,
) -> LitGPT:
    L.seed_everything(0)
    # Every token trained: a 48-token sample holds only a question's start (each problem is one sample, cut to
    # block_size + 1 tokens), which answer-only loss would leave without a target.
    args = dict(num_train=1000, num_val=30, num_test=30, block_size=48, batch_size=4, tokenizer_kind="bpe")
    args["answer_loss_only"] = False
    data = ReasoningDataModule(**(args | {"vocab_size": 320, "cache_dir": str(tmp_path / "cache")} | data_args))
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=None, block_size=48), warmup_steps=3, optimizer=optimizer)
    callbacks = [ModelCheckpoint(dirpath=tmp_path / checkpoints, save_last=True), *(callbacks or [])]
    callbacks += [StopAt(stop)] if stop else []
    trainer = L.Trainer(
        max_steps=20, callbacks=callbacks, logger=False, enable_progress_bar=False, limit_val_batches=0,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module


@pytest.mark.parametrize(
    "num_workers, shuffle, optimizer", [(0, False, "adamw"), (1, True, "adamw"), (0, True, "muon")]
)
def test_resume_mid_epoch_equals_uninterrupted_training(tmp_path, num_workers, shuffle, optimizer):
    data = {"num_workers": num_workers, "shuffle": shuffle, "optimizer": optimizer}
    straight = fit(tmp_path, "straight", **data)
    fit(tmp_path, "resumed", stop=8, **data)
    resumed = fit(tmp_path, "resumed", ckpt_path=str(tmp_path / "resumed" / "last.ckpt"), **data)
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


class RecordInputs(L.Callback):
    """Keeps every training batch's inputs, row by row (one row per sample)."""

    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.rows += list(batch[0])


def test_resume_with_another_batch_size_or_loader_workers_continues_at_the_next_sample(tmp_path):
    straight, resumed = RecordInputs(), RecordInputs()
    fit(tmp_path, "straight", callbacks=[straight])  # 20 steps of 4 samples
    fit(tmp_path, "run", stop=8)  # 8 steps of 4, then 12 steps of 2 from the checkpoint
    fit(tmp_path, "run", ckpt_path=str(tmp_path / "run/last.ckpt"), batch_size=2, num_workers=1, callbacks=[resumed])
    assert len(resumed.rows) == 24
    for a, b in zip(straight.rows[32:56], resumed.rows, strict=True):  # samples 32 to 55 of the run's order
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"block_size": 40}, r"data.block_size 48 -> 40"),
        ({"seed": 7, "shuffle": True}, r"data.shuffle False -> True, data.seed 42 -> 7"),
        ({"vocab_size": 300}, r"the checkpoint's tokenizer \(320 tokens\) is not the data's \(300 tokens\)"),
    ],
)
def test_resuming_with_changed_data_settings_is_a_clear_error(tmp_path, change, message):
    fit(tmp_path, "run", stop=4)
    with pytest.raises(ValueError, match=message):  # a DataError, or LitGPT refusing the tokenizer
        fit(tmp_path, "run", ckpt_path=str(tmp_path / "run" / "last.ckpt"), **change)
