"""Reading and cleaning a user's text: files, folders and globs of ``.txt``, ``.md`` and ``.jsonl``.

One file, or one JSONL record, is one document. Cleaning normalizes to Unicode NFC, replaces
undecodable bytes (and counts them), drops empty and exact-duplicate documents (by a hash of
the cleaned content), and keeps a report of what was kept and dropped. A text file is read in
chunks of a few megabytes, so even a single 200 MB line never sits in memory whole. Bad input
raises ``DataError`` with one line that names the file (and line) at fault.
"""

from __future__ import annotations

import codecs
import functools
import glob
import hashlib
import json
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from lightningllm.data.instruct import Segment, record_segments

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES
Layout = Literal["packed", "records"]
"""How a prepared corpus stores its documents (``lightningllm.data.shards``): ``packed`` into one token stream
cut into windows, or ``records``, one sample per document (a corpus of instruction and chat records)."""
_BINARY_SNIFF = 8192
READ_CHUNK_BYTES = 4 << 20
"""Text files are read, decoded and normalized this many bytes at a time."""


class DataError(ValueError):
    """A problem with the user's data, worded as one line naming the file or field."""


def resolve_sources(sources: list[str]) -> list[Path]:
    """Expand files, folders (recursively) and glob patterns into a sorted list of readable files."""
    if not sources:
        raise DataError(
            "no data sources given: set data.sources to files, folders or glob patterns "
            "(or data.prepared to a corpus prepared already)"
        )
    files: list[Path] = []
    for source in sources:
        if any(ch in source for ch in "*?["):
            matches = [Path(p) for p in glob.glob(source, recursive=True)]
            matched = [p for p in matches if p.is_file() and p.suffix.lower() in SUFFIXES]
            if not matched:
                raise DataError(f"glob {source!r} matches no {'/'.join(SUFFIXES)} file")
            files.extend(matched)
            continue
        path = Path(source)
        if not path.exists():
            raise DataError(f"data source {source} does not exist")
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES]
            if not found:
                raise DataError(f"folder {source} holds no {'/'.join(SUFFIXES)} file")
            files.extend(found)
        else:
            files.append(path)
    return sorted(set(files))


def fingerprint_files(files: list[Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) per file: cheap, and any edit to a file changes it."""
    out = []
    for path in files:
        stat = path.stat()
        out.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return out


@dataclass
class CleaningReport:
    """What cleaning kept and dropped; saved as ``report.json`` next to the shards."""

    files: int = 0
    documents_read: int = 0
    documents_kept: int = 0
    dropped_empty: int = 0
    dropped_duplicate: int = 0
    bytes_read: int = 0
    bytes_kept: int = 0
    undecodable_bytes_replaced: int = 0
    split_documents: dict[str, int] = field(default_factory=dict)
    layout: Layout = "packed"
    """Set by the corpus while it yields its documents: ``records`` stores each one as a sample of its own."""

    def summary(self) -> str:
        where = f"{self.files} file(s)" if self.files else "generated corpus"
        return (
            f"{where}: kept {self.documents_kept:,} of {self.documents_read:,} documents "
            f"({self.bytes_kept / 1e6:.2f} of {self.bytes_read / 1e6:.2f} MB); dropped {self.dropped_empty} empty, "
            f"{self.dropped_duplicate} duplicate; replaced {self.undecodable_bytes_replaced} undecodable byte(s)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Document:
    """One cleaned document as ``(text, trained)`` segments.

    Plain text is one trained segment. Instruction and chat records alternate context
    (prompts, role tags) and trained segments (answers): they are the documents that are not
    ``is_plain``. A text file too large to keep is
    not held at all: ``reread`` streams its cleaned text again in chunks.
    """

    segments: list[Segment]
    reread: Callable[[], Iterator[str]] | None = None
    source: Path | None = None
    """The file it was read from."""

    @property
    def is_plain(self) -> bool:
        return self.reread is not None or all(trained for _, trained in self.segments)

    def text_chunks(self) -> Iterator[str]:
        """A plain document's cleaned text, in order, in one or more chunks."""
        if self.reread is not None:
            yield from self.reread()
        else:
            for text, _ in self.segments:
                yield text


# --- decoding: undecodable bytes become U+FFFD, counted exactly ---------------------------
_replaced_bytes = 0


def _replace_and_count(err: UnicodeDecodeError) -> tuple[str, int]:
    global _replaced_bytes
    _replaced_bytes += err.end - err.start
    return "\ufffd", err.end


codecs.register_error("lightningllm.replace", _replace_and_count)


@functools.cache
def _composes_with_previous() -> frozenset[str]:
    """Characters that NFC can merge into the character before them (second half of a canonical pair)."""
    chars = {chr(c) for c in (*range(0x1161, 0x1176), *range(0x11A8, 0x11C3))}  # Hangul vowel and final jamo
    for code in range(0x30000):
        decomposition = unicodedata.decomposition(chr(code))
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:
                chars.add(chr(int(parts[1], 16)))
    return frozenset(chars)


def _starts_fresh(ch: str) -> bool:
    """True if NFC never reorders or merges ``ch`` with what precedes it: text can be cut before it."""
    if ch.isascii():
        return True
    return unicodedata.combining(ch) == 0 and not unicodedata.decomposition(ch) and ch not in _composes_with_previous()


def _safe_cut(text: str, max_carry: int = 1 << 24) -> int:
    """The last index before which ``text`` can be cut without changing its NFC normalization."""
    for i in range(len(text) - 1, max(0, len(text) - max_carry), -1):
        if _starts_fresh(text[i]):
            return i
    return len(text) if len(text) >= max_carry else 0  # pathological: megabytes of combining marks


def _normalized_chunks(path: Path, chunk_bytes: int | None = None) -> Iterator[str]:
    """NFC text of ``path`` in chunks; concatenated, equal to normalizing the whole file at once.

    A file that fits in one chunk comes out as exactly one chunk.
    """
    chunk_bytes = chunk_bytes or READ_CHUNK_BYTES
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="lightningllm.replace")  # drops a leading BOM
    carry = ""
    with path.open("rb") as handle:
        block = handle.read(chunk_bytes)
        while block:
            following = handle.read(chunk_bytes)  # read ahead: the last block needs no safe cut
            text = carry + decoder.decode(block, final=not following)
            carry = ""
            if following:
                cut = _safe_cut(text)
                text, carry = text[:cut], text[cut:]
            if text:
                yield unicodedata.normalize("NFC", text)
            block = following


