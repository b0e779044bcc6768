"""TaskPromptDataModule: a task's prompts in batches, for reinforcement learning (``GRPO``) on its checkable answers.

The task comes from another data module, ``task_data``, through the declared contract
(``TokenDataModule.task``): any task a data module offers, a built-in plug-in's or a user's
own, with no code here naming one. Training batches are lists of the task's ``train``
examples (``Example``: prompt, reference completion, answer, group) in a seeded order, shuffled
anew each epoch; validation takes the first ``num_val_examples`` ``val`` examples, test every
``test`` one. As ``lightningllm.data.loader`` does for token batches, each step's batch is cut
across the data-parallel ranks, and the training position (epoch, next example) is saved in
checkpoints, so a resumed run continues at the exact next prompt. The tokenizer is the model's:
``tokenizer_path`` (which ``--model.init_from DIR`` fills in on the command line), else the one
``task_data`` prepares. ``block_size`` is the longest prompt in tokens, which the model checks
against its context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lightningllm.data.contract import TokenDataModule
from lightningllm.data.loader import data_parallel_share
from lightningllm.data.sources import DataError
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.tasks.base import Example, Task

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
"""The splits each stage reads."""


def fingerprint(examples: Sequence[Example]) -> str:
    """A short hash of the examples' prompts and answers: a resumed run must read the same ones."""
    digest = hashlib.blake2b(digest_size=8)
    for example in examples:
        digest.update(f"{example.prompt}\0{example.answer}\0".encode())
    return digest.hexdigest()


