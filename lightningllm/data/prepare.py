"""Preparing a corpus: its documents → a tokenizer → litdata token shards per split, cached in one folder.

Any corpus that implements the small ``Corpus`` protocol is prepared the same way: the user's
text files (``lightningllm.data.text``) as much as a task's generated corpus. ``prepare_corpus``
reads the documents once, writing each to the pieces of its split (``train``, ``val``,
``test``) while it gathers what the tokenizer trains on: for BPE a deterministic hash sample of
the training text, bounded in size; for a character vocabulary every character of every split,
so held-out text never turns into ``<|unk|>``. It then trains the tokenizer (or loads the given
file), tokenizes each split into shards in worker processes and writes ``report.json``. The
corpus decides the layout of its shards while it yields its documents (``CleaningReport.layout``):
``packed`` token streams, or one item per document for a corpus of instruction records, whose
lengths it then records (``lightningllm.data.shards``). The
folder is built in a locked staging folder beside it and renamed into place only when complete
(``lightningllm.data.staging``: however preparation ends, even by SIGTERM, no staging folder
stays behind, and one left by a killed run is removed by the next). The global RNGs are left
as they were, so a first run and a cached run with the same seed initialize the same model.
``corpus_dir`` names the folder by a fingerprint of the corpus and tokenizer settings: the same
settings reuse it without tokenizing again.

A corpus can live in object storage instead (``lightningllm.data.storage``): ``publish_corpus``
builds it the same way in a staging folder on local disk, then uploads it to
``s3://bucket/prefix/<name>-<fingerprint>/`` with ``report.json`` last, so a half-uploaded corpus
is never taken as prepared. ``mirror_corpus`` copies its small files (tokenizer, report, the
index of each split's shards) to a local folder of the same name, which the data module reads as
it reads a local corpus, while the shards stream from the bucket. Each prints where the
prepared folder is: a data module's ``prepared`` setting reads it from there, without the sources.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lightningllm.atomic import temporary_name
from lightningllm.data.instruct import Segment
from lightningllm.data.shard_writer import write_shards
from lightningllm.data.shards import (
    COMPLETE_MARKER,
    RECORD_LENGTHS,
    PieceWriter,
    count_tokens,
    fingerprint,
    is_prepared,
    record_lengths,
)
from lightningllm.data.sources import CleaningReport, DataError, fingerprint_files, in_sample
from lightningllm.data.staging import remove_abandoned, staging_directory
from lightningllm.data.storage import S3Folder
from lightningllm.data.tokenizer import Tokenizer, TokenizerKind

SPLITS: tuple[str, ...] = ("train", "val", "test")
FORMAT_VERSION = 5
"""Part of every fingerprint: raised when the prepared format changes, so old caches are rebuilt (5: the
``records`` layout, so a corpus of instruction records packed by an earlier version is prepared again)."""


class Corpus(Protocol):
    """What ``prepare_corpus`` reads: documents, already assigned to splits, and what identifies them."""

    name: str
    """Prefix of the prepared folder's name (``text``, a task's name)."""

    def fingerprint(self) -> dict:
        """JSON-serializable settings and source fingerprints: any change to the documents changes it."""
        ...

    def size_bytes(self) -> int:
        """Raw size of the sources, read before the documents to set the tokenizer's sampling rate;
        0 for a generated corpus, whose training text the tokenizer then trains on in full."""
        ...

    def documents(self, report: CleaningReport) -> Iterator[tuple[str, list[Segment], bool]]:
        """Yield ``(split, segments, ends_with_eos)`` per document, ``split`` one of ``train``, ``val``,
        ``test``; a segment is ``(text, trained)``, and context (``trained=False``) is read but not
        trained on. Counts what was read and kept in ``report``; a split may get no documents. A corpus
        whose every document is a record to train on alone (an instruction or chat example) sets
        ``report.layout = "records"`` by the time it is exhausted; left ``packed``, the documents of a
        split are joined into one token stream."""
        ...


@dataclass(frozen=True)
class TokenizerSpec:
    """How a prepared corpus gets its tokenizer: trained on it, or loaded from ``path``."""

    kind: TokenizerKind = "bpe"
    """``bpe`` (byte-level BPE, digits split) or ``char`` (one token per character)."""
    vocab_size: int = 4096
    """BPE vocabulary size (ignored for ``char``)."""
    path: str | None = None
    """A ``tokenizer.json`` to use instead of training one."""
    train_bytes: int = 64_000_000
    """BPE trains on a hash sample of about this much training text (all of it when less)."""

    def fingerprint(self) -> list:
        """The settings, and the given file's path, size and mtime: any change re-prepares the corpus."""
        return [self.kind, self.vocab_size, fingerprint_files([self.file]) if self.path else None, self.train_bytes]

    @property
    def file(self) -> Path:
        """The ``tokenizer.json`` that ``path`` names (it may name its folder); a ``FileNotFoundError`` if none."""
        file = Path(self.path) / "tokenizer.json" if Path(self.path).is_dir() else Path(self.path)
        if not file.is_file():
            raise FileNotFoundError(f"tokenizer file {file} not found")
        return file


