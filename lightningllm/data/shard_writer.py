"""The shard writer: litdata's ``optimize`` tokenizing piece files into shards, failing in one line.

It writes a split's token stream (``TokensLoader`` shards, the ``packed`` layout) or, for a corpus of
instruction records, one item per record (``records``; see ``lightningllm.data.shards``).

``write_shards`` runs ``optimize`` in a process group of its own (``lightningllm.data.isolated``),
so a SIGTERM or an error in the caller leaves no litdata worker running and no litdata SIGINT
handler behind, and points litdata's temporary folders into the caller's work folder instead of
``$TMPDIR``. A failed write (a full disk, a file size limit) comes back as an ``OSError`` with its
``errno``. litdata never returns when the last chunk of a worker cannot be written (the worker
reports the error, then waits for good on its helper processes); each tokenized piece is therefore
marked done, and a writer that has not returned ``WRITER_GRACE_SECONDS`` after the last piece is
stopped, with the cause the folder shows.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path

from lightningllm.data.isolated import run_isolated
from lightningllm.data.shards import tokenize_file, tokenize_records

WRITER_GRACE_SECONDS = 60.0
"""How long litdata may take, once every piece is tokenized, to write its last chunks and index."""


def write_shards(
    pieces: list[str],
    tokenizer_json: str,
    output_dir: Path,
    num_workers: int,
    work_dir: Path,
    chunk_tokens: int = 1 << 21,
    records: bool = False,
) -> None:
    """Tokenize JSON-lines piece files into litdata shards under ``output_dir``: a token stream, or with
    ``records`` one item per document (chunks of about ``2 * chunk_tokens`` bytes); temporary files go
    to ``work_dir``. Raises ``OSError`` (with its ``errno``) when a write fails."""
    # One worker keeps the document order (a curriculum, a corpus read in order, relies on it).
    workers = max(1, min(num_workers, len(pieces)))
    args = (pieces, tokenizer_json, str(output_dir), workers, str(work_dir), chunk_tokens, records)
    run_isolated(_optimize, *args)


class _WriterStalled(Exception):
    """Raised in the shard writer's main thread when litdata stopped after a failed write."""


def _optimize(
    pieces: list[str],
    tokenizer_json: str,
    output_dir: str,
    workers: int,
    work_dir: str,
    chunk_tokens: int,
    records: bool,
):
    """In the child process: litdata's ``optimize``, with its caches in ``work_dir`` instead of ``$TMPDIR``."""
    from litdata import TokensLoader, optimize

    # Its default caches ($TMPDIR/chunks, $TMPDIR/data) are emptied by every optimize() on the machine.
    os.environ["DATA_OPTIMIZER_CACHE_FOLDER"] = os.path.join(work_dir, "litdata-chunks")
    os.environ["DATA_OPTIMIZER_DATA_CACHE_FOLDER"] = os.path.join(work_dir, "litdata-data")
    done_dir = os.path.join(work_dir, f"done-{os.path.basename(output_dir)}")
    os.makedirs(done_dir, exist_ok=True)
    signal.signal(signal.SIGUSR1, _raise_stalled)
    returned = threading.Event()
    threading.Thread(target=_watch_writer, args=(done_dir, len(pieces), returned), daemon=True).start()
    tokenize = tokenize_records if records else tokenize_file
    # A token stream's chunks hold chunk_tokens tokens; a chunk of records about as many bytes as 16-bit ones.
    chunking = (
        {"chunk_bytes": 2 * chunk_tokens} if records else {"chunk_size": chunk_tokens, "item_loader": TokensLoader()}
    )
    try:
        optimize(
            fn=functools.partial(tokenize, tokenizer_json=tokenizer_json, done_dir=done_dir),
            inputs=pieces,
            output_dir=output_dir,
            **chunking,
            num_workers=workers,
            reorder_files=False,
            keep_data_ordered=True,
            verbose=False,
            mode="overwrite",
            # fork skips re-importing torch in each worker: 0.3 s instead of ~6 s for a small corpus
            start_method="fork" if sys.platform.startswith("linux") else None,
        )
    except RuntimeError as err:  # a worker's failure comes as its whole traceback
        raise _worker_error(str(err)) from None
    except _WriterStalled:
        raise _stall_error(output_dir, chunk_tokens) from None
    finally:
        returned.set()


def _watch_writer(done_dir: str, pieces: int, returned: threading.Event) -> None:
    """Interrupt the writer when it has not returned ``WRITER_GRACE_SECONDS`` after the last piece was done.

    A litdata worker whose last chunk cannot be written (a full disk) reports the error but never
    exits, and ``optimize`` waits for it for good: this turns that wait into an error.
    """
    while len(os.listdir(done_dir)) < pieces:
        if returned.wait(0.2):
            return
    if not returned.wait(WRITER_GRACE_SECONDS):
        os.kill(os.getpid(), signal.SIGUSR1)


def _raise_stalled(signum, frame) -> None:
    raise _WriterStalled


def _stall_error(output_dir: str, chunk_tokens: int) -> OSError:
    """What made the writer stop, as far as the folder shows: a full disk, or a file at the size limit."""
    import resource

    free = shutil.disk_usage(output_dir).free
    if free < 8 * chunk_tokens:  # less than one chunk of 32-bit tokens
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free / 1e6:,.1f} MB free)")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and any(path.stat().st_size >= limit for path in Path(output_dir).iterdir()):
        return OSError(errno.EFBIG, f"{os.strerror(errno.EFBIG)} (the file size limit is {limit:,} bytes)")
    return OSError(errno.EIO, "a write failed and the shard writer stopped")


def _worker_error(text: str) -> Exception:
    """The error in the traceback text of a failed litdata worker: an ``OSError`` (a full disk) when one
    is in it, else its last line."""
    numbers = re.findall(r"^\w*Error: \[Errno (\d+)\]", text, flags=re.MULTILINE)
    if numbers:
        return OSError(int(numbers[-1]), os.strerror(int(numbers[-1])))
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip(". ")), text)
    return RuntimeError(f"the shard writer failed: {last}")
