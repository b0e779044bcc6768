"""DPO: direct preference optimization of a trained GPT, a ``LitGPT`` that learns from chosen/rejected pairs.

The loss of a pair is ``-log σ(β·[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])``
(Rafailov et al., 2023), with ``log π(y)`` the summed log-probability of an answer's tokens given its
prompt (``lightningllm.training.logprobs``), ``y_w`` the chosen and ``y_l`` the rejected answer. The
reference ``π_ref`` is the starting model, ``model.init_from``: a frozen copy of it (``reference:
copy``), kept out of the module's parameters and checkpoints and rebuilt from ``init_from`` at every
setup, so a resumed run compares against the same model; or its log-probabilities of every pair,
computed once before training and stored with the data (``precomputed``), which keeps no second model
in memory. With LoRA adapters the reference is the same model with its adapters switched off: no copy
either way. Chosen and rejected rows run in one forward. It logs ``train/*`` and ``val/*``: ``loss``,
``rewards_chosen`` and ``rewards_rejected`` (β·(log π − log π_ref), mean), ``reward_accuracy`` (the
share of pairs whose chosen reward is higher) and ``reward_margin`` (their mean difference). The
optimizer, schedule, checkpoints and divergence checks are ``LitGPT``'s.

With ``sft_weight`` > 0 each pair's loss adds that times the chosen answer's mean per-token negative
log-likelihood (RPO, Pang et al., 2024; trl's ``rpo_alpha``): DPO alone may lower the likelihood of
both answers, and on verified-correct answers of long worked solutions that undoes the model's greedy
answers (BENCHMARKS.md); the term keeps the chosen answer likely. ``train/sft_loss`` logs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from lightningllm.checkpoint import load_export
from lightningllm.data.preference import PreferenceDataModule
from lightningllm.model import GPT, IGNORE_INDEX, adapters_disabled
from lightningllm.model.lora import lora_layers
from lightningllm.model.pretrained import read_config
from lightningllm.training.logprobs import sequence_logprobs, token_logprobs
from lightningllm.training.module import LitGPT

PAIR_METRICS = ("rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin")


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair, and the implicit rewards of its two answers.

    Args:
        policy_chosen: (B,) summed log-probabilities of the chosen answers under the model being trained.
        policy_rejected: (B,) the same for the rejected answers.
        reference_chosen: (B,) the chosen answers' log-probabilities under the reference model.
        reference_rejected: (B,) the rejected answers' under the reference model.
        beta: the strength of the pull towards the reference (larger: stay closer to it).
        label_smoothing: the assumed probability that a pair's preference is flipped (conservative DPO);
            0 is plain DPO.

    Returns:
        (loss, rewards_chosen, rewards_rejected), each (B,): ``-log σ(r_w − r_l)`` (with label smoothing,
        ``-(1 − ε)·log σ(r_w − r_l) − ε·log σ(r_l − r_w)``) per pair, and the rewards
        ``r = β·(log π − log π_ref)``, detached.
    """
    rewards_chosen = beta * (policy_chosen - reference_chosen)
    rewards_rejected = beta * (policy_rejected - reference_rejected)
    margin = rewards_chosen - rewards_rejected
    loss = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    return loss, rewards_chosen.detach(), rewards_rejected.detach()


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Within the block ``model`` runs in eval mode (no dropout), then goes back to the mode it was in."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


