"""Run monitoring: text samples in TensorBoard during training, and the run's hyperparameters for its HParams tab.

``SampleGenerations`` continues a few prompts at every n-th validation and logs the text (from a
whole copy of a model sharded with FSDP2, which every rank helps gather).
``log_run_hyperparameters`` records what a run trains with (the module's arguments with the
resolved model shape, the data module's arguments, the trainer's settings) in every logger.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from lightningllm.data.contract import TokenDataModule
from lightningllm.model import generate
from lightningllm.training.sharding import gathered


class SampleGenerations(L.Callback):
    """Every n-th validation run, continues a few prompts and logs the text to TensorBoard (tag ``samples``).

    The prompts and the seed are the same every time, so the samples show how the model changes over
    training. Sampling draws from its own seeded generator: the training RNG stream (dropout, shuffling)
    is untouched, and a run with this callback trains exactly as one without it.
    """

    def __init__(
        self,
        prompts: list[str] | None = None,
        every_n_val: int = 1,
        num_prompts: int = 2,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 1234,
    ):
        """
        Args:
            prompts: texts to continue (a literal ``\\n`` becomes a newline). By default the data module's
                ``sample_prompts`` (held-out questions of a task, else the start of a sentence).
            every_n_val: sample on every n-th validation run during fit.
            num_prompts: how many of the data module's sample prompts to continue, when ``prompts`` is not set.
            max_new_tokens: tokens generated per prompt (capped by the model's context).
            temperature: sampling temperature (0 is greedy).
            top_k: sample among the k most likely tokens (None: all).
            seed: seed of the sampling generator, the same at every validation run.
        """
        if every_n_val < 1:
            raise ValueError(f"SampleGenerations.every_n_val must be at least 1, got {every_n_val}")
        self.prompts = [p.replace("\\n", "\n") for p in prompts] if prompts else None
        self.every_n_val = every_n_val
        self.num_prompts = num_prompts
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self._val_runs = 0

    def default_prompts(self, datamodule: L.LightningDataModule | None) -> list[str]:
        """The data module's sample prompts (``TokenDataModule.sample_prompts``), else ``"The"``."""
        if isinstance(datamodule, TokenDataModule):
            prompts = datamodule.sample_prompts(self.num_prompts)
            if prompts:
                return prompts
        return ["The"]

    def samples(self, module: L.LightningModule, datamodule: L.LightningDataModule | None = None):
        """(prompt, completion) pairs sampled from the module's current weights."""
        with gathered(module.model) as gpt:  # generate runs eagerly, then restores the mode
            return self._samples(gpt, module.tokenizer, datamodule)

    def _samples(self, gpt, tokenizer, datamodule: L.LightningDataModule | None):
        prompts = self.prompts or self.default_prompts(datamodule)
        new_tokens = generate(
            gpt,
            [tokenizer.encode(p) for p in prompts],
            max_new_tokens=min(self.max_new_tokens, gpt.config.block_size - 1),
            temperature=self.temperature,
            top_k=self.top_k,
            eos_id=tokenizer.eos_id,
            seed=self.seed,
            on_prompt_too_long="crop",
        )
        return [(p, tokenizer.decode(ids)) for p, ids in zip(prompts, new_tokens, strict=True)]

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or module.tokenizer is None:
            return
        self._val_runs += 1
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if self._val_runs % self.every_n_val or not loggers:
            return
        with gathered(module.model) as gpt:  # sharded (FSDP2): every rank helps gather the copy rank 0 samples from
            if not trainer.is_global_zero:
                return
            text = self.to_markdown(self._samples(gpt, module.tokenizer, trainer.datamodule))
        for logger in loggers:
            logger.experiment.add_text("samples", text, trainer.global_step)

    def to_markdown(self, samples: list[tuple[str, str]]) -> str:
        """Prompt and completion in separate code blocks: TensorBoard renders text as Markdown."""
        settings = f"temperature {self.temperature}, top_k {self.top_k}, seed {self.seed}"
        return "\n\n".join(
            f"**prompt {i}**\n\n```\n{prompt}\n```\n\n**completion** ({settings})\n\n```\n{completion}\n```"
            for i, (prompt, completion) in enumerate(samples, start=1)
        )


# --- hyperparameters for TensorBoard's HParams tab -------------------------------------------


def init_arguments(obj: Any) -> dict[str, Any]:
    """``obj``'s ``__init__`` arguments by name, read from its saved ``hparams`` (Lightning's public record).

    A subclass whose ``__init__`` passes ``**kwargs`` on to its base's (``GRPO`` to ``LitGPT``) has the
    base's arguments too, after its own.
    """
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names: list[str] = []
    for cls in type(obj).__mro__:
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(vars(cls)["__init__"]).parameters
        names += [n for n, p in params.items() if n != "self" and p.kind in kinds and n not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            break  # the arguments stop here: no **kwargs passed on to the base
    return {name: obj.hparams[name] for name in names if name in obj.hparams}


def run_hyperparameters(trainer: L.Trainer, module: L.LightningModule, num_params: int) -> dict[str, Any]:
    """What a run trains with: the module's arguments (with the resolved shape), the data module's, the trainer's."""
    datamodule = trainer.datamodule
    data = {"class": type(datamodule).__name__, **init_arguments(datamodule)} if datamodule is not None else {}
    seed = os.environ.get("PL_GLOBAL_SEED")  # documented: seed_everything sets it
    batch_size, block_size = data.get("batch_size"), data.get("block_size")
    steps = trainer.accumulate_grad_batches * trainer.world_size
    return {
        **init_arguments(module),
        "num_params": num_params,
        "data": data,
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


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: ``hparams.yaml`` stays plain YAML (no ``!!python/tuple`` tags)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"config": {"n_layer": 2}}`` -> ``{"config/n_layer": 2}``; lists become text, None is left out."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        elif value is not None:
            flat[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


@rank_zero_only
def log_hyperparameters(trainer: L.Trainer, params: dict[str, Any], metrics: Sequence[str]) -> None:
    """Give ``params`` to every logger (TensorBoard: ``hparams.yaml`` and the HParams tab).

    TensorBoard's HParams tab shows each run's hyperparameters beside the latest values of the scalar
    tags named in ``metrics`` (e.g. ``val/loss``), which training logs anyway: unlike
    ``TensorBoardLogger.log_hyperparams(params, metrics)``, no placeholder value such as
    ``hp_metric=-1`` is written into the curves.
    """
    from torch.utils.tensorboard.summary import hparams

    params = _plain(params)
    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params)
            continue
        logger.log_hyperparams(params, metrics={})  # hparams.yaml only: an empty dict writes no hp_metric
        writer = logger.experiment.file_writer  # the SummaryWriter's event file (made when it is created)
        for summary in hparams(_flatten(params), dict.fromkeys(metrics, 0.0)):  # metric values are not written
            writer.add_summary(summary)
