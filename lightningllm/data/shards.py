"""The shard format: documents → litdata shards (a packed token stream, or one record per item), a sample → a row.

A prepared corpus is one folder ``<cache_dir>/<name>-<fingerprint>/`` holding ``tokenizer.json``,
``train/``, ``val/`` and ``test/`` litdata shards (none for a split without documents), and
``report.json``, written last as the mark of a complete folder (``lightningllm.data.prepare``
builds it; ``lightningllm.data.shard_writer`` runs litdata's writer). A token the model reads but
is not trained to predict (a prompt of instruction data) is stored with the top bit of its integer
set. Its ``layout`` (in ``report.json``) says how a split holds its documents. ``packed``
(``TokensLoader`` shards): one stream of token ids, documents joined by EOS, and ``decode_sample``
turns a stored window of ``block_size + 1`` tokens into inputs and targets whose context positions
are ``IGNORE_INDEX``. ``records`` (a corpus of instruction or chat records): item ``i`` of a split
is its record ``i``, a variable-length array of token ids ending with EOS, and ``decode_record``
turns it into one sample, cut to its first ``block_size + 1`` tokens when longer; ``RECORD_LENGTHS``
holds each record's length, which the loader needs to pad a step's rows to the longest of them
without reading them first.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lightningllm.model.gpt import IGNORE_INDEX

COMPLETE_MARKER = "report.json"
RECORD_LENGTHS = "record_lengths.npz"
"""The tokens of each record, one array per split, in a corpus of ``records`` layout."""


def fingerprint(parts: dict) -> str:
    """A short stable hash of JSON-serializable settings and source fingerprints."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


def is_prepared(directory: Path) -> bool:
    """True once ``directory`` holds a complete prepared corpus."""
    return (directory / COMPLETE_MARKER).is_file()


MAX_VOCAB_SIZE = 2**31
"""Token ids are stored in at most 32 bits, the top one being the context flag."""


def token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    """Smallest storage whose top bit stays free for the context-only flag."""
    return np.uint16 if vocab_size < 2**15 else np.uint32


def context_flag(dtype: np.dtype) -> int:
    """The top bit of a stored token: set on tokens the model reads but is not trained to predict."""
    return 1 << (8 * np.dtype(dtype).itemsize - 1)


def tokenize_file(path: str, tokenizer_json: str, done_dir: str) -> Iterator[np.ndarray]:
    """litdata worker (``packed``): encode one file of JSON-lines documents into a single token array.

    Each document is a list of ``(text, trained)`` segments. Tokens of context segments (the
    prompts of instruction data, the questions of a task corpus) are stored with the
    context flag set, so the loss covers only the trained segments. Once litdata has taken the
    array, an empty ``<done_dir>/<file name>`` marks the file done (``lightningllm.data.shard_writer``).
    """
    dtype, documents = _stored_documents(path, tokenizer_json)
    yield np.asarray([token for document in documents for token in document], dtype=dtype)
    Path(done_dir, Path(path).name).touch()


def tokenize_records(path: str, tokenizer_json: str, done_dir: str) -> Iterator[np.ndarray]:
    """litdata worker (``records``): encode one file of JSON-lines documents into one token array per
    document, stored as ``tokenize_file`` stores them; then mark the file done as it does."""
    dtype, documents = _stored_documents(path, tokenizer_json)
    for document in documents:
        yield np.asarray(document, dtype=dtype)
    Path(done_dir, Path(path).name).touch()


def _stored_documents(path: str, tokenizer_json: str) -> tuple[type[np.unsignedinteger], list[list[int]]]:
    """The storage dtype, and each document of a JSON-lines file as stored token ids: context flagged, EOS
    appended where the document ends with one."""
    tokenizer = _cached_tokenizer(tokenizer_json)
    with open(path, encoding="utf-8") as handle:
        docs = [json.loads(line) for line in handle]
    ids = iter(tokenizer.encode_batch([text for doc in docs for text, _ in doc["segments"]]))
    dtype = token_dtype(tokenizer.vocab_size)
    flag = context_flag(dtype)
    documents = []
    for doc in docs:
        stored: list[int] = []
        for _, trained in doc["segments"]:
            segment_ids = next(ids)
            stored.extend(segment_ids if trained else [t | flag for t in segment_ids])
        if doc["eos"]:
            stored.append(tokenizer.eos_id)
        documents.append(stored)
    return dtype, documents


