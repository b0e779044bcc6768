"""GRPO: group advantages, the clipped token-level loss, learning a toy reward, the KL reference, exact resume,
a user's reward by class path, validation's pass@1 / pass@G, and two processes training as one."""

import math
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint

from lightningllm.data import TaskPromptDataModule, Tokenizer
from lightningllm.data.contract import TokenDataModule
from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig, LoRAConfig
from lightningllm.tasks.base import Example
from lightningllm.tasks.reasoning import ReasoningCorpus
from lightningllm.training import GRPO
from lightningllm.training.grpo import clipped_policy_loss, group_advantages, pack_sequences
from lightningllm.training.rewards import score_completions
from tests.conftest import CONFIGS, REPO, StopAt, run_cli


class Sevens:
    """A toy task: any prompt, and a completion is right when it starts with a 7."""

    name, metric = "sevens", "sevens"

    def examples(self, split: str) -> list[Example]:
        count = {"train": 32, "val": 8, "test": 4}[split]
        return [Example(prompt=f"{split[0]}{i}", completion="7777", answer="7777") for i in range(count)]

    def score(self, example: Example, completion: str) -> float:
        return float(completion.startswith("7"))


class SevensData(TokenDataModule):
    """The toy task's data module: a character tokenizer, and the task."""

    block_size = 8

    def __init__(self):
        super().__init__()
        self._task = Sevens()

    @property
    def task(self) -> Sevens:
        return self._task

    def setup(self, stage: str | None = None) -> None:
        self.tokenizer = Tokenizer.train(["0123456789 tvx"], kind="char")


class SevenFraction:
    """The toy reward: the fraction of the completion's characters that are 7s."""

    def __call__(self, example: Example, completion: str) -> float:
        return completion.count("7") / max(1, len(completion))


class Record(L.Callback):
    """Keeps the logged training metrics of every step."""

    def __init__(self):
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, *args) -> None:
        self.steps.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def grpo(**kwargs) -> GRPO:
    """A debug-size GRPO on the toy task (vocabulary unpadded: the 7 is one token of ~20)."""
    lr = kwargs.pop("learning_rate", 1e-2)
    settings = dict(group_size=8, max_new_tokens=4, reward=SevenFraction(), learning_rate=lr, min_lr=lr)
    settings |= dict(warmup_steps=0, lr_schedule="constant", weight_decay=0.0)
    return GRPO(config=GPTConfig.from_name("debug", vocab_size=None, padding_multiple=1), **(settings | kwargs))


def fit(module: GRPO, steps: int, callbacks: list | None = None, ckpt_path: str | None = None, **trainer_args):
    trainer = L.Trainer(
        max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks or []), callbacks=callbacks,
        **trainer_args,
    )  # fmt: skip
    trainer.fit(module, TaskPromptDataModule(SevensData(), batch_size=4), ckpt_path=ckpt_path)
    return trainer


# --- the pure parts ------------------------------------------------------------------------------
def test_group_advantages_center_each_group_and_scale_by_its_std():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.1], [2.0, 0.0, 1.0, 1.0]])
    centered = group_advantages(rewards, scale=False)
    torch.testing.assert_close(centered, torch.tensor([[0.5, -0.5, -0.5, 0.5], [0, 0, 0, 0], [1.0, -1.0, 0, 0]]))
    scaled = group_advantages(rewards, scale=True)
    std = math.sqrt(1 / 3)  # unbiased, of [1, 0, 0, 1]
    torch.testing.assert_close(scaled[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    torch.testing.assert_close(scaled[2], torch.tensor([1.0, -1.0, 0, 0]) / (math.sqrt(2 / 3) + 1e-4))
    assert torch.equal(scaled[1], torch.zeros(4))  # all alike: exactly 0, no NaN
    assert torch.isfinite(group_advantages(torch.zeros(3, 1))).all()


def test_clipped_token_level_loss_on_a_hand_case():
    # Row 0 (advantage +1): ratios 1.5 (clipped to 1.2) and 0.5 (kept: min(0.5, 0.8)); a padding position.
    # Row 1 (advantage -1): ratio 0.5 (clipped to 0.8: min(-0.5, -0.8)), then one plain ratio-1 token.
    ratios = torch.tensor([[1.5, 0.5, 1.0], [0.5, 1.0, 1.0]])
    logprobs = ratios.log().requires_grad_()
    old = torch.zeros(2, 3)
    mask = torch.tensor([[True, True, False], [True, True, False]])
    loss, stats = clipped_policy_loss(logprobs, old, torch.tensor([1.0, -1.0]), mask, clip_eps=0.2)
    torch.testing.assert_close(loss, torch.tensor((-1.2 - 0.5 + 0.8 + 1.0) / 4))  # over the 4 completion tokens
    torch.testing.assert_close(stats["clip_fraction"], torch.tensor(2 / 4))
    loss.backward()
    # d(-r·A)/d logp = -r·A where the ratio term is taken; 0 where the clipped one is (and at padding).
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -0.5, 0.0], [0.0, 1.0, 0.0]]) / 4)