class TrainBatches:
    """This rank's batch of examples for each step of the run's one order; ``state_dict`` is the position.

    Step ``k`` of an epoch takes examples ``order[p + k·B·R : p + (k+1)·B·R]`` of that epoch's
    order (seeded by ``(seed, epoch)``), ``p`` being where the epoch or a resumed run started, ``B``
    the batch size and ``R`` the ranks; rank ``r`` takes the ``r``-th ``B`` of them. The last
    ``N mod B·R`` examples of an epoch are left out. Each ``iter()`` is an epoch: the first one of
    a restored loader continues its epoch at the next example, every later one starts the next.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        rank: int = 0,
        ranks: int = 1,
        shuffle: bool = True,
        seed: int = 42,
        epoch: int = 0,
    ):
        self.examples = list(examples)
        self.batch_size, self.rank, self.ranks = batch_size, rank, ranks
        self.shuffle, self.seed = shuffle, seed
        self.epoch = epoch
        self.start = 0  # the example of the epoch's order where the next step starts
        self._first_iter = True
        self._fingerprint = fingerprint(self.examples)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.ranks

    def __len__(self) -> int:
        """Steps in a whole epoch (a resumed one ends at the same step)."""
        return len(self.examples) // self.global_batch

    def order(self, epoch: int) -> np.ndarray:
        """Example indices of ``epoch``, in training order."""
        if not self.shuffle:
            return np.arange(len(self.examples))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))

    def __iter__(self) -> Iterator[list[Example]]:
        if not self._first_iter or self.start + self.global_batch > len(self.examples):
            self.epoch, self.start = self.epoch + 1, 0
        self._first_iter = False
        order = self.order(self.epoch)
        while self.start + self.global_batch <= len(order):
            begin = self.start + self.rank * self.batch_size
            self.start += self.global_batch  # moved on before the batch is handed out: it is consumed
            yield [self.examples[i] for i in order[begin : begin + self.batch_size]]

    def _stream(self) -> dict[str, Any]:
        return {"examples": len(self.examples), "fingerprint": self._fingerprint, "shuffle": self.shuffle}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "example": self.start, "seed": self.seed, **self._stream()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = {key: state.get(key) for key in ("seed", *self._stream())}
        now = {"seed": self.seed, **self._stream()}
        if "example" not in state or saved != now:
            changed = ", ".join(
                f"{key} {saved[key]!r} -> {value!r}" for key, value in now.items() if saved[key] != value
            )
            raise DataError(
                f"cannot resume the prompt position: the task's training prompts changed since the checkpoint "
                f"({changed or 'no position saved'}); resume with the data settings it was trained with, or start a "
                "new run from its weights"
            )
        self.epoch, self.start = int(state["epoch"]), int(state["example"])
        self._first_iter = True


class EvalBatches:
    """This rank's batch of each step over ``examples`` in order; every rank runs the same number of steps.

    The last step's batch may be short, or empty on some ranks (a rank never waits on another).
    """

    def __init__(self, examples: Sequence[Example], batch_size: int, rank: int = 0, ranks: int = 1):
        step = batch_size * ranks
        self.batches = [
            list(examples[first + rank * batch_size : first + (rank + 1) * batch_size])
            for first in range(0, len(examples), step)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[Example]]:
        return iter(self.batches)


class TaskPromptDataModule(TokenDataModule):
    """A task's prompts (``Example`` lists) for RL: train examples shuffled per epoch, held-out ones to score."""

    def __init__(
        self,
        task_data: TokenDataModule,
        batch_size: int = 8,
        num_val_examples: int = 64,
        shuffle: bool = True,
        seed: int = 42,
        tokenizer_path: str | None = None,
    ):
        """
        Args:
            task_data: the data module whose task (``TokenDataModule.task``) gives the prompts and checks the
                answers: a task plug-in's data module, by ``class_path`` with its settings (as the configs do).
                Its token batches are not read; it prepares its corpus only to supply a tokenizer when
                ``tokenizer_path`` is unset.
            batch_size: prompts per training step (each gets ``model.group_size`` completions), and per
                validation batch.
            num_val_examples: the first validation examples scored at each validation (pass@1, pass@G).
            shuffle: shuffle the training prompts each epoch (off keeps the task's order).
            seed: seed of the shuffle.
            tokenizer_path: the model's ``tokenizer.json``; ``--model.init_from DIR`` fills it in with DIR's. Unset:
                the tokenizer ``task_data`` prepares (a model trained on that data shares it).
        """
        super().__init__()
        for name, value, least in (("batch_size", batch_size, 1), ("num_val_examples", num_val_examples, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise DataError(f"data.{name} must be an integer >= {least} (got {value!r})")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise DataError(f"data.seed must be an integer from 0 to 2**32 - 1 (got {seed!r})")
        if not isinstance(task_data, TokenDataModule):
            raise DataError(
                f"data.task_data must be a data module with a task (a TokenDataModule), not {type(task_data).__name__}"
            )
        self.save_hyperparameters(logger=False)
        self.hparams["task_data"] = _class_path(task_data)  # logged by name (the run's config.yaml has its settings)
        self.task_data = task_data
        self.batch_size = batch_size
        self.num_val_examples = num_val_examples
        self.shuffle = shuffle
        self.seed = seed
        self.tokenizer_path = tokenizer_path
        self.tokenizer: Tokenizer | None = None
        self.block_size = 0
        """The longest prompt of the splits the stage reads, in tokens (set by ``setup``)."""
        self.splits: dict[str, list[Example]] = {}
        """The examples of each split the stage reads: ``val`` cut to ``num_val_examples``."""

    @property
    def task(self) -> Task | None:
        """The task of ``task_data``: its examples are the prompts, its ``score`` the default reward."""
        return self.task_data.task

    def sample_prompts(self, count: int) -> list[str]:
        """The first ``count`` validation prompts."""
        return [example.prompt for example in self.task.examples("val")[:count]]

    def prepare_data(self) -> None:
        """Without ``tokenizer_path``, prepare ``task_data`` (for its tokenizer); else nothing."""
        if not self.tokenizer_path:
            self.task_data.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Load the tokenizer and the examples of the splits ``stage`` reads; a ``DataError`` in one line when
        there is no task, a split holds no example, or training has fewer prompts than one step takes."""
        stage = stage or "fit"
        if self.tokenizer is None:
            self.tokenizer = self._tokenizer(stage)
        task = self.task
        if task is None:
            raise DataError(
                f"data.task_data {type(self.task_data).__name__} has no task (TokenDataModule.task) to take "
                "prompts from"
            )
        limits = {"val": self.num_val_examples}
        for split in STAGE_SPLITS.get(stage, ("train", "val")):
            examples = list(task.examples(split))[: limits.get(split)]
            if not examples:
                raise DataError(f"task {task.name} has no {split} examples to take prompts from")
            self.splits[split] = examples
        ranks = data_parallel_share(self.trainer)[1]
        train = self.splits.get("train")
        if train is not None and len(train) < self.batch_size * ranks:
            processes = f"{ranks} processes × " if ranks > 1 else ""
            raise DataError(
                f"task {task.name} has {len(train)} train examples, and one step takes {processes}data.batch_size "
                f"{self.batch_size}: lower data.batch_size or give the task more examples"
            )
        prompts = [example.prompt for examples in self.splits.values() for example in examples]
        self.block_size = max((len(ids) for ids in self.tokenizer.encode_batch(prompts)), default=0)

    def _tokenizer(self, stage: str) -> Tokenizer:
        if self.tokenizer_path:
            return Tokenizer.from_file(self.tokenizer_path)
        self.task_data.setup(stage)
        if self.task_data.tokenizer is None:
            raise DataError(
                f"data.task_data {type(self.task_data).__name__} has no tokenizer: set data.tokenizer_path "
                "(or --model.init_from DIR, whose tokenizer it then takes)"
            )
        return self.task_data.tokenizer

    def transfer_batch_to_device(self, batch: list[Example], device: Any, dataloader_idx: int) -> list[Example]:
        return batch  # examples are text: nothing to move (and Lightning cannot rebuild frozen dataclasses)

    def train_dataloader(self) -> TrainBatches:
        rank, ranks = data_parallel_share(self.trainer)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return TrainBatches(self.splits["train"], self.batch_size, rank, ranks, self.shuffle, self.seed, epoch)

    def val_dataloader(self) -> EvalBatches:
        return EvalBatches(self.splits["val"], self.batch_size, *data_parallel_share(self.trainer))

    def test_dataloader(self) -> EvalBatches:
        return EvalBatches(self.splits["test"], self.batch_size, *data_parallel_share(self.trainer))


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
