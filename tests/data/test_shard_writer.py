"""The shard writer: a full disk is one OSError (never a hang), and litdata leaves nothing behind in this process."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from lightningllm.data import TextDataModule

FULL_DISK = textwrap.dedent(
    """
    import random, resource, signal, sys
    from pathlib import Path
    from lightningllm.data import TextDataModule, Tokenizer, shard_writer
    from lightningllm.data.shards import PieceWriter

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    shard_writer.WRITER_GRACE_SECONDS = 1.0
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    rng = random.Random(0)
    text = "".join(rng.choices("abc de\\n", k=300_000))
    Path("corpus.txt").write_text(text)

    def attempt(name, limit, run):
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            run()
            print(name, "written")
        except OSError as err:
            print(name, err.errno, err.strerror if err.errno else err, sep="|")
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

    def prepare(cache):
        settings = dict(tokenizer_kind="char", val_fraction=0.05, test_fraction=0.0, prepare_workers=1)
        return lambda: TextDataModule(sources="corpus.txt", cache_dir=cache, **settings).prepare_data()

    attempt("pieces", 64_000, prepare("cache-a"))  # the split's piece file, in this process
    attempt("last-chunk", 450_000, prepare("cache-b"))  # the worker's only chunk (600 kB), written at its end
    work = Path("work")
    work.mkdir()
    pieces = PieceWriter(work, "train", piece_bytes=50_000)
    for i in range(20):
        pieces.write([(text[10_000 * i : 10_000 * (i + 1)], True)], True)
    pieces.close()
    tokenizer = Tokenizer.train([text], kind="char").to_str()
    write = lambda: shard_writer.write_shards(pieces.paths, tokenizer, work / "out", 2, work, chunk_tokens=20_000)
    attempt("mid-chunk", 30_000, write)  # a full chunk of 40 kB, while the workers tokenize
    print("left", *sorted(str(p) for p in Path().glob("cache-*/*")))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ")
def test_a_full_disk_is_one_oserror_naming_the_folder_and_never_a_hang(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in done.stdout.splitlines() if not line.startswith("data:")]
    limit = "(the file size limit is 450,000 bytes)"
    assert lines == [
        "pieces|None|cannot write the prepared data in cache-a: File too large",
        f"last-chunk|None|cannot write the prepared data in cache-b: File too large {limit}",
        "mid-chunk|27|File too large",
        "left",  # no staging folder, no half-prepared corpus
    ], done.stdout + done.stderr


def test_preparing_leaves_this_process_signal_handlers_and_temp_folder_alone(text_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    dm = TextDataModule(sources=str(text_corpus), tokenizer_kind="char", block_size=16, cache_dir=str(tmp_path / "c"))
    dm.prepare_data()
    # litdata's optimize sets a SIGINT handler that exits with code 0, and fills $TMPDIR/chunks and $TMPDIR/data
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p.name for p in (tmp_path / "c").iterdir()] == [dm.prepared_dir.name]