def test_kl_term_is_zero_when_the_policy_is_the_reference_and_k3_otherwise():
    logprobs = torch.tensor([[-1.0, -2.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    plain, _ = clipped_policy_loss(logprobs, logprobs, torch.tensor([0.5]), mask)
    same, stats = clipped_policy_loss(logprobs, logprobs, torch.tensor([0.5]), mask, ref_logprobs=logprobs, kl_beta=0.1)
    assert stats["kl"] == 0 and same == plain
    ref = torch.tensor([[-1.5, -2.0]])
    _, stats = clipped_policy_loss(logprobs, logprobs, torch.tensor([0.5]), mask, ref_logprobs=ref, kl_beta=0.1)
    torch.testing.assert_close(stats["kl"], torch.tensor((math.exp(-0.5) + 0.5 - 1) / 2))


def test_sequences_are_right_padded_with_the_completion_tokens_as_targets():
    inputs, targets = pack_sequences([[5, 6], [7]], [[1, 2, 3], [4]], pad_id=0)
    assert inputs.tolist() == [[5, 6, 1, 2], [7, 0, 0, 0]]
    assert targets.tolist() == [[IGNORE_INDEX, 1, 2, 3], [4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]


def test_a_reward_that_is_not_a_finite_number_is_refused_in_one_line():
    example = Example("q", "a", "a")
    assert score_completions(lambda e, c: True, [example], ["x"]) == [1.0]
    with pytest.raises(ValueError, match=r"returned nan for a completion of 'q': a reward must be a finite number"):
        score_completions(lambda e, c: float("nan"), [example], ["x"])


# --- the module -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        ({"group_size": 1}, "model.group_size must be an integer >= 2"),
        ({"temperature": 0}, r"model.temperature must be a number > 0 \(greedy"),
        ({"clip_eps": 0}, r"model.clip_eps must be in \(0, 1\)"),
        ({"kl_beta": -1.0}, "model.kl_beta must be a number >= 0"),
        ({"ppo_epochs": 0}, "model.ppo_epochs must be an integer >= 1"),
        ({"max_grad_norm": 1.0}, "model.max_grad_norm clips with model.ppo_epochs > 1 only"),
        ({"top_p": 1.5}, r"model.top_p must be in \(0, 1\]"),
    ],
)
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message):
        GRPO(**options)


def test_a_few_steps_raise_the_reward_of_a_toy_task():
    L.seed_everything(0)
    record = Record()
    fit(grpo(), steps=15, callbacks=[record])
    rewards = [step["train/reward_mean"] for step in record.steps]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.4, rewards
    last = record.steps[-1]
    assert 1 <= last["train/completion_length"] <= 4 and 0 <= last["train/zero_variance_groups"] <= 1
    assert last["train/clip_fraction"] == 0  # one update per batch: the ratio is 1
    assert "train/kl" not in last


def test_several_ppo_epochs_step_the_optimizer_per_epoch_and_clip():
    L.seed_everything(0)
    record = Record()
    trainer = fit(grpo(ppo_epochs=3, max_grad_norm=0.5), steps=6, callbacks=[record])
    assert trainer.global_step == 6 and len(record.steps) == 2  # 2 batches of 3 optimizer steps
    assert record.steps[-1]["train/clip_fraction"] > 0  # the later epochs move away from the sampling policy


def test_kl_to_the_frozen_start_is_zero_at_the_first_step():
    L.seed_everything(0)
    record = Record()
    module = grpo(kl_beta=0.1)
    fit(module, steps=3, callbacks=[record])
    assert record.steps[0]["train/kl"] == 0  # the reference is the starting model
    assert record.steps[-1]["train/kl"] > 0
    reference = module._reference
    assert reference is not None and not any(p.requires_grad for p in reference.parameters())
    assert not any(k.startswith("_reference") for k in module.state_dict())


def test_with_lora_the_reference_is_the_base_model_under_disabled_adapters():
    L.seed_everything(0)
    record = Record()
    module = grpo(kl_beta=0.1, lora=LoRAConfig(r=2, targets=("attn.qkv",)))
    fit(module, steps=2, callbacks=[record])
    assert module._reference is None
    assert record.steps[0]["train/kl"] == 0  # adapters start at zero: the policy is the base model


@pytest.mark.parametrize("ppo_epochs", [1, 2])
def test_resume_equals_uninterrupted_training(tmp_path, ppo_epochs):
    record = Record()

    def run(folder: str, stop: int | None = None, ckpt_path: str | None = None) -> GRPO:
        L.seed_everything(0)
        module = grpo(ppo_epochs=ppo_epochs, warmup_steps=1, lr_schedule="cosine", min_lr=1e-3)
        callbacks = [ModelCheckpoint(dirpath=tmp_path / folder, save_last=True), *([StopAt(stop)] if stop else [])]
        fit(module, steps=4, callbacks=[*callbacks, record], ckpt_path=ckpt_path)
        return module

    straight = run("straight")
    run("resumed", stop=2)
    record.steps.clear()
    resumed = run("resumed", ckpt_path=str(tmp_path / "resumed" / "last.ckpt"))
    assert len(record.steps) == 2 // ppo_epochs  # the batches after step 2: it resumed, it did not start over
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resuming_with_kl_needs_the_starting_weights(tmp_path):
    L.seed_everything(0)
    fit(grpo(kl_beta=0.1), steps=1, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    with pytest.raises(ValueError, match="cannot resume with model.kl_beta > 0 without model.init_from"):
        fit(grpo(kl_beta=0.1), steps=2, ckpt_path=str(tmp_path / "last.ckpt"))


def test_a_users_reward_plugs_in_by_class_path_or_function_path(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "class Sevens:\n"
        "    def __init__(self, weight: float = 1.0):\n"
        "        self.weight = weight\n"
        "    def __call__(self, example, completion):\n"  # no annotations, no base class: none needed
        "        return self.weight * completion.count('7')\n"
        "def always_one(example, completion):\n"
        "    return 1.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(GRPO, "model")
    args = ["--model.reward.class_path=my_rewards.Sevens", "--model.reward.init_args.weight=2", "--model.group_size=4"]
    config = parser.parse_args([*args, "--model.learning_rate=0.01", "--model.max_new_tokens=4"])
    module = parser.instantiate(config).model
    assert type(module.reward).__module__ == "my_rewards" and module.reward.weight == 2.0
    assert module.hparams.learning_rate == 0.01 and module.hparams.reward == "my_rewards.Sevens"
    assert module.reward(None, "a77") == 4.0
    config = parser.parse_args(
        ["--model.reward=my_rewards.always_one", "--model.group_size=4", "--model.max_new_tokens=4"]
    )
    function = parser.instantiate(config).model
    assert function.hparams.reward == "my_rewards.always_one"
    L.seed_everything(0)
    record = Record()
    fit(function, steps=1, callbacks=[record])
    assert record.steps[0]["train/reward_mean"] == 1.0  # the user's reward scored the completions
    assert record.steps[0]["train/zero_variance_groups"] == 1.0  # and all alike, taught nothing


def test_validation_logs_pass_at_1_pass_at_g_and_the_mean_reward():
    L.seed_everything(0)
    module = grpo(group_size=4)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, TaskPromptDataModule(SevensData(), batch_size=3, num_val_examples=7))
    assert set(metrics) == {"val/pass@1", "val/pass@4", "val/reward_mean"}
    assert 0 <= metrics["val/pass@1"] <= 1 and 0 <= metrics["val/pass@4"] <= 1
    again = trainer.validate(module, TaskPromptDataModule(SevensData(), batch_size=2, num_val_examples=7))[0]
    assert again == metrics  # the samples of a prompt are seeded by it: the same in any batch


def test_prompts_that_leave_no_room_for_the_completions_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"longest prompt \(3 tokens\) plus model.max_new_tokens 30 leaves no room"):
        fit(grpo(max_new_tokens=30), steps=1)  # the debug model's block_size is 32


def test_grpo_needs_task_prompts():
    class Plain(SevensData):
        def train_dataloader(self):
            return [torch.zeros(1, 9, dtype=torch.long)]

    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match="use data lightningllm.data.TaskPromptDataModule"):
        trainer.fit(grpo(), Plain())


