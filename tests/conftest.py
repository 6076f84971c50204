"""Fixtures shared by every test package."""

from __future__ import annotations

import tempfile
from pathlib import Path
from collections.abc import Iterator

import pytest

from tests.peers import Dockerd, MotoS3


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """One private Docker engine for the whole session (started on first use)."""
    base = Path(tempfile.mkdtemp(prefix="hoist-dockerd-", dir="/tmp"))
    engine = Dockerd(base)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server for the whole session; tests make their own buckets."""
    server = MotoS3(Path(tempfile.mkdtemp(prefix="hoist-moto-", dir="/tmp")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