def corpus_dir(corpus: Corpus, tokenizer: TokenizerSpec, cache_dir: str | Path) -> Path:
    """The folder ``<cache_dir>/<name>-<fingerprint>`` that holds ``corpus`` prepared with ``tokenizer``."""
    parts = {"v": FORMAT_VERSION, "corpus": corpus.fingerprint(), "tokenizer": tokenizer.fingerprint()}
    return Path(cache_dir) / f"{corpus.name}-{fingerprint(parts)}"


def read_report(directory: Path) -> dict:
    """The ``report.json`` of a prepared folder: cleaning counts, the ``layout``, ``tokens`` and ``text_bytes``
    per split, ``vocab_size``, ``val_bytes`` and the seconds of each phase."""
    return json.loads((directory / COMPLETE_MARKER).read_text())


def prepare_corpus(corpus: Corpus, target: Path, tokenizer: TokenizerSpec, workers: int = 2) -> dict:
    """Prepare ``corpus`` into ``target`` unless it is already there; return its report.

    A split may come out empty (no shards, 0 tokens): whether a split holds enough for a batch is
    for the data module to judge, which knows its batch size. Abandoned staging folders of killed
    runs in ``target``'s parent are removed on the way.

    Args:
        corpus: the documents to prepare.
        target: the folder to fill, normally ``corpus_dir(corpus, tokenizer, cache_dir)``.
        tokenizer: how to get the tokenizer.
        workers: processes that tokenize and write shards (1 keeps the document order exactly).

    Raises:
        DataError: when the corpus has no documents.
        OSError: one line naming the path, when a source cannot be read or the cache folder written.
    """
    if is_prepared(target):
        remove_abandoned(target.parent)
        print(f"data: reusing prepared shards in {target}{_reuse_hint(target)}")
        return read_report(target)
    with _preserved_rng_state():
        return _prepare(corpus, target, tokenizer, workers)


@contextlib.contextmanager
def _preserved_rng_state() -> Iterator[None]:
    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def publish_corpus(corpus: Corpus, remote: S3Folder, local: Path, tokenizer: TokenizerSpec, workers: int = 2) -> dict:
    """Prepare ``corpus`` into ``<remote>/<local.name>/`` unless it is there already; return its report.

    It is built in a staging folder beside ``local`` (the corpus's folder in the local mirror of
    ``remote``, ``S3Folder.local_mirror``), uploaded with ``report.json`` last, and the staging
    folder removed. Several processes publishing the same corpus at once upload the same files.

    Raises:
        DataError: one line naming the URI when the bucket cannot be reached, read or written, and
            as ``prepare_corpus`` does.
        OSError: as ``prepare_corpus`` does.
    """
    target = remote.url(local.name)
    report = remote.read(local.name, COMPLETE_MARKER)
    if report is None:
        with _preserved_rng_state(), staging_directory(local.parent, local.name) as staging:
            built, summary, message = _built(corpus, staging, local.parent, tokenizer, workers)
            if remote.read(local.name, COMPLETE_MARKER) is None:  # unless another run published it meanwhile
                remote.upload(built, local.name, last=COMPLETE_MARKER)
        print(f"data: {message}; shards in {target}{_reuse_hint(target)}")
        return summary
    remove_abandoned(local.parent)
    print(f"data: reusing prepared shards in {target}{_reuse_hint(target)}")
    return json.loads(report)


def mirror_corpus(remote: S3Folder, local: Path) -> bool:
    """Copy the small files of the published corpus ``<remote>/<local.name>/`` into ``local``; False when it
    is not published (no ``report.json`` there).

    ``local`` then holds ``tokenizer.json``, ``report.json`` and each split's ``index.json``, read
    like a local corpus; a split's shards stream into its folder. Its cached shards are dropped when
    the split's index has changed (the corpus was published again).
    """
    report = remote.read(local.name, COMPLETE_MARKER)
    if report is None:
        return False
    _write_if_changed(local / "tokenizer.json", _published(remote, local.name, "tokenizer.json"))
    summary = json.loads(report)
    if summary.get("layout") == "records":
        _write_if_changed(local / RECORD_LENGTHS, _published(remote, local.name, RECORD_LENGTHS))
    for split, tokens in summary["tokens"].items():
        if tokens:  # an empty split has no shards
            if _write_if_changed(local / split / "index.json", _published(remote, local.name, split, "index.json")):
                for stale in (local / split).iterdir():  # shards cached from the earlier index
                    if stale.name != "index.json" and not stale.name.startswith("."):  # nor another's temporary
                        stale.unlink(missing_ok=True)
    _write_if_changed(local / COMPLETE_MARKER, report)
    return True


