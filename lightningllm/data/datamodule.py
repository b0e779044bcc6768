"""CorpusDataModule: the shared data module over a prepared ``Corpus``, from its shards to token batches.

A ``TokenDataModule`` (the data → model contract) and a plain ``LightningDataModule``: it works
with any ``Trainer``, in this app or in someone else's project. A subclass says what to read by
one method, ``corpus()``, and holds its own settings; this class holds the tokenizer, sample and
loader settings. ``prepare_data`` (once per node) prepares the corpus and caches it by
fingerprint (``lightningllm.data.prepare``); ``setup`` only opens the shards. With an ``s3://``
``cache_dir`` the corpus is prepared into a bucket and its shards stream from there, cached in
``local_cache_dir`` (``lightningllm.data.storage``). ``prepared`` names a corpus prepared already,
on local disk or in a bucket, read as it is: a node that trains from it needs no source file.
The corpus's layout (``lightningllm.data.shards``) decides what a sample is. ``packed``: each
sample is ``block_size + 1`` consecutive tokens, split into inputs and targets (``decode_sample``).
``records`` (a corpus of instruction or chat records): each sample is one record, cut to its first
``block_size + 1`` tokens when longer (``setup`` prints how many are), and a step's rows are
right-padded to its longest record, so no token attends across records; every record trains once an
epoch, the last step filled up with rows that weigh nothing. Training reads the samples in the run's
one order, each data-parallel rank its share of every step (``lightningllm.data.loader``). Every
setting is checked at construction (``lightningllm.data.checks``), and ``setup`` refuses a split its
stage reads that holds no batch (Lightning would train or validate on nothing and exit 0), in one
line with its token count (for records: that it holds none), what one batch needs, and what to
change: a subclass words the last two with ``data_source`` and ``more_data_hint``. The state
saved in checkpoints lets ``fit --ckpt_path`` refuse, in one line, to resume on data that no longer
matches.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lightningllm.data.checks import check_choice, check_int, check_size
from lightningllm.data.contract import TokenDataModule
from lightningllm.data.loader import data_parallel_share
from lightningllm.data.prepare import (
    SPLITS,
    Corpus,
    TokenizerSpec,
    corpus_dir,
    mirror_corpus,
    prepare_corpus,
    publish_corpus,
    read_report,
)
from lightningllm.data.shards import (
    MAX_VOCAB_SIZE,
    RECORD_LENGTHS,
    chunk_records,
    chunk_samples,
    count_samples,
    decode_record,
    decode_sample,
    is_prepared,
    sample_widths,
)
from lightningllm.data.sources import DataError, Layout
from lightningllm.data.storage import S3Folder, is_url
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
        group_by_length: int = 0,
        cache_dir: str = ".cache/lightningllm",
        local_cache_dir: str = ".cache/lightningllm",
        max_cache_size: str | None = None,
        s3_endpoint: str | None = None,
        prepare_workers: int = 2,
        prepared: str | None = None,
    ):
        """
        Args:
            tokenizer_kind: ``bpe`` (byte-level BPE, digits split) or ``char`` (one token per character).
            vocab_size: BPE vocabulary size to train (ignored for ``char``).
            tokenizer_path: use this ``tokenizer.json`` instead of training one.
            tokenizer_train_bytes: train the tokenizer on a deterministic sample of about this much of the
                training text (all of it when the corpus is smaller), which bounds its time and memory.
            block_size: tokens per training sample (the model's context length); for a corpus of records, the
                most a sample holds (a longer record is cut to its first ``block_size + 1`` tokens).
            batch_size: samples per batch.
            num_workers: loader worker processes (0 reads in the main process).
            shuffle: shuffle training samples each epoch (off keeps the corpus order, e.g. a curriculum).
            seed: seed of the shuffle.
            group_by_length: for a corpus of records: each run of this many training steps has its samples sorted
                by length and cut into steps again (in a seeded order), so rows pad to about their own length
                (0: off, each step pads to its longest record; 8 is a good start). Training data moves by at
                most that many steps; evaluation is never regrouped.
            cache_dir: where prepared corpora are kept, each in a folder named by a fingerprint of the corpus and
                settings: a local folder, or ``s3://bucket/prefix`` in object storage (prepared locally, uploaded
                there, then streamed from there; see ``s3_endpoint`` for the server and credentials).
            local_cache_dir: with an ``s3://`` ``cache_dir``: the local folder, under ``s3/<bucket>/<prefix>/``,
                of each corpus's small files, the shards streamed from the bucket, and the staging folder of a
                corpus being prepared.
            max_cache_size: with an ``s3://`` ``cache_dir``: the most streamed shard data kept in
                ``local_cache_dir``, e.g. ``50GB`` (a corpus larger than that has its shards deleted once read);
                None: litdata's default, 75% of the free disk.
            s3_endpoint: the URL of an S3-compatible server (MinIO, SeaweedFS, R2), e.g. ``http://10.0.0.5:9000``;
                None: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` or the AWS config, else AWS itself.
                Credentials are never settings: boto3 reads ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``,
                or ``AWS_PROFILE`` and ``~/.aws``.
            prepare_workers: processes that tokenize and write shards in ``prepare_data``.
            prepared: a corpus prepared already, read as it is: its ``<name>-<fingerprint>`` folder, as preparing
                prints it, a local path or ``s3://bucket/prefix/<name>-<fingerprint>`` (streamed into
                ``local_cache_dir``). No source is read and nothing is prepared; the corpus's own
                ``tokenizer.json`` is the tokenizer. The settings of preparing (``cache_dir``, ``tokenizer_kind``,
                ``vocab_size``, ``tokenizer_train_bytes``, ``prepare_workers``, a subclass's) are unused, and a
                ``tokenizer_path`` must name the corpus's own tokenizer; the sample and loader settings apply.
        """
        super().__init__()
        check_choice("data.tokenizer_kind", tokenizer_kind, ("bpe", "char"))
        check_int("data.vocab_size", vocab_size, 1, MAX_VOCAB_SIZE)
        if tokenizer_kind == "bpe" and not tokenizer_path and prepared is None:  # unused for a prepared corpus
            check_bpe_vocab_size(vocab_size, "data.vocab_size", DataError)
        check_int("data.tokenizer_train_bytes", tokenizer_train_bytes, 1)
        check_int("data.block_size", block_size, 1)
        check_int("data.batch_size", batch_size, 1)
        check_int("data.num_workers", num_workers, 0)
        check_int("data.seed", seed, 0, 2**32 - 1)  # numpy's seed range, which the shuffle uses
        check_int("data.group_by_length", group_by_length, 0)
        check_int("data.prepare_workers", prepare_workers, 1)
        if not isinstance(cache_dir, str | Path) or not str(cache_dir):
            raise DataError(f"data.cache_dir must be a folder path or an s3:// URI (got {cache_dir!r})")
        if not isinstance(local_cache_dir, str | Path) or not str(local_cache_dir) or is_url(local_cache_dir):
            raise DataError(f"data.local_cache_dir must be a local folder path (got {local_cache_dir!r})")
        if max_cache_size is not None:
            check_size("data.max_cache_size", max_cache_size)
        self.tokenizer_kind = tokenizer_kind
        self.vocab_size = vocab_size
        self.tokenizer_path = tokenizer_path
        self.tokenizer_train_bytes = tokenizer_train_bytes
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.seed = seed
        self.group_by_length = group_by_length
        self.prepared = None if prepared is None else _prepared_location(prepared)
        """The ``prepared`` corpus's folder (a local path or an ``s3://`` URI), without a trailing slash; else None."""
        if self.prepared is None:
            folder, setting = str(cache_dir), "data.cache_dir"
        elif is_url(self.prepared):
            S3Folder(self.prepared, s3_endpoint, "data.prepared")  # checks the URI as given
            folder, setting = self.prepared.rpartition("/")[0], "data.prepared"
        else:
            folder, setting = str(Path(self.prepared).parent), "data.prepared"
        self.remote = S3Folder(folder, s3_endpoint, setting) if is_url(folder) else None
        """The folder in object storage that holds prepared corpora, for an ``s3://`` ``cache_dir`` (or the folder
        of an ``s3://`` ``prepared`` corpus); else None."""
        self.cache_dir = Path(folder) if self.remote is None else self.remote.local_mirror(Path(local_cache_dir))
        """The local folder of prepared corpora: ``cache_dir`` itself (the folder of a local ``prepared`` corpus),
        or the local mirror of ``remote``."""
        self.max_cache_size = max_cache_size
        self.prepare_workers = prepare_workers
        self.tokenizer: Tokenizer | None = None
        self.report: dict = {}
        """The prepared corpus's ``report.json`` (see ``read_report``), read by ``setup``."""
        self._datasets: dict = {}
        self._chunk_samples: dict[str, list[int]] = {}  # per split: samples in each chunk, read once by setup
        self._widths: dict[str, np.ndarray] = {}  # per split of records: the inputs each record makes

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
        """Where the prepared corpus lives (for one in object storage, the local mirror of its folder there);
        computed once (for files it lists and stats every source), then shared by ``prepare_data``, ``setup``
        and every checkpoint's ``state_dict``. With ``prepared``, that corpus's folder, or its local mirror."""
        if self.prepared is not None:
            return self.cache_dir / self.prepared.rpartition("/")[2]
        return corpus_dir(self.corpus(), self.tokenizer_spec, self.cache_dir)

    def prepare_data(self) -> None:
        """Prepare the corpus into ``prepared_dir``, or reuse it when it is already there; for an ``s3://``
        ``cache_dir``, into the bucket, then mirror its small files into ``prepared_dir``. With ``prepared``,
        only check that corpus is complete (and mirror it); a ``DataError`` naming it when it is not."""
        if self.prepared is not None:
            self._check_prepared()
            return
        if self.remote is None:
            prepare_corpus(self.corpus(), self.prepared_dir, self.tokenizer_spec, self.prepare_workers)
            return
        publish_corpus(self.corpus(), self.remote, self.prepared_dir, self.tokenizer_spec, self.prepare_workers)
        mirror_corpus(self.remote, self.prepared_dir)

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
        found = is_prepared(directory) if self.remote is None else mirror_corpus(self.remote, directory)
        if not found:
            self.prepare_data()
        self.tokenizer = Tokenizer.from_file(directory / "tokenizer.json")
        if self.prepared is not None and self.tokenizer_path:
            self._check_tokenizer_path()
        self.report = read_report(directory)
        from litdata import StreamingDataset, TokensLoader

        records = self.layout == "records"
        if self.group_by_length and not records:
            raise DataError(
                f"data.group_by_length {self.group_by_length} needs a corpus of records; this one is packed into "
                f"windows of data.block_size {self.block_size} tokens, all one length (set it to 0)"
            )
        lengths = dict(np.load(directory / RECORD_LENGTHS)) if records else {}
        for split in SPLITS:
            if not self.report["tokens"].get(split):
                continue  # an empty split has no shards
            if records:
                reading = {"transform": functools.partial(decode_record, block_size=self.block_size)}
                self._chunk_samples[split] = chunk_records(directory / split)
                self._widths[split] = sample_widths(lengths[split], self.block_size)
            else:
                reading = {"item_loader": TokensLoader(block_size=self.block_size + 1), "transform": decode_sample}
                self._chunk_samples[split] = chunk_samples(directory / split, self.block_size + 1)
            self._datasets[split] = StreamingDataset(
                **self._shards(split),
                **reading,
                shuffle=False,  # read by index, in the orders of lightningllm.data.loader
                drop_last=True,  # unused (only litdata's own iteration reads it); without it litdata warns under DDP
            )
        if records:
            self._report_cut(lengths)

    @property
    def layout(self) -> Layout:
        """How the prepared corpus holds its documents (``report.json``'s ``layout``; after ``setup``):
        ``packed`` windows, or ``records``, one sample each. A corpus prepared before layouts existed is packed."""
        return self.report.get("layout", "packed")

    def _report_cut(self, lengths: dict[str, np.ndarray]) -> None:
        """Print, in one line, the records of each split and how many are longer than a sample and cut."""
        window = self.block_size + 1
        counts = {split: len(lengths[split]) for split in SPLITS}
        cut = {split: int((lengths[split] > window).sum()) for split in SPLITS}
        where = ", ".join(f"{split} {count:,}" for split, count in counts.items())
        if sum(cut.values()):
            which = ", ".join(f"{split} {count:,}" for split, count in cut.items() if count)
            longer = f"{sum(cut.values()):,} longer than data.block_size + 1 = {window} tokens ({which}) are cut to "
            longer += f"their first {window}"
        else:
            longer = f"none is longer than data.block_size + 1 = {window} tokens"
        if self.trainer is None or self.trainer.is_global_zero:
            print(f"data: one sample per record ({where} records); {longer}")

    def _check_prepared(self) -> None:
        """Refuse, in one line, a ``prepared`` folder that holds no complete corpus; mirror one in a bucket."""
        directory = self.prepared_dir
        found = is_prepared(directory) if self.remote is None else mirror_corpus(self.remote, directory)
        if not found:
            raise DataError(
                f"data.prepared {self.prepared} is not a prepared corpus (no report.json): give the "
                "<name>-<fingerprint> folder that preparing printed"
            )
        print(f"data: reading the prepared corpus {self.prepared}")

    def _check_tokenizer_path(self) -> None:
        """A ``tokenizer_path`` beside ``prepared`` must be the prepared corpus's own tokenizer."""
        given = Tokenizer.from_file(self.tokenizer_spec.file)
        if not given.same_vocabulary(self.tokenizer):
            raise DataError(
                f"data.tokenizer_path {self.tokenizer_path} ({given.vocab_size} tokens) is not the tokenizer of "
                f"data.prepared {self.prepared} ({self.tokenizer.vocab_size} tokens), which a prepared corpus brings "
                "itself: leave data.tokenizer_path unset, or prepare the corpus with that tokenizer"
            )

    def _shards(self, split: str) -> dict:
        """Where litdata reads the shards of ``split``: its folder, or for a corpus in object storage the bucket,
        with that folder caching what streams from it (up to ``max_cache_size``)."""
        folder = str(self.prepared_dir / split)
        if self.remote is None:
            return {"input_dir": folder}
        from litdata.streaming.resolver import Dir

        return {
            "input_dir": Dir(path=folder, url=self.remote.url(self.prepared_dir.name, split)),
            "storage_options": self.remote.storage_options(),
            "max_cache_size": self.max_cache_size,
        }

    @property
    def bytes_per_token(self) -> float | None:
        """UTF-8 bytes per token of the validation text (for bits per byte); None before ``setup``."""
        if not self.report:
            return None
        return self.report["val_bytes"] / max(1, self.report["tokens"]["val"])

    def num_train_samples(self) -> int:
        """Training samples per epoch (after ``setup``): windows of ``block_size + 1`` tokens, or records."""
        return sum(self._chunk_samples.get("train", []))

    def _loader(self, split: str):
        """The loader of ``split``; a ``DataError`` when it would hold no batch (Lightning would run none).

        Each data-parallel rank reads its share of every step of the run's one sample order
        (``lightningllm.data.loader``): training shuffled (with ``shuffle``), evaluation in order and
        padded to whole steps.
        """
        from torch.utils.data import DataLoader

        from lightningllm.data.loader import RankBatches, TrainLoader

        if split not in self._datasets:
            raise self._too_little(split, drop_last=split == "train")
        rank, ranks = data_parallel_share(self.trainer)
        chunks = self._chunk_samples[split]
        records = self.layout == "records"
        # Records: rows padded to their step's longest, and the last step of training kept (padded) too.
        shape = {"widths": self._widths[split], "pad_id": self.tokenizer.eos_id} if records else {}
        if split == "train":
            batches = RankBatches(
                self._datasets[split], chunks, self.batch_size, rank, ranks, pad_last=records, **shape,
                group_by_length=self.group_by_length, seed=self.seed, shuffle=self.shuffle,
            )  # fmt: skip
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            loader = TrainLoader(batches, num_workers=self.num_workers, epoch=epoch)
        else:
            batches = RankBatches(
                self._datasets[split], chunks, self.batch_size, rank, ranks, pad_last=True, **shape, seed=0,
                shuffle=False,
            )  # fmt: skip
            loader = DataLoader(batches, batch_size=None, num_workers=self.num_workers)
        if len(loader) == 0:
            raise self._too_little(split, drop_last=split == "train")
        return loader

    def _too_little(self, split: str, drop_last: bool) -> DataError:
        """The one line that says what ``split`` holds, what one batch of it needs, and what to change."""
        window = self.block_size + 1
        tokens = self.report["tokens"].get(split, 0)
        what = {"train": "training", "val": "validation", "test": "test"}[split]
        if self.layout == "records":  # any record makes a batch: too little is none
            source, hint = (
                (f"data.prepared {self.prepared}", f"prepare a corpus with {split} records")
                if self.prepared is not None
                else (self.data_source(), self.more_data_hint(split))
            )
            return DataError(f"too little {what} data: the {split} split of {source} holds no record; {hint}")
        samples = count_samples(self.prepared_dir / split, window) if tokens else 0
        world = data_parallel_share(self.trainer)[1]
        plural = "" if samples == 1 else "s"
        source, hint = (
            (f"data.prepared {self.prepared}", f"prepare a corpus with more {split} text")
            if self.prepared is not None
            else (self.data_source(), self.more_data_hint(split))
        )
        has = f"the {split} split of {source} has {tokens:,} tokens ({samples:,} sample{plural} of "
        has += f"data.block_size + 1 = {window})"
        if drop_last:  # only whole steps: a batch on every data-parallel process
            processes = f"{world} processes × " if world > 1 else ""
            total = world * self.batch_size * window
            needs = f"one batch needs {processes}data.batch_size {self.batch_size} × {window} = {total:,} tokens"
            lower = "data.batch_size or data.block_size"
        else:
            needs, lower = f"one sample needs {window} tokens", "data.block_size"
        return DataError(f"too little {what} data: {has}, and {needs}; {hint}, or lower {lower}")

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
            "shuffle": self.shuffle,
            "seed": self.seed,
            "group_by_length": self.group_by_length,
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
                f"settings now give {now['corpus']} (sources, tokenizer, split or data.prepared changed); resume with "
                "the same data, or start a new run from the checkpoint's weights"
            )
        changed = [f"data.{k} {state[k]!r} -> {value!r}" for k, value in now.items() if state.get(k, value) != value]
        if changed:
            raise DataError(
                f"cannot resume the data position exactly: {', '.join(changed)} since the checkpoint; "
                "set them back to resume, or start a new run from the checkpoint's weights"
            )


def _prepared_location(prepared: str | Path) -> str:
    """``prepared`` as a folder path or URI without a trailing slash; a ``DataError`` when it names no folder."""
    location = str(prepared).rstrip("/") if isinstance(prepared, str | Path) else ""
    name = location.rpartition("/")[2]
    if not name or name in (".", "..") or (is_url(location) and "/" not in location.partition("://")[2]):
        raise DataError(
            f"data.prepared must name a prepared corpus's <name>-<fingerprint> folder, a local path or "
            f"s3://bucket/prefix/<name>-<fingerprint> (got {prepared!r})"
        )
    return location
