"""TaskEval: scores greedy completions of a task's held-out examples during validation and at test.

The task comes from the data module through the declared contract (``TokenDataModule.task``,
see ``lightningllm.tasks``); a data module without one is skipped. During fit the mean score
is logged as ``val/<metric>`` and per group as ``val/<metric>_<group>`` (e.g.
``val/exact_match``, ``val/exact_match_2step``); ``lightningllm test`` scores the whole test
split, logs ``test/<metric>*`` and prints sample answers beside the expected ones. A task may offer
more held-out splits than ``test`` (the built-in reasoning task has ``heldout``, wordings never
trained on, and ``long``, more steps than trained on): ``test_splits`` names the ones ``test``
scores, each logged as ``test/<split>_<metric>*``.

Across several processes (DDP) each rank decodes every ``world_size``-th example and the
per-group sums and counts are added up over the ranks, so the score is the whole split's, for
the price of one rank's share of the decoding. A model sharded with FSDP2 decodes from a whole
copy on each rank (``lightningllm.training.sharding.gathered``).
"""

from __future__ import annotations

import lightning as L
import torch

from lightningllm.data.contract import TokenDataModule
from lightningllm.tasks.base import (
    Example,
    Task,
    check_task_fits,
    complete,
    format_scores,
    group_tag,
    means,
    score_totals,
)
from lightningllm.training.sharding import gathered


def task_of(trainer: L.Trainer) -> Task | None:
    """The task of the trainer's data module, if it declares one."""
    datamodule = trainer.datamodule
    return datamodule.task if isinstance(datamodule, TokenDataModule) else None


class TaskEval(L.Callback):
    """Scores greedy answers on a task's held-out examples during validation and test."""

    def __init__(
        self,
        every_n_val: int = 1,
        num_val_examples: int = 150,
        num_samples: int = 6,
        batch_size: int = 64,
        test_splits: list[str] | None = None,
    ):
        """
        Args:
            every_n_val: score the task on every n-th validation run during fit.
            num_val_examples: examples scored during fit (the test run scores the whole test split).
            num_samples: sample answers printed at test time (per split).
            batch_size: prompts decoded together.
            test_splits: the task's splits ``lightningllm test`` scores, in order (default ``[test]``); each
                split but ``test`` is logged under its name, e.g. ``test/heldout_exact_match``.
        """
        if every_n_val < 1:
            raise ValueError(f"TaskEval.every_n_val must be at least 1, got {every_n_val}")
        test_splits = ["test"] if test_splits is None else list(test_splits)
        if not test_splits or len(set(test_splits)) != len(test_splits) or not all(test_splits):
            raise ValueError(f"TaskEval.test_splits must name distinct splits, got {test_splits}")
        self.test_splits = test_splits
        self.every_n_val = every_n_val
        self.num_val_examples = num_val_examples
        self.num_samples = num_samples
        self.batch_size = batch_size
        self._val_runs = 0

    @staticmethod
    def metric_names(trainer: L.Trainer, stage: str = "val") -> list[str]:
        """The overall metric this callback logs for the trainer's task (none without a task)."""
        task = task_of(trainer)
        return [f"{stage}/{task.metric}"] if task is not None else []

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if stage != "predict" and task_of(trainer) is None:  # a callback that would score nothing is refused
            data = type(trainer.datamodule).__name__ if trainer.datamodule is not None else "data without a data module"
            raise ValueError(
                f"TaskEval needs a data module with a task (TokenDataModule.task), and {data} has none: "
                "remove the TaskEval callback for this data"
            )

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Refuse a model too short for the splits this run will score before it trains, not after."""
        task = task_of(trainer)
        if task is not None and module.tokenizer is not None:
            splits = {"val": _examples(task, "val", self.num_val_examples)}
            splits |= {split: _examples(task, split, None) for split in self.test_splits}
            check_task_fits(module.model, module.tokenizer, task, splits)

    def _run(self, trainer: L.Trainer, module: L.LightningModule, split: str, limit: int | None, prefix: str):
        """Score ``split`` (its first ``limit`` examples) and log each score as ``prefix + metric``."""
        task = task_of(trainer)
        if module.tokenizer is None:
            return None
        examples = _examples(task, split, limit)
        if not examples:
            raise ValueError(f"TaskEval: task {task.name} has no examples in split {split!r}")
        mine = examples[trainer.global_rank :: trainer.world_size]  # this rank's share
        with gathered(module.model) as gpt:  # sharded (FSDP2): every rank decodes with a whole copy
            completions = complete(gpt, module.tokenizer, task, mine, self.batch_size) if mine else []
        scores = _scores_over_ranks(trainer, task, examples, mine, completions)
        for group, value in scores.items():
            name = task.metric if group == "all" else f"{task.metric}_{group_tag(group)}"
            module.log(prefix + name, value, sync_dist=True)  # the same value on every rank already
        return task, mine, completions, scores, len(examples)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._val_runs += 1
        if self._val_runs % self.every_n_val == 0:
            result = self._run(trainer, module, "val", self.num_val_examples, "val/")
            if result is not None and trainer.is_global_zero:
                task, _, _, scores, _ = result
                print(f"\nstep {trainer.global_step}: val {format_scores(task, scores)}")

    def on_test_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        summary = []
        for split in self.test_splits:
            result = self._run(trainer, module, split, None, "test/" if split == "test" else f"test/{split}_")
            if result is None or not trainer.is_global_zero:
                continue
            task, examples, completions, scores, total = result  # samples from this rank's share
            print(f"\n--- samples of the {split} split")
            stride = max(1, len(examples) // max(1, self.num_samples))  # samples from every group
            for example, completion in list(zip(examples, completions, strict=True))[::stride][: self.num_samples]:
                verdict = "right" if task.score(example, completion) >= 1.0 else "WRONG"
                print(f"{example.prompt}{completion}\n  [{verdict}: expected {example.answer}]\n")
            label = "held-out test split" if split == "test" else f"{split} split"
            summary.append(f"{label} ({total} examples): {format_scores(task, scores)}")
        if summary:
            print("\n".join(summary))


def _examples(task: Task, split: str, limit: int | None) -> list[Example]:
    """The first ``limit`` examples of ``split`` (all of them: None), the ones ``TaskEval`` scores."""
    return list(task.examples(split))[:limit]


def _scores_over_ranks(
    trainer: L.Trainer, task: Task, examples: list[Example], mine: list[Example], completions: list[str]
) -> dict[str, float]:
    """Mean score overall (``all``) and per group over every rank's share, as ``mean_scores`` gives for one."""
    groups = sorted({example.group for example in examples})  # every rank knows them all, in one order
    mine_totals = score_totals(task, mine, completions)
    totals = torch.tensor([mine_totals.get(group, [0.0, 0]) for group in groups], dtype=torch.float64)
    if trainer.world_size > 1:
        totals = trainer.strategy.reduce(totals.to(trainer.strategy.root_device), reduce_op="sum").cpu()
    return means(dict(zip(groups, totals.tolist(), strict=True)))
