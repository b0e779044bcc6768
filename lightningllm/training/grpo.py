"""GRPO: reinforcement learning with verifiable rewards, a LightningModule over ``LitGPT``.

Each training step takes a batch of a task's prompts (``lightningllm.data.TaskPromptDataModule``),
samples a group of ``group_size`` completions per prompt with the KV cache, and scores each with
a reward (``lightningllm.training.rewards``: the task's own checker unless ``reward`` is given).
A completion's advantage is its reward minus its group's mean, divided by the group's standard
deviation with ``scale_rewards`` (``group_advantages``): a group whose completions all score
alike has none and teaches nothing (``train/zero_variance_groups``). The policy then takes
``ppo_epochs`` optimizer steps on PPO's clipped-ratio objective, averaged over every completion
token of the batch (token-level, as DAPO), with a k3 KL penalty towards the starting model when
``kl_beta`` > 0 (``clipped_policy_loss``). Validation scores held-out prompts by the task's checker:
``val/pass@1``, the fraction whose greedy completion is right; ``val/pass@G`` (``G`` the group size),
the fraction with at least one right among G samples (below pass@1 when sampling errs more than
greedy decoding); and ``val/reward_mean``, the mean reward of those samples. Sampling draws from a generator saved in
checkpoints, so a resumed run equals an uninterrupted one. The model, optimizer, schedule,
divergence checks and checkpoints are ``LitGPT``'s.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from lightningllm.checkpoint import load_export
from lightningllm.data.loader import data_parallel_share
from lightningllm.data.task_prompts import TaskPromptDataModule
from lightningllm.model import GPT, IGNORE_INDEX, adapters_disabled, generate
from lightningllm.model.lora import lora_layers
from lightningllm.tasks.base import Example
from lightningllm.training.logprobs import token_logprobs
from lightningllm.training.module import LitGPT
from lightningllm.training.rewards import Reward, TaskReward, reward_name, score_completions
from lightningllm.training.sharding import gathered, is_sharded


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(N, G) rewards of N prompts' groups of G completions -> (N, G) advantages.

    Each reward minus its group's mean; with ``scale``, divided by the group's standard deviation
    (unbiased) plus ``eps``. A group whose rewards are all equal gets exactly 0 (no NaN, no rounding).
    """
    rewards = rewards.float()
    advantages = rewards - rewards.mean(dim=1, keepdim=True)
    if scale and rewards.size(1) > 1:  # a group of one has no spread (and its advantage is 0 anyway)
        advantages = advantages / (rewards.std(dim=1, keepdim=True) + eps)
    alike = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)  # (N, 1)
    return advantages.masked_fill(alike, 0.0)


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    ref_logprobs: torch.Tensor | None = None,
    kl_beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped objective, token-level: the loss and its detached statistics.

    Per completion token, ``-min(r·A, clip(r, 1 - clip_eps, 1 + clip_eps)·A)`` with the ratio
    ``r = exp(logprobs - old_logprobs)``, plus ``kl_beta`` times the k3 estimate of the KL to the
    reference, ``exp(ref - logprobs) - (ref - logprobs) - 1``; summed over every completion token of
    the batch and divided by their number (long completions weigh by their tokens).

    Args:
        logprobs: (B, T) log-probabilities of the completion tokens under the policy (with gradient).
        old_logprobs: (B, T) the same under the policy that sampled them.
        advantages: (B,) one per completion.
        mask: (B, T) bool, True at completion tokens.
        ref_logprobs: (B, T) under the reference model; needed when ``kl_beta`` > 0.

    Returns:
        The scalar loss, and ``clip_fraction`` (completion tokens whose clipped term is the one taken)
        and, with a reference, ``kl`` (the mean k3 estimate), both means over the completion tokens.
    """
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    adv = advantages[:, None].to(ratio.dtype)  # (B, 1)
    objective = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -objective
    tokens = mask.sum().clamp(min=1)
    clipped = ((ratio < 1 - clip_eps) & (adv < 0)) | ((ratio > 1 + clip_eps) & (adv > 0))
    stats = {"clip_fraction": (clipped & mask).sum() / tokens}
    if ref_logprobs is not None:
        delta = ref_logprobs - logprobs
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + kl_beta * kl
        stats["kl"] = torch.where(mask, kl.detach(), 0.0).sum() / tokens
    elif kl_beta > 0:
        raise ValueError("clipped_policy_loss: kl_beta > 0 needs ref_logprobs")
    loss = torch.where(mask, per_token, 0.0).sum() / tokens
    return loss, stats


def pack_sequences(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) inputs and targets of prompt + completion rows, T the longest row minus one.

    The targets are the completion tokens at the positions that predict them, ``IGNORE_INDEX`` at
    the prompt's and at the padding: what ``token_logprobs`` scores.
    """
    width = max(len(p) + len(c) for p, c in zip(prompts, completions, strict=True)) - 1
    inputs, targets = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        row = [*prompt, *completion]
        pad = width - (len(row) - 1)
        inputs.append(row[:-1] + [pad_id] * pad)
        targets.append([IGNORE_INDEX] * (len(prompt) - 1) + list(completion) + [IGNORE_INDEX] * pad)
    return torch.tensor(inputs), torch.tensor(targets)


