"""A crash is not an interruption: ``kill -9`` a real ``lightningllm fit`` at a random moment after its first
checkpoint, resume it with ``--ckpt_path last.ckpt``, and land bit-identical to a run that was never killed.

The moment is drawn from a seeded generator; the test prints the seed and the moment, and
``LIGHTNINGLLM_CRASH_SEED=N`` replays it. Training runs on ``configs/debug.yaml`` with a checkpoint
every 5 steps and no validation (validation does not change the weights; leaving it out keeps the
window in which a kill lands on a training step or a checkpoint save wide). ``$TMPDIR`` is put on
another filesystem than the checkpoints where the machine has one (``/dev/shm``), as on clusters
where a save that goes through ``$TMPDIR`` becomes a copy that a kill cuts short; no temporary file
may be left there.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tests.conftest import CONFIGS

MAX_STEPS = 100
EVERY = 5
CHECKPOINTS = [
    {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"every_n_train_steps": EVERY, "save_last": True, "enable_version_counter": False},
    }
]


def fit_command(run: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lightningllm", "fit", "--config", str(CONFIGS / "debug.yaml"),
        f"--trainer.default_root_dir={run}", f"--data.cache_dir={cache}", f"--trainer.max_steps={MAX_STEPS}",
        "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        f"--trainer.callbacks={json.dumps(CHECKPOINTS)}", *extra,
    ]  # fmt: skip


def start(command: list[str], cwd: Path, log: str, tmpdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LIGHTNINGLLM_DEBUG": "", "TMPDIR": str(tmpdir)}
    with open(cwd / log, "w") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, cwd: Path, log: str) -> None:
    assert process.wait(timeout=300) == 0, (cwd / log).read_text()[-3000:]


def tensors(checkpoint: dict) -> dict[str, torch.Tensor]:
    """Weights, optimizer state and learning-rate schedule of a checkpoint, flattened by name."""
    flat = {f"state_dict.{k}": v for k, v in checkpoint["state_dict"].items()}
    for i, optimizer in enumerate(checkpoint["optimizer_states"]):
        for param, state in optimizer["state"].items():
            flat |= {f"optimizer{i}.{param}.{k}": torch.as_tensor(v) for k, v in state.items()}
        for g, group in enumerate(optimizer["param_groups"]):
            flat |= {f"optimizer{i}.group{g}.{k}": torch.as_tensor(v) for k, v in group.items() if k != "params"}
    for i, scheduler in enumerate(checkpoint["lr_schedulers"]):
        flat |= {f"scheduler{i}.{k}": torch.as_tensor(v) for k, v in scheduler.items() if isinstance(v, int | float)}
    return flat


def other_filesystem_tmpdir(tmp_path: Path) -> Path:
    """A fresh folder on another filesystem than ``tmp_path`` if the machine has one, else in ``tmp_path``."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return Path(tempfile.mkdtemp(prefix="lightningllm-crash-", dir=shm))
    print("no second filesystem for $TMPDIR: it shares the checkpoints' filesystem")
    (tmp_path / "tmpdir").mkdir()
    return tmp_path / "tmpdir"


def test_kill_9_during_fit_then_resume_equals_the_uninterrupted_run(tmp_path):
    tmpdir = other_filesystem_tmpdir(tmp_path)
    try:
        kill_and_resume(tmp_path, tmpdir)
        left = [str(path) for path in tmpdir.rglob("*") if path.is_file()]
        assert left == [], f"temporary files left in $TMPDIR: {left}"
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def saves_of(path: Path) -> tuple[int, int] | None:
    """What changes each time ``path`` is saved again (its inode and mtime), or None while it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def kill_and_resume(tmp_path: Path, tmpdir: Path) -> None:
    cache = tmp_path / "cache"
    started = time.monotonic()
    straight = start(fit_command(tmp_path / "straight", cache), tmp_path, "straight.log", tmpdir)
    finish(straight, tmp_path, "straight.log")
    straight_last = tmp_path / "straight" / "checkpoints" / "last.ckpt"

    # The moment: after the k-th save of last.ckpt, a fraction of the time between saves (timed on this run,
    # so a loaded machine does not move the kill past the end). k <= 12 of the run's 20 saves.
    seed = int(os.environ.get("LIGHTNINGLLM_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    draw = random.Random(seed)
    saves, fraction = draw.randint(1, 12), draw.random()
    crashed = start(fit_command(tmp_path / "crashed", cache), tmp_path, "crashed.log", tmpdir)
    last = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    seen, times = None, []
    while len(times) < saves:
        assert crashed.poll() is None, (
            f"the run ended before the kill (seed {seed}):\n" + (tmp_path / "crashed.log").read_text()[-3000:]
        )
        if (now := saves_of(last)) is not None and now != seen:
            seen = now
            times.append(time.monotonic())
        time.sleep(0.002)
    interval = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.05
    time.sleep(fraction * interval)
    print(f"kill -9 {fraction * interval:.3f} s after save {saves} of last.ckpt (seed {seed})")
    assert crashed.poll() is None, f"the run ended before the kill (seed {seed})"
    crashed.send_signal(signal.SIGKILL)
    assert crashed.wait(timeout=30) == -signal.SIGKILL
    try:
        killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    except Exception as err:  # a save cut short: the previous last.ckpt must have survived
        raise AssertionError(f"last.ckpt ({last.stat().st_size} bytes) is unreadable after the kill: {err}") from err
    print(f"killed with last.ckpt at step {killed_at}")
    assert 0 < killed_at < MAX_STEPS

    resumed = start(fit_command(tmp_path / "crashed", cache, f"--ckpt_path={last}"), tmp_path, "resumed.log", tmpdir)
    finish(resumed, tmp_path, "resumed.log")
    expected = torch.load(straight_last, map_location="cpu", weights_only=True)
    actual = torch.load(last, map_location="cpu", weights_only=True)
    assert actual["global_step"] == expected["global_step"] == MAX_STEPS
    want, got = tensors(expected), tensors(actual)
    assert sorted(got) == sorted(want) and any(name.startswith("optimizer0.") for name in want)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)
    print(f"straight, crashed and resumed runs took {time.monotonic() - started:.1f} s")
