"""Prepared data in object storage, against a real S3-compatible server (SeaweedFS, ``tests/s3_server.py``).

The real ``lightningllm fit`` prepares a text corpus into ``s3://corpora/<prefix>/``, trains from
the stream, is stopped by SIGTERM (``last.ckpt`` at the step boundary, exit code 143) and resumed
from the prepared corpus alone (``data.prepared``, the sources gone): the resumed run ends on
exactly the weights of a run that was never stopped. Each run gets a fresh local cache, so every
shard it reads came from the bucket. A data module given only ``data.prepared`` reads the batches
of the one that prepared the corpus from its sources. An unreachable endpoint and refused
credentials end ``fit`` in one line naming the URI, with exit code 2; the secret key is in no
output and no file of a run (its config, hyperparameters, TensorBoard events).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lightningllm.data import TextDataModule
from lightningllm.data.sources import DataError
from tests.conftest import CONFIGS
from tests.s3_server import BUCKET, SECRET_KEY, S3Server

MAX_STEPS = 40
EVERY = 5


def fit_config(tmp_path: Path, corpus: Path, cache_dir: str) -> Path:
    """``configs/debug.yaml``'s model and trainer on a text corpus in ``cache_dir``: a checkpoint every
    ``EVERY`` steps, no validation (it does not change the weights)."""
    config = yaml.safe_load((CONFIGS / "debug.yaml").read_text())
    config["trainer"] |= {"max_steps": MAX_STEPS, "limit_val_batches": 0, "enable_progress_bar": False}
    checkpoint = {"every_n_train_steps": EVERY, "save_last": True, "enable_version_counter": False}
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": checkpoint}
    ]
    data = {"sources": str(corpus), "tokenizer_kind": "char", "block_size": 32, "batch_size": 8}
    data |= {"cache_dir": cache_dir, "prepare_workers": 1}
    config["data"] = {"class_path": "lightningllm.data.TextDataModule", "init_args": data}
    path = tmp_path / "s3.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(config: Path, run: str, *extra: str) -> list[str]:
    """The ``lightningllm fit`` command of a run in folder ``run``, with a local cache of its own."""
    root = config.parent
    return [
        sys.executable, "-m", "lightningllm", "fit", "--config", str(config),
        f"--trainer.default_root_dir={root / run}", f"--data.local_cache_dir={root / run / 'local-cache'}", *extra,
    ]  # fmt: skip


def start(command: list[str], server: S3Server, log: Path, **env: str) -> subprocess.Popen:
    with open(log, "w") as out:
        environment = server.env(PYTHONWARNINGS="ignore", LIGHTNINGLLM_DEBUG="", **env)
        return subprocess.Popen(command, cwd=log.parent, env=environment, stdout=out, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen, log: Path) -> str:
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    return log.read_text()


def weights(checkpoint: Path) -> tuple[int, dict[str, torch.Tensor]]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return state["global_step"], state["state_dict"]


def test_fit_prepares_into_a_bucket_streams_from_it_and_resumes_exactly(s3_server, text_corpus, tmp_path):
    config = fit_config(tmp_path, text_corpus, f"s3://{BUCKET}/fit")

    output = finished(start(fit(config, "straight"), s3_server, tmp_path / "straight.log"), tmp_path / "straight.log")
    keys = s3_server.keys("fit/")
    corpus = keys[0].split("/")[1]  # text-<fingerprint>
    uri = f"s3://{BUCKET}/fit/{corpus}"
    assert f"shards in {uri} (data.prepared={uri} reads them without the sources)" in output
    for name in ("report.json", "tokenizer.json", "train/index.json", "val/index.json"):
        assert f"fit/{corpus}/{name}" in keys
    assert any(key.startswith(f"fit/{corpus}/train/chunk-") for key in keys)
    assert not list((tmp_path / "straight" / "local-cache").rglob("*.preparing-*"))  # the staging folder is gone

    # Stopped as a scheduler stops a job: SIGTERM, some steps after its first checkpoint.
    log = tmp_path / "stopped.log"
    stopped = start(fit(config, "stopped"), s3_server, log)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    while not last.exists():
        assert stopped.poll() is None, log.read_text()[-3000:]
        time.sleep(0.01)
    assert stopped.poll() is None, "the run ended before it was stopped"
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert f"reusing prepared shards in s3://{BUCKET}/fit/{corpus}" in log.read_text()
    stopped_at, _ = weights(last)
    assert 0 < stopped_at < MAX_STEPS

    # Resumed on another "machine": no sources, only the prepared corpus in the bucket.
    text_corpus.rename(tmp_path / "gone")
    log = tmp_path / "resumed.log"
    resume = fit(config, "resumed", f"--ckpt_path={last}", "--data.sources=null", f"--data.prepared={uri}")
    assert f"data: reading the prepared corpus {uri}" in finished(start(resume, s3_server, log), log)
    resumed_at, resumed = weights(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    straight_at, straight = weights(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert resumed_at == straight_at == MAX_STEPS
    assert sorted(resumed) == sorted(straight)
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)

    # The resumed run's shards streamed from the bucket into its own local cache.
    mirror = tmp_path / "resumed" / "local-cache" / "s3" / BUCKET / "fit" / corpus
    assert list((mirror / "train").glob("chunk-*.bin"))
    for path in [*tmp_path.glob("*.log"), *tmp_path.glob("*/version_*/*")]:  # output, config.yaml, hparams, events
        assert SECRET_KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "extra, env, message",
    [
        (
            ["--data.s3_endpoint=http://127.0.0.1:9"],
            {},
            "error: cannot reach {uri}/report.json at http://127.0.0.1:9: connection refused; check data.s3_endpoint "
            "(or AWS_ENDPOINT_URL) and that the server is up",
        ),
        (
            [],
            {"AWS_SECRET_ACCESS_KEY": "not-the-secret-5ee1"},
            "error: {uri}/report.json: access denied with these credentials (SignatureDoesNotMatch); check "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may read and write the bucket",
        ),
    ],
    ids=["unreachable endpoint", "refused credentials"],
)
def test_an_unreachable_endpoint_or_refused_credentials_end_fit_in_one_line_naming_the_uri(
    s3_server, text_corpus, tmp_path, extra, env, message
):
    config = fit_config(tmp_path, text_corpus, f"s3://{BUCKET}/errors")
    settings = yaml.safe_load(config.read_text())["data"]["init_args"]
    uri = f"s3://{BUCKET}/errors/{TextDataModule(**settings).prepared_dir.name}"
    log = tmp_path / "fit.log"
    began = time.monotonic()
    process = start(fit(config, "run", *extra), s3_server, log, **env)
    assert process.wait(timeout=120) == 2, log.read_text()[-3000:]
    assert time.monotonic() - began < 60  # bounded retries, not litdata's 1000
    output = log.read_text()
    assert "Traceback" not in output
    assert output.strip().splitlines()[-1] == message.format(uri=uri)
    assert SECRET_KEY not in output and "not-the-secret-5ee1" not in output


def use_server(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's AWS environment: the test server's endpoint and credentials, nothing else."""
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)


