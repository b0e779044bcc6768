"""DPO: the loss by hand, log 2 and the gradient's direction at the start, fits with each reference, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightningllm.data import PreferenceDataModule, Tokenizer
from lightningllm.model import GPT, GPTConfig, LoRAConfig
from lightningllm.training import DPO
from lightningllm.training.dpo import dpo_loss
from lightningllm.training.logprobs import sequence_logprobs
from tests.conftest import StopAt

WORDS = ["red", "blue", "cat", "dog", "sun", "tree", "fish", "bird", "rain", "star", "moon", "road"]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A tiny exported model (debug shape, a char tokenizer): what ``--model.init_from`` points at."""
    tokenizer = Tokenizer.train([" ".join(WORDS) + " yes no is it ok?"], kind="char")
    folder = tmp_path / "base"
    GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size)).save_pretrained(folder)
    tokenizer.save(folder / "tokenizer.json")
    return folder


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """Toy preferences: whatever the prompt, the answer "yes" is preferred to "no"."""
    records = [{"prompt": f"is {a} {b} ok?", "chosen": "yes", "rejected": "no"} for a in WORDS[:4] for b in WORDS[4:]]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def data_module(pairs: Path, export: Path, **args) -> PreferenceDataModule:
    defaults = {"val_fraction": 0.25, "batch_size": 8}
    return PreferenceDataModule(str(pairs), tokenizer_path=str(export / "tokenizer.json"), **(defaults | args))


def trainer(max_steps: int, **args) -> L.Trainer:
    defaults = dict(
        max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, accelerator="cpu", devices=1, log_every_n_steps=1, num_sanity_val_steps=0,
        limit_val_batches=0,
    )  # fmt: skip
    return L.Trainer(**(defaults | args))


def test_dpo_loss_equals_the_hand_computed_value():
    policy_chosen, policy_rejected = torch.tensor([-2.0, -1.0]), torch.tensor([-3.0, -1.5])
    reference_chosen, reference_rejected = torch.tensor([-2.5, -1.0]), torch.tensor([-2.5, -1.0])
    loss, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.5)
    # Pair 0: rewards 0.5·0.5 = 0.25 and 0.5·(-0.5) = -0.25, margin 0.5; pair 1: 0 and -0.25, margin 0.25.
    torch.testing.assert_close(chosen, torch.tensor([0.25, 0.0]))
    torch.testing.assert_close(rejected, torch.tensor([-0.25, -0.25]))
    expected = torch.tensor([math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(-0.25))])  # -log σ(margin)
    torch.testing.assert_close(loss, expected)
    smoothed, _, _ = dpo_loss(
        policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta=0.5, label_smoothing=0.1
    )
    flipped = torch.tensor([math.log(1 + math.exp(0.5)), math.log(1 + math.exp(0.25))])
    torch.testing.assert_close(smoothed, 0.9 * expected + 0.1 * flipped)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"beta": 0.0}, r"^model.beta must be a number > 0 \(got 0.0\)$"),
        ({"reference": "model"}, r"^model.reference must be copy or precomputed"),
        ({"label_smoothing": 0.5}, r"^model.label_smoothing must be in \[0, 0.5\)"),
        ({"sft_weight": -1.0}, r"^model.sft_weight must be a number >= 0 \(got -1.0\)$"),
        ({"learning_rate": -1.0}, r"^model.learning_rate must be a number > 0"),  # LitGPT's checks still apply
    ],
)
def test_bad_settings_are_one_line_errors(args, message):
    with pytest.raises(ValueError, match=message):
        DPO(**args)


def test_dpo_refuses_to_start_without_init_from_or_preference_data(pairs, export):
    with pytest.raises(ValueError, match=r"^model.init_from is not set: DPO tunes a trained model"):
        trainer(1).fit(DPO(), data_module(pairs, export))
    with pytest.raises(ValueError, match=r"^DPO trains on preference pairs, not LightningDataModule"):
        trainer(1).fit(DPO(init_from=str(export)), L.LightningDataModule())


def test_a_pair_longer_than_the_models_context_names_its_line(tmp_path, export):
    path = tmp_path / "long.jsonl"
    path.write_text('{"prompt": "ok", "chosen": "yes", "rejected": "no"}\n' + json.dumps(
        {"prompt": "is it ok?" * 4, "chosen": "yes", "rejected": "no"}) + "\n")  # fmt: skip
    with pytest.raises(ValueError, match=rf"^{path}:2: the prompt and the chosen answer are 43 tokens"):
        trainer(1).fit(DPO(init_from=str(export)), data_module(path, export, val_fraction=0))


class Losses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def preference_gap(model: GPT, data: PreferenceDataModule) -> float:
    """Mean over the training pairs of log π(chosen) − log π(rejected)."""
    batch = next(data.splits()["train"].batches(1000))
    with torch.no_grad():
        chosen = sequence_logprobs(model, batch["chosen_inputs"], batch["chosen_targets"])
        rejected = sequence_logprobs(model, batch["rejected_inputs"], batch["rejected_targets"])
    return float((chosen - rejected).mean())


