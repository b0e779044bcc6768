"""Fixtures of the data tests: a real S3-compatible server (SeaweedFS), started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3_server import S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS server on loopback with the bucket ``tests.s3_server.BUCKET``; stopped when the session ends."""
    server = S3Server.start(tmp_path_factory.mktemp("s3-server"))
    try:
        yield server
    finally:
        server.stop()