def test_a_corpus_whose_upload_was_cut_short_is_prepared_again(s3_server, text_corpus, tmp_path, monkeypatch, capsys):
    use_server(s3_server, monkeypatch)
    settings = {"sources": str(text_corpus), "tokenizer_kind": "char", "block_size": 16, "batch_size": 4}
    settings |= {"cache_dir": f"s3://{BUCKET}/cut", "prepare_workers": 1}
    dm = TextDataModule(**settings, local_cache_dir=str(tmp_path / "first"))
    name = dm.prepared_dir.name
    client = s3_server.client()
    client.put_object(Bucket=BUCKET, Key=f"cut/{name}/train/index.json", Body=b"{ half an upload")
    dm.prepare_data()  # no report.json in the bucket: not prepared
    assert f"shards in s3://{BUCKET}/cut/{name}" in capsys.readouterr().out
    assert f"cut/{name}/report.json" in s3_server.keys("cut/")

    again = TextDataModule(**settings, local_cache_dir=str(tmp_path / "second"), max_cache_size="2GB")
    again.prepare_data()
    again.setup("fit")
    assert f"reusing prepared shards in s3://{BUCKET}/cut/{name}" in capsys.readouterr().out
    inputs, targets = next(iter(again.train_dataloader()))
    assert inputs.shape == targets.shape == (4, 16)
    published = client.get_object(Bucket=BUCKET, Key=f"cut/{name}/report.json")["Body"].read()
    assert again.report == json.loads(published)