class DPO(LitGPT):
    def __init__(
        self,
        beta: float = 0.1,
        reference: Literal["copy", "precomputed"] = "copy",
        label_smoothing: float = 0.0,
        sft_weight: float = 0.0,
        **kwargs: Any,
    ):
        """
        Args:
            beta: how strongly the model is held to the reference: the rewards are β × the log-probability
                gained over it (0.1 is the usual value; larger: smaller steps away from the starting model).
            reference: ``copy``: a frozen copy of the starting model (``init_from``) computes the reference
                log-probabilities each step; ``precomputed``: they are computed once for every pair before
                training, and no second model is kept. With LoRA adapters the reference is the model with
                its adapters off, and no copy is made.
            label_smoothing: conservative DPO: the assumed probability, in [0, 0.5), that a pair's
                preference is the wrong way round; 0 is plain DPO.
            sft_weight: weight of the chosen answer's mean per-token negative log-likelihood added to each
                pair's loss (RPO; 1.0 is the paper's value); 0 is plain DPO.
            **kwargs: ``LitGPT``'s arguments (``init_from``, required: the model to tune and the reference;
                ``learning_rate``, ``warmup_steps``, ``lora``, ...).
        """
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"model.beta must be a number > 0 (got {beta!r})")
        if reference not in ("copy", "precomputed"):
            raise ValueError(f"model.reference must be copy or precomputed (got {reference!r})")
        if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 0.5:
            raise ValueError(f"model.label_smoothing must be in [0, 0.5) (got {label_smoothing!r})")
        if isinstance(sft_weight, bool) or not isinstance(sft_weight, (int, float)) or not sft_weight >= 0:
            raise ValueError(f"model.sft_weight must be a number >= 0 (got {sft_weight!r})")
        super().__init__(**kwargs)
        # The frozen copy of the starting model, in a plain list: not a submodule, so it stays out of
        # parameters(), the optimizer, state_dict() and the checkpoints (it is rebuilt from init_from).
        self._reference: list[GPT] = []
        self.pair_metrics = torch.nn.ModuleDict({name: MeanMetric() for name in PAIR_METRICS})

    # --- setup: the data, the starting model and the reference ---------------------------------
    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if not isinstance(data, PreferenceDataModule):
            raise ValueError(
                f"DPO trains on preference pairs, not {type(data).__name__}: set data.class_path "
                "lightningllm.data.PreferenceDataModule"
            )
        if not self.hparams.init_from:
            raise ValueError(
                "model.init_from is not set: DPO tunes a trained model (a lightningllm export folder, "
                "--model.init_from DIR), which is also its reference"
            )
        super().setup(stage)
        self._reference = []
        if stage == "predict":
            return
        if self.hparams.reference == "precomputed":
            self._precompute_reference(data)
        elif stage != "fit" or not lora_layers(self.model):
            # Outside fit a LoRA checkpoint is read merged (no adapters to switch off): compare with a copy.
            self._reference = [self._starting_model()]

    def build(self, data: PreferenceDataModule | None = None) -> None:
        """``LitGPT.build``, after refusing (naming ``file:line``) a pair longer than ``init_from``'s context."""
        if self.model is None and isinstance(data, PreferenceDataModule) and self.hparams.init_from:
            data.check_fits(read_config(Path(self.hparams.init_from) / "config.json").block_size)
        super().build(data)

    def _starting_model(self) -> GPT:
        """A fresh, frozen, eval-mode load of ``init_from``: the reference, whatever the module has trained since."""
        model, _ = load_export(self.hparams.init_from)
        return model.requires_grad_(False).eval()

    @torch.no_grad()
    def _precompute_reference(self, data: PreferenceDataModule) -> None:
        """Store the starting model's log-probabilities of every pair's answers with the pairs (then drop it)."""
        reference = self._starting_model().to(self.trainer.strategy.root_device)
        with self.trainer.precision_plugin.forward_context():  # as the policy's forward will run
            for pairs in data.splits().values():
                values = []
                for batch in pairs.batches(data.batch_size):
                    inputs, targets = (t.to(reference.lm_head.weight.device) for t in self._split(batch))
                    values.append(sequence_logprobs(reference, inputs, targets).view(2, -1).T)  # (B, 2)
                pairs.reference = torch.cat(values).float().cpu()

    # --- the step ------------------------------------------------------------------------------
    @staticmethod
    def _split(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (2B, T): the chosen rows, then the rejected ones (one forward for both)."""
        inputs = torch.cat([batch["chosen_inputs"], batch["rejected_inputs"]])
        targets = torch.cat([batch["chosen_targets"], batch["rejected_targets"]])
        return inputs, targets

    def _reference_logprobs(self, batch: dict, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(2B,) the reference's log-probabilities of the batch's chosen, then rejected, answers."""
        if self.hparams.reference == "precomputed":
            return torch.cat([batch["reference_chosen"], batch["reference_rejected"]])
        with torch.no_grad():
            if self._reference:
                reference = self._reference[0]
                if reference.lm_head.weight.device != inputs.device:
                    reference.to(inputs.device)
                return sequence_logprobs(reference, inputs, targets)
            with adapters_disabled(self.model), _eval_mode(self.model):  # LoRA: the base model is the reference
                return sequence_logprobs(self.model, inputs, targets)

    def _pair_losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, rewards_chosen, rewards_rejected, sft_loss), each (B,), of the batch's pairs.

        ``loss`` is DPO's plus ``sft_weight`` × ``sft_loss``, the chosen answer's mean per-token NLL.
        """
        inputs, targets = self._split(batch)
        policy = token_logprobs(self(inputs), targets).sum(dim=-1)  # (2B,)
        reference = self._reference_logprobs(batch, inputs, targets)
        B = batch["chosen_inputs"].shape[0]
        hp = self.hparams
        losses, rewards_chosen, rewards_rejected = dpo_loss(
            policy[:B], policy[B:], reference[:B], reference[B:], hp.beta, hp.label_smoothing
        )
        answer_tokens = (targets[:B] != IGNORE_INDEX).sum(dim=-1).clamp(min=1)
        sft = -policy[:B] / answer_tokens
        if hp.sft_weight:
            losses = losses + hp.sft_weight * sft
        return losses, rewards_chosen, rewards_rejected, sft.detach()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses, rewards_chosen, rewards_rejected, sft = self._pair_losses(batch)
        # The mean over the batch's real pairs: the rows that fill an epoch's last, partial step weigh nothing.
        real = (batch["chosen_targets"] != IGNORE_INDEX).any(dim=1).to(losses.dtype)
        loss = (losses * real).sum() / real.sum().clamp(min=1)
        self._loss = loss.detach()
        if self._logging_step():
            # One all-reduce: the loss (a mean over the ranks) and sums over every rank's real pairs.
            pairs = torch.cat([_pair_values(rewards_chosen, rewards_rejected), sft[None]]) * real  # (5, B)
            sums = torch.cat([self._loss.view(1), pairs.sum(dim=1), real.sum().view(1)])
            sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            means = sums[1:-1] / sums[-1].clamp(min=1)  # the 4 pair metrics, then sft_loss
            self.log("train/loss", sums[0] / self.trainer.world_size, prog_bar=True)
            self.log("train/lr", self.optimizers().param_groups[0]["lr"])
            for name, value in zip(PAIR_METRICS, means[:-1], strict=True):
                self.log(f"train/{name}", value)
            if self.hparams.sft_weight:
                self.log("train/sft_loss", means[-1])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses, rewards_chosen, rewards_rejected, _ = self._pair_losses(batch)
        real = (batch["chosen_targets"] != IGNORE_INDEX).any(dim=1).to(losses.dtype)  # padding rows weigh 0
        self.val_loss.update(losses, weight=real)
        for name, values in zip(PAIR_METRICS, _pair_values(rewards_chosen, rewards_rejected), strict=True):
            self.pair_metrics[name].update(values, weight=real)

    def on_validation_epoch_start(self) -> None:
        # Fresh states in this loop's grad mode: a validate() before fit() would leave inference tensors,
        # which fit's validation (under no_grad, not inference mode) cannot update in place.
        for metric in (self.val_loss, *self.pair_metrics.values()):
            metric.reset()

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def on_validation_epoch_end(self) -> None:
        self._log_pairs("val")

    def on_test_epoch_end(self) -> None:
        self._log_pairs("test")

    def _log_pairs(self, prefix: str) -> None:
        """The split's mean loss, rewards, reward accuracy and margin over its pairs (reduced over the ranks)."""
        self.log(f"{prefix}/loss", self.val_loss.compute(), prog_bar=prefix == "val", sync_dist=True)
        self.val_loss.reset()
        for name in PAIR_METRICS:
            metric = self.pair_metrics[name]
            self.log(f"{prefix}/{name}", metric.compute(), prog_bar=name == "reward_accuracy", sync_dist=True)
            metric.reset()


def _pair_values(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """(4, B): per pair, the chosen reward, the rejected reward, whether the chosen is higher, their margin."""
    wins = (rewards_chosen > rewards_rejected).to(rewards_chosen.dtype)
    return torch.stack([rewards_chosen, rewards_rejected, wins, rewards_chosen - rewards_rejected])
