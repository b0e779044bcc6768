"""last.ckpt holds the latest step: at the end of training, and when a real SIGTERM/SIGINT stops a real `fit`.

The signalled run is resumed across an epoch boundary (44 batches an epoch here): litdata used to
replay the resumed position at every later epoch (see lightningllm.data.loader).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIGS, run_cli

DEBUG = str(CONFIGS / "debug.yaml")
FIT = ("fit", "--config", DEBUG, "--trainer.enable_progress_bar=false", "--data.num_train=150")


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"]
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(tensor, b["state_dict"][name], rtol=0, atol=0, msg=name)
    for state_a, state_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        for pid, slots in state_a["state"].items():
            for slot, value in slots.items():
                torch.testing.assert_close(value, state_b["state"][pid][slot], rtol=0, atol=0, msg=f"{pid}.{slot}")


def test_the_final_step_is_saved_when_it_is_not_a_validation_step(tmp_path):
    result = run_cli(*FIT, "--trainer.max_steps=25", cwd=tmp_path)  # validates (and saves) at 10 and 20
    assert result.returncode == 0, result.stderr
    assert load(tmp_path / "logs/debug/checkpoints/last.ckpt")["global_step"] == 25


STEPS = ("--trainer.max_steps=300", "--trainer.limit_val_batches=0")  # about 6 s of training


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The uninterrupted run's last.ckpt."""
    workdir = tmp_path_factory.mktemp("straight")
    result = run_cli(*FIT, *STEPS, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return load(workdir / "logs/debug/checkpoints/last.ckpt")


def interrupt(workdir: Path, signum: int) -> tuple[int, str]:
    """Start a real fit, send it ``signum`` a second into training; its exit code and stderr."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = [sys.executable, "-m", "lightningllm", *FIT, *STEPS]
    process = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("model:"):  # printed as training starts
            break
    time.sleep(1.0)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_sigterm_saves_the_current_step_and_resume_equals_uninterrupted(tmp_path, straight):
    code, stderr = interrupt(tmp_path, signal.SIGTERM)
    assert code == 143, stderr
    last = tmp_path / "logs/debug/checkpoints/last.ckpt"
    stopped = load(last)["global_step"]
    assert 0 < stopped < 300 - 44, stderr  # the resumed run crosses an epoch boundary
    assert f"fit: stopped by SIGTERM at step {stopped}; saved {last} (resume: --ckpt_path {last})" in stderr

    resumed = run_cli(*FIT, *STEPS, f"--ckpt_path={last}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_training_state(straight, load(last))


def test_sigint_saves_the_current_step_and_exits_130(tmp_path):
    code, stderr = interrupt(tmp_path, signal.SIGINT)
    assert code == 130, stderr
    last = tmp_path / "logs/debug/checkpoints/last.ckpt"
    assert f"fit: stopped by SIGINT at step {load(last)['global_step']}; saved {last}" in stderr
    assert "Traceback" not in stderr
