"""Reading and cleaning a user's text: files, folders and globs of ``.txt``, ``.md`` and ``.jsonl``.

One file, or one JSONL record, is one document. Cleaning normalizes to Unicode NFC, replaces
undecodable bytes (and counts them), drops empty and exact-duplicate documents, and keeps a
report of what was kept and dropped. Bad input raises ``DataError`` with one line that names
the file (and line) at fault.
"""

from __future__ import annotations

import glob
import hashlib
import json
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES
_BINARY_SNIFF = 8192


class DataError(ValueError):
    """A problem with the user's data, worded as one line naming the file or field."""


def resolve_sources(sources: list[str]) -> list[Path]:
    """Expand files, folders (recursively) and glob patterns into a sorted list of readable files."""
    if not sources:
        raise DataError("no data sources given: set data.sources to files, folders or glob patterns")
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

    def summary(self) -> str:
        where = f"{self.files} file(s)" if self.files else "generated corpus"
        return (
            f"{where}: kept {self.documents_kept:,} of {self.documents_read:,} documents "
            f"({self.bytes_kept / 1e6:.2f} of {self.bytes_read / 1e6:.2f} MB); dropped {self.dropped_empty} empty, "
            f"{self.dropped_duplicate} duplicate; replaced {self.undecodable_bytes_replaced} undecodable byte(s)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _decode(raw: bytes, path: Path, report: CleaningReport, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        # Count the replacement characters that decoding introduced (not ones already in the text).
        report.undecodable_bytes_replaced += text.count("\ufffd") - raw.count("\ufffd".encode())
        return text


def _looks_binary(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(_BINARY_SNIFF)
    return b"\x00" in head


def read_documents(files: list[Path], jsonl_field: str, report: CleaningReport) -> Iterator[str]:
    """Yield raw documents (before cleaning) from each file, streaming JSONL line by line."""
    for path in files:
        report.files += 1
        if _looks_binary(path):
            raise DataError(f"{path} looks like a binary file (it contains NUL bytes), not text")
        if path.suffix.lower() in JSONL_SUFFIXES:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    report.bytes_read += len(raw)
                    if not raw.strip():
                        continue
                    try:
                        record = json.loads(_decode(raw, path, report, number))
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
                    if not isinstance(record, dict) or jsonl_field not in record:
                        raise DataError(f"{path}:{number}: record has no {jsonl_field!r} field")
                    if not isinstance(record[jsonl_field], str):
                        raise DataError(f"{path}:{number}: field {jsonl_field!r} is not a string")
                    yield record[jsonl_field]
        else:
            raw = path.read_bytes()
            report.bytes_read += len(raw)
            yield _decode(raw, path, report)


def clean_documents(documents: Iterator[str], report: CleaningReport) -> Iterator[str]:
    """NFC-normalize, then drop empty and exact-duplicate documents (by content hash)."""
    seen: set[bytes] = set()
    for text in documents:
        report.documents_read += 1
        text = unicodedata.normalize("NFC", text)
        if not text.strip():
            report.dropped_empty += 1
            continue
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            report.dropped_duplicate += 1
            continue
        seen.add(digest)
        report.documents_kept += 1
        report.bytes_kept += len(text.encode("utf-8"))
        yield text


def split_of_document(text: str, val_fraction: float) -> str:
    """Deterministic split by content hash: the same document always lands in the same split."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < val_fraction else "train"
