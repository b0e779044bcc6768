"""FSDP2 through ``ModelParallelStrategy``: two CPU processes (gloo) train as DDP does, on half the memory each.

The runs are the real ``lightningllm fit`` in subprocesses, on ``configs/debug.yaml``: a DDP run and
an FSDP2 run (with activation checkpointing) of 10 steps from the same seed and data, the FSDP2 run
saving a sharded checkpoint at step 5 and at the end (``last.ckpt/``, a folder), and a run resumed
from step 5 that saves one whole file instead (``save_distributed_checkpoint false``). Each run's
callbacks write what the tests compare: every step's loss on every rank, a hash of the whole
weights, and each rank's share of the parameter memory. Muon's sharded step is checked against the
unsharded one in two spawned processes, without Lightning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightningllm.checkpoint import export_checkpoint, read_checkpoint
from lightningllm.model import GPT, GPTConfig, Muon, param_groups
from lightningllm.training.sharding import full, gathered, local, shard
from tests.conftest import CONFIGS, REPO

FSDP = [
    "--trainer.strategy=ModelParallelStrategy", "--trainer.strategy.data_parallel_size=2",
    "--trainer.strategy.tensor_parallel_size=1",
]  # fmt: skip
IMPORTABLE = os.pathsep.join([str(REPO), str(Path(__file__).parent)])
"""The subprocesses import lightningllm and this module (``RunRecord``), whatever name pytest gave it."""
LOSS_TOLERANCE = 1e-6
"""Relative, fp32: FSDP2 reduce-scatters the gradients where DDP all-reduces them, in another summation order
(measured: at most 1e-7 over the 10 steps)."""


class RunRecord(L.Callback):
    """Each rank writes ``rank<R>.json``: its loss at every step, its parameter memory, and the whole weights' hash."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.record: dict = {"losses": {}}

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, *args) -> None:
        self.record["losses"][trainer.global_step] = float(outputs["loss"])
        if "bytes_local" not in self.record:  # between steps, where backward has resharded every block
            parameters = list(module.model.parameters())
            self.record["bytes_full"] = sum(p.numel() * p.element_size() for p in parameters)
            self.record["bytes_local"] = sum(local(p).numel() * p.element_size() for p in parameters)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        digest = hashlib.sha256()
        for parameter in module.model.parameters():  # gathered on every rank, in one order
            digest.update(full(parameter.detach()).cpu().numpy().tobytes())
        self.record.update(step=trainer.global_step, digest=digest.hexdigest())
        (self.path / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fit(workdir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """10 steps of configs/debug.yaml on 2 CPU processes, validating (and sampling, scoring the task) at step 10."""
    workdir.mkdir(parents=True, exist_ok=True)
    record = f"{{class_path: {__name__}.RunRecord, init_args: {{path: {workdir}}}}}"
    args = [
        sys.executable, "-m", "lightningllm", "fit", "--config", str(CONFIGS / "debug.yaml"),
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_steps=10",
        "--trainer.enable_progress_bar=false", f"--trainer.callbacks+={record}",
        "--data.cache_dir", str(workdir.parent / "cache"), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": IMPORTABLE, "PYTHONWARNINGS": "ignore", "MASTER_PORT": str(free_port())}
    result = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, [json.loads((workdir / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fsdp")
    every5 = (
        "--trainer.callbacks+={class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: "
        "{every_n_train_steps: 5, save_top_k: -1, filename: 'step{step}', auto_insert_metric_name: false}}"
    )
    ddp = fit(root / "ddp", "--trainer.strategy=ddp")
    fsdp = fit(root / "fsdp", *FSDP, "--model.activation_checkpointing=true", every5)
    checkpoints = root / "fsdp/logs/debug/checkpoints"
    resumed = fit(
        root / "resumed", *FSDP, "--trainer.strategy.save_distributed_checkpoint=false",
        f"--ckpt_path={checkpoints / 'step5.ckpt'}",
    )  # fmt: skip
    return {"root": root, "ddp": ddp, "fsdp": fsdp, "resumed": resumed, "checkpoints": checkpoints}


def test_fsdp_trains_as_ddp_does_with_half_the_parameter_memory_on_each_rank(runs):
    (_, ddp), (fsdp_result, fsdp) = runs["ddp"], runs["fsdp"]
    for rank in (0, 1):  # each rank reads the same batches as under DDP, from the same initial weights
        assert len(fsdp[rank]["losses"]) == len(ddp[rank]["losses"]) == 10
        for step, loss in ddp[rank]["losses"].items():
            assert math.isclose(fsdp[rank]["losses"][step], loss, rel_tol=LOSS_TOLERANCE), (rank, step)
    assert fsdp[0]["digest"] == fsdp[1]["digest"]  # one model, gathered from its shards
    assert "model: 37,760 parameters" in fsdp_result.stdout  # counted whole, as under DDP
    full_bytes = ddp[0]["bytes_full"]
    assert ddp[0]["bytes_local"] == full_bytes and fsdp[0]["bytes_full"] == full_bytes
    for rank in (0, 1):  # each rank holds its half of every tensor (first dimension, rounded)
        assert abs(fsdp[rank]["bytes_local"] / full_bytes - 0.5) < 0.01
    assert fsdp[0]["bytes_local"] + fsdp[1]["bytes_local"] == full_bytes


def test_a_run_resumed_from_a_sharded_checkpoint_ends_on_the_uninterrupted_weights(runs):
    folder = runs["checkpoints"] / "last.ckpt"
    assert folder.is_dir() and sorted(p.name for p in folder.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    (_, fsdp), (_, resumed) = runs["fsdp"], runs["resumed"]
    assert resumed[0]["step"] == fsdp[0]["step"] == 10
    assert sorted(map(int, resumed[0]["losses"])) == list(range(6, 11))
    for rank in (0, 1):
        for step, loss in resumed[rank]["losses"].items():
            assert loss == fsdp[rank]["losses"][step], (rank, step)  # the same batches and weights: exactly
    assert resumed[0]["digest"] == fsdp[0]["digest"]
    # The sharded checkpoint's metadata carries LitGPT's and the command's additions, as a .ckpt file does.
    checkpoint = read_checkpoint(folder)
    assert {"tokenizer", "train_seconds", "lightningllm_config"} <= checkpoint.keys()
    assert checkpoint["hyper_parameters"]["config"]["vocab_size"] == 384 and checkpoint["global_step"] == 10


def test_export_of_a_sharded_checkpoint_is_byte_identical_to_an_export_of_the_same_weights_unsharded(runs):
    unsharded = runs["root"] / "resumed/logs/debug/checkpoints/last.ckpt"
    assert unsharded.is_file()  # save_distributed_checkpoint false: one whole file, through AtomicCheckpointIO
    sharded_out = export_checkpoint(runs["checkpoints"] / "last.ckpt", runs["root"] / "export-sharded")
    unsharded_out = export_checkpoint(unsharded, runs["root"] / "export-unsharded")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (sharded_out / name).read_bytes() == (unsharded_out / name).read_bytes(), name


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": IMPORTABLE, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "lightningllm", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_validate_and_predict_read_a_sharded_checkpoint_on_one_device(runs):
    folder, unsharded = runs["checkpoints"] / "last.ckpt", runs["root"] / "resumed/logs/debug/checkpoints/last.ckpt"
    outputs = {}
    for name, ckpt in (("sharded", folder), ("unsharded", unsharded)):
        predicted = runs["root"] / f"{name}.jsonl"
        result = run_cli(
            runs["root"], "predict", f"--ckpt_path={ckpt}", "--prompt=Q: 3 + 4 =", "--model.temperature=0",
            "--model.max_new_tokens=8", "--trainer.accelerator=cpu", f"--output={predicted}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[name] = json.loads(predicted.read_text())["completion"]
    assert outputs["sharded"] == outputs["unsharded"]
    # validate with only --ckpt_path: the run's config from meta.pt, here on one device
    result = run_cli(
        runs["root"], "validate", f"--ckpt_path={folder}", "--trainer.devices=1", "--trainer.strategy=auto"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "val/loss" in result.stdout
    # another shape than the folder's is refused, as for a .ckpt file (it was replaced silently)
    result = run_cli(
        runs["root"], "predict", f"--ckpt_path={folder}", "--prompt=Q: 1 + 1 =", "--model.config.n_embd=64"
    )
    assert result.returncode == 2 and "holds a model of another shape: " in result.stderr
    assert "model.config.n_embd 32 -> 64" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # resuming the folder under DDP (which cannot read its optimizer shards): one line, before any process starts
    result = run_cli(
        runs["root"], "fit", "--config", str(CONFIGS / "debug.yaml"), f"--ckpt_path={folder}",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot resume from {folder} with trainer.strategy DDPStrategy: it is a sharded")
    # predict under the sharding strategy would hang (each rank decodes its own lengths): refused in one line
    result = run_cli(runs["root"], "predict", f"--ckpt_path={folder}", "--prompt=Q: 3 + 4 =", *FSDP)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: predict runs on one device, and")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_sharded_checkpoint_whose_index_names_other_objects_is_refused_without_running_them(runs, tmp_path):
    folder = tmp_path / "evil.ckpt"
    shutil.copytree(runs["checkpoints"] / "last.ckpt", folder)
    (folder / ".metadata").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ValueError, match=r"evil.ckpt: its \.metadata is not DCP metadata"):
        read_checkpoint(folder)
    assert not (tmp_path / "pwned").exists()


class Exploit:
    def __reduce__(self):
        return os.system, (f"touch {Path.cwd() / 'pwned'}",)


# --- Muon: the sharded step gathers each matrix, and steps as the unsharded one does ---------------


def _muon_ranks(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("data_parallel",))
        # No biases: the key bias gets no gradient (softmax ignores it), and AdamW turns rounding noise there into
        # steps of up to the learning rate, which would hide what this compares.
        config = GPTConfig.from_name("debug", vocab_size=96, bias=False)
        torch.manual_seed(0)
        reference, sharded = GPT(config), GPT(config)
        sharded.load_state_dict(reference.state_dict())
        shard(sharded, mesh)
        optimizers = [Muon(param_groups(m, 0.1, muon=True), lr=0.02) for m in (reference, sharded)]
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):
            idx = torch.randint(0, 96, (4, 17), generator=generator)
            rows = slice(2 * rank, 2 * rank + 2)  # FSDP: this rank's half of the batch; the reference sees all
            reference(idx[:, :-1], idx[:, 1:]).backward()
            sharded(idx[rows, :-1], idx[rows, 1:]).backward()
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad()
        with gathered(sharded) as whole:
            weights = whole.state_dict()
        if rank == 0:
            torch.save({"reference": reference.state_dict(), "sharded": weights}, out)
    finally:
        dist.destroy_process_group()


def test_muon_under_fsdp2_gathers_each_matrix_and_steps_as_unsharded(tmp_path):
    out = tmp_path / "weights.pt"
    mp.start_processes(_muon_ranks, args=(free_port(), str(out)), nprocs=2, start_method="spawn")
    weights = torch.load(out)
    assert weights["reference"].keys() == weights["sharded"].keys()
    for name, reference in weights["reference"].items():  # fp32: the gradient average rounds differently
        torch.testing.assert_close(weights["sharded"][name], reference, rtol=1e-5, atol=1e-6, msg=name)
