"""LitGPT: the thin LightningModule around ``GPT``. Its typed ``__init__`` is the CLI's ``--model.*``.

The model's vocabulary comes from the data module's tokenizer at ``setup`` (nobody copies
numbers by hand); the resolved shape is written back into the hyperparameters, and the
tokenizer is stored in every checkpoint, so ``LitGPT.load_from_checkpoint(path)`` and
``predict --ckpt_path`` need nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig, generate, lr_at, param_groups
from lightningllm.model.optim import Schedule

_COMPILED_PREFIX = "_orig_mod."


def _pad_vocab(size: int, multiple: int = 64) -> int:
    """Round the embedding table up so matmuls hit aligned shapes; ids past the tokenizer are unused."""
    return multiple * math.ceil(size / multiple)


class LitGPT(L.LightningModule):
    def __init__(
        self,
        config: GPTConfig | None = None,
        learning_rate: float = 1e-3,
        min_lr: float = 1e-4,
        warmup_steps: int = 100,
        lr_schedule: Schedule = "cosine",
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        compile: bool = False,
        activation_checkpointing: bool = False,
        max_new_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        sample_seed: int | None = None,
        train_minutes: float | None = None,
    ):
        """
        Args:
            config: the model's shape; ``vocab_size`` is replaced by the data module's tokenizer size.
            learning_rate: peak AdamW learning rate, reached after ``warmup_steps``.
            min_lr: learning rate at the end of the decay.
            warmup_steps: optimizer steps of linear warmup.
            lr_schedule: ``cosine`` or ``linear`` decay to ``min_lr`` over the run, or ``constant``.
            weight_decay: AdamW decay on matmul weights (never on norms, biases, embeddings).
            betas: AdamW betas.
            eps: AdamW epsilon.
            compile: wrap the model in ``torch.compile``.
            activation_checkpointing: recompute each block in backward to save memory.
            max_new_tokens: predict: tokens to generate per prompt.
            temperature: predict: sampling temperature (0 is greedy).
            top_k: predict: sample among the k most likely tokens.
            top_p: predict: sample within the smallest set of tokens of total probability p.
            sample_seed: predict: seed for reproducible sampling.
            train_minutes: stop after this much training wall-clock (validation excluded) and decay the
                learning rate over it instead of over ``trainer.max_steps``: a run that fits a time budget
                on any machine.
        """
        super().__init__()
        if isinstance(config, dict):  # as stored in a checkpoint's hyperparameters
            config = GPTConfig.from_dict(config)
        self.config = config or GPTConfig.from_name("debug")
        self.save_hyperparameters()
        # A plain dict: checkpoints stay loadable with torch.load(weights_only=True).
        self.hparams["config"] = self.config.to_dict()
        self.model: GPT | None = None
        self.tokenizer: Tokenizer | None = None
        self.val_loss = MeanMetric()
        self._step_start = 0.0
        self._train_seconds = 0.0  # training wall-clock so far, saved in checkpoints

    # --- building the model: at setup (shape from the data) or from a checkpoint ----------
    def _build(self, config: GPTConfig) -> None:
        self.config = config
        self.model = GPT(config)
        self.model.activation_checkpointing = self.hparams.activation_checkpointing
        self.hparams["config"] = config.to_dict()  # saved hyperparameters carry the resolved vocab_size

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None and self.tokenizer is None:
            self.tokenizer = tokenizer
        if self.model is None:
            config = self.config
            if tokenizer is not None:
                config = dataclasses.replace(config, vocab_size=_pad_vocab(tokenizer.vocab_size))
            block_size = getattr(datamodule, "block_size", None)
            if block_size is not None and block_size > config.block_size:
                raise ValueError(
                    f"data.block_size ({block_size}) is longer than model.config.block_size ({config.block_size})"
                )
            self._build(config)

    def configure_model(self) -> None:
        if self.hparams.compile and self.model is not None and not hasattr(self.model, "_orig_mod"):
            self.model = torch.compile(self.model)

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            gpt = getattr(self.model, "_orig_mod", self.model)
            print(f"model: {gpt.num_params():,} parameters\n{gpt.breakdown_table()}")

    # --- training --------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    @staticmethod
    def _split(batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) from our data modules' pairs, or from a plain (B, T + 1) token block."""
        if isinstance(batch, torch.Tensor):
            batch = batch.long()
            return batch[:, :-1], batch[:, 1:]  # (B, T) each
        return batch

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.model(*self._split(batch))
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        elapsed = time.perf_counter() - self._step_start
        self._train_seconds += elapsed
        budget = self.hparams.train_minutes
        if budget is not None and self._train_seconds >= 60 * budget:
            self.trainer.should_stop = True
        if (self.global_step % self.trainer.log_every_n_steps) == 0:
            inputs, _ = self._split(batch)
            tokens = inputs.numel() * self.trainer.world_size
            self.log("train/step_time", elapsed)
            self.log("train/tokens_per_sec", tokens / max(elapsed, 1e-9))

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        inputs, targets = self._split(batch)
        # Weight each batch by its trained-on targets: the split's mean NLL, not a mean of means.
        self.val_loss.update(self.model(inputs, targets), weight=(targets != IGNORE_INDEX).sum())

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def _log_eval(self, prefix: str) -> None:
        """Token-weighted mean NLL over the whole split, perplexity and bits per byte from it."""
        mean_nll = self.val_loss.compute()
        self.val_loss.reset()
        self.log(f"{prefix}/loss", mean_nll, prog_bar=prefix == "val", sync_dist=False)
        self.log(f"{prefix}/ppl", torch.exp(mean_nll))
        bytes_per_token = getattr(getattr(self.trainer, "datamodule", None), "bytes_per_token", None)
        if bytes_per_token:
            self.log(f"{prefix}/bpb", mean_nll / math.log(2) / bytes_per_token)

    def configure_optimizers(self):
        hp = self.hparams
        groups = param_groups(self.model, hp.weight_decay)
        fused = self.device.type == "cuda"
        optimizer = torch.optim.AdamW(
            groups, lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps, fused=fused, foreach=not fused
        )
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches

        def factor(step: int) -> float:
            progress = None
            if hp.train_minutes is not None:
                progress = self._train_seconds / (60 * hp.train_minutes)
            lr = lr_at(step, hp.learning_rate, hp.warmup_steps, int(total), hp.min_lr, hp.lr_schedule, progress)
            return lr / hp.learning_rate

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # --- prediction ------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer: load it from a lightningllm checkpoint")
        prompts = [self.tokenizer.encode(p) for p in batch["prompt"]]
        hp = self.hparams
        gpt = getattr(self.model, "_orig_mod", self.model)
        new_tokens = generate(
            gpt,
            prompts,
            max_new_tokens=hp.max_new_tokens,
            temperature=hp.temperature,
            top_k=hp.top_k,
            top_p=hp.top_p,
            eos_id=self.tokenizer.eos_id,
            seed=hp.sample_seed,
        )
        return [
            {
                "id": int(i),
                "prompt": text,
                "completion": self.tokenizer.decode(ids),
                "prompt_tokens": len(p),
                "completion_tokens": len(ids),
            }
            for i, text, p, ids in zip(batch["id"], batch["prompt"], prompts, new_tokens, strict=True)
        ]

    # --- checkpoints: the tokenizer and the resolved shape travel inside --------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_str()
        checkpoint["gpt_config"] = self.config.to_dict()
        checkpoint["train_seconds"] = self._train_seconds
        checkpoint["state_dict"] = {k.replace(_COMPILED_PREFIX, ""): v for k, v in checkpoint["state_dict"].items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "gpt_config" not in checkpoint:
            raise ValueError("checkpoint was not written by lightningllm (it has no 'gpt_config')")
        config = GPTConfig.from_dict(checkpoint["gpt_config"])
        if self.model is None or getattr(self.model, "_orig_mod", self.model).config != config:
            self._build(config)
            self.configure_model()
        if "tokenizer" in checkpoint:
            self.tokenizer = Tokenizer.from_str(checkpoint["tokenizer"])
        self._train_seconds = checkpoint.get("train_seconds", 0.0)
        prefix = _COMPILED_PREFIX if hasattr(self.model, "_orig_mod") else ""
        checkpoint["state_dict"] = {
            k.replace("model.", f"model.{prefix}", 1) if k.startswith("model.") else k: v
            for k, v in checkpoint["state_dict"].items()
        }
