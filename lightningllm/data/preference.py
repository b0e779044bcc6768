"""PreferenceDataModule: pairs of a preferred and a rejected answer to the same prompt, for ``DPO``.

Each line of a JSONL file is ``{"prompt": str, "chosen": str, "rejected": str}``, or ``{"messages":
[{"role", "content"}, ...], "chosen": str, "rejected": str}`` where the turns are the context and
``chosen``/``rejected`` the next assistant answer. With ``chat`` (the default) the context is written in
the chat format that instruction data trains on (``lightningllm.data.instruct``) and each answer ends
with ``<|end|>``; without it, the prompt and the answer are plain text, one after the other (a
``"Q: ... A:"`` prompt continued by its completion). Every answer then ends with EOS, as the
documents a model was trained on do. Both rows of a pair share the prompt, whose targets are
``IGNORE_INDEX``: the loss and the log-probabilities cover the answer only. A batch is a dict of
int64 tensors ``chosen_inputs``, ``chosen_targets``, ``rejected_inputs``, ``rejected_targets``, all
(B, T) with T the longest row of the batch (inputs right-padded with EOS, targets with
``IGNORE_INDEX``), plus float32 ``reference_chosen``/``reference_rejected`` (B,) once a reference
model's log-probabilities have been stored with the pairs (``DPO(reference="precomputed")``).
The training order is a seeded permutation per epoch, and the loader's position travels in
checkpoints, so a resumed run continues at the next pair.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from lightningllm.data.contract import TokenDataModule
from lightningllm.data.instruct import ASSISTANT, END, chat_segments, format_prompt
from lightningllm.data.loader import data_parallel_share
from lightningllm.data.sources import DataError
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import IGNORE_INDEX

SIDES = ("chosen", "rejected")


@dataclass
class Pair:
    """One preference pair as token ids: the shared prompt, and each answer (with its closing tokens)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    origin: str
    """``file:line`` of the record, for error messages."""
    context: str
    """The prompt as text (what generation would continue)."""

    def row(self, side: str) -> list[int]:
        return self.prompt + getattr(self, side)


