"""LitGPT: the thin LightningModule around ``GPT``. Its typed ``__init__`` is the CLI's ``--model.*``.

The model's vocabulary comes from the data module's tokenizer at ``setup`` (nobody copies
numbers by hand); the resolved shape is written back into the hyperparameters, and the
tokenizer is stored in every checkpoint, so ``LitGPT.load_from_checkpoint(path)`` and
``predict --ckpt_path`` need nothing else. It logs ``train/*`` (loss, lr, grad_norm, step time,
tokens/s) and ``val/*`` (loss, ppl, bpb), and at fit start the run's resolved hyperparameters.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from torchmetrics import MeanMetric

from lightningllm.data.tokenizer import Tokenizer
from lightningllm.export import COMPILED_PREFIX
from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig, Muon, generate, lr_at, param_groups
from lightningllm.model.optim import Schedule
from lightningllm.training.callbacks import data_arguments, log_hyperparameters


def _pad_vocab(size: int, multiple: int = 64) -> int:
    """Round the embedding table up so matmuls hit aligned shapes; ids past the tokenizer are unused."""
    return multiple * math.ceil(size / multiple)


def _load_export(directory: str, data_tokenizer: Tokenizer | None) -> tuple[GPT, Tokenizer | None]:
    """The GPT exported to ``directory`` and its tokenizer; the data's tokenizer, if any, must be the same."""
    directory = Path(directory)
    model = GPT.from_pretrained(directory)
    tokenizer_file = directory / "tokenizer.json"
    tokenizer = Tokenizer.from_file(tokenizer_file) if tokenizer_file.is_file() else None
    if data_tokenizer is not None and tokenizer is not None:
        if data_tokenizer.hf.get_vocab(with_added_tokens=True) != tokenizer.hf.get_vocab(with_added_tokens=True):
            raise ValueError(
                f"the data's tokenizer ({data_tokenizer.vocab_size} tokens) is not the tokenizer of model.init_from "
                f"{directory} ({tokenizer.vocab_size} tokens): train on it, e.g. --data.tokenizer_path {tokenizer_file}"
            )
    elif data_tokenizer is not None and data_tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"the data's tokenizer has {data_tokenizer.vocab_size} tokens, more than the vocab_size "
            f"{model.config.vocab_size} of model.init_from {directory}"
        )
    return model, tokenizer


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
        optimizer: Literal["adamw", "muon"] = "adamw",
        compile: bool = False,
        activation_checkpointing: bool = False,
        max_new_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        sample_seed: int | None = None,
        train_minutes: float | None = None,
        init_from: str | None = None,
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
            optimizer: ``adamw``, or ``muon``: Muon for the transformer blocks' matrices and AdamW for
                embeddings, norms and biases, at the same learning rate (see ``lightningllm.model.Muon``).
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
            init_from: start from a folder written by ``lightningllm export`` (or ``GPT.save_pretrained``):
                its ``config.json`` gives the model's shape (``config`` is ignored) and its weights the
                starting point. The data must use its tokenizer (``--data.tokenizer_path DIR/tokenizer.json``).
        """
        super().__init__()
        if isinstance(config, dict):  # as stored in a checkpoint's hyperparameters
            config = GPTConfig.from_dict(config)
        self.config = config or GPTConfig.from_name("debug")
        # logger=False: Lightning would log them before setup, with the placeholder vocab_size; on_fit_start
        # logs the resolved ones with the data and trainer settings (see _run_hparams).
        self.save_hyperparameters(logger=False)
        # A plain dict: checkpoints stay loadable with torch.load(weights_only=True).
        self.hparams["config"] = self.config.to_dict()
        self.model: GPT | None = None
        self.tokenizer: Tokenizer | None = None
        self.val_loss = MeanMetric()
        self._step_start = 0.0
        self._last_step_end: float | None = None  # None right after a validation run or at an epoch start
        self._train_seconds = 0.0  # training wall-clock so far, saved in checkpoints

    # --- building the model: at setup (shape from the data) or from a checkpoint ----------
    @property
    def gpt(self) -> GPT | None:
        """The plain ``GPT``, unwrapped from ``torch.compile`` when it is compiled."""
        return getattr(self.model, "_orig_mod", self.model)

    def _build(self, config: GPTConfig, model: GPT | None = None) -> None:
        """Install ``model`` (or a freshly initialized ``GPT(config)``) with this module's settings."""
        self.config = config
        self.model = model if model is not None else GPT(config)
        self.model.activation_checkpointing = self.hparams.activation_checkpointing
        self.hparams["config"] = config.to_dict()  # saved hyperparameters carry the resolved vocab_size

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None and self.tokenizer is None:
            self.tokenizer = tokenizer
        if self.model is None:
            config, pretrained = self.config, None
            if self.hparams.get("init_from"):
                pretrained, export_tokenizer = _load_export(self.hparams.init_from, tokenizer)
                config = pretrained.config
                self.tokenizer = self.tokenizer or export_tokenizer
            elif tokenizer is not None:
                config = dataclasses.replace(config, vocab_size=_pad_vocab(tokenizer.vocab_size))
            block_size = getattr(datamodule, "block_size", None)
            if block_size is not None and block_size > config.block_size:
                raise ValueError(
                    f"data.block_size ({block_size}) is longer than model.config.block_size ({config.block_size})"
                )
            self._build(config, pretrained)

    def configure_model(self) -> None:
        if self.hparams.compile and self.model is not None and not hasattr(self.model, "_orig_mod"):
            self.model = torch.compile(self.model)

    def on_fit_start(self) -> None:
        gpt = self.gpt
        if self.trainer.is_global_zero:
            print(f"model: {gpt.num_params():,} parameters\n{gpt.breakdown_table()}")
        metrics = ["train/loss", "val/loss", "val/ppl", "val/bpb"]
        if hasattr(self.trainer.datamodule, "problems"):  # the reasoning corpus: ReasoningEval's score
            metrics.append("val/exact_match")
        log_hyperparameters(self.trainer, self._run_hparams(gpt), metrics)

    def _run_hparams(self, gpt: GPT) -> dict[str, Any]:
        """What this run trains with: the module's arguments (with the resolved shape), the data's, the trainer's."""
        trainer, datamodule = self.trainer, self.trainer.datamodule
        seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything
        batch_size, block_size = getattr(datamodule, "batch_size", None), getattr(datamodule, "block_size", None)
        steps = trainer.accumulate_grad_batches * trainer.world_size
        return {
            **{k: v for k, v in self.hparams.items() if not k.startswith("_")},  # not LightningCLI's _instantiator
            "num_params": gpt.num_params(),
            "data": data_arguments(trainer),
            "trainer": {
                "precision": trainer.precision,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "gradient_clip_val": trainer.gradient_clip_val,
                "max_steps": trainer.max_steps,
                "max_epochs": trainer.max_epochs,
                "world_size": trainer.world_size,
                "seed": None if seed is None else int(seed),
                "tokens_per_step": batch_size * block_size * steps if batch_size and block_size else None,
            },
        }

    # --- training --------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)

    @staticmethod
    def _split(batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) from our data modules' pairs, or from a plain (B, T + 1) token block."""
        if isinstance(batch, (list, tuple)) and len(batch) == 1:  # a TensorDataset of blocks yields [blocks]
            batch = batch[0]
        if isinstance(batch, torch.Tensor):
            batch = batch.long()
            return batch[:, :-1], batch[:, 1:]  # (B, T) each
        return batch

    def _logging_step(self) -> bool:
        """True on the optimizer steps whose training metrics Lightning writes (``log_every_n_steps``).

        ``self.log`` costs about 1.5 ms a call on CPU, 6% of a 0.8M-parameter model's step, so
        training metrics are only computed and logged on those steps.
        """
        every = self.trainer.log_every_n_steps  # 0 turns training logs off
        return bool(every) and (self.global_step + 1) % every == 0  # global_step counts the steps done so far

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.model(*self._split(batch))
        if self._logging_step():
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Total L2 norm of the gradients before clipping (Lightning clips after this hook; with 16-mixed the
        # scaler has already unscaled them). Only on the steps Lightning writes logs: no per-step host sync.
        if self._logging_step():
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads])
            self.log("train/grad_norm", torch.linalg.vector_norm(norms))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self._last_step_end = None

    def on_validation_start(self) -> None:
        self._last_step_end = None  # validation time is not training time

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # A step's time runs from the previous step's end, so it includes loading the batch.
        now = time.perf_counter()
        elapsed = now - (self._last_step_end if self._last_step_end is not None else self._step_start)
        self._last_step_end = now
        self._train_seconds += elapsed
        budget = self.hparams.train_minutes
        if budget is not None and self._train_seconds >= 60 * budget:
            self.trainer.should_stop = True
        if self.trainer.log_every_n_steps and self.global_step % self.trainer.log_every_n_steps == 0:
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
        if hp.optimizer == "muon":
            if isinstance(self.trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
                raise ValueError(
                    "model.optimizer=muon needs whole weight matrices on every device, and this strategy shards "
                    "them: use strategy ddp, or model.optimizer=adamw"
                )
            groups = param_groups(self.gpt, hp.weight_decay, muon=True)
            optimizer = Muon(groups, lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps)
        else:
            optimizer = self._adamw(param_groups(self.gpt, hp.weight_decay))
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else self.trainer.estimated_stepping_batches

        def factor(step: int) -> float:
            progress = None
            if hp.train_minutes is not None:
                progress = self._train_seconds / (60 * hp.train_minutes)
            lr = lr_at(step, hp.learning_rate, hp.warmup_steps, int(total), hp.min_lr, hp.lr_schedule, progress)
            return lr / hp.learning_rate

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _adamw(self, groups: list[dict]) -> torch.optim.AdamW:
        hp = self.hparams
        # The fused kernel exists for CPU and CUDA float parameters; it was 3.5% faster per step than
        # foreach on the 0.8M shape on CPU. 16-mixed keeps foreach: its gradient scaler would hand the
        # fused step still-scaled gradients to clip. Other devices keep foreach too.
        fused = self.device.type in ("cpu", "cuda") and self.trainer.precision != "16-mixed"
        return torch.optim.AdamW(
            groups, lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps, fused=fused, foreach=not fused
        )

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning refuses to clip for a fused optimizer under any mixed precision, for fear of a
        # gradient scaler; bf16-mixed has none, so its gradients are clipped here directly.
        if gradient_clip_val and getattr(optimizer, "_step_supports_amp_scaling", False):
            if gradient_clip_algorithm in (None, "norm"):
                torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # --- prediction ------------------------------------------------------------------------
    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        if self.tokenizer is None:
            raise RuntimeError("this model has no tokenizer: load it from a lightningllm checkpoint")
        prompts = [self.tokenizer.encode(p) for p in batch["prompt"]]
        hp = self.hparams
        new_tokens = generate(
            self.gpt,
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
        checkpoint["state_dict"] = {k.replace(COMPILED_PREFIX, ""): v for k, v in checkpoint["state_dict"].items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "gpt_config" not in checkpoint:
            raise ValueError("checkpoint was not written by lightningllm (it has no 'gpt_config')")
        config = GPTConfig.from_dict(checkpoint["gpt_config"])
        if self.model is None or self.gpt.config != config:
            self._build(config)
            self.configure_model()
        if "tokenizer" in checkpoint:
            self.tokenizer = Tokenizer.from_str(checkpoint["tokenizer"])
        self._train_seconds = checkpoint.get("train_seconds", 0.0)
        prefix = COMPILED_PREFIX if hasattr(self.model, "_orig_mod") else ""
        checkpoint["state_dict"] = {
            k.replace("model.", f"model.{prefix}", 1) if k.startswith("model.") else k: v
            for k, v in checkpoint["state_dict"].items()
        }
