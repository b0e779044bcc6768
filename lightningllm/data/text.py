"""TextDataModule: a user's text files → cleaned documents → train/val/test split → token batches.

``TextFiles`` is the ``Corpus`` of a user's files, folders and globs of ``.txt``, ``.md`` and
``.jsonl`` (read and cleaned by ``lightningllm.data.sources``). Plain text is cut at line breaks
into pieces of about 32k characters first, so a corpus that is one big file still feeds every
split; an instruction or chat record stays whole. Each piece goes to a split either by a hash of
its content (``hash``: held-out text samples the whole corpus) or by its position (``tail``: the
last characters in file order, as nanoGPT splits its data). The sources decide the layout: plain
text is packed into one token stream cut into windows, while sources that hold only instruction and
chat records (``prompt``/``response`` or ``messages``) make a corpus of records, each one sample of
its own (``lightningllm.data.shards``); sources that mix the two are refused, in one line naming
their files. ``TextDataModule`` is the ``CorpusDataModule`` over it: the CLI's ``data:`` section
for text. Given ``prepared`` instead of ``sources``, it reads a corpus prepared already (on
another machine, say, into a bucket) without any source file.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from lightningllm.data.checks import check_choice, check_fraction
from lightningllm.data.datamodule import CorpusDataModule
from lightningllm.data.instruct import Segment
from lightningllm.data.sources import (
    CleaningReport,
    DataError,
    Document,
    fingerprint_files,
    iter_documents,
    resolve_sources,
    split_of_document,
)
from lightningllm.data.tokenizer import TokenizerKind

SplitMethod = Literal["hash", "tail"]
SPLIT_PIECE_CHARS = 32_768
"""Long documents are cut into pieces of about this many characters before the split, so a corpus
that is one big file still gets validation and test text."""


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


class TextFiles:
    """The ``Corpus`` of a user's text files, split by content hash or by position.

    Its layout (``CleaningReport.layout``) is ``records`` when every kept document is an instruction
    or chat record, else ``packed``; sources with both kinds are a ``DataError``.

    Args:
        sources: files, folders (searched recursively) and glob patterns.
        jsonl_field: the field of each JSONL record that holds its text.
        val_fraction: share of the text held out for validation.
        test_fraction: share of the text held out for testing (0: no test split).
        split: ``hash`` or ``tail`` (see the module docstring).
    """

    name = "text"

    def __init__(
        self,
        sources: list[str],
        jsonl_field: str = "text",
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split: SplitMethod = "hash",
    ):
        self.sources, self.jsonl_field, self.split = sources, jsonl_field, split
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    @functools.cached_property
    def files(self) -> list[Path]:
        """The source files, resolved once (folders and globs are walked a single time)."""
        return resolve_sources(self.sources)

    def fingerprint(self) -> dict:
        """The files (path, size, mtime) and every setting that changes which text lands where."""
        return {
            "files": fingerprint_files(self.files),
            "jsonl_field": self.jsonl_field,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split": self.split,
        }

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.files)

    def documents(self, report: CleaningReport) -> Iterator[tuple[str, list[Segment], bool]]:
        """Yield ``(split, segments, ends_with_eos)`` and set ``report.layout``; raises ``DataError`` when cleaning
        leaves no text, or when the sources mix plain text and instruction or chat records."""
        files = self.files
        kinds: dict[str, list[Path]] = {"plain": [], "records": []}  # the files each kind of document came from
        if self.split == "tail":
            yield from self._tail_split(files, report, kinds)
        else:
            for document in self._read(files, report, kinds):
                if not document.is_plain:
                    key = json.dumps(document.segments, ensure_ascii=False)
                    yield self._hash_split(key), document.segments, True
                    continue
                for piece, last in _with_last(_pieces(document.text_chunks())):
                    yield self._hash_split(piece), [(piece, True)], last
        if report.documents_kept == 0:
            raise DataError(f"no text left after cleaning the sources {self.sources} (all empty or duplicate)")
        if kinds["plain"] and kinds["records"]:
            raise DataError(
                f"data.sources {', '.join(self.sources)} mix plain text ({_names(kinds['plain'])}) with instruction or "
                f"chat records ({_names(kinds['records'])}), which train differently (text packed into windows, each "
                "record a sample of its own): train on them in separate runs"
            )
        report.layout = "records" if kinds["records"] else "packed"

    def _read(self, files: list[Path], report: CleaningReport, kinds: dict[str, list[Path]]) -> Iterator[Document]:
        """The cleaned documents, noting in ``kinds`` the files of plain text and those of records."""
        for document in iter_documents(files, self.jsonl_field, report):
            seen = kinds["plain" if document.is_plain else "records"]
            if not seen or seen[-1] != document.source:
                seen.append(document.source)
            yield document

    def _hash_split(self, text: str) -> str:
        return split_of_document(text, self.val_fraction, self.test_fraction)

    def _tail_split(
        self, files: list[Path], report: CleaningReport, kinds: dict[str, list[Path]]
    ) -> Iterator[tuple[str, list[Segment], bool]]:
        """In file order: training text, then ``val_fraction`` of all characters, then ``test_fraction``."""
        total = sum(
            sum(len(chunk) for chunk in document.text_chunks())
            if document.is_plain
            else sum(len(text) for text, _ in document.segments)
            for document in iter_documents(files, self.jsonl_field, CleaningReport())
        )
        val_start = int(total * (1 - self.val_fraction - self.test_fraction))
        test_start = int(total * (1 - self.test_fraction))

        def split_at(position: int) -> str:
            return "train" if position < val_start else "val" if position < test_start else "test"

        position = 0
        for document in self._read(files, report, kinds):
            if not document.is_plain:  # an instruction record stays whole, on the side where it starts
                yield split_at(position), document.segments, True
                position += sum(len(text) for text, _ in document.segments)
                continue
            for piece, last in _with_last(_pieces(document.text_chunks())):
                end = position + len(piece)
                # A piece that holds a cut is split there; only its last part ends the document.
                edges = sorted({position, end, *(cut for cut in (val_start, test_start) if position < cut < end)})
                for start, stop in zip(edges, edges[1:], strict=False):
                    text = piece[start - position : stop - position]
                    yield split_at(start), [(text, True)], last and stop == end
                position = end


def _names(files: list[Path], shown: int = 3) -> str:
    """The first ``shown`` of ``files``, and how many more."""
    names = ", ".join(str(path) for path in files[:shown])
    return names + (f" and {len(files) - shown} more" if len(files) > shown else "")


class TextDataModule(CorpusDataModule):
    """Token batches from text files, with a tokenizer trained on them (or loaded from a file).

    Plain text (``.txt``, ``.md``, JSONL ``text`` records) is packed: one token stream, documents joined by
    EOS, cut into samples of ``block_size + 1`` tokens. Sources of instruction and chat records only (JSONL
    ``prompt`` + ``response``, or ``messages``), e.g. ``TextDataModule(sources=["chat.jsonl"])``, train one
    record per sample instead: each row of a batch holds exactly one record (its prompt and role tags as
    context, its answers and EOS as targets), right-padded to the longest record of its step (inputs with
    EOS, targets with ``IGNORE_INDEX``), so no token attends across records and ``T ≤ block_size``. A record
    longer than ``block_size + 1`` tokens keeps its start and is cut there; ``setup`` prints how many were cut.
    Every record trains once an epoch: the last, partial step is filled with rows that weigh nothing, so 3
    records with ``batch_size`` 16 make one step. Sources that mix plain text and records are refused.
    """

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
        test_fraction: float = 0.05,
        split: SplitMethod = "hash",
        shuffle: bool = True,
        seed: int = 42,
        group_by_length: int = 0,
        cache_dir: str = ".cache/lightningllm",
        local_cache_dir: str = ".cache/lightningllm",
        max_cache_size: str | None = None,
        s3_endpoint: str | None = None,
        prepare_workers: int = 2,
        tokenizer_train_bytes: int = 64_000_000,
        prepared: str | None = None,
    ):
        """
        Args:
            sources: text files, folders (searched recursively) and glob patterns of .txt, .md, .jsonl;
                one path alone needs no brackets. Not with ``prepared``.
            jsonl_field: the field of each JSONL record that holds its text.
            tokenizer_kind: ``bpe`` (byte-level BPE, digits split) or ``char`` (one token per character).
            vocab_size: BPE vocabulary size to train (ignored for ``char``).
            tokenizer_path: use this ``tokenizer.json`` instead of training one.
            block_size: tokens per training sample (the model's context length); for records, the most a
                sample holds (a longer record is cut to its first ``block_size + 1`` tokens).
            batch_size: samples per batch (for records: records per batch, the last of an epoch padded).
            num_workers: loader worker processes (0 reads in the main process).
            val_fraction: share of the text held out for validation.
            test_fraction: share of the text held out for ``test`` (0: no test split).
            split: ``hash``: each piece of about 32k characters goes to a split by a hash of its content,
                so held-out text samples the whole corpus; ``tail``: in file order, the last
                ``test_fraction`` of the characters is test and the ``val_fraction`` before it
                validation, as nanoGPT splits its data (with ``test_fraction: 0``, for comparisons with it).
            shuffle: shuffle training samples each epoch (off keeps the corpus order).
            seed: seed of the shuffle.
            group_by_length: for records, each run of this many training steps has its samples sorted by length
                and cut into steps again, in a seeded order (0: off); packed windows refuse it.
            cache_dir: where prepared shards are kept, in a folder named by a fingerprint of sources and settings:
                a local folder, or ``s3://bucket/prefix`` in object storage (prepared locally, uploaded there, then
                streamed from there; see ``s3_endpoint`` for the server and credentials).
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
            tokenizer_train_bytes: train the tokenizer on a deterministic sample of about this much of the
                training text (all of it when the corpus is smaller), which bounds its time and memory.
            prepared: instead of ``sources``, a corpus prepared already, read as it is: the ``<name>-<fingerprint>``
                folder that preparing prints (``data.prepared=...``), a local path or
                ``s3://bucket/prefix/<name>-<fingerprint>`` (streamed into ``local_cache_dir``). No source is read;
                its own ``tokenizer.json`` is the tokenizer. The settings of preparing (``cache_dir``,
                ``jsonl_field``, ``tokenizer_kind``, ``vocab_size``, ``tokenizer_train_bytes``, the fractions,
                ``split``, ``prepare_workers``) are unused, and a ``tokenizer_path`` must name its tokenizer.
        """
        check_fraction("data.val_fraction", val_fraction, zero_allowed=False)
        check_fraction("data.test_fraction", test_fraction, zero_allowed=True)
        if val_fraction + test_fraction >= 1.0:
            raise DataError(
                "data.val_fraction + data.test_fraction must be < 1, some text must train "
                f"(got {val_fraction} + {test_fraction})"
            )
        check_choice("data.split", split, ("hash", "tail"))
        if not isinstance(jsonl_field, str) or not jsonl_field:
            raise DataError(f"data.jsonl_field must be a field name (got {jsonl_field!r})")
        super().__init__(
            tokenizer_kind=tokenizer_kind,
            vocab_size=vocab_size,
            tokenizer_path=tokenizer_path,
            tokenizer_train_bytes=tokenizer_train_bytes,
            block_size=block_size,
            batch_size=batch_size,
            num_workers=num_workers,
            shuffle=shuffle,
            seed=seed,
            group_by_length=group_by_length,
            cache_dir=cache_dir,
            local_cache_dir=local_cache_dir,
            max_cache_size=max_cache_size,
            s3_endpoint=s3_endpoint,
            prepare_workers=prepare_workers,
            prepared=prepared,
        )
        self.save_hyperparameters(logger=False)
        self.sources = [sources] if isinstance(sources, str) else list(sources or [])
        if self.sources and prepared is not None:
            raise DataError(
                f"give data.sources (to prepare a corpus) or data.prepared (a corpus prepared already), not both "
                f"(got data.sources {', '.join(self.sources)} and data.prepared {prepared})"
            )
        self._corpus = TextFiles(self.sources, jsonl_field, val_fraction, test_fraction, split)

    def corpus(self) -> TextFiles:
        """The ``sources`` as a ``Corpus``, split as set."""
        return self._corpus

    def data_source(self) -> str:
        return f"data.sources {', '.join(self.sources)}"

    def more_data_hint(self, split: str) -> str:
        fractions = {"val": self._corpus.val_fraction, "test": self._corpus.test_fraction}
        if split == "train":
            return "add text (or lower data.val_fraction and data.test_fraction)"
        if fractions[split] == 0:
            return f"data.{split}_fraction is 0 (no {split} split): set it, e.g. to 0.05"
        return f"raise data.{split}_fraction (now {fractions[split]}) or add text"