def _published(remote: S3Folder, *parts: str) -> bytes:
    """A file of a published corpus; a ``DataError`` when it is missing (deleted since, by hand)."""
    data = remote.read(*parts)
    if data is None:
        raise DataError(
            f"{remote.url(*parts)} is missing, so the prepared corpus there is incomplete; delete "
            f"{remote.url(parts[0])} to prepare it again"
        )
    return data


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it holds that already; True when it changed. The file is written
    whole, under a name of its own and renamed, so processes mirroring at once never see half a file."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _prepare(corpus: Corpus, target: Path, spec: TokenizerSpec, workers: int) -> dict:
    with staging_directory(target.parent, target.name) as staging:
        built, summary, message = _built(corpus, staging, target.parent, spec, workers)
        _install(built, target, staging)
    print(f"data: {message}; shards in {target}{_reuse_hint(target)}")
    return summary


def _reuse_hint(target: str | Path) -> str:
    """How the data modules read the prepared folder ``target`` on a machine without its sources."""
    return f" (data.prepared={target} reads them without the sources)"


def _built(corpus: Corpus, staging: Path, cache: Path, spec: TokenizerSpec, workers: int) -> tuple[Path, dict, str]:
    """Build the prepared folder in ``staging``: its path, report and summary; errors name ``cache``."""
    built, work = staging / "prepared", staging / "work"
    try:
        built.mkdir()
        work.mkdir()
        summary, message = _build(corpus, built, work, spec, workers)
    except OSError as err:
        if err.errno is None:  # worded already (a missing tokenizer file, say)
            raise
        if err.filename and not str(err.filename).startswith(str(staging)):
            raise OSError(f"cannot read {err.filename}: {err.strerror}") from None
        raise OSError(f"cannot write the prepared data in {cache}: {err.strerror}") from None
    except RuntimeError as err:  # the shard writer's, which names no folder the user knows
        raise RuntimeError(f"preparing the data in {cache} failed: {err}") from None
    return built, summary, message


def _build(corpus: Corpus, out: Path, work: Path, spec: TokenizerSpec, workers: int) -> tuple[dict, str]:
    """Read, split, train the tokenizer, tokenize: the complete prepared folder in ``out``; its report and summary."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    report = CleaningReport()
    writers = {split: PieceWriter(work, split) for split in SPLITS}
    size = corpus.size_bytes()
    rate = 1.0 if size == 0 else spec.train_bytes / size
    sample: list[str] = []
    characters: set[str] = set()
    try:
        for split, segments, eos in corpus.documents(report):
            writers[split].write(segments, eos)
            if spec.path:
                continue
            text = "".join(text for text, _ in segments)
            if spec.kind == "char":
                characters.update(text)
            elif split == "train" and (not sample or in_sample(text, rate)):
                sample.append(text)  # the first piece always: a sample is never empty
    finally:
        for writer in writers.values():
            writer.close()
    report.split_documents = {split: writer.documents for split, writer in writers.items()}
    if report.documents_kept == 0:
        raise DataError(f"corpus {corpus.name} has no documents")
    seconds["read_clean"] = time.perf_counter() - clock
    clock = time.perf_counter()
    tokenizer = _build_tokenizer(spec, sample or ["".join(sorted(characters))])
    del sample
    tokenizer.save(out / "tokenizer.json")
    seconds["tokenizer"] = time.perf_counter() - clock
    clock = time.perf_counter()
    stats = {}
    records = report.layout == "records"
    lengths = {}
    for split, writer in writers.items():
        if writer.paths:  # an empty split writes no shards
            write_shards(writer.paths, tokenizer.to_str(), out / split, workers, work, records=records)
        if records:
            lengths[split] = record_lengths(out / split) if writer.paths else np.zeros(0, dtype=np.int64)
            stats[split] = int(lengths[split].sum())
        else:
            stats[split] = count_tokens(out / split) if writer.paths else 0
    if records:
        np.savez(out / RECORD_LENGTHS, **lengths)
    seconds["tokenize_write"] = time.perf_counter() - clock
    summary = {**report.to_dict(), "tokens": stats, "vocab_size": tokenizer.vocab_size}
    summary["text_bytes"] = {split: writer.text_bytes for split, writer in writers.items()}
    summary["val_bytes"] = writers["val"].text_bytes
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    (out / COMPLETE_MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items())
    layout = f"; one sample per record {report.split_documents}" if records else ""
    return summary, f"{report.summary()}; tokens {stats}{layout}; {timing}"


def _install(built: Path, target: Path, staging: Path) -> None:
    """Rename the complete folder into place, unless another run prepared the same data meanwhile."""
    if is_prepared(target):
        return  # the same corpus and settings: its folder is as good as this one, and may be in use
    if target.exists():  # an incomplete folder of this name: set aside, removed with the staging folder
        os.replace(target, staging / "incomplete")
    try:
        os.replace(built, target)
    except OSError:
        if not is_prepared(target):  # not a run that finished first
            raise


def _build_tokenizer(spec: TokenizerSpec, texts: list[str]) -> Tokenizer:
    if spec.path:
        return Tokenizer.from_file(spec.file)
    return Tokenizer.train(texts, vocab_size=spec.vocab_size, kind=spec.kind)
