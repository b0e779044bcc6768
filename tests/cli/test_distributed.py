"""Several processes on this machine train as one run: a wall-clock budget under DDP, and a multi-node launch.

Multi-node: two "nodes" on this machine, each its own `lightningllm fit`, train as one DDP run.
Each node is what a user starts on each machine (by hand, torchrun or SLURM): the same command
with `--trainer.num_nodes 2`, `MASTER_ADDR`/`MASTER_PORT` of node 0 and its own `NODE_RANK`. Each
runs in its own folder, as on separate machines, and prepares its own copy of the data.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from tests.conftest import CONFIGS, REPO


class ParamDigest(L.Callback):
    """Writes ``rank<R>.txt``: the world size, the final step and a hash of every parameter's bytes."""

    def __init__(self, path: str):
        self.path = path

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for parameter in module.model.parameters():
            digest.update(parameter.detach().cpu().numpy().tobytes())
        line = f"{trainer.world_size} {trainer.global_step} {digest.hexdigest()}\n"
        Path(self.path, f"rank{trainer.global_rank}.txt").write_text(line)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_nodes_launched_apart_train_together_and_end_on_equal_weights(tmp_path):
    port = free_port()
    digest = f"{{class_path: {__name__}.ParamDigest, init_args: {{path: {tmp_path}}}}}"
    args = [
        sys.executable, "-m", "lightningllm", "fit", "--config", str(CONFIGS / "debug.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=2", "--trainer.strategy=ddp",
        "--trainer.max_steps=4", "--trainer.val_check_interval=4", "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false", f"--trainer.callbacks+={digest}",
    ]  # fmt: skip
    nodes = []
    for node_rank in (0, 1):
        workdir = tmp_path / f"node{node_rank}"
        workdir.mkdir()
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node_rank),
        }  # fmt: skip
        nodes.append(subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    errors = [node.communicate(timeout=240)[1].decode()[-2000:] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], errors
    ranks = [(tmp_path / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]
    assert ranks[0][:2] == ["2", "4"]  # one run of world size 2, four steps
    assert ranks[0] == ranks[1]  # the gradients were all-reduced: the same weights on both nodes
    assert (tmp_path / "node0/logs/debug/checkpoints/last.ckpt").is_file()  # global rank 0 saves


def test_a_wall_clock_budget_under_ddp_stops_every_rank_at_the_same_step_with_the_same_weights(tmp_path):
    # The schedule follows the budget here (max_steps is far): with each rank's own clock, the learning
    # rates differed in their last bits and the replicas drifted apart, and a rank could stop alone.
    digest = f"{{class_path: {__name__}.ParamDigest, init_args: {{path: {tmp_path}}}}}"
    args = [
        sys.executable, "-m", "lightningllm", "fit", "--config", str(CONFIGS / "debug.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp_spawn",
        "--trainer.max_steps=100000", "--model.train_minutes=0.05", "--trainer.limit_val_batches=0",
        "--data.num_train=200", "--trainer.enable_progress_bar=false", f"--trainer.callbacks+={digest}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [(tmp_path / f"rank{rank}.txt").read_text().split() for rank in (0, 1)]
    assert ranks[0][0] == "2" and int(ranks[0][1]) > 10
    assert ranks[0] == ranks[1]


class RecordRun(L.Callback):
    """Rank 0 writes ``losses.txt`` (the logged, rank-reduced training loss of every step) and ``weights.pt``."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.is_global_zero:
            with open(self.path / "losses.txt", "a") as losses:
                losses.write(f"{trainer.global_step} {float(trainer.callback_metrics['train/loss'])!r}\n")

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            with open(self.path / "val_losses.txt", "a") as losses:
                losses.write(f"{trainer.global_step} {float(trainer.callback_metrics['val/loss'])!r}\n")

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            torch.save({k: v.detach().clone() for k, v in module.model.state_dict().items()}, self.path / "weights.pt")


class KillAt(L.Callback):
    """Every rank SIGKILLs itself once ``step`` optimizer steps are done: a crash, with no checkpoint of its own."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def fit_debug(workdir: Path, devices: int, batch_size: int, *extra: str) -> subprocess.CompletedProcess:
    """Two epochs of a small reasoning corpus (the questions are masked out of the loss), validating every 6 steps."""
    workdir.mkdir(exist_ok=True)
    record = f"{{class_path: {__name__}.RecordRun, init_args: {{path: {workdir}}}}}"
    args = [
        sys.executable, "-m", "lightningllm", "fit", "--config", str(CONFIGS / "debug.yaml"),
        "--trainer.accelerator=cpu", f"--trainer.devices={devices}", "--trainer.strategy=ddp",
        "--trainer.max_steps=-1", "--trainer.max_epochs=2", "--trainer.val_check_interval=6",
        "--data.num_val=20", "--trainer.limit_val_batches=null", "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--data.num_train=120", "--data.shuffle=true", f"--data.batch_size={batch_size}", "--data.num_workers=0",
        "--trainer.callbacks+=TaskEval", "--trainer.callbacks.num_val_examples=2", f"--trainer.callbacks+={record}",
        "--data.cache_dir", str(workdir.parent / "cache"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore", "MASTER_PORT": str(free_port())}
    return subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def losses(workdir: Path, file: str = "losses.txt") -> dict[int, float]:
    lines = (workdir / file).read_text().split("\n")
    return {int(step): float(loss) for step, loss in (line.split() for line in lines if line)}


def test_ddp_trains_as_one_process_with_the_global_batch_and_a_killed_run_resumes_exactly(tmp_path):
    # 2 ranks × 4 samples against 1 rank × 8: the same samples each step (one global order, cut per step)
    # and the same loss (token-weighted across ranks: each rank holds a different number of answer tokens).
    # max_epochs, not max_steps, sizes the schedule (trainer.estimated_stepping_batches, which loses the
    # loader position on resume in Lightning-AI/pytorch-lightning#20550), and the run crosses an epoch.
    one, two = tmp_path / "one", tmp_path / "two"
    for workdir, devices, batch in ((one, 1, 8), (two, 2, 4)):
        result = fit_debug(workdir, devices, batch)
        assert result.returncode == 0, result.stderr[-3000:]
    steps = sorted(losses(two))
    assert len(steps) == len(losses(one)) > 12  # two epochs of the same number of steps
    for step in steps:  # fp32; only the order of the reductions differs (tolerance: 2e-6 relative)
        assert math.isclose(losses(one)[step], losses(two)[step], rel_tol=2e-6), step
    one_val, two_val = losses(one, "val_losses.txt"), losses(two, "val_losses.txt")
    assert sorted(one_val) == sorted(two_val) and len(one_val) >= 4
    for step, loss in one_val.items():  # the whole validation split (padded on one rank), token-weighted
        assert math.isclose(loss, two_val[step], rel_tol=2e-6), step
    one_weights, two_weights = torch.load(one / "weights.pt"), torch.load(two / "weights.pt")
    for name, weight in one_weights.items():
        torch.testing.assert_close(two_weights[name], weight, rtol=1e-4, atol=1e-5, msg=name)

    # Killed (SIGKILL, every rank) at step 9, after the checkpoint of step 6; resumed from it: the same run.
    killed = tmp_path / "killed"
    crash = f"--trainer.callbacks+={{class_path: {__name__}.KillAt, init_args: {{step: 9}}}}"
    assert fit_debug(killed, 2, 4, crash).returncode == -signal.SIGKILL
    last = killed / "logs/debug/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    (killed / "weights.pt").unlink(missing_ok=True)
    result = fit_debug(killed, 2, 4, f"--ckpt_path={last}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert {step: loss for step, loss in losses(killed).items() if step > 6} == {
        step: loss for step, loss in losses(two).items() if step > 6
    }  # the resumed steps read the same samples
    resumed = torch.load(killed / "weights.pt")
    for name, weight in two_weights.items():
        torch.testing.assert_close(resumed[name], weight, rtol=0, atol=0, msg=name)
