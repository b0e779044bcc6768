"""Callbacks and run monitoring: the JSONL prediction writer used by ``lightningllm predict``, sample
generations logged to TensorBoard during training, and the run's hyperparameters for TensorBoard's HParams tab.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from lightningllm.model import generate


class PredictionWriter(BasePredictionWriter):
    """Writes each completion as a JSON line (id, prompt, completion, token counts) and prints it."""

    def __init__(self, output: str = "predictions.jsonl", echo: bool = True):
        """
        Args:
            output: JSONL file the completions are written to (overwritten each run).
            echo: also print each prompt and completion.
        """
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.echo = echo

    def on_predict_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.output.write_text("")

    def write_on_batch_end(self, trainer, module, prediction: list[dict], batch_indices, batch: Any, *args) -> None:
        with self.output.open("a", encoding="utf-8") as handle:
            for record in prediction:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                if self.echo:
                    print(f"--- [{record['id']}]\n{record['prompt']}{record['completion']}")

    def on_predict_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        print(f"predict: wrote completions to {self.output}")


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
        num_problems: int = 2,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 1234,
    ):
        """
        Args:
            prompts: texts to continue (a literal ``\\n`` becomes a newline). By default the questions of
                ``num_problems`` held-out problems on the reasoning corpus, else the start of a sentence ("The").
            every_n_val: sample on every n-th validation run during fit.
            num_problems: held-out problems used as default prompts on the reasoning corpus.
            max_new_tokens: tokens generated per prompt (capped by the model's context).
            temperature: sampling temperature (0 is greedy).
            top_k: sample among the k most likely tokens (None: all).
            seed: seed of the sampling generator, the same at every validation run.
        """
        if every_n_val < 1:
            raise ValueError(f"SampleGenerations.every_n_val must be at least 1, got {every_n_val}")
        self.prompts = [p.replace("\\n", "\n") for p in prompts] if prompts else None
        self.every_n_val = every_n_val
        self.num_problems = num_problems
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed
        self._val_runs = 0

    def default_prompts(self, datamodule: Any) -> list[str]:
        """Held-out problems' questions when the data module has them (the reasoning corpus), else "The"."""
        if hasattr(datamodule, "problems"):
            problems = datamodule.problems("val")[: self.num_problems]
            if problems:
                return [p.prompt for p in problems]
        return ["The"]

    def samples(self, module: L.LightningModule, datamodule: Any = None) -> list[tuple[str, str]]:
        """(prompt, completion) pairs sampled from the module's current weights."""
        prompts = self.prompts or self.default_prompts(datamodule)
        tokenizer = module.tokenizer
        gpt = module.gpt  # generate runs eagerly, then restores the mode
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
        if trainer.sanity_checking or getattr(module, "tokenizer", None) is None:
            return
        self._val_runs += 1
        if self._val_runs % self.every_n_val or not trainer.is_global_zero:
            return
        writers = [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not writers:
            return
        text = self.to_markdown(self.samples(module, trainer.datamodule))
        for writer in writers:
            writer.add_text("samples", text, trainer.global_step)

    def to_markdown(self, samples: list[tuple[str, str]]) -> str:
        """Prompt and completion in separate code blocks: TensorBoard renders text as Markdown."""
        settings = f"temperature {self.temperature}, top_k {self.top_k}, seed {self.seed}"
        return "\n\n".join(
            f"**prompt {i}**\n\n```\n{prompt}\n```\n\n**completion** ({settings})\n\n```\n{completion}\n```"
            for i, (prompt, completion) in enumerate(samples, start=1)
        )


# --- hyperparameters for TensorBoard's HParams tab -------------------------------------------


def data_arguments(trainer: L.Trainer) -> dict[str, Any]:
    """The data module's class and arguments: as the ``lightningllm`` command was given them, else its hparams."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        return {}
    from lightning.pytorch.cli import SaveConfigCallback

    args = dict(datamodule.hparams)
    for callback in trainer.callbacks:
        config = getattr(callback, "config", None) if isinstance(callback, SaveConfigCallback) else None
        if config is not None and config.get("data") is not None:  # the CLI's full config, defaults included
            args = config.data.as_dict().get("init_args", {})
    return {"class": type(datamodule).__name__, **{k: v for k, v in args.items() if not k.startswith("_")}}


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
        writer = logger.experiment._get_file_writer()  # as TensorBoardLogger.log_hyperparams itself does
        for summary in hparams(_flatten(params), dict.fromkeys(metrics, 0.0)):  # metric values are not written
            writer.add_summary(summary)