class PreferencePairs:
    """The pairs of one split, and (once computed) a reference model's log-probabilities of their answers."""

    def __init__(self, pairs: list[Pair], pad_id: int):
        self.pairs = pairs
        self.pad_id = pad_id
        self.reference: torch.Tensor | None = None
        """(N, 2) float32: the reference model's summed log-probabilities of each pair's chosen and rejected
        answer, set by ``DPO`` with ``reference="precomputed"``; None until then."""

    def __len__(self) -> int:
        return len(self.pairs)

    def collate(self, indices: list[int | None]) -> dict[str, torch.Tensor]:
        """The batch of pairs ``indices``; ``None`` is a padding row (every target ``IGNORE_INDEX``)."""
        rows = [self.pairs[0 if i is None else i] for i in indices]
        T = max(len(pair.row(side)) - 1 for pair in rows for side in SIDES)
        batch = {}
        for side in SIDES:
            inputs = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
            targets = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
            for b, (i, pair) in enumerate(zip(indices, rows, strict=True)):
                ids = torch.tensor(pair.row(side), dtype=torch.long)
                inputs[b, : len(ids) - 1] = ids[:-1]
                if i is not None:
                    start = len(pair.prompt) - 1  # the first target that is an answer token
                    targets[b, start : len(ids) - 1] = ids[len(pair.prompt) :]
            batch[f"{side}_inputs"], batch[f"{side}_targets"] = inputs, targets
        if self.reference is not None:
            values = torch.stack([self.reference[i] if i is not None else torch.zeros(2) for i in indices])
            batch["reference_chosen"], batch["reference_rejected"] = (
                values[:, 0].contiguous(),
                values[:, 1].contiguous(),
            )
        return batch

    def batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Every pair once, in order, ``batch_size`` at a time (the last batch may be smaller); no padding rows."""
        for start in range(0, len(self.pairs), batch_size):
            yield self.collate(list(range(start, min(start + batch_size, len(self.pairs)))))


class PairBatches(IterableDataset):
    """This rank's batch of each remaining step of an epoch, cut from one order shared by every rank.

    Step ``k`` takes pairs ``order[p + k·G : p + (k+1)·G]`` (``G`` = ``batch_size`` × ranks, ``p``
    where the epoch, or a resumed run, started); rank ``r`` takes the ``r``-th share. The last, partial
    step of an epoch trains too: for training it is filled up from the start of the order so that
    every rank holds the same number of pairs; for evaluation (``train=False``, in file order) it is
    filled with padding rows, which carry no target.
    """

    def __init__(
        self, pairs: PreferencePairs, batch_size: int, rank: int, ranks: int, seed: int, shuffle: bool, train: bool
    ):
        self.pairs = pairs
        self.batch_size, self.rank, self.ranks = batch_size, rank, ranks
        self.seed, self.shuffle, self.train = seed, shuffle, train
        self.epoch = 0
        self.start = 0  # the position in the epoch's order where the next step starts

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.ranks

    def __len__(self) -> int:
        """Steps in a whole epoch (a resumed one ends at the same step)."""
        return -(-len(self.pairs) // self.global_batch)

    def order(self) -> np.ndarray:
        """The pair indices of this epoch, in training order."""
        if not (self.train and self.shuffle):
            return np.arange(len(self.pairs))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.pairs))

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self.order()
        for begin in range(self.start, len(order), self.global_batch):
            step = list(order[begin : begin + self.global_batch])
            share = self.batch_size
            if len(step) < self.global_batch:  # the last, partial step
                share = -(-len(step) // self.ranks)
                missing = share * self.ranks - len(step)
                step += list(np.resize(order, missing)) if self.train else [None] * missing
            indices = step[self.rank * share : (self.rank + 1) * share]
            yield self.pairs.collate([None if i is None else int(i) for i in indices])


class PairLoader(DataLoader):
    """The training loader of ``PairBatches``; its ``state_dict`` is the position, which Lightning saves in
    checkpoints. Each ``iter()`` is an epoch: the first one of a resumed run continues the checkpoint's
    epoch at its next pair, and every later one starts the next epoch at its first pair."""

    def __init__(self, batches: PairBatches, epoch: int = 0):
        super().__init__(batches, batch_size=None)
        self.batches = batches
        batches.epoch = epoch
        self._first_iter = True

    def __iter__(self) -> Iterator[Any]:
        batches = self.batches
        if not self._first_iter or batches.start >= len(batches.pairs):
            batches.epoch, batches.start = batches.epoch + 1, 0
        self._first_iter = False
        for batch in super().__iter__():
            batches.start += batches.global_batch  # counted as handed out (Lightning reads no batch ahead)
            yield batch

    def _stream(self) -> dict[str, Any]:
        return {"pairs": len(self.batches.pairs), "seed": self.batches.seed, "shuffle": self.batches.shuffle}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.batches.epoch, "pair": self.batches.start, **self._stream()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = {key: state.get(key) for key in self._stream()}
        if "pair" not in state or saved != self._stream():
            raise DataError(
                f"cannot resume the data position: the checkpoint's training pairs ({saved}) are not these "
                f"({self._stream()}); resume with the data settings it was trained with, or start a new run from "
                "its weights"
            )
        self.batches.epoch, self.batches.start = int(state["epoch"]), int(state["pair"])
        self._first_iter = True


class PreferenceDataModule(TokenDataModule):
    """Preference pairs (a prompt, a chosen and a rejected answer) from JSONL files, for ``DPO``."""

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        val_fraction: float = 0.05,
        tokenizer_path: str | None = None,
        chat: bool = True,
        system: str | None = None,
        batch_size: int = 8,
        shuffle: bool = True,
        seed: int = 42,
    ):
        """
        Args:
            train_file: a ``.jsonl`` file, one pair a line: ``{"prompt", "chosen", "rejected"}`` strings, or
                ``{"messages": [{"role", "content"}, ...], "chosen", "rejected"}`` (the turns are the context,
                ``chosen``/``rejected`` the next assistant answer).
            val_file: a ``.jsonl`` file of validation pairs; null: hold out ``val_fraction`` of ``train_file``.
            val_fraction: without ``val_file``, the share of ``train_file``'s pairs held out for validation
                (a seeded choice; at least one pair when above 0 and the file holds two or more); 0: no validation.
            tokenizer_path: the ``tokenizer.json`` of the model being tuned; with ``--model.init_from DIR`` it
                defaults to ``DIR/tokenizer.json``.
            chat: write the context in the chat format of instruction data (``<|user|>PROMPT<|end|><|assistant|>``)
                and end each answer with ``<|end|>``; false: the prompt and the answer as plain text, one after
                the other (``messages`` records need ``chat``).
            system: with ``chat``, a system message put before each ``prompt`` record's prompt.
            batch_size: pairs per batch (each trains a chosen and a rejected row).
            shuffle: train on the pairs in a new seeded order each epoch; false: in file order.
            seed: seeds the training order and the held-out choice.
        """
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer (got {batch_size!r})")
        if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in [0, 1) (got {val_fraction!r})")
        if not isinstance(seed, int):
            raise ValueError(f"data.seed must be an integer (got {seed!r})")
        self.save_hyperparameters(logger=False)
        self.train_file, self.val_file, self.val_fraction = train_file, val_file, val_fraction
        self.tokenizer_path, self.chat, self.system = tokenizer_path, chat, system
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self._splits: dict[str, PreferencePairs] = {}

    # --- reading ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load the tokenizer, read and encode the pairs, split them; a one-line ``DataError`` on bad input."""
        self.tokenizer = self._load_tokenizer()
        train = self._read(Path(self.train_file), "data.train_file")
        if self.val_file is not None:
            val = self._read(Path(self.val_file), "data.val_file")
        else:
            train, val = self._hold_out(train)
        if not train:
            raise DataError(
                f"data.train_file {self.train_file}: holding out data.val_fraction {self.val_fraction} of its "
                f"{len(val)} pairs leaves none to train on: add pairs, or lower data.val_fraction"
            )
        pad = self.tokenizer.eos_id
        self._splits = {"train": PreferencePairs(train, pad)} | ({"val": PreferencePairs(val, pad)} if val else {})
        self.block_size = max(len(pair.row(side)) - 1 for pair in train + val for side in SIDES)

    def _load_tokenizer(self) -> Tokenizer:
        if self.tokenizer_path is None:
            raise DataError(
                "data.tokenizer_path is not set: give the tokenizer.json of the model being tuned "
                "(--model.init_from DIR sets it to DIR/tokenizer.json)"
            )
        try:
            return Tokenizer.from_file(self.tokenizer_path)
        except (FileNotFoundError, ValueError) as err:
            raise DataError(f"data.tokenizer_path: {err}") from None

    def _read(self, path: Path, setting: str) -> list[Pair]:
        """The pairs of ``path``, encoded; a ``DataError`` naming ``path:line`` at the first bad record."""
        if not path.is_file():
            raise DataError(f"{setting} {path} does not exist")
        records = []
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                origin = f"{path}:{number}"
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    byte = f"byte {raw[err.start]:#04x} at column {err.start + 1}"
                    raise DataError(f"{origin}: not UTF-8 text ({byte})") from None
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{origin}: malformed JSON ({err.msg})") from None
                try:
                    records.append((origin, *self._texts(record)))
                except ValueError as err:
                    raise DataError(f"{origin}: {err}") from None
        if not records:
            raise DataError(
                f"{setting} {path} holds no preference pairs: write one JSON record a line, "
                '{"prompt": ..., "chosen": ..., "rejected": ...}'
            )
        return self._encode(records)

    def _texts(self, record: Any) -> tuple[str, str, str]:
        """(context, chosen answer, rejected answer) of one record, as the text the model reads."""
        if not isinstance(record, dict):
            raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
        for side in SIDES:
            if side not in record:
                raise ValueError(f"missing field {side!r}")
            if not isinstance(record[side], str):
                raise ValueError(f"field {side!r} must be a string")
        if "messages" in record:
            if not self.chat:
                raise ValueError("a 'messages' record needs data.chat true (data.chat false takes 'prompt' records)")
            context = "".join(text for text, _ in chat_segments(record["messages"])) + ASSISTANT
        elif "prompt" in record:
            if not isinstance(record["prompt"], str):
                raise ValueError("field 'prompt' must be a string")
            if not self.chat and not record["prompt"]:
                raise ValueError("field 'prompt' is empty (with data.chat false the answer continues the prompt)")
            context = format_prompt(record["prompt"], self.system) if self.chat else record["prompt"]
        else:
            raise ValueError("missing field 'prompt' (or 'messages')")
        close = END if self.chat else ""
        texts = (context, record["chosen"] + close, record["rejected"] + close)
        return tuple(unicodedata.normalize("NFC", text) for text in texts)

    def _encode(self, records: list[tuple[str, str, str, str]]) -> list[Pair]:
        tokenizer = self.tokenizer
        texts = [text for _, *three in records for text in three]
        ids = tokenizer.encode_batch(texts)
        pairs = []
        for k, (origin, context, _, _) in enumerate(records):
            prompt, chosen, rejected = ids[3 * k : 3 * k + 3]
            if not prompt:
                raise DataError(f"{origin}: the prompt encodes to no tokens")
            eos = [tokenizer.eos_id]
            pairs.append(Pair(prompt, chosen + eos, rejected + eos, origin, context))
        return pairs

    def _hold_out(self, pairs: list[Pair]) -> tuple[list[Pair], list[Pair]]:
        """(train, val): a seeded ``val_fraction`` of ``pairs`` held out (at least 1 of 2 or more), in file order."""
        if self.val_fraction == 0 or len(pairs) < 2:
            return pairs, []
        count = max(1, round(len(pairs) * self.val_fraction))
        held = set(np.random.default_rng(self.seed).permutation(len(pairs))[:count].tolist())
        return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]

    # --- what DPO reads ----------------------------------------------------------------------
    def splits(self) -> dict[str, PreferencePairs]:
        """The pairs of each split after ``setup``: ``train``, and ``val`` when there is validation data."""
        return self._splits

    def check_fits(self, block_size: int) -> None:
        """Refuse, naming its ``file:line``, the first pair whose prompt + answer outgrows a ``block_size`` context."""
        for pairs in self._splits.values():
            for pair in pairs.pairs:
                for side in SIDES:
                    length = len(pair.row(side)) - 1
                    if length > block_size:
                        raise DataError(
                            f"{pair.origin}: the prompt and the {side} answer are {length} tokens (without the last), "
                            f"more than the model's context of {block_size}: shorten the record or leave it out"
                        )

    def sample_prompts(self, count: int) -> list[str]:
        """The contexts of the first validation (else training) pairs."""
        split = self._splits.get("val") or self._splits.get("train")
        return [pair.context for pair in split.pairs[:count]] if split else []

    # --- loaders ---------------------------------------------------------------------------
    def train_dataloader(self) -> PairLoader:
        rank, ranks = data_parallel_share(self.trainer)
        batches = PairBatches(self._splits["train"], self.batch_size, rank, ranks, self.seed, self.shuffle, True)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return PairLoader(batches, epoch=epoch)

    def val_dataloader(self) -> DataLoader | list:
        """Every validation pair once, in file order; an empty list (no validation) without any."""
        if "val" not in self._splits:
            return []
        rank, ranks = data_parallel_share(self.trainer)
        batches = PairBatches(self._splits["val"], self.batch_size, rank, ranks, self.seed, False, False)
        return DataLoader(batches, batch_size=None)
