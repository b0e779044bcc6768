"""TextDataModule: a user's text files → cleaned documents → trained tokenizer → litdata shards → batches.

A plain ``LightningDataModule``: it works with any ``Trainer``, in this app or in someone else's
project. ``prepare_data`` (once per node) does the heavy work and caches it by fingerprint;
``setup`` only opens the shards. Each sample is ``block_size + 1`` consecutive tokens, split
into input and target by the module. Subclasses (the built-in reasoning corpus) override
``_documents`` and ``_fingerprint_parts``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import random
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch

from lightningllm.atomic import atomic_directory
from lightningllm.data.instruct import format_prompt
from lightningllm.data.shards import (
    PieceWriter,
    context_flag,
    count_tokens,
    fingerprint,
    is_prepared,
    write_shards,
)
from lightningllm.data.sources import (
    CleaningReport,
    DataError,
    fingerprint_files,
    in_sample,
    iter_documents,
    resolve_sources,
    split_of_document,
)
from lightningllm.data.tokenizer import Tokenizer, TokenizerKind, check_bpe_vocab_size
from lightningllm.model.gpt import IGNORE_INDEX

SPLIT_PIECE_CHARS = 32_768
"""Long documents are cut into pieces of about this many characters before the train/val split,
so a corpus that is one big file still gets a validation set."""


def _pieces(chunks: Iterable[str], size: int = SPLIT_PIECE_CHARS) -> Iterator[str]:
    """Cut a text, given as consecutive chunks, at line breaks into pieces of roughly ``size`` characters."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        start = 0
        while len(buffer) - start > size:
            end = start + size
            newline = buffer.rfind("\n", start + size // 2, end)
            end = newline + 1 if newline != -1 else end
            yield buffer[start:end]
            start = end
        buffer = buffer[start:]
    if buffer:
        yield buffer


def _with_last(items: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """Each item with a flag that is true for the last one (a document's last piece ends with EOS)."""
    current = next(items, None)
    for following in items:
        yield current, False
        current = following
    if current is not None:
        yield current, True


@contextlib.contextmanager
def _preserved_rng_state():
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def split_sample(tokens: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``block_size + 1`` stored tokens → (inputs, targets), int64, each ``block_size`` long.

    Targets of context-only tokens (prompts of instruction data) are ``IGNORE_INDEX``.
    """
    flag = context_flag(tokens.dtype)
    ids = tokens.astype(np.int64)
    context = ids >= flag
    ids[context] -= flag
    targets = ids[1:].copy()
    targets[context[1:]] = IGNORE_INDEX
    return torch.from_numpy(ids[:-1]), torch.from_numpy(targets)


class TextDataModule(L.LightningDataModule):
    """Token batches from text files, with a tokenizer trained on them (or loaded from a file)."""

    name = "text"

    def __init__(
        self,
        sources: list[str] | str | None = None,
        jsonl_field: str = "text",
        tokenizer_kind: TokenizerKind = "bpe",
        vocab_size: int = 4096,
        tokenizer_path: str | None = None,
        block_size: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.05,
        split: Literal["hash", "tail"] = "hash",
        shuffle: bool = True,
        seed: int = 42,
        cache_dir: str = ".cache/lightningllm",
        prepare_workers: int = 2,
        tokenizer_train_bytes: int = 64_000_000,
    ):
        """
        Args:
            sources: text files, folders (searched recursively) and glob patterns of .txt, .md, .jsonl;
                one path alone needs no brackets.
            jsonl_field: the field of each JSONL record that holds its text.
            tokenizer_kind: ``bpe`` (byte-level BPE, digits split) or ``char`` (one token per character).
            vocab_size: BPE vocabulary size to train (ignored for ``char``).
            tokenizer_path: use this ``tokenizer.json`` instead of training one.
            block_size: tokens per training sample (the model's context length).
            batch_size: samples per batch.
            num_workers: loader worker processes (0 reads in the main process).
            val_fraction: share of the text held out for validation.
            split: ``hash``: each piece of about 32k characters goes to validation by a hash of its
                content, so validation samples the whole corpus; ``tail``: the last ``val_fraction`` of
                the characters, in file order, as nanoGPT splits its data (for comparisons with it).
            shuffle: shuffle training samples each epoch (off keeps the corpus order, e.g. a curriculum).
            seed: seed of the shuffle.
            cache_dir: where prepared shards are cached, keyed by a fingerprint of sources and settings.
            prepare_workers: processes that tokenize and write shards in ``prepare_data``.
            tokenizer_train_bytes: train the tokenizer on a deterministic sample of about this much of the
                training text (all of it when the corpus is smaller), which bounds its time and memory.
        """
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        if tokenizer_kind == "bpe" and not tokenizer_path:
            check_bpe_vocab_size(vocab_size, "data.vocab_size", DataError)
        self.sources = [sources] if isinstance(sources, str) else list(sources or [])
        self.jsonl_field = jsonl_field
        self.tokenizer_kind = tokenizer_kind
        self.vocab_size = vocab_size
        self.tokenizer_path = tokenizer_path
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.split = split
        self.shuffle = shuffle
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.prepare_workers = prepare_workers
        self.tokenizer_train_bytes = tokenizer_train_bytes
        self.tokenizer: Tokenizer | None = None
        self.report: dict = {}
        self._datasets: dict = {}

    # --- what to read: overridden by built-in corpora --------------------------------------
    def _fingerprint_parts(self) -> dict:
        files = resolve_sources(self.sources)
        tokenizer_file = None
        if self.tokenizer_path:
            tokenizer_file = fingerprint_files([Path(self.tokenizer_path)])
        return {
            "files": fingerprint_files(files),
            "jsonl_field": self.jsonl_field,
            "tokenizer": [self.tokenizer_kind, self.vocab_size, tokenizer_file, self.tokenizer_train_bytes],
            "val_fraction": self.val_fraction,
            **({"split": self.split} if self.split != "hash" else {}),  # hash-split caches keep their names
        }

    def _source_bytes(self) -> int:
        """Size of the raw sources, to set the tokenizer's sampling rate before reading them."""
        return sum(path.stat().st_size for path in resolve_sources(self.sources))

    def _documents(self, report: CleaningReport) -> Iterator[tuple[str, list[tuple[str, bool]], bool]]:
        """Yield (split, segments, ends_with_eos); a segment is (text, trained), context is read but not trained on.

        Plain text is cut into pieces first, so one large file still feeds both splits; an
        instruction or chat record stays whole.
        """
        files = resolve_sources(self.sources)
        if self.split == "tail":
            yield from self._tail_split(files, report)
            return
        for document in iter_documents(files, self.jsonl_field, report):
            if not document.is_plain:
                key = json.dumps(document.segments, ensure_ascii=False)
                yield split_of_document(key, self.val_fraction), document.segments, True
                continue
            for piece, last in _with_last(_pieces(document.text_chunks())):
                yield split_of_document(piece, self.val_fraction), [(piece, True)], last

    def _tail_split(self, files: list[Path], report: CleaningReport) -> Iterator:
        """Training text up to ``1 - val_fraction`` of all characters (in file order), validation after."""
        total = sum(
            sum(len(chunk) for chunk in document.text_chunks())
            if document.is_plain
            else sum(len(text) for text, _ in document.segments)
            for document in iter_documents(files, self.jsonl_field, CleaningReport())
        )
        cut, position = int(total * (1 - self.val_fraction)), 0
        for document in iter_documents(files, self.jsonl_field, report):
            if not document.is_plain:  # an instruction record stays whole, on the side where it starts
                yield ("train" if position < cut else "val"), document.segments, True
                position += sum(len(text) for text, _ in document.segments)
                continue
            for piece, last in _with_last(_pieces(document.text_chunks())):
                end = position + len(piece)
                if position < cut < end:  # the piece that holds the cut: split it there
                    yield "train", [(piece[: cut - position], True)], False
                    yield "val", [(piece[cut - position :], True)], last
                else:
                    yield ("train" if end <= cut else "val"), [(piece, True)], last
                position = end

    # --- preparation -----------------------------------------------------------------------
    @functools.cached_property
    def prepared_dir(self) -> Path:
        """Where the prepared corpus lives; computed once (it lists and stats every source file), then
        shared by ``prepare_data``, ``setup`` and every checkpoint's ``state_dict``."""
        return self.cache_dir / f"{self.name}-{fingerprint({'v': 3, **self._fingerprint_parts()})}"

    def prepare_data(self) -> None:
        target = self.prepared_dir
        if is_prepared(target):
            print(f"data: reusing prepared shards in {target}")
            return
        # Preparing must not move the global RNGs: a first run and a cached run with the same
        # seed then initialize the same model.
        with _preserved_rng_state():
            self._prepare(target)

    def _prepare(self, target: Path) -> None:
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        with (
            atomic_directory(target, "the prepared data") as tmp,
            tempfile.TemporaryDirectory(dir=target.parent) as scratch,
        ):
            report = CleaningReport()
            writers = {split: PieceWriter(Path(scratch), split) for split in ("train", "val")}
            # BPE trains on a hash-chosen sample of the training pieces, bounded in size. A character
            # vocabulary takes every character of both splits (as nanoGPT's does), so validation text
            # never turns into <|unk|>; the set is small to keep.
            rate = self.tokenizer_train_bytes / max(1, self._source_bytes())
            tokenizer_sample: list[str] = []
            characters: set[str] = set()
            for split, segments, eos in self._documents(report):
                writers[split].write(segments, eos)
                text = "".join(text for text, _ in segments)
                if self.tokenizer_kind == "char":
                    characters.update(text)
                elif split == "train" and (not tokenizer_sample or in_sample(text, rate)):
                    tokenizer_sample.append(text)  # the first piece always: a sample is never empty
            for writer in writers.values():
                writer.close()
            report.split_documents = {s: w.documents for s, w in writers.items()}
            if report.documents_kept == 0:
                raise DataError(f"no text left after cleaning the sources {self.sources} (all empty or duplicate)")
            for split, writer in writers.items():
                if not writer.paths:
                    raise DataError(
                        f"the {split} split is empty: the corpus has too few documents for "
                        f"val_fraction={self.val_fraction}"
                    )
            seconds["read_clean"] = time.perf_counter() - clock
            clock = time.perf_counter()
            tokenizer = self._build_tokenizer(tokenizer_sample or ["".join(sorted(characters))])
            del tokenizer_sample
            tokenizer.save(tmp / "tokenizer.json")
            seconds["tokenizer"] = time.perf_counter() - clock
            clock = time.perf_counter()
            stats = {}
            for split, writer in writers.items():
                write_shards(writer.paths, tokenizer.to_str(), tmp / split, self.prepare_workers)
                stats[split] = count_tokens(tmp / split)
            seconds["tokenize_write"] = time.perf_counter() - clock
            if stats["train"] < self.block_size + 1:
                raise DataError(
                    f"the training split has {stats['train']} tokens, fewer than one block of "
                    f"{self.block_size + 1}: add text or lower data.block_size"
                )
            summary = {**report.to_dict(), "tokens": stats, "vocab_size": tokenizer.vocab_size}
            summary["val_bytes"] = writers["val"].text_bytes
            summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
            (tmp / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
        print(f"data: {report.summary()}; tokens {stats}; {timing}; shards in {target}")

    def _build_tokenizer(self, training_texts: list[str]) -> Tokenizer:
        if self.tokenizer_path:
            return Tokenizer.from_file(self.tokenizer_path)
        return Tokenizer.train(training_texts, vocab_size=self.vocab_size, kind=self.tokenizer_kind)

    # --- loading ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None and self._datasets:
            return
        directory = self.prepared_dir
        if not is_prepared(directory):
            self.prepare_data()
        self.tokenizer = Tokenizer.from_file(directory / "tokenizer.json")
        self.report = json.loads((directory / "report.json").read_text())
        from litdata import StreamingDataset, TokensLoader

        for split in ("train", "val"):
            self._datasets[split] = StreamingDataset(
                str(directory / split),
                item_loader=TokensLoader(block_size=self.block_size + 1),
                shuffle=self.shuffle and split == "train",
                drop_last=split == "train",
                seed=self.seed,
                transform=split_sample,
            )
        if len(self._datasets["val"]) == 0:
            raise DataError(
                f"the validation split has {self.report['tokens']['val']} tokens, fewer than one block of "
                f"{self.block_size + 1}: raise data.val_fraction or lower data.block_size"
            )

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token on the validation split (for bits-per-byte)."""
        return self.report["val_bytes"] / max(1, self.report["tokens"]["val"])

    def _loader(self, split: str):
        from litdata import StreamingDataLoader

        return StreamingDataLoader(
            self._datasets[split],
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=False,
            drop_last=split == "train",
        )

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("val")

    def num_train_samples(self) -> int:
        return len(self._datasets["train"])

    def steps_per_epoch(self) -> int:
        return math.floor(self.num_train_samples() / self.batch_size)

    # --- resuming: the loader position is only meaningful for the same data and sampling ----
    def _resume_settings(self) -> dict:
        return {
            "corpus": self.prepared_dir.name,
            "block_size": self.block_size,
            "batch_size": self.batch_size,
            "num_workers": self.num_workers,
            "shuffle": self.shuffle,
            "seed": self.seed,
        }

    def state_dict(self) -> dict:
        """Saved in checkpoints: the settings a resumed run must share to continue at the exact next sample."""
        return self._resume_settings()

    def load_state_dict(self, state: dict) -> None:
        """On ``fit --ckpt_path``, refuse with one clear line when the data no longer matches the checkpoint.

        litdata would otherwise fail deep inside the loader (block size, seed, shuffle, corpus),
        and a changed tokenizer would silently feed the model the wrong token ids.
        """
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.state.fn != "fit":
            return  # validate/test/predict read no loader position
        now = self._resume_settings()
        if state.get("corpus") != now["corpus"]:
            raise DataError(
                f"cannot resume: the checkpoint was trained on prepared corpus {state.get('corpus')}, but the data "
                f"settings now give {now['corpus']} (sources, tokenizer or split changed); resume with the same data, "
                "or start a new run from the checkpoint's weights"
            )
        changed = [f"data.{k} {state[k]!r} -> {value!r}" for k, value in now.items() if state.get(k, value) != value]
        if changed:
            raise DataError(
                f"cannot resume the data position exactly: {', '.join(changed)} since the checkpoint; "
                "set them back to resume, or start a new run from the checkpoint's weights"
            )


class ReasoningDataModule(TextDataModule):
    """The built-in corpus: seeded step-by-step arithmetic problems, character-level, read in curriculum order.

    Needs no files and no download. Training problems stream in the generator's order
    (1-step problems first when the curriculum is on), so ``shuffle`` defaults to off.
    """

    name = "reasoning"

    def __init__(
        self,
        corpus_seed: int = 1234,
        working: str = "digits",
        num_train: int = 60_000,
        num_val: int = 300,
        num_test: int = 300,
        step_mix: tuple[float, float, float] = (1.0, 1.0, 1.0),
        curriculum: str = "staged",
        stages: tuple[float, float] = (0.2, 0.4),
        answer_loss_only: bool = True,
        tokenizer_kind: TokenizerKind = "char",
        vocab_size: int = 512,
        block_size: int = 256,
        batch_size: int = 32,
        num_workers: int = 0,
        shuffle: bool = False,
        seed: int = 42,
        cache_dir: str = ".cache/lightningllm",
    ):
        """
        Args:
            corpus_seed: seed of the problem generator (same seed, same corpus).
            working: how each step is worked: ``plain``, ``reversed`` or ``digits`` (column by column).
            num_train: training problems generated.
            num_val: validation problems (validation loss and exact match during training).
            num_test: held-out test problems (``lightningllm test`` reports exact match on them).
            step_mix: relative weights of 1-, 2- and 3-step problems.
            curriculum: ``staged`` puts 1-step problems first, then 2-step, then all; ``none`` mixes.
            stages: fractions of the training stream where 2- and then 3-step problems come in.
            answer_loss_only: train on the answer tokens only; the question is read but not predicted.
            tokenizer_kind: ``char``, or ``bpe`` (digits still one per token; words and templates compress).
            vocab_size: BPE vocabulary size (ignored for ``char``).
            block_size: tokens per training sample.
            batch_size: samples per batch.
            num_workers: loader worker processes.
            shuffle: shuffle training samples (breaks the curriculum order).
            seed: seed of the shuffle.
            cache_dir: where the prepared corpus is cached.
        """
        super().__init__(
            sources=None,
            tokenizer_kind=tokenizer_kind,
            vocab_size=vocab_size,
            block_size=block_size,
            batch_size=batch_size,
            num_workers=num_workers,
            shuffle=shuffle,
            seed=seed,
            cache_dir=cache_dir,
            prepare_workers=1,
        )
        from lightningllm.data.reasoning import ReasoningCorpus

        self.corpus = ReasoningCorpus(
            seed=corpus_seed,
            working=working,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            step_mix=tuple(step_mix),
            curriculum=curriculum,
            stages=tuple(stages),
        )
        self.answer_loss_only = answer_loss_only
        self._corpus_args = {
            "answer_loss_only": answer_loss_only,
            "seed": corpus_seed,
            "working": working,
            "sizes": [num_train, num_val, num_test],
            "step_mix": list(step_mix),
            "curriculum": curriculum,
            "stages": list(stages),
        }

    def _fingerprint_parts(self) -> dict:
        import lightningllm.data.reasoning as generator

        # Any change to the generator's code changes the corpus, so it is part of the key.
        code = hashlib.blake2b(Path(generator.__file__).read_bytes(), digest_size=8).hexdigest()
        return {"corpus": self._corpus_args, "generator": code, "tokenizer": [self.tokenizer_kind, self.vocab_size]}

    def _source_bytes(self) -> int:
        return 0  # generated, and small: the tokenizer trains on all of it

    def _documents(self, report: CleaningReport) -> Iterator[tuple[str, list[tuple[str, bool]], bool]]:
        for split in ("train", "val"):
            for problem in self.corpus.problems(split):
                prompt, completion = problem.prompt, problem.completion  # properties build the text
                report.documents_read += 1
                report.documents_kept += 1
                report.bytes_kept += len(prompt) + len(completion)
                if self.answer_loss_only:
                    yield split, [(prompt, False), (completion, True)], True
                else:
                    yield split, [(prompt + completion, True)], True
        report.bytes_read = report.bytes_kept

    def _build_tokenizer(self, training_texts: list[str]) -> Tokenizer:
        if self.tokenizer_kind == "bpe":  # byte-level: no character can be unknown
            return Tokenizer.train(training_texts, vocab_size=self.vocab_size, kind="bpe")
        # Every character of the val/test problems also occurs in training (same templates), but
        # build the vocabulary from all splits so an unseen character can never become <|unk|>.
        texts = training_texts + [p.text for s in ("val", "test") for p in self.corpus.problems(s)]
        return Tokenizer.train(texts, kind="char")

    def problems(self, split: str):
        """The held-out problems of ``split`` (``val`` or ``test``) for exact-match evaluation."""
        return self.corpus.problems(split)


class PromptDataModule(L.LightningDataModule):
    """Prompts for ``predict``: from the command line and/or a file (one per line, or JSONL ``prompt``)."""

    def __init__(
        self,
        prompts: list[str] | None = None,
        prompt_file: str | None = None,
        batch_size: int = 8,
        chat: bool = False,
        system: str | None = None,
    ):
        """
        Args:
            prompts: prompt strings; a literal ``\\n`` in them becomes a newline.
            prompt_file: a ``.jsonl`` file with a ``prompt`` field per line, or a text file with one
                prompt per line (literal ``\\n`` becomes a newline).
            batch_size: prompts generated together.
            chat: wrap each prompt in the chat format that instruction data trains on
                (``<|user|>PROMPT<|end|><|assistant|>``), for models fine-tuned on prompt/response data.
            system: with ``chat``, a system message put before each prompt.
        """
        super().__init__()
        self.prompts = [p.replace("\\n", "\n") for p in (prompts or [])]
        self.prompt_file = prompt_file
        self.batch_size = batch_size
        self.chat = chat
        self.system = system

    def setup(self, stage: str | None = None) -> None:
        prompts = list(self.prompts)
        if self.prompt_file:
            prompts.extend(read_prompt_file(Path(self.prompt_file)))
        if not prompts:
            raise DataError("no prompts given: pass --prompt TEXT or --prompt_file FILE")
        if self.chat:
            prompts = [format_prompt(p, self.system) for p in prompts]
        self._items = [{"id": i, "prompt": p} for i, p in enumerate(prompts)]

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        def collate(items):
            return {"id": [it["id"] for it in items], "prompt": [it["prompt"] for it in items]}

        return DataLoader(self._items, batch_size=self.batch_size, collate_fn=collate)


def read_prompt_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"prompt file {path} does not exist")
    prompts = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                    raise DataError(f"{path}:{number}: record has no string 'prompt' field")
                prompts.append(record["prompt"])
            else:
                prompts.append(line.rstrip("\n").replace("\\n", "\n"))
    return prompts
