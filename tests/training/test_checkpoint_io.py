"""AtomicCheckpointIO: a checkpoint is replaced whole or not at all: by a Trainer, on a full disk, under kill -9.

The full disk and the kill happen in child processes, on real files: ``RLIMIT_FSIZE`` (with
SIGXFSZ ignored) makes the child's writes fail with EFBIG, as a full disk fails them with ENOSPC;
a child whose ``torch.save`` hangs half-way through its file is killed with SIGKILL. ``$TMPDIR``
points at a folder of its own, which must stay empty (fsspec's temporary files went there).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import fsspec
import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightningllm.checkpoint import load_checkpoint
from lightningllm.model import GPTConfig
from lightningllm.tasks.reasoning import ReasoningDataModule
from lightningllm.training import AtomicCheckpointIO, LitGPT
from tests.conftest import REPO


class StopAt(L.Callback):
    """Ends training after ``step`` steps, as an interruption would (the schedule still targets ``max_steps``)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        trainer.should_stop = trainer.global_step >= self.step


def fit(tmp_path: Path, folder: str, stop: int | None = None, ckpt_path: str | None = None) -> LitGPT:
    """Six steps of the debug model on a small reasoning corpus, checkpoints written by the plugin."""
    L.seed_everything(0)
    # Every token trained: a 32-token sample holds only the start of a question, which answer-only loss would skip.
    args = dict(num_train=300, num_val=20, num_test=20, block_size=32, batch_size=4, vocab_size=300)
    args["answer_loss_only"] = False
    data = ReasoningDataModule(**args, cache_dir=str(tmp_path / "cache"))
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=None), warmup_steps=2)
    trainer = L.Trainer(
        max_steps=6, logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=tmp_path / folder, save_last=True), *([StopAt(stop)] if stop else [])],
    )  # fmt: skip
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module


def test_a_trainer_with_the_plugin_writes_checkpoints_that_load_and_resume_exactly(tmp_path):
    straight = fit(tmp_path, "straight")
    fit(tmp_path, "resumed", stop=3)
    resumed = fit(tmp_path, "resumed", ckpt_path=str(tmp_path / "resumed" / "last.ckpt"))
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    model, _ = load_checkpoint(tmp_path / "straight" / "last.ckpt")  # weights_only=True
    for (name, a), b in zip(straight.model.state_dict().items(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    umask = os.umask(0)
    os.umask(umask)
    files = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "straight").iterdir()}
    assert files == {"last.ckpt": 0o666 & ~umask, "epoch=0-step=6.ckpt": 0o666 & ~umask}  # no temporary file


def test_a_remote_path_goes_to_lightnings_own_writer():
    AtomicCheckpointIO().save_checkpoint({"step": 3}, "memory://runs/last.ckpt")
    with fsspec.open("memory://runs/last.ckpt", "rb") as file:
        assert torch.load(file, weights_only=True) == {"step": 3}


CHILD = """
import json, resource, signal, sys, time
import torch
from lightningllm.training import AtomicCheckpointIO

path, mode = sys.argv[1], sys.argv[2]
checkpoint = {"state_dict": {"w": torch.arange(200_000, dtype=torch.float32)}, "global_step": 2}
if mode == "full":  # writes past 64 KiB fail with EFBIG, as writes to a full disk fail with ENOSPC
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))
else:  # torch.save writes half of the checkpoint, then waits to be killed
    save = torch.save

    def half_then_wait(obj, file, **kwargs):
        import io

        buffer = io.BytesIO()
        save(obj, buffer, **kwargs)
        file.write(buffer.getvalue()[: buffer.tell() // 2])
        file.flush()
        print("half written", flush=True)
        time.sleep(600)

    torch.save = half_then_wait
try:
    AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    print(json.dumps({"error": None}))
except Exception as err:
    print(json.dumps({"error": f"{type(err).__name__}: {err}"}))
"""


@pytest.fixture
def previous(tmp_path) -> Path:
    """``last.ckpt`` of an earlier save, in a folder of its own."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(8)}, "global_step": 1}, path)
    return path


def child(path: Path, mode: str, tmpdir: Path) -> subprocess.Popen:
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir), "TORCHINDUCTOR_CACHE_DIR": str(tmpdir.parent / "inductor")}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_a_full_disk_leaves_the_previous_checkpoint_and_no_temporary_file(previous, tmp_path):
    before = previous.read_bytes()
    process = child(previous, "full", tmp_path / "tmpdir")
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert error == f"OSError: cannot save checkpoint {previous}: File too large"
    assert previous.read_bytes() == before
    assert files_in(previous.parent) == ["last.ckpt"]
    assert files_in(tmp_path / "tmpdir") == []


def test_a_save_killed_half_way_leaves_the_previous_checkpoint_and_the_next_save_cleans_up(previous, tmp_path):
    before = previous.read_bytes()
    (previous.parent / "notes.tmp-1").write_text("a user's file that looks temporary")
    (previous.parent / ".best.ckpt.tmp-abc").write_text("another checkpoint's")
    process = child(previous, "kill", tmp_path / "tmpdir")
    assert process.stdout.readline().strip() == "half written"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert previous.read_bytes() == before
    (stale,) = previous.parent.glob(".last.ckpt.tmp-*")  # the killed save's half-written file, beside the target
    assert stale.stat().st_size > 0
    assert files_in(tmp_path / "tmpdir") == []
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(8)}, "global_step": 3}, previous)
    assert torch.load(previous, weights_only=True)["global_step"] == 3
    assert files_in(previous.parent) == [".best.ckpt.tmp-abc", "last.ckpt", "notes.tmp-1"]