@dataclass
class Rollout:
    """One step's sampled completions, ready for the policy update."""

    inputs: torch.Tensor
    """(B, T) prompt + completion tokens, right-padded; B is prompts × ``group_size``."""
    targets: torch.Tensor
    """(B, T) the completion tokens, ``IGNORE_INDEX`` elsewhere."""
    advantages: torch.Tensor
    """(B,) one per completion."""
    rewards: torch.Tensor
    """(N, G) the rewards, one row per prompt."""
    lengths: torch.Tensor
    """(B,) completion tokens (an EOS included)."""
    ref_logprobs: torch.Tensor | None = None
    """(B, T) under the reference, with ``kl_beta`` > 0."""
    old_logprobs: torch.Tensor | None = None
    """(B, T) under the sampling policy: set by the first update (its weights sampled them)."""


def _check_grpo_options(options: dict) -> None:
    """One line naming the first GRPO option out of range (``model.<name>``)."""

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def integer(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    rules = {
        "group_size": (
            lambda v: integer(v) and v >= 2,
            "an integer >= 2 (advantages compare the completions of one prompt)",
        ),
        "temperature": (
            lambda v: number(v) and v > 0,
            "a number > 0 (greedy completions of a prompt are all alike and teach nothing)",
        ),
        "clip_eps": (lambda v: number(v) and 0 < v < 1, "in (0, 1)"),
        "kl_beta": (lambda v: number(v) and v >= 0, "a number >= 0"),
        "ppo_epochs": (lambda v: integer(v) and v >= 1, "an integer >= 1"),
        "max_grad_norm": (lambda v: v is None or (number(v) and v > 0), "a number > 0, or null"),
    }
    for name, (ok, expected) in rules.items():
        if not ok(options[name]):
            raise ValueError(f"model.{name} must be {expected} (got {options[name]!r})")
    if options["max_grad_norm"] is not None and options["ppo_epochs"] == 1:
        raise ValueError(
            "model.max_grad_norm clips with model.ppo_epochs > 1 only: with ppo_epochs 1, clip by "
            "--trainer.gradient_clip_val"
        )


def _seed_of(*parts: object) -> int:
    """A 62-bit seed from ``parts``: the same on every machine and process (unlike ``hash``)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


class GRPO(LitGPT):
    """``LitGPT`` trained by GRPO on a task's prompts (``TaskPromptDataModule``) and a verifiable reward."""

    def __init__(
        self,
        group_size: int = 8,
        max_new_tokens: int | None = None,
        temperature: float = 1.0,
        top_p: float | None = None,
        clip_eps: float = 0.2,
        kl_beta: float = 0.0,
        scale_rewards: bool = True,
        ppo_epochs: int = 1,
        max_grad_norm: float | None = None,
        reward: Callable[[Example, str], float] | None = None,
        **kwargs,
    ):
        """
        Args:
            group_size: completions sampled per prompt; each is judged against the others of its group.
            max_new_tokens: tokens per completion at most (it also stops at EOS); null: as many as the context
                holds after the task's longest prompt. Every prompt and this must fit ``block_size``.
            temperature: sampling temperature of the completions (> 0; validation's pass@1 is greedy).
            top_p: sample within the smallest set of tokens of total probability p, in (0, 1]; null: all.
            clip_eps: the policy ratio is clipped to [1 - clip_eps, 1 + clip_eps] (PPO).
            kl_beta: weight of a KL penalty towards the starting model (the k3 estimator); 0: none. The reference
                is the model at fit start (a frozen copy), or with ``lora`` the base model (adapters off);
                resuming without LoRA rebuilds it from ``init_from``.
            scale_rewards: divide each group's advantages by its rewards' standard deviation (off: reward minus
                the group mean only, as Dr. GRPO).
            ppo_epochs: optimizer steps on each batch of completions (``trainer.max_steps`` counts them all);
                above 1 the ratio is to the policy that sampled them, and the steps are taken by manual
                optimization, under which Lightning refuses ``trainer.gradient_clip_val`` and
                ``accumulate_grad_batches`` (see ``max_grad_norm``).
            max_grad_norm: with ``ppo_epochs`` > 1, clip each step's total gradient norm to this (after
                ``train/grad_norm`` is logged); with ``ppo_epochs`` 1 use ``trainer.gradient_clip_val``.
            reward: scores a completion of an example (``lightningllm.training.rewards.Reward``): a class by its
                path, ``--model.reward.class_path my_pkg.MyReward`` (its arguments as ``--model.reward.init_args.*``),
                or a function, ``--model.reward my_pkg.my_reward``; null: the task's own ``score``.
            **kwargs: ``LitGPT``'s settings: ``init_from`` (the model to improve), ``learning_rate``, ``lora``,
                ``top_k``, ``sample_seed`` (seeds the sampling; null: a draw from the run's seed), ...
        """
        _check_grpo_options(locals())
        super().__init__(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, **kwargs)
        self.hparams["reward"] = reward_name(reward)  # logged by name, not as an object
        self.reward = reward
        self.automatic_optimization = ppo_epochs == 1  # several steps per batch need manual optimization
        self.sampler: torch.Generator | None = None
        """Draws each step's per-completion seeds; saved in checkpoints (set at setup)."""
        self.sample_base_seed: int | None = None
        """Seeds the sampler and validation's samples."""
        self._reward: Reward | None = None  # reward, or the task's score
        self._new_tokens = 0
        self._rollout: Rollout | None = None
        self._eval_totals = torch.zeros(4, dtype=torch.float64)  # right greedy, right in G, reward sum, prompts
        self.__dict__["_reference"] = None  # a frozen GPT, not a submodule: outside state_dict and the optimizer

    # --- setup: the task, the completion budget, the sampler, the reference ------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "predict":
            return  # predict continues plain prompts with LitGPT's predict_step
        data = self.trainer.datamodule
        if not isinstance(data, TaskPromptDataModule):
            raise ValueError(
                f"GRPO samples completions of a task's prompts: use data lightningllm.data.TaskPromptDataModule "
                f"(task_data: the task's data module), not {type(data).__name__}"
            )
        self._reward = self.reward if self.reward is not None else TaskReward(data.task)
        self._new_tokens = self._completion_budget(data.block_size)
        if stage == "fit" and self.hparams.ppo_epochs > 1 and self.trainer.max_steps <= 0:
            raise ValueError(
                f"model.ppo_epochs {self.hparams.ppo_epochs} takes that many optimizer steps per batch, and the "
                "learning-rate schedule counts optimizer steps: set trainer.max_steps"
            )
        if self.sampler is None:
            seed = self.hparams.sample_seed
            if seed is None:  # from the global generator, which seed_everything seeded: the run's seed decides
                seed = int(torch.randint(0, 2**62, (1,)))
            self.sample_base_seed = int(self.trainer.strategy.broadcast(seed, src=0))
            self.sampler = torch.Generator().manual_seed(self.sample_base_seed)

    def _completion_budget(self, longest_prompt: int) -> int:
        """``max_new_tokens``, or the room after the longest prompt; a one-line error when they do not fit."""
        context = self.model.config.block_size
        room = context - longest_prompt
        new = self.hparams.max_new_tokens if self.hparams.max_new_tokens is not None else room
        if room < 1 or new > room:
            asked = "" if self.hparams.max_new_tokens is None else f" plus model.max_new_tokens {new}"
            fix = f"lower model.max_new_tokens to at most {room}" if room >= 1 else "shorten the task's prompts"
            raise ValueError(
                f"the task's longest prompt ({longest_prompt} tokens){asked} leaves no room in the model's "
                f"block_size {context}: {fix}"
            )
        return new

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.__dict__["_reference"] = self._frozen_reference() if self.hparams.kl_beta > 0 else None

    def _frozen_reference(self) -> GPT | None:
        """The starting model, frozen; None with LoRA (``adapters_disabled`` gives the base model)."""
        if lora_layers(self.model):
            return None
        if is_sharded(self.model):
            raise ValueError(
                "model.kl_beta > 0 under trainer.strategy ModelParallelStrategy is not supported: use ddp, or LoRA"
            )
        if self.trainer.ckpt_path is None:  # fit start, before any step: the model is the starting one
            reference = copy.deepcopy(self.model)
        elif self.hparams.init_from:
            dtype = next(self.model.parameters()).dtype
            reference = load_export(self.hparams.init_from)[0].to(device=self.device, dtype=dtype)
        else:
            raise ValueError(
                "cannot resume with model.kl_beta > 0 without model.init_from: the KL reference is the starting "
                "model, which only init_from (or LoRA's frozen base) keeps; resume with the run's --model.init_from"
            )
        return reference.requires_grad_(False).eval()

    # --- training ----------------------------------------------------------------------------
    def training_step(self, batch: list[Example], batch_idx: int) -> torch.Tensor | None:
        rollout = self._rollout = self.rollout(batch)
        lr = self.optimizers().param_groups[0]["lr"]
        if self.automatic_optimization:
            loss, stats = self.policy_loss(rollout)
            self._log_training(rollout, [stats], lr)
            return loss
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        epochs = []
        for _ in range(self.hparams.ppo_epochs):
            loss, stats = self.policy_loss(rollout)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()  # runs on_before_optimizer_step: gradient norm, non-finite checks, clipping
            schedule.step()
            epochs.append(stats)
        self._log_training(rollout, epochs, lr)
        return None

    @torch.no_grad()
    def rollout(self, examples: Sequence[Example]) -> Rollout:
        """Sample ``group_size`` completions of each example's prompt, score them, and pack them for the update."""
        hp, tokenizer = self.hparams, self.tokenizer
        prompts = tokenizer.encode_batch([example.prompt for example in examples])
        rows = [prompt for prompt in prompts for _ in range(hp.group_size)]  # (N·G) prompts, each group together
        with gathered(self.model) as gpt:  # sharded (FSDP2): every rank samples from a whole copy
            completions = generate(
                gpt, rows, self._new_tokens, hp.temperature, hp.top_k, hp.top_p, tokenizer.eos_id,
                generator=self._row_generators(len(rows)),
            )  # fmt: skip
        texts = [tokenizer.decode(ids) for ids in completions]
        repeated = [example for example in examples for _ in range(hp.group_size)]
        rewards = torch.tensor(score_completions(self._reward, repeated, texts)).view(len(examples), hp.group_size)
        inputs, targets = pack_sequences(rows, completions, tokenizer.eos_id)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        rollout = Rollout(
            inputs=inputs,
            targets=targets,
            advantages=group_advantages(rewards, hp.scale_rewards).flatten().to(self.device),
            rewards=rewards,
            lengths=torch.tensor([len(ids) for ids in completions], dtype=torch.float32),
        )
        if hp.kl_beta > 0:
            rollout.ref_logprobs = self._reference_logprobs(inputs, targets)
        return rollout

    def _row_generators(self, rows: int) -> list[torch.Generator]:
        """One generator per completion, seeded from the sampler: the same draws on any number of ranks."""
        rank, ranks = data_parallel_share(self.trainer)
        seeds = torch.randint(0, 2**62, (ranks, rows), generator=self.sampler)[rank]  # every rank draws them all
        return [torch.Generator().manual_seed(int(seed)) for seed in seeds]

    def _reference_logprobs(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self._reference is not None:
            return token_logprobs(self._reference(inputs), targets)
        was_training = self.model.training
        self.model.eval()
        try:
            with adapters_disabled(self.model):
                return token_logprobs(self.model(inputs), targets)
        finally:
            self.model.train(was_training)

    def policy_loss(self, rollout: Rollout) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The clipped token-level loss of the policy now on ``rollout`` (this rank's share of the batch's)."""
        logprobs = token_logprobs(self(rollout.inputs), rollout.targets)  # (B, T)
        if rollout.old_logprobs is None:
            rollout.old_logprobs = logprobs.detach()  # the first update's weights are the sampling ones
        mask = rollout.targets != IGNORE_INDEX
        loss, stats = clipped_policy_loss(
            logprobs, rollout.old_logprobs, rollout.advantages, mask, self.hparams.clip_eps,
            rollout.ref_logprobs, self.hparams.kl_beta,
        )  # fmt: skip
        loss, self._loss = self._token_weighted(loss, rollout.targets) if self._ranks > 1 else (loss, loss.detach())
        return loss, {**stats, "loss": self._loss}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        super().on_before_optimizer_step(optimizer)  # logs the norm before clipping, as Lightning's order does
        if not self.automatic_optimization and self.hparams.max_grad_norm:
            self.configure_gradient_clipping(optimizer, self.hparams.max_grad_norm, "norm")

    def _log_training(self, rollout: Rollout, epochs: list[dict[str, torch.Tensor]], lr: float) -> None:
        """The step's rollout and update statistics, over every rank's completions (one all-reduce)."""
        rewards, tokens = rollout.rewards, float((rollout.targets != IGNORE_INDEX).sum())
        update = {name: sum(float(stats[name]) for stats in epochs) / len(epochs) for name in epochs[0]}
        totals = torch.tensor(
            [
                float(rewards.sum()), rewards.numel(),  # rewards, completions
                float(rollout.lengths.sum()),  # completion tokens
                float((rewards == rewards[:, :1]).all(dim=1).sum()), len(rewards),  # groups all alike, groups
                update["clip_fraction"] * tokens, update.get("kl", 0.0) * tokens, tokens,  # clipped, KL, tokens
            ],
            dtype=torch.float64,
        )  # fmt: skip
        if self._ranks > 1:
            totals = self.trainer.strategy.reduce(totals.to(self.device), reduce_op="sum").cpu()
        reward, completions, length, alike, groups, clipped, kl, tokens = totals.tolist()
        self.log("train/loss", update["loss"], prog_bar=True)  # the mean over every rank's tokens already
        self.log("train/reward_mean", reward / completions, prog_bar=True)
        self.log("train/completion_length", length / completions)
        self.log("train/zero_variance_groups", alike / groups)
        self.log("train/clip_fraction", clipped / max(tokens, 1.0))
        if self.hparams.kl_beta > 0:
            self.log("train/kl", kl / max(tokens, 1.0))
        self.log("train/lr", lr)

    def on_train_batch_end(self, outputs, batch: list[Example], batch_idx: int) -> None:
        rollout, self._rollout = self._rollout, None
        # LitGPT's clock, step time and tokens/s, the tokens being the step's prompt + completion sequences.
        super().on_train_batch_end(outputs, (rollout.inputs, rollout.targets), batch_idx)

    # --- validation and test: pass@1 (greedy), pass@G and the mean reward of G samples ------------
    def on_validation_epoch_start(self) -> None:
        self._eval_totals.zero_()

    def on_test_epoch_start(self) -> None:
        self._eval_totals.zero_()

    def validation_step(self, batch: list[Example], batch_idx: int) -> None:
        self._evaluate(batch)

    def test_step(self, batch: list[Example], batch_idx: int) -> None:
        self._evaluate(batch)

    @torch.no_grad()
    def _evaluate(self, examples: Sequence[Example]) -> None:
        """Add to the split's totals: a prompt passes when the task scores a completion of it 1 (right)."""
        if not examples:
            return  # a rank's empty share of the last step
        hp, tokenizer, task = self.hparams, self.tokenizer, self.trainer.datamodule.task
        G = hp.group_size
        prompts = tokenizer.encode_batch([example.prompt for example in examples])
        rows = [prompt for prompt in prompts for _ in range(G)]
        # Each prompt's samples have their own seeds: the same at every validation, in any batch, on any rank.
        seeds = [_seed_of(self.sample_base_seed, example.prompt, k) for example in examples for k in range(G)]
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        with gathered(self.model) as gpt:
            greedy = generate(gpt, prompts, self._new_tokens, temperature=0, eos_id=tokenizer.eos_id)
            sampled = generate(
                gpt, rows, self._new_tokens, hp.temperature, hp.top_k, hp.top_p, tokenizer.eos_id, generator=generators
            )
        repeated = [example for example in examples for _ in range(G)]
        texts = [tokenizer.decode(ids) for ids in sampled]
        right_greedy = [task.score(e, tokenizer.decode(ids)) >= 1 for e, ids in zip(examples, greedy, strict=True)]
        right = torch.tensor([task.score(e, text) >= 1 for e, text in zip(repeated, texts, strict=True)])
        rewards = score_completions(self._reward, repeated, texts)
        self._eval_totals += torch.tensor(
            [sum(right_greedy), right.view(len(examples), G).any(dim=1).sum().item(), sum(rewards), len(examples)],
            dtype=torch.float64,
        )

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def _log_scores(self, prefix: str) -> None:
        totals = self.trainer.strategy.reduce(self._eval_totals.to(self.device), reduce_op="sum")
        right_greedy, right_any, reward, prompts = totals.tolist()
        if not prompts:
            return
        G = self.hparams.group_size
        # Totals over every rank already: the same values everywhere (sync_dist keeps Lightning from warning).
        self.log(f"{prefix}/pass@1", right_greedy / prompts, prog_bar=prefix == "val", sync_dist=True)
        self.log(f"{prefix}/pass@{G}", right_any / prompts, sync_dist=True)
        self.log(f"{prefix}/reward_mean", reward / (prompts * G), sync_dist=True)

    # --- checkpoints: the sampler's state travels inside ----------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.sampler is not None:
            checkpoint["grpo_sampler"] = {"seed": self.sample_base_seed, "state": self.sampler.get_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("grpo_sampler")
        if saved is not None and self._stage == "fit":
            self.sample_base_seed = saved["seed"]
            self.sampler = torch.Generator()
            self.sampler.set_state(saved["state"])