@functools.lru_cache(maxsize=2)
def _cached_tokenizer(tokenizer_json: str):
    from lightningllm.data.tokenizer import Tokenizer

    return Tokenizer.from_str(tokenizer_json)


class PieceWriter:
    """Buffers documents of one split into JSON-lines files of about ``piece_bytes`` for the workers.

    Pieces of about a megabyte keep the tokenizing workers evenly loaded and their memory small.
    """

    def __init__(self, directory: Path, split: str, piece_bytes: int = 1 << 20):
        self.directory, self.split, self.piece_bytes = directory, split, piece_bytes
        self.paths: list[str] = []
        self._handle = None
        self._size = 0
        self.documents = 0
        self.text_bytes = 0  # UTF-8 bytes of the trained-on text (context excluded), for bits per byte

    def write(self, segments: list[tuple[str, bool]], eos: bool) -> None:
        """Queue one document of ``(text, trained)`` segments, followed by EOS if ``eos``."""
        if self._handle is None or self._size >= self.piece_bytes:
            self._open_next()
        self.documents += 1
        self.text_bytes += sum(len(text.encode("utf-8")) for text, trained in segments if trained)
        line = json.dumps({"segments": segments, "eos": eos}, ensure_ascii=False) + "\n"
        self._handle.write(line)
        self._size += len(line)

    def _open_next(self) -> None:
        self.close()
        path = self.directory / f"{self.split}-{len(self.paths):05d}.jsonl"
        self.paths.append(str(path))
        self._handle = path.open("w", encoding="utf-8")
        self._size = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def count_tokens(split_dir: Path) -> int:
    """Total tokens in a litdata token-shard folder, read from its index."""
    index = json.loads((split_dir / "index.json").read_text())
    return sum(chunk["dim"] for chunk in index["chunks"])


def chunk_samples(split_dir: Path, window: int) -> list[int]:
    """Samples of ``window`` tokens in each chunk of a token-shard folder: litdata cuts each chunk on its own,
    dropping its rest, and numbers the samples chunk after chunk."""
    index = json.loads((split_dir / "index.json").read_text())
    return [chunk["dim"] // window for chunk in index["chunks"]]


def count_samples(split_dir: Path, window: int) -> int:
    """Samples of ``window`` tokens in a token-shard folder."""
    return sum(chunk_samples(split_dir, window))


def chunk_records(split_dir: Path) -> list[int]:
    """Records (items) in each chunk of a record-shard folder, as litdata numbers them, chunk after chunk."""
    index = json.loads((split_dir / "index.json").read_text())
    return [chunk["chunk_size"] for chunk in index["chunks"]]


def record_lengths(split_dir: Path) -> np.ndarray:
    """The tokens of each record of a record-shard folder, read once from its shards (int64, one per record).

    Every record, counted from the index: in a data-parallel process (a corpus prepared under DDP)
    litdata's own ``len`` is this rank's share only, while its items are read by global index.
    """
    from litdata import StreamingDataset

    records, count = StreamingDataset(str(split_dir), shuffle=False), sum(chunk_records(split_dir))
    return np.fromiter((len(records[i]) for i in range(count)), dtype=np.int64, count=count)


def sample_widths(lengths: np.ndarray, block_size: int) -> np.ndarray:
    """The inputs (and targets) each record makes: its tokens, cut to ``block_size + 1``, less one."""
    return np.minimum(lengths, block_size + 1) - 1


def decode_record(tokens: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stored record → (inputs, targets), int64, each ``min(len(tokens), block_size + 1) - 1`` long.

    A record longer than ``block_size + 1`` tokens keeps its start (as litgpt's ``max_seq_length`` does).
    """
    return decode_sample(tokens[: block_size + 1])


def decode_sample(tokens: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
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