def _not_text(path: Path) -> str | None:
    """Why ``path`` cannot be read as UTF-8 text, judged by its first bytes; None when it can."""
    with path.open("rb") as handle:
        head = handle.read(_BINARY_SNIFF)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # the UTF-32 marks begin the same way
        return "is UTF-16 or UTF-32 text (it starts with a byte-order mark); save it as UTF-8"
    if b"\x00" in head:
        return "looks like a binary file (it contains NUL bytes), not text"
    return None


def _content_hash() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=16)


class _Deduper:
    """Drops empty and exact-duplicate documents, counting both in the report."""

    def __init__(self, report: CleaningReport):
        self.report = report
        self.seen: set[bytes] = set()

    def keep(self, digest: bytes, has_text: bool, nbytes: int) -> bool:
        self.report.documents_read += 1
        if not has_text:
            self.report.dropped_empty += 1
            return False
        if digest in self.seen:
            self.report.dropped_duplicate += 1
            return False
        self.seen.add(digest)
        self.report.documents_kept += 1
        self.report.bytes_kept += nbytes
        return True


def _text_file_document(path: Path, report: CleaningReport, dedupe: _Deduper) -> Document | None:
    """One pass to clean, hash and measure the file; a file larger than one chunk is re-read later."""
    global _replaced_bytes
    _replaced_bytes = 0
    digest, has_text, nbytes, count, first = _content_hash(), False, 0, 0, ""
    for chunk in _normalized_chunks(path):
        encoded = chunk.encode("utf-8")
        digest.update(encoded)
        nbytes += len(encoded)
        has_text = has_text or not chunk.isspace()
        count += 1
        first = chunk if count == 1 else ""  # keep a one-chunk file; a larger one is re-read if kept
    report.undecodable_bytes_replaced += _replaced_bytes
    if not dedupe.keep(digest.digest(), has_text, nbytes):
        return None
    if count > 1:
        return Document(segments=[], reread=functools.partial(_normalized_chunks, path), source=path)
    return Document(segments=[(first, True)], source=path)


def _jsonl_documents(path: Path, text_field: str, report: CleaningReport, dedupe: _Deduper) -> Iterator[Document]:
    global _replaced_bytes
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            report.bytes_read += len(raw)
            if not raw.strip():
                continue
            _replaced_bytes = 0
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="lightningllm.replace")
            report.undecodable_bytes_replaced += _replaced_bytes
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: a record must be a JSON object, got {type(record).__name__}")
            try:
                segments = record_segments(record, text_field)
            except ValueError as err:
                raise DataError(f"{path}:{number}: {err}") from None
            segments = [(unicodedata.normalize("NFC", text), trained) for text, trained in segments]
            digest = _content_hash()
            digest.update(json.dumps(segments, ensure_ascii=False).encode("utf-8"))
            has_text = any(trained and text.strip() for text, trained in segments)
            nbytes = sum(len(text.encode("utf-8")) for text, _ in segments)
            if dedupe.keep(digest.digest(), has_text, nbytes):
                yield Document(segments=segments, source=path)


def iter_documents(files: list[Path], jsonl_field: str, report: CleaningReport) -> Iterator[Document]:
    """Read and clean every file in order: one document per text file or JSONL record."""
    dedupe = _Deduper(report)
    for path in files:
        report.files += 1
        problem = _not_text(path)
        if problem:
            raise DataError(f"{path} {problem}")
        if path.suffix.lower() in JSONL_SUFFIXES:
            yield from _jsonl_documents(path, jsonl_field, report, dedupe)
        else:
            report.bytes_read += path.stat().st_size
            document = _text_file_document(path, report, dedupe)
            if document is not None:
                yield document


def _unit_hash(text: str, salt: bytes) -> float:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, salt=salt).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of_document(text: str, val_fraction: float, test_fraction: float = 0.0) -> str:
    """Deterministic split by content hash: the same document always lands in the same split.

    A hash below ``val_fraction`` is ``val``, the next ``test_fraction`` is ``test``, the rest
    ``train``; so a document's validation membership does not depend on ``test_fraction``.
    """
    unit = _unit_hash(text, b"split")
    return "val" if unit < val_fraction else "test" if unit < val_fraction + test_fraction else "train"


def in_sample(text: str, rate: float) -> bool:
    """Deterministic ``rate`` sample by content hash, independent of the split."""
    return rate >= 1.0 or _unit_hash(text, b"sample") < rate