def test_a_corpus_prepared_into_a_bucket_is_read_elsewhere_without_its_sources(
    s3_server, text_corpus, tmp_path, monkeypatch, capsys
):
    use_server(s3_server, monkeypatch)
    loader = {"block_size": 16, "batch_size": 4}
    dm = TextDataModule(
        sources=str(text_corpus), tokenizer_kind="char", cache_dir=f"s3://{BUCKET}/elsewhere", prepare_workers=1,
        local_cache_dir=str(tmp_path / "first"), **loader,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    uri = f"s3://{BUCKET}/elsewhere/{dm.prepared_dir.name}"
    assert f"(data.prepared={uri} reads them without the sources)" in capsys.readouterr().out
    text_corpus.rename(tmp_path / "gone")  # the training machine has none of the sources

    again = TextDataModule(prepared=uri, local_cache_dir=str(tmp_path / "second"), **loader)
    again.prepare_data()
    assert capsys.readouterr().out == f"data: reading the prepared corpus {uri}\n"
    again.setup("fit")
    assert again.prepared_dir == tmp_path / "second" / "s3" / BUCKET / "elsewhere" / dm.prepared_dir.name
    assert again.state_dict() == dm.state_dict() and again.report == dm.report
    for split in ("train", "val"):
        for (x, y), (x2, y2) in zip(dm._loader(split), again._loader(split), strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
    assert list((again.prepared_dir / "train").glob("chunk-*.bin"))  # streamed from the bucket

    missing = f"s3://{BUCKET}/elsewhere/text-0123"
    with pytest.raises(DataError) as refused:
        TextDataModule(prepared=missing, local_cache_dir=str(tmp_path / "third")).setup("fit")
    assert str(refused.value) == (
        f"data.prepared {missing} is not a prepared corpus (no report.json): give the <name>-<fingerprint> folder "
        "that preparing printed"
    )


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            {"cache_dir": "gs://bucket/x"},
            "data.cache_dir gs://bucket/x: only s3:// URIs are supported (or a local folder)",
        ),
        ({"cache_dir": "s3:///x"}, "data.cache_dir s3:///x: '' is not a bucket name; write s3://BUCKET/PREFIX"),
        (
            {"cache_dir": "s3://bucket/x", "s3_endpoint": "127.0.0.1:9000"},
            "data.s3_endpoint must be an http:// or https:// URL (got '127.0.0.1:9000')",
        ),
        (
            {"max_cache_size": "lots"},
            "data.max_cache_size must be a size such as 50GB, 500MB or a number of bytes (got 'lots')",
        ),
        ({"local_cache_dir": "s3://b/y"}, "data.local_cache_dir must be a local folder path (got 's3://b/y')"),
        (
            {"sources": None, "prepared": "gs://bucket/x/text-0123"},
            "data.prepared gs://bucket/x/text-0123: only s3:// URIs are supported (or a local folder)",
        ),
    ],
)
def test_object_storage_settings_are_checked_at_construction_in_one_line(tmp_path, setting, message):
    with pytest.raises(DataError) as refused:
        TextDataModule(**({"sources": str(tmp_path / "not-read")} | setting))
    assert str(refused.value) == message
