"""Several processes on this machine train as one run: a wall-clock budget under DDP, and a multi-node launch.

Multi-node: two "nodes" on this machine, each its own `lightningllm fit`, train as one DDP run.
Each node is what a user starts on each machine (by hand, torchrun or SLURM): the same command
with `--trainer.num_nodes 2`, `MASTER_ADDR`/`MASTER_PORT` of node 0 and its own `NODE_RANK`. Each
runs in its own folder, as on separate machines, and prepares its own copy of the data.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L

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
