"""Staging folders: none is left behind by an interrupted preparation, and a killed run's is removed by the next.

The interruptions are real: a child process prepares a corpus big enough to take a few seconds
and gets SIGTERM (turned into ``SystemExit(143)`` as the ``lightningllm`` command does) or SIGKILL
while its shard writer runs.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lightningllm.data import TextDataModule
from lightningllm.data.staging import LOCK_NAME, OWNER_RECORD, STAGING_INFIX, remove_abandoned, staging_directory

CHILD = textwrap.dedent(
    """
    import signal, sys
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # what the lightningllm command does outside training
    from lightningllm.data import TextDataModule
    TextDataModule(**eval(sys.argv[1])).prepare_data()
    """
)


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory) -> Path:
    """About 1.5 MB of text in 12 files: a few seconds of tokenizing on two processes."""
    root = tmp_path_factory.mktemp("big")
    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 8))) for _ in range(500)]
    for i in range(12):
        lines = (" ".join(rng.choices(words, k=12)) for _ in range(2000))
        (root / f"{i:02d}.txt").write_text("\n".join(lines))
    return root


def settings(corpus: Path, cache: Path) -> dict:
    return {
        "sources": [str(corpus)], "tokenizer_kind": "char", "block_size": 16, "val_fraction": 0.1,
        "test_fraction": 0.0, "prepare_workers": 2, "cache_dir": str(cache),
    }  # fmt: skip


def writing_shards(corpus: Path, cache: Path) -> subprocess.Popen:
    """A preparation in a child process, returned once its shard writer has started."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, repr(settings(corpus, cache))], cwd=cache.parent, env=env)
    deadline = time.monotonic() + 60
    while not list(cache.glob(f".*{STAGING_INFIX}*/work/litdata-chunks")):  # litdata's optimize has begun
        assert child.poll() is None, "the preparation ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return child


def interrupted(corpus: Path, cache: Path, signum: int) -> subprocess.Popen:
    """A preparation in a child process, sent ``signum`` once its shard writer has started."""
    child = writing_shards(corpus, cache)
    child.send_signal(signum)
    child.wait(timeout=60)
    return child


def processes_in(folder: Path) -> list[int]:
    """Processes whose working folder is ``folder`` (the child and everything it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == folder:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def lock_held(path: Path) -> bool:
    """Whether some process holds the flock of ``path`` (taken and released again here when none does)."""
    import fcntl

    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def shards(prepared: Path) -> dict[str, bytes]:
    """The tokenizer and every shard chunk of a prepared folder (its index.json holds a time stamp)."""
    files = [p for p in sorted(prepared.rglob("*")) if p.suffix == ".bin" or p.name == "tokenizer.json"]
    return {str(p.relative_to(prepared)): p.read_bytes() for p in files}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_during_preparation_leaves_no_folder_and_no_process(big_corpus, tmp_path):
    cache = tmp_path / "cache"
    child = interrupted(big_corpus, cache, signal.SIGTERM)
    assert child.returncode == 143
    time.sleep(0.5)  # a shard writer left running would write on into its folder
    assert list(cache.iterdir()) == []
    assert processes_in(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_preparation_is_removed_by_the_next_which_prepares_the_same_shards(big_corpus, tmp_path):
    cache = tmp_path / "cache"
    child = interrupted(big_corpus, cache, signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    (left,) = cache.iterdir()  # kill -9 runs no cleanup
    assert STAGING_INFIX in left.name
    deadline = time.monotonic() + 10
    # Its shard writer notices and ends itself; the folder is abandoned once no process holds its lock (a
    # process can be gone from /proc's working folders a moment before the kernel releases its lock).
    while processes_in(tmp_path) or lock_held(left / LOCK_NAME):
        assert time.monotonic() < deadline, "the killed preparation's shard writer is still running"
        time.sleep(0.05)
    again = TextDataModule(**settings(big_corpus, cache))
    again.prepare_data()
    assert list(cache.iterdir()) == [again.prepared_dir]
    fresh = TextDataModule(**settings(big_corpus, tmp_path / "fresh"))
    fresh.prepare_data()
    assert shards(again.prepared_dir) == shards(fresh.prepared_dir)


def test_a_running_preparation_is_left_alone_by_another_ones_cleanup(big_corpus, tmp_path):
    cache = tmp_path / "cache"
    child = writing_shards(big_corpus, cache)
    (running,) = cache.iterdir()
    assert remove_abandoned(cache) == []  # what every other preparation in this cache folder does first
    assert child.wait(timeout=60) == 0
    assert [p.name for p in cache.iterdir()] == [TextDataModule(**settings(big_corpus, cache)).prepared_dir.name]
    assert not running.exists()


def test_a_staging_folder_in_use_is_never_removed(tmp_path):
    with staging_directory(tmp_path, "corpus") as folder:
        assert (folder / LOCK_NAME).read_text() == f"{OWNER_RECORD}{os.getpid()}\n"
        assert remove_abandoned(tmp_path) == []  # its lock is held (another run, another rank)
        assert folder.is_dir()
    assert list(tmp_path.iterdir()) == []


def test_only_provably_abandoned_staging_folders_are_removed(tmp_path):
    def folder(name: str, lock: str | None) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "data.bin").write_bytes(b"x")
        if lock is not None:
            (path / LOCK_NAME).write_text(lock)
        return path

    abandoned = folder(f".text-1{STAGING_INFIX}a", f"{OWNER_RECORD}4242\n")
    unlocked_yet = folder(f".text-2{STAGING_INFIX}b", "")  # its owner has not taken the lock yet
    no_lock = folder(f".text-3{STAGING_INFIX}c", None)  # not made by staging_directory
    other = folder("text-4.preparing", f"{OWNER_RECORD}4242\n")  # not the staging name pattern
    assert remove_abandoned(tmp_path) == [abandoned]
    assert sorted(tmp_path.iterdir()) == sorted([unlocked_yet, no_lock, other])


def test_a_staging_folder_is_removed_however_the_block_ends(tmp_path):
    with pytest.raises(SystemExit), staging_directory(tmp_path, "corpus") as folder:
        (folder / "half-written").write_text("...")
        raise SystemExit(143)  # SIGTERM, as the lightningllm command raises it
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache_folder_is_one_line_naming_it(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError, match=rf"^cannot write the prepared data in {tmp_path}/file/cache: Not a directory$"):
        with staging_directory(tmp_path / "file" / "cache", "corpus"):
            pass