@pytest.mark.parametrize("reference", ["copy", "precomputed"])
def test_at_the_start_the_loss_is_log_2_and_a_step_favours_the_chosen_answers(pairs, export, reference):
    data = data_module(pairs, export, batch_size=16, val_fraction=0.0)  # one step sees every pair
    module = DPO(init_from=str(export), reference=reference, warmup_steps=0, learning_rate=1e-3, weight_decay=0.0)
    losses = Losses()
    data.setup("fit")
    before = preference_gap(GPT.from_pretrained(export), data)
    trainer(1, callbacks=[losses]).fit(module, data)
    assert losses.losses == [pytest.approx(math.log(2), abs=1e-6)]  # policy = reference: σ(0) = 1/2
    assert preference_gap(module.model, data) > before


def test_sft_weight_adds_the_chosen_answers_mean_token_nll(pairs, export):
    """At the start DPO's part is log 2, so the first loss is log 2 + w × the chosen answers' mean per-token NLL."""
    data = data_module(pairs, export, batch_size=32, val_fraction=0.0)  # one step sees all 32 pairs
    module = DPO(init_from=str(export), sft_weight=0.5, warmup_steps=0, learning_rate=1e-3, weight_decay=0.0)
    losses = Losses()
    data.setup("fit")
    batch = next(data.splits()["train"].batches(1000))
    targets = batch["chosen_targets"]
    with torch.no_grad():
        chosen = sequence_logprobs(GPT.from_pretrained(export), batch["chosen_inputs"], targets)
    nll = (-chosen / (targets != -100).sum(dim=1)).mean()
    trainer(1, callbacks=[losses]).fit(module, data)
    assert losses.losses == [pytest.approx(math.log(2) + 0.5 * float(nll), abs=1e-5)]
    assert module.trainer.callback_metrics["train/sft_loss"] == pytest.approx(float(nll), abs=1e-5)


def fit_and_validate(module: DPO, data: PreferenceDataModule, steps: int) -> tuple[dict, dict]:
    """The validation metrics of the starting model, then those after ``steps`` of training."""
    start = {
        k: float(v) for k, v in trainer(0, limit_val_batches=None).validate(module, data, verbose=False)[0].items()
    }
    trainer(steps, limit_val_batches=None, val_check_interval=steps, check_val_every_n_epoch=None).fit(module, data)
    return start, {k: float(v) for k, v in module.trainer.callback_metrics.items()}


@pytest.mark.parametrize("reference", ["copy", "precomputed"])
def test_fit_raises_reward_accuracy_and_margin(pairs, export, reference):
    data = data_module(pairs, export)
    module = DPO(init_from=str(export), reference=reference, learning_rate=1e-2, warmup_steps=0, beta=0.5)
    start, end = fit_and_validate(module, data, steps=15)
    assert start["val/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert start["val/reward_accuracy"] == 0.0 and start["val/reward_margin"] == 0.0
    assert end["val/reward_accuracy"] == 1.0 and end["val/reward_margin"] > 0.5 and end["val/loss"] < 0.5
    assert end["val/rewards_chosen"] > 0 > end["val/rewards_rejected"]
    for name in ("loss", "rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin"):
        assert f"train/{name}" in end
    if reference == "precomputed":  # no second model; the log-probabilities travel with the pairs
        assert module._reference == [] and data.splits()["train"].reference.shape == (24, 2)
    else:
        assert len(module._reference) == 1
    assert all(key.startswith("model.") for key in module.state_dict())  # the reference is in no checkpoint


def test_lora_uses_the_model_with_adapters_off_as_reference(pairs, export):
    data = data_module(pairs, export)
    lora = LoRAConfig(r=4, alpha=8.0, targets=("attn.qkv", "attn.proj", "mlp.*"))
    module = DPO(init_from=str(export), lora=lora, learning_rate=2e-2, warmup_steps=0, beta=0.5, weight_decay=0.0)
    trainer(15).fit(module, data)
    assert module._reference == []  # no copy: adapters_disabled(model) is the reference
    start = GPT.from_pretrained(export)
    base = dict(start.named_parameters())
    for name, param in module.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name.replace(".base.", ".")]), name  # the base weights never moved
    assert preference_gap(module.model, data) - preference_gap(start, data) > 1.0


@pytest.mark.parametrize("reference", ["copy", "precomputed"])
def test_resume_equals_uninterrupted_training(tmp_path, pairs, export, reference):
    def fit(folder: str, stop: int | None = None, ckpt_path: str | None = None) -> DPO:
        L.seed_everything(0)
        data = data_module(pairs, export, batch_size=5)  # 24 training pairs: steps of 5, 5, 5, 5, 4 per epoch
        module = DPO(init_from=str(export), reference=reference, learning_rate=1e-2, warmup_steps=1)
        callbacks = [ModelCheckpoint(dirpath=tmp_path / folder, save_last=True), *([StopAt(stop)] if stop else [])]
        trainer(4, callbacks=callbacks, enable_checkpointing=True).fit(module, data, ckpt_path=ckpt_path)
        return module

    straight = fit("straight")
    fit("resumed", stop=2)
    resumed = fit("resumed", ckpt_path=str(tmp_path / "resumed" / "last.ckpt"))
    assert resumed.global_step == 4
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert preference_gap(resumed.model, resumed.trainer.datamodule) != preference_gap(
        GPT.from_pretrained(export), resumed.trainer.datamodule
    )
