"""A non-finite loss, gradient or weight stops the run in one line and never reaches a checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightningllm.model import GPTConfig
from lightningllm.tasks.reasoning import ReasoningDataModule
from lightningllm.training import LitGPT
from lightningllm.training.module import TrainingDiverged
from tests.conftest import CONFIGS, run_cli


class PoisonGradients(L.Callback):
    """Sets one gradient to NaN before the optimizer step at the given steps (callbacks run before LitGPT's hook)."""

    def __init__(self, steps: set[int]):
        self.steps = steps
        self.before: dict[int, torch.Tensor] = {}
        self.after: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.before[trainer.global_step + 1] = module.model.wte.weight.detach().clone()

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if trainer.global_step + 1 in self.steps:
            module.model.wte.weight.grad[0, 0] = float("nan")

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.after[trainer.global_step] = module.model.wte.weight.detach().clone()


class PoisonWeights(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, module, *args) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                module.model.wte.weight[0, 0] = float("inf")


def fit(tmp_path, callbacks, max_steps=8, **module_args) -> LitGPT:
    L.seed_everything(0)
    data = ReasoningDataModule(
        num_train=300, num_val=30, num_test=30, block_size=48, batch_size=4, vocab_size=320,
        answer_loss_only=False,  # a 48-token sample holds only a question's start: train on it, so steps do train
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=None, block_size=48), warmup_steps=2, **module_args)
    trainer = L.Trainer(
        max_steps=max_steps, callbacks=callbacks, logger=False, enable_progress_bar=False, limit_val_batches=0,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data)
    return module


def test_skipped_steps_drop_their_update_and_the_run_goes_on(tmp_path):
    poison = PoisonGradients({3, 6})
    module = fit(tmp_path, [poison], skip_nonfinite_steps=2)
    assert module.skipped_steps == 2
    for step in (3, 6):
        torch.testing.assert_close(poison.after[step], poison.before[step], rtol=0, atol=0)  # no update at all
    torch.testing.assert_close(poison.after[4].isfinite().all(), torch.tensor(True))
    assert not torch.equal(poison.after[4], poison.before[4])  # the steps around it do train
    assert all(p.isfinite().all() for p in module.parameters())


def test_one_skip_too_many_stops_with_the_step_and_the_cause(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 6: the gradient norm is nan"):
        fit(tmp_path, [PoisonGradients({3, 6})], skip_nonfinite_steps=1)


def test_non_finite_weights_never_overwrite_a_finite_checkpoint(tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True)
    with pytest.raises(TrainingDiverged, match=r"1 parameter tensors hold NaN/inf \(first wte.weight\)"):
        fit(tmp_path, [PoisonWeights(5), checkpoints])
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 4
    assert all(t.isfinite().all() for t in last["state_dict"].values())


def test_a_learning_rate_of_100_is_one_line_and_a_non_zero_exit(tmp_path):
    result = run_cli("fit", "--config", str(CONFIGS / "debug.yaml"), "--model.learning_rate=100", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged at step ")
    assert "Traceback" not in result.stderr
    for path in (tmp_path / "logs").rglob("*.ckpt"):  # whatever was saved before is finite
        state = torch.load(path, weights_only=True)["state_dict"]
        assert all(t.isfinite().all() for t in state.values()), path
