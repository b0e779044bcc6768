"""LitGPT: the thin LightningModule around ``GPT``. Its typed ``__init__`` is the CLI's ``--model.*``.

At ``setup`` the model is built from the data → model contract (``TokenDataModule``): its
vocabulary from the data module's tokenizer, its context checked against the data's
``block_size``; or from an export (``init_from``). Checkpoints carry the resolved shape (as the
one hyperparameter, ``config``) and the tokenizer, so ``LitGPT.load_from_checkpoint(path)`` and
``predict --ckpt_path`` need nothing else (see ``lightningllm.checkpoint``). It logs
``train/*`` (loss, lr, grad_norm, step time, tokens/s) and ``val/*`` (loss, ppl, bpb).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy, Strategy
from torchmetrics import MeanMetric

from lightningllm.checkpoint import LORA_KEY, checkpoint_lora, load_export, model_config, model_state, plain_key
from lightningllm.data.contract import TokenDataModule
from lightningllm.data.loader import data_parallel_share
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import (
    GPT,
    IGNORE_INDEX,
    GPTConfig,
    LoRAConfig,
    Muon,
    apply_lora,
    generate,
    is_int8,
    lr_at,
    param_groups,
    quantize_int8,
    trainable_parameters,
)
from lightningllm.model.generate import check_sampling, check_seed
from lightningllm.model.lora import lora_layers, merged_state_dict
from lightningllm.model.optim import Schedule
from lightningllm.sharded_checkpoint import is_sharded_checkpoint
from lightningllm.training.clock import TrainingClock
from lightningllm.training.evaluation import TaskEval
from lightningllm.training.monitoring import log_hyperparameters, run_hyperparameters
from lightningllm.training.process_group import destroy_process_group_at_exit
from lightningllm.training.sharding import evaluate_under_no_grad, full, is_sharded, local, shard


class TrainingDiverged(RuntimeError):
    """The loss, the gradients or the weights became NaN/inf: the run stops without saving them."""


def _check_training_options(options: dict) -> None:
    """One line naming the first optimizer or schedule option out of range (``model.<name>``)."""
    rules = {
        "learning_rate": (lambda v: v > 0, "a number > 0"),
        "min_lr": (
            lambda v: 0 <= v <= options["learning_rate"],
            f"from 0 to model.learning_rate {options['learning_rate']:g}",
        ),
        "warmup_steps": (lambda v: v >= 0, "0 or more"),
        "weight_decay": (lambda v: v >= 0, "0 or more"),
        "betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
        "eps": (lambda v: v > 0, "a number > 0"),
        "train_minutes": (lambda v: v is None or v > 0, "a number of minutes > 0, or null"),
        "skip_nonfinite_steps": (lambda v: v >= 0, "0 or more"),
    }
    for name, (ok, expected) in rules.items():
        value = options[name]
        valid = value is None or (not isinstance(value, float) or math.isfinite(value))
        if not valid or not ok(value):
            raise ValueError(f"model.{name} must be {expected} (got {value!r})")


_NO_TENSOR_PARALLEL = (
    "trainer.strategy ModelParallelStrategy with tensor_parallel_size {size}: LitGPT shards by FSDP2 over the "
    "data-parallel dimension only (no tensor parallelism): set --trainer.strategy.tensor_parallel_size 1 and "
    "--trainer.strategy.data_parallel_size to the number of processes"
)


_NO_SHARDED_LORA = (
    "model.lora under trainer.strategy ModelParallelStrategy (FSDP2) is not supported: the adapters are small, so "
    "train them with --trainer.strategy ddp (each process holds the frozen base model)"
)


def _lora_options(config: LoRAConfig) -> str:
    """``r=8, alpha=16, targets=attn.qkv,attn.proj`` (how resume errors name a LoRA config)."""
    return f"r={config.r}, alpha={config.alpha:g}, dropout={config.dropout:g}, targets={','.join(config.targets)}" + (
        ", rslora" if config.rslora else ""
    )


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
        max_new_tokens: int | None = None,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        sample_seed: int | None = None,
        on_prompt_too_long: Literal["error", "crop"] = "error",
        train_minutes: float | None = None,
        init_from: str | None = None,
        skip_nonfinite_steps: int = 0,
        lora: LoRAConfig | None = None,
        quantize: Literal["int8"] | None = None,
    ):
        """
        Args:
            config: the model's shape. ``vocab_size`` left unset (null) is taken from the data module's
                tokenizer; set, it must cover the tokenizer.
            learning_rate: peak learning rate, reached after ``warmup_steps``.
            min_lr: learning rate at the end of the decay.
            warmup_steps: optimizer steps of linear warmup.
            lr_schedule: ``cosine`` or ``linear`` decay to ``min_lr`` over the run, or ``constant``.
            weight_decay: decay on matmul weights (never on norms, biases, embeddings).
            betas: AdamW betas.
            eps: AdamW epsilon.
            optimizer: ``adamw``, or ``muon``: Muon for the transformer blocks' matrices and AdamW for
                embeddings, norms and biases, at the same learning rate (see ``lightningllm.model.Muon``).
            compile: wrap the model in ``torch.compile``.
            activation_checkpointing: recompute each block in backward to save memory.
            max_new_tokens: predict: tokens to generate per prompt (at least 1); null: up to 128, fewer when
                the context has less room after the prompt.
            temperature: predict: sampling temperature (0 is greedy).
            top_k: predict: sample among the k most likely tokens (a positive integer).
            top_p: predict: sample within the smallest set of tokens of total probability p, in (0, 1].
            sample_seed: predict: seed for reproducible sampling; each prompt draws from its own stream, so
                it gets the same completion whichever prompts share its batch.
            on_prompt_too_long: predict: ``error`` when a prompt and ``max_new_tokens`` exceed the context, or
                ``crop``: keep the prompt's last tokens so that both fit (with ``max_new_tokens`` null, so that
                min(128, block_size / 2) new tokens fit).
            train_minutes: stop after this much training wall-clock (validation excluded) and decay the
                learning rate over it: a run that fits a time budget on any machine. With
                ``trainer.max_steps`` as well, the run ends at whichever comes first, and the learning
                rate decays over that one (a fast machine then trains no more steps than the recipe).
            init_from: start from a folder written by ``lightningllm export`` (or ``GPT.save_pretrained``):
                its ``config.json`` gives the model's shape (``config`` is ignored) and its weights the
                starting point. The data must use its tokenizer (``--data.tokenizer_path DIR/tokenizer.json``).
            skip_nonfinite_steps: optimizer steps whose loss or gradient norm is not finite (NaN/inf) to skip
                (their update is dropped) before the run stops with an error; 0 stops at the first. A model
                whose weights are not finite is never validated further or saved.
            lora: train low-rank adapters instead of the whole model (``lightningllm.model.lora``): e.g.
                ``--model.lora.r 8 --model.lora.alpha 16 --model.lora.targets '[attn.*]'``, or a ``lora:`` block in
                YAML. They are put on the model once its weights are in place (``init_from``'s, usually); every
                other weight is frozen and bit-identical at the end, and the optimizer holds state for the
                adapters only. Checkpoints hold the base weights and the adapters; ``lightningllm export`` writes
                the merged model, ``lightningllm export --adapter_only`` the adapters alone (peft's files).
            quantize: validate/test/predict: ``int8`` runs the model with int8 block weights on the CPU
                (``lightningllm.model.quantize_int8``; a LoRA model's adapters are folded in first), as
                ``lightningllm serve --quantize int8`` does; ``predict --quantize int8`` is the shortcut. Not for fit.
        """
        super().__init__()
        _check_training_options(locals())
        # Sampling options fail here, at the command line, not after the model has loaded.
        check_sampling(max_new_tokens, temperature, top_k, top_p, on_prompt_too_long, prefix="model.")
        check_seed(sample_seed, "model.sample_seed")
        if isinstance(config, dict):  # as stored in a checkpoint's hyperparameters
            config = GPTConfig.from_dict(config)
        self.config = config or GPTConfig.from_name("debug", vocab_size=None)
        self.lora = LoRAConfig(**lora) if isinstance(lora, dict) else lora
        self.save_hyperparameters(logger=False)  # logged at fit start, with the resolved shape
        self.hparams["config"] = self.config.to_dict()  # a plain dict: torch.load(weights_only=True) reads it
        self.model: GPT | None = None
        # With compile, torch.compile(self.model)'s call: a bound method, not a submodule, so parameter names
        # stay plain (no second copy, no "_orig_mod." prefix) and generation keeps running the eager model.
        self._compiled_call = None
        self.tokenizer: Tokenizer | None = None
        self.val_loss = MeanMetric()
        self.clock = TrainingClock(train_minutes)
        self._loss: torch.Tensor | None = None  # the last training loss, for the divergence message
        self._stage: str | None = None  # setup's stage: a checkpoint is checked against this run's data and optimizer
        self._data_tokenizer: Tokenizer | None = None
        self.skipped_steps = 0

    # --- building the model: at setup (from the data) or from a checkpoint ----------------
    def _build(self, config: GPTConfig, model: GPT | None = None) -> None:
        """Install ``model`` (or a freshly initialized ``GPT(config)``) with this module's settings."""
        self.config = config
        self.model = model if model is not None else GPT(config)
        if self.lora is not None:
            apply_lora(self.model, self.lora)
        self._compiled_call = None
        self.model.activation_checkpointing = self.hparams.activation_checkpointing
        self.hparams["config"] = config.to_dict()  # checkpoints and logs carry the resolved shape

    def check_strategy(self, strategy: Strategy, stage: str = "fit") -> None:
        """Refuse, in one line and before any process starts, a ``ModelParallelStrategy`` with tensor parallelism,
        with LoRA, or any for ``predict`` (each rank would decode its own prompts to its own lengths, and a sharded
        forward waits for every rank: ``predict`` reads a sharded checkpoint on one device).

        Under ``ModelParallelStrategy`` LitGPT shards itself with FSDP2 over the data-parallel mesh
        (``configure_model``); it has no tensor-parallel plan. The strategy exposes its sizes only once
        the processes have started (``device_mesh``), so the size asked for is read from its
        constructor argument; ``configure_model`` checks the mesh itself as well.
        """
        if not isinstance(strategy, ModelParallelStrategy):
            return
        if stage == "predict":
            raise ValueError(
                "predict runs on one device, and trainer.strategy ModelParallelStrategy shards the model over "
                "several: leave --trainer.strategy out (predict --ckpt_path reads a sharded checkpoint as well)"
            )
        if self.lora is not None:
            raise ValueError(_NO_SHARDED_LORA)
        asked = strategy._tensor_parallel_size  # no public getter before the mesh exists
        size = strategy.num_processes if asked == "auto" else asked  # "auto": the devices of a node
        if size != 1:
            shown = f"auto (= {size} devices per node)" if asked == "auto" else size
            raise ValueError(_NO_TENSOR_PARALLEL.format(size=shown))

    @staticmethod
    def check_resume_strategy(strategy: Strategy, ckpt_path: str | None) -> None:
        """Refuse, in one line, to resume a sharded checkpoint (a folder) under a strategy that cannot read it."""
        if ckpt_path and is_sharded_checkpoint(ckpt_path) and not isinstance(strategy, ModelParallelStrategy):
            raise ValueError(
                f"cannot resume from {ckpt_path} with trainer.strategy {type(strategy).__name__}: it is a sharded "
                "checkpoint, whose optimizer state only ModelParallelStrategy reads; resume with --trainer.strategy "
                "ModelParallelStrategy, or start a new run from its weights (lightningllm export, then "
                "--model.init_from)"
            )

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.quantize is not None:
            raise ValueError(
                "model.quantize int8 is for inference (validate, test, predict, serve): int8 layers do not train; "
                "leave it out of fit"
            )
        self.check_strategy(self.trainer.strategy, stage)
        destroy_process_group_at_exit()
        data = self.trainer.datamodule
        self._stage = stage
        self._data_tokenizer = data.tokenizer if isinstance(data, TokenDataModule) else None
        self.build(data if isinstance(data, TokenDataModule) else None)

    def build(self, data: TokenDataModule | None = None) -> None:
        """Build the model once: from ``init_from``, else from ``config`` with the vocabulary of ``data``'s tokenizer.

        Raises ``ValueError`` when the shape cannot hold the data (a vocabulary smaller than the
        tokenizer's, a data ``block_size`` longer than the context) or no vocabulary is known.
        """
        tokenizer = data.tokenizer if data is not None else None
        self.tokenizer = self.tokenizer or tokenizer
        if self.model is not None:
            return
        config, pretrained = self.config, None
        if self.hparams.init_from:
            pretrained, export_tokenizer = load_export(self.hparams.init_from, tokenizer)
            config = pretrained.config
            self.tokenizer = self.tokenizer or export_tokenizer
        elif tokenizer is not None and config.vocab_size is None:
            config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
        elif tokenizer is not None and config.vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"model.config.vocab_size {config.vocab_size} is smaller than the data's tokenizer "
                f"({tokenizer.vocab_size} tokens): leave it unset to take the tokenizer's"
            )
        elif config.vocab_size is None:
            raise ValueError("model.config.vocab_size is not set and the data module has no tokenizer: set it")
        if pretrained is not None and is_int8(pretrained) and self._stage == "fit":
            raise ValueError(
                f"model.init_from {self.hparams.init_from} holds int8 weights (an `export --quantize int8`), which do "
                "not train: start from the float export or the checkpoint"
            )
        if data is not None and data.block_size > config.block_size:
            raise ValueError(
                f"data.block_size ({data.block_size}) is longer than model.config.block_size ({config.block_size})"
            )
        self._build(config, pretrained)

    def configure_model(self) -> None:
        """Under ``ModelParallelStrategy``: FSDP2 over the data-parallel mesh (``lightningllm.training.sharding``),
        with ``compile`` per block. Otherwise, with ``compile``, the training and evaluation steps run
        ``torch.compile(model)``. Generation (KV cache, varying lengths) runs eagerly either way."""
        if self.model is None or is_sharded(self.model):
            return
        if self.device_mesh is not None:  # set by ModelParallelStrategy
            if self.lora is not None:
                raise ValueError(_NO_SHARDED_LORA)
            if self.device_mesh["tensor_parallel"].size() > 1:
                raise ValueError(_NO_TENSOR_PARALLEL.format(size=self.device_mesh["tensor_parallel"].size()))
            shard(self.model, self.device_mesh["data_parallel"], compile=self.hparams.compile)
            evaluate_under_no_grad(self.trainer)
        elif self.hparams.compile and self._compiled_call is None:
            self._compiled_call = torch.compile(self.model).__call__

    def on_fit_start(self) -> None:
        gpt = self.model
        if self.trainer.is_global_zero:
            print(f"model: {gpt.num_params():,} parameters\n{gpt.breakdown_table()}")
            if self.lora is not None:
                trainable, total = trainable_parameters(gpt)
                adapted = len(lora_layers(gpt))
                print(
                    f"lora: training {trainable:,} of {total:,} parameters ({trainable / total:.2%}): rank "
                    f"{self.lora.r} adapters on {adapted} linears, every other weight frozen"
                )
        metrics = ["train/loss", "val/loss", "val/ppl", "val/bpb"]
        if any(isinstance(callback, TaskEval) for callback in self.trainer.callbacks):
            metrics += TaskEval.metric_names(self.trainer)
        log_hyperparameters(self.trainer, run_hyperparameters(self.trainer, self, gpt.num_params()), metrics)

    # --- training --------------------------------------------------------------------------
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V), or the mean loss given targets; compiled when ``compile`` is set."""
        return (self._compiled_call or self.model)(idx, targets)

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

        ``self.log`` costs about 1.5 ms a call on CPU, a noticeable share of a tiny model's step, so
        training metrics are only computed and logged on those steps.
        """
        every = self.trainer.log_every_n_steps  # 0 turns training logs off
        return bool(every) and (self.global_step + 1) % every == 0  # global_step counts the steps done so far

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        inputs, targets = self._split(batch)
        loss = self(inputs, targets)
        loss, self._loss = self._token_weighted(loss, targets) if self._ranks > 1 else (loss, loss.detach())
        if self._logging_step():
            self.log("train/loss", self._loss, prog_bar=True)
            self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    @property
    def _ranks(self) -> int:
        return data_parallel_share(self.trainer)[1]

    def _token_weighted(self, loss: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's mean loss rescaled so that the ranks' averaged gradients (DDP, FSDP2) are those of the
        mean over every rank's trained-on targets, and that global mean (detached, for logging).

        With masked targets (instruction data) the ranks hold different numbers of them, and the plain
        average of per-rank means would weigh a rank's few targets like another's many: 2 ranks × b
        would then not train as 1 rank × 2b. One all-reduce of two numbers per step.
        """
        count = (targets != IGNORE_INDEX).sum().to(loss.dtype)
        totals = self.trainer.strategy.reduce(torch.stack([loss.detach() * count, count]), reduce_op="sum")
        return loss * (count * self._ranks / totals[1]), totals[0] / totals[1]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Total L2 norm of the gradients before clipping (Lightning clips after this hook; with 16-mixed the
        # scaler has already unscaled them), logged on the logging steps and checked on every step: one
        # host sync per step, the price of never applying a NaN update. Under FSDP2 the gradients are shards
        # (DTensors): their norm is reduced over the ranks, the whole model's on every rank.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return
        norm = full(torch.nn.utils.get_total_norm(grads))
        if self._logging_step():
            self.log("train/grad_norm", norm)
        if not torch.isfinite(norm):
            self._skip_or_stop(norm, optimizer)

    def _skip_or_stop(self, grad_norm: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """A non-finite step: drop its update (``skip_nonfinite_steps`` times in a run), else stop in one line."""
        step, lr = self.global_step + 1, optimizer.param_groups[0]["lr"]
        loss = float(self._loss) if self._loss is not None else float("nan")
        cause = f"the loss is {loss:g}" if not math.isfinite(loss) else f"the gradient norm is {float(grad_norm):g}"
        self.skipped_steps += 1
        if self.skipped_steps > self.hparams.skip_nonfinite_steps:
            raise TrainingDiverged(
                f"training diverged at step {step}: {cause} (learning rate {lr:g}, likely too high: lower "
                f"--model.learning_rate or lengthen --model.warmup_steps{self._clip_hint}); "
                "no checkpoint holds the diverged model"
            )
        if self.trainer.is_global_zero:
            print(f"fit: skipped step {step}: {cause} ({self.skipped_steps} of {self.hparams.skip_nonfinite_steps})")
        for p in self.parameters():
            p.grad = None  # the optimizer leaves parameters without a gradient (and their state) untouched

    def check_finite(self, when: str) -> None:
        """Raise ``TrainingDiverged`` when a parameter holds NaN or inf (``when``: what would have used them).

        One host sync; sharded (FSDP2), each rank checks its shards and one all-reduce tells every rank
        which tensors are not finite, so all of them raise together.
        """
        names, params = zip(*self.model.named_parameters(), strict=True)
        finite = torch.stack([torch.isfinite(local(p)).all() for p in params])
        if is_sharded(self.model):
            finite = self.trainer.strategy.reduce(finite.float(), reduce_op="min") > 0
        bad = [name for name, ok in zip(names, finite.tolist(), strict=True) if not ok]
        if bad:
            raise TrainingDiverged(
                f"training diverged by step {self.global_step}: {len(bad)} parameter tensors hold NaN/inf "
                f"(first {bad[0]}), so {when}: lower --model.learning_rate{self._clip_hint}"
            )

    @property
    def _clip_hint(self) -> str:
        return "" if self.trainer.gradient_clip_val else ", or set --trainer.gradient_clip_val"

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.clock.step_started()

    def on_train_epoch_start(self) -> None:
        self.clock.pause()

    def quantize_for_inference(self) -> None:
        """With ``quantize`` int8: swap the model for its int8 version (adapters folded in), once, after the
        checkpoint's weights are in place (the ``on_*_start`` hooks of validate, test and predict run after)."""
        if self.hparams.quantize is None or self.model is None or is_int8(self.model):
            return
        if is_sharded(self.model):
            raise ValueError("model.quantize int8 runs a whole model in one process: leave out ModelParallelStrategy")
        if self.device.type != "cpu":
            raise ValueError(
                f"model.quantize int8 runs on the CPU (fbgemm kernels), not on {self.device.type}: add "
                "--trainer.accelerator cpu, or leave --quantize out"
            )
        model = self.model
        if lora_layers(model):
            model = GPT(self.config)
            model.load_state_dict(merged_state_dict(self.model))
        self.model = quantize_int8(model)
        self._compiled_call = None  # int8 layers run eagerly

    def on_test_start(self) -> None:
        self.quantize_for_inference()

    def on_predict_start(self) -> None:
        self.quantize_for_inference()

    def on_validation_start(self) -> None:
        if self.trainer.state.fn != "fit":
            self.quantize_for_inference()
        self.clock.pause()  # validation time is not training time
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.check_finite("it is not validated")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        elapsed = self.clock.step_ended()
        if self.clock.budget_seconds is not None and self.trainer.world_size > 1:
            # Every rank takes rank 0's clock: the same learning rate each step (the schedule may follow
            # the budget), and the same stopping step (one rank stopping alone would hang the others).
            self.clock.seconds = float(self.trainer.strategy.broadcast(self.clock.seconds, src=0))
        if self.clock.expired:
            self.trainer.should_stop = True
        if self.trainer.log_every_n_steps and self.global_step % self.trainer.log_every_n_steps == 0:
            inputs, _ = self._split(batch)
            self.log("train/step_time", elapsed)
            self.log("train/tokens_per_sec", inputs.numel() * self.trainer.world_size / max(elapsed, 1e-9))

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        inputs, targets = self._split(batch)
        # Weight each batch by its trained-on targets: the split's mean NLL, not a mean of means. A batch of
        # padding only (the last step of a split, on some ranks) has none, and a NaN mean that weighs nothing.
        count = (targets != IGNORE_INDEX).sum()
        loss = self(inputs, targets)
        self.val_loss.update(torch.where(count > 0, loss, 0.0), weight=count)

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
        # MeanMetric.compute() has already reduced over the ranks: every rank logs the same value.
        self.log(f"{prefix}/loss", mean_nll, prog_bar=prefix == "val", sync_dist=True)
        self.log(f"{prefix}/ppl", torch.exp(mean_nll), sync_dist=True)
        data = self.trainer.datamodule
        bytes_per_token = data.bytes_per_token if isinstance(data, TokenDataModule) else None
        if bytes_per_token:
            self.log(f"{prefix}/bpb", mean_nll / math.log(2) / bytes_per_token, sync_dist=True)

    # --- optimizer and learning-rate schedule ----------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "muon":
            if isinstance(self.trainer.strategy, FSDPStrategy):  # FSDP1's flat shards are not matrices
                raise ValueError(
                    "model.optimizer=muon needs whole weight matrices, and FSDPStrategy flattens them into shards: "
                    "use --trainer.strategy ModelParallelStrategy (FSDP2, which Muon gathers) or ddp, or "
                    "--model.optimizer adamw"
                )
            groups = param_groups(self.model, hp.weight_decay, muon=True)
            optimizer = Muon(groups, lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps)
        else:
            optimizer = self._adamw(param_groups(self.model, hp.weight_decay))
        totals: list[int] = []

        def total_steps(step: int) -> int:
            # Read at the first step, not here: trainer.estimated_stepping_batches sets the training loader up,
            # and done in configure_optimizers, before a checkpoint is restored, it made a resumed run lose its
            # data position (Lightning-AI/pytorch-lightning#20550). Step 0's rate does not depend on the total.
            if step == 0:
                return 1
            if not totals:
                trainer = self.trainer
                totals.append(int(trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches))
            return totals[0]

        def factor(step: int) -> float:
            progress = self.clock.progress
            if progress is not None and self.trainer.max_steps > 0:  # two bounds: decay over the nearer end
                # The budget is the nearer end only if, at the pace so far, it runs out before max_steps;
                # otherwise the schedule is the step-based one, exactly, and a run does not depend on
                # how fast the machine was (the same model on every machine fast enough for the recipe).
                by_steps = (step - hp.warmup_steps) / max(1, self.trainer.max_steps - hp.warmup_steps)
                budget_binds = progress > 0 and step / progress < self.trainer.max_steps
                progress = max(progress, by_steps) if budget_binds else None
            total = total_steps(step)
            lr = lr_at(step, hp.learning_rate, hp.warmup_steps, total, hp.min_lr, hp.lr_schedule, progress)
            return lr / hp.learning_rate

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _adamw(self, groups: list[dict]) -> torch.optim.AdamW:
        hp = self.hparams
        # The fused kernel exists for CPU and CUDA float parameters, and was faster per step than foreach on
        # CPU (BENCHMARKS.md). 16-mixed keeps foreach: its gradient scaler would hand the fused step
        # still-scaled gradients to clip. Other devices keep foreach too.
        fused = self.device.type in ("cpu", "cuda") and self.trainer.precision != "16-mixed"
        return torch.optim.AdamW(
            groups, lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps, fused=fused, foreach=not fused
        )

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning refuses to clip for a fused optimizer under any mixed precision, for fear of a gradient
        # scaler; a fused AdamW is only made without one (see _adamw), so its gradients are clipped here.
        if gradient_clip_val and optimizer.defaults.get("fused"):
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
            self.model,
            prompts,
            max_new_tokens=hp.max_new_tokens,
            temperature=hp.temperature,
            top_k=hp.top_k,
            top_p=hp.top_p,
            eos_id=self.tokenizer.eos_id,
            seed=hp.sample_seed,
            on_prompt_too_long=hp.on_prompt_too_long,
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

    # --- checkpoints: the shape (once), the tokenizer and the clock travel inside -----------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite("no checkpoint is written (the earlier ones are kept)")
        # The shape is the one hyperparameter a checkpoint keeps: LightningCLI applies a checkpoint's
        # hyperparameters over the command line's, and every other setting (learning rate, sampling)
        # belongs to the command line of the run that loads it.
        checkpoint["hyper_parameters"] = {"config": self.config.to_dict()}
        if self.tokenizer is not None:
            checkpoint["tokenizer"] = self.tokenizer.to_str()
        checkpoint["train_seconds"] = self.clock.seconds
        if self.lora is not None:
            checkpoint[LORA_KEY] = dataclasses.asdict(self.lora)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._stage == "fit":
            self.check_resume_strategy(self.trainer.strategy, self.trainer.ckpt_path)
        stored = Tokenizer.from_str(checkpoint["tokenizer"]) if "tokenizer" in checkpoint else None
        self._check_compatible(checkpoint, stored)
        config = model_config(checkpoint)
        if self._stage != "fit":
            # Inference reads a LoRA run's adapters folded into plain weights (no adapter layers to run).
            self.lora = None
            if checkpoint_lora(checkpoint) is not None:
                extra = {k: v for k, v in checkpoint["state_dict"].items() if not plain_key(k).startswith("model.")}
                merged = {f"model.{name}": value for name, value in model_state(checkpoint).items()}
                checkpoint["state_dict"] = {**extra, **merged}
        if self.model is None or self.model.config != config or bool(lora_layers(self.model)) != bool(self.lora):
            self._build(config)
            self.configure_model()
        if stored is not None:
            self.tokenizer = stored
        self.clock.seconds = checkpoint.get("train_seconds", 0.0)
        # Checkpoints written by an older version from a compiled model may name parameters with its prefix.
        # (ModelParallelStrategy has loaded the weights into the shards already and passes no state_dict.)
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = {plain_key(k): v for k, v in checkpoint["state_dict"].items()}

    def _check_compatible(self, checkpoint: dict, stored: Tokenizer | None) -> None:
        """Refuse a checkpoint whose tokenizer is not the data's or (resuming) whose learning rate/optimizer differ."""
        data = self._data_tokenizer
        if stored is not None and data is not None and not stored.same_vocabulary(data):
            raise ValueError(
                f"the checkpoint's tokenizer ({stored.vocab_size} tokens) is not the data's "
                f"({data.vocab_size} tokens): use the data settings it was trained with "
                "(validate/test --ckpt_path C alone read them from the checkpoint)"
            )
        if self._stage == "fit":
            trained = checkpoint_lora(checkpoint)
            if trained != self.lora:
                shown = "none" if trained is None else _lora_options(trained)
                now = "none" if self.lora is None else _lora_options(self.lora)
                raise ValueError(
                    f"cannot resume: the checkpoint trained with LoRA adapters {shown}, and this run asks for {now}; "
                    "resume with the same model.lora settings, or start a new run from its weights (lightningllm "
                    "export, then --model.init_from)"
                )
        base_lrs = [lr for schedule in checkpoint.get("lr_schedulers", []) for lr in schedule.get("base_lrs", [])]
        wanted = self.hparams.learning_rate
        if self._stage == "fit" and any(not math.isclose(lr, wanted, rel_tol=1e-9) for lr in base_lrs):
            raise ValueError(  # Lightning restores the scheduler's base rate, which would win over the new one
                f"cannot resume with model.learning_rate={wanted:g}: the checkpoint's schedule runs at "
                f"{base_lrs[0]:g}; resume with --model.learning_rate={base_lrs[0]:g}, or start a new run from its "
                "weights (lightningllm export, then --model.init_from)"
            )
        groups = [group for state in checkpoint.get("optimizer_states", []) for group in state.get("param_groups", [])]
        if self._stage == "fit" and groups:
            trained = "muon" if any(group.get("use_muon") for group in groups) else "adamw"
            if trained != self.hparams.optimizer:
                raise ValueError(
                    f"cannot resume: the checkpoint was trained with model.optimizer={trained}, not "
                    f"{self.hparams.optimizer}; resume with --model.optimizer={trained}, or start a new run "
                    "from its weights (lightningllm export, then --model.init_from)"
                )