DATA_PARALLEL_RUN = """
import sys, torch
import lightning as L
from lightningllm.data import TaskPromptDataModule
from tests.training.test_grpo import SevensData, grpo

devices, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
L.seed_everything(0)
module = grpo(kl_beta=0.05)
trainer = L.Trainer(
    accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=3, logger=False,
    enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    val_check_interval=3, check_val_every_n_epoch=None,
)
trainer.fit(module, TaskPromptDataModule(SevensData(), batch_size=batch, num_val_examples=5))
if trainer.is_global_zero:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    torch.save({"weights": module.model.state_dict(), "metrics": metrics}, out)
"""


def test_two_processes_of_two_prompts_train_as_one_of_four(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(DATA_PARALLEL_RUN)
    results = []
    for devices, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"{devices}.pt"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
        done = subprocess.run([sys.executable, str(script), str(devices), str(batch), str(out)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(torch.load(out))
    one, two = results
    assert one["metrics"].keys() == two["metrics"].keys() and "val/pass@8" in one["metrics"]
    for name, value in one["metrics"].items():  # the same completions, rewards and updates, summed over the ranks
        assert math.isclose(value, two["metrics"][name], rel_tol=1e-4, abs_tol=1e-6), name
    for name, weight in one["weights"].items():
        torch.testing.assert_close(weight, two["weights"][name], rtol=1e-4, atol=1e-4, msg=name)


def test_the_reasoning_config_trains_an_export_from_the_command_line(tmp_path):
    corpus = ReasoningCorpus(num_train=300)
    tokenizer = Tokenizer.train([p.text for p in corpus.problems("train")], vocab_size=400, kind="bpe")
    # The config keeps to 1- to 3-step problems, whose prompts run to ~140 tokens here; 16 new tokens follow.
    shape = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=256, n_layer=1, n_head=2, n_embd=32, pos_emb="rope")
    GPT(shape).save_pretrained(tmp_path / "model")
    tokenizer.save(tmp_path / "model" / "tokenizer.json")
    result = run_cli(
        "fit", "--config", str(CONFIGS / "grpo-reasoning.yaml"), "--model.init_from", str(tmp_path / "model"),
        "--model.init_args.group_size=2", "--model.init_args.max_new_tokens=16", "--trainer.max_steps=2",
        "--trainer.val_check_interval=2", "--data.batch_size=2", "--data.num_val_examples=2",
        "--data.init_args.task_data.init_args.num_train=300", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data: using the tokenizer of model.init_from" in result.stdout
    checkpoints = tmp_path / "logs" / "grpo-reasoning" / "checkpoints"
    assert (checkpoints / "best.ckpt").is_file() and (checkpoints / "last.ckpt").is_file()  # by val/pass@1
    assert not (tmp_path / ".cache").exists()  # the prompts needed no prepared corpus
