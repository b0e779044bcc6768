"""CorpusDataModule: the shared data module over a prepared ``Corpus``, from its shards to token batches.

A ``TokenDataModule`` (the data → model contract) and a plain ``LightningDataModule``: it works
with any ``Trainer``, in this app or in someone else's project. A subclass says what to read by
one method, ``corpus()``, and holds its own settings; this class holds the tokenizer, sample and
loader settings. ``prepare_data`` (once per node) prepares the corpus and caches it by
fingerprint (``lightningllm.data.prepare``); ``setup`` only opens the shards. Each sample is
``block_size + 1`` consecutive tokens, split into inputs and targets (``decode_sample``). Every
setting is checked at construction (``lightningllm.data.checks``), and ``setup`` refuses a split
its stage reads that holds no batch (Lightning would train or validate on nothing and exit 0),
in one line with its token count, what one batch needs, and what to change: a subclass words
the last two with ``data_source`` and ``more_data_hint``. The state saved in checkpoints lets
``fit --ckpt_path`` refuse, in one line, to resume on data that no longer matches.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lightningllm.data.checks import check_choice, check_int
from lightningllm.data.contract import TokenDataModule
from lightningllm.data.prepare import SPLITS, Corpus, TokenizerSpec, corpus_dir, prepare_corpus, read_report
from lightningllm.data.shards import MAX_VOCAB_SIZE, count_samples, decode_sample, is_prepared
from lightningllm.data.sources import DataError
from lightningllm.data.tokenizer import Tokenizer, TokenizerKind, check_bpe_vocab_size

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
"""The splits each stage reads, checked by ``setup`` before a run starts."""


class CorpusDataModule(TokenDataModule):
    """Token batches from a prepared ``Corpus``; subclasses implement ``corpus()``."""

    def __init__(
        self,
        tokenizer_kind: TokenizerKind = "bpe",
        vocab_size: int = 4096,
        tokenizer_path: str | None = None,
        tokenizer_train_bytes: int = 64_000_000,
        block_size: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 42,
        cache_dir: str = ".cache/lightningllm",
        prepare_workers: int = 2,
    ):
        """
        Args:
            tokenizer_kind: ``bpe`` (byte-level BPE, digits split) or ``char`` (one token per character).
            vocab_size: BPE vocabulary size to train (ignored for ``char``).
            tokenizer_path: use this ``tokenizer.json`` instead of training one.
            tokenizer_train_bytes: train the tokenizer on a deterministic sample of about this much of the
                training text (all of it when the corpus is smaller), which bounds its time and memory.
            block_size: tokens per training sample (the model's context length).
            batch_size: samples per batch.
            num_workers: loader worker processes (0 reads in the main process).
            shuffle: shuffle training samples each epoch (off keeps the corpus order, e.g. a curriculum).
            seed: seed of the shuffle.
            cache_dir: where prepared shards are cached, keyed by a fingerprint of the corpus and settings.
            prepare_workers: processes that tokenize and write shards in ``prepare_data``.
        """
        super().__init__()
        check_choice("data.tokenizer_kind", tokenizer_kind, ("bpe", "char"))
        check_int("data.vocab_size", vocab_size, 1, MAX_VOCAB_SIZE)
        if tokenizer_kind == "bpe" and not tokenizer_path:
            check_bpe_vocab_size(vocab_size, "data.vocab_size", DataError)
        check_int("data.tokenizer_train_bytes", tokenizer_train_bytes, 1)
        check_int("data.block_size", block_size, 1)
        check_int("data.batch_size", batch_size, 1)
        check_int("data.num_workers", num_workers, 0)
        check_int("data.seed", seed, 0, 2**32 - 1)  # numpy's seed range, which the shuffle uses
        check_int("data.prepare_workers", prepare_workers, 1)
        if not isinstance(cache_dir, str | Path) or not str(cache_dir):
            raise DataError(f"data.cache_dir must be a folder path (got {cache_dir!r})")
        if "://" in str(cache_dir):  # Path("s3://b/x") is a local folder named "s3:"
            raise DataError(
                f"data.cache_dir {cache_dir} is a URL: prepared data lives in a local folder for now (object storage "
                "is not supported yet)"
            )
        self.tokenizer_kind = tokenizer_kind
        self.vocab_size = vocab_size
        self.tokenizer_path = tokenizer_path
        self.tokenizer_train_bytes = tokenizer_train_bytes
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.seed = seed
        self.cache_dir = Path(cache_dir)
        self.prepare_workers = prepare_workers
        self.tokenizer: Tokenizer | None = None
        self.report: dict = {}
        """The prepared corpus's ``report.json`` (see ``read_report``), read by ``setup``."""
        self._datasets: dict = {}

    def corpus(self) -> Corpus:
        """The corpus this module prepares and reads; every subclass implements it."""
        raise NotImplementedError(f"{type(self).__name__} must implement corpus()")

    def data_source(self) -> str:
        """How errors name this module's data, e.g. ``data.sources notes/``; the corpus's name by default."""
        return f"corpus {self.corpus().name}"

    def more_data_hint(self, split: str) -> str:
        """What to change when ``split`` holds too little data, e.g. ``raise data.val_fraction (now 0.05)``."""
        return f"give the corpus more {split} documents"

    @property
    def tokenizer_spec(self) -> TokenizerSpec:
        """The tokenizer settings, as ``prepare_corpus`` takes them."""
        return TokenizerSpec(self.tokenizer_kind, self.vocab_size, self.tokenizer_path, self.tokenizer_train_bytes)

    # --- preparation -----------------------------------------------------------------------
    @functools.cached_property
    def prepared_dir(self) -> Path:
        """Where the prepared corpus lives; computed once (for files it lists and stats every source),
        then shared by ``prepare_data``, ``setup`` and every checkpoint's ``state_dict``."""
        return corpus_dir(self.corpus(), self.tokenizer_spec, self.cache_dir)

    def prepare_data(self) -> None:
        """Prepare the corpus into ``prepared_dir``, or reuse it when it is already there."""
        prepare_corpus(self.corpus(), self.prepared_dir, self.tokenizer_spec, self.prepare_workers)

    # --- loading ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Open the prepared shards (preparing them first if this process has not); refuse, in one line,
        a split the stage reads (``fit``: train and val) that holds too little for one batch."""
        if not self._datasets:
            self._open()
        for split in STAGE_SPLITS.get(stage or "fit", ()):
            self._loader(split)

    def _open(self) -> None:
        directory = self.prepared_dir
        if not is_prepared(directory):
            self.prepare_data()
        self.tokenizer = Tokenizer.from_file(directory / "tokenizer.json")
        self.report = read_report(directory)
        from litdata import StreamingDataset, TokensLoader

        for split in SPLITS:
            if not self.report["tokens"].get(split):
                continue  # an empty split has no shards
            self._datasets[split] = StreamingDataset(
                str(directory / split),
                item_loader=TokensLoader(block_size=self.block_size + 1),
                shuffle=self.shuffle and split == "train",
                drop_last=split == "train",
                seed=self.seed,
                transform=decode_sample,
            )

    @property
    def bytes_per_token(self) -> float | None:
        """UTF-8 bytes per token of the validation text (for bits per byte); None before ``setup``."""
        if not self.report:
            return None
        return self.report["val_bytes"] / max(1, self.report["tokens"]["val"])

    def num_train_samples(self) -> int:
        """Training samples of ``block_size + 1`` tokens per epoch (after ``setup``)."""
        return len(self._datasets["train"])

    def _loader(self, split: str):
        """The loader of ``split``; a ``DataError`` when it would hold no batch (Lightning would run none)."""
        from lightningllm.data.loader import TokenLoader

        if split not in self._datasets:
            raise self._too_little(split, drop_last=split == "train")
        loader = TokenLoader(
            self._datasets[split],
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=False,
            drop_last=split == "train",
        )
        if len(loader) == 0:
            raise self._too_little(split, drop_last=self._datasets[split].drop_last)
        return loader

    def _too_little(self, split: str, drop_last: bool) -> DataError:
        """The one line that says what ``split`` holds, what one batch of it needs, and what to change."""
        window = self.block_size + 1
        tokens = self.report["tokens"].get(split, 0)
        samples = count_samples(self.prepared_dir / split, window) if tokens else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        plural = "" if samples == 1 else "s"
        has = f"the {split} split of {self.data_source()} has {tokens:,} tokens ({samples:,} sample{plural} of "
        has += f"data.block_size + 1 = {window})"
        if drop_last:  # only whole batches, on every process
            processes = f"{world} processes × " if world > 1 else ""
            total = world * self.batch_size * window
            needs = f"one batch needs {processes}data.batch_size {self.batch_size} × {window} = {total:,} tokens"
            lower = "data.batch_size or data.block_size"
        else:
            needs, lower = f"one sample needs {window} tokens", "data.block_size"
        what = {"train": "training", "val": "validation", "test": "test"}[split]
        return DataError(f"too little {what} data: {has}, and {needs}; {self.more_data_hint(split)}, or lower {lower}")

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        """Batches of the test split; a ``DataError`` when it holds less than one sample."""
        return self._loader("test")

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
        if self.trainer is not None and self.trainer.state.fn != "fit":
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
