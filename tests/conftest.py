"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import Dockerd, MotoS3, absent, remove_scratch

# `hoist run` without --network joins the default bridge, as docker's: a bridge, NAT rules and an
# address in the namespace it runs in. The suite runs in the machine's own namespace, so there the
# default is dockerd's --bridge=none; the bridge default itself is tested on the test hosts'
# namespaces (tests/runtime/test_network.py::test_the_default_network_is_the_bridge).
os.environ.setdefault("HOIST_DEFAULT_NETWORK", "none")


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """One private Docker engine for the whole session (started on first use)."""
    base = Path(tempfile.mkdtemp(prefix="hoist-dockerd-", dir="/tmp"))
    engine = Dockerd(base)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
        remove_scratch(base)      # its data root: ~450 MB after a run


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server for the whole session; tests make their own buckets."""
    base = Path(tempfile.mkdtemp(prefix="hoist-moto-", dir="/tmp"))
    server = MotoS3(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        remove_scratch(base)


@pytest.fixture(scope="session")
def debian_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A docker-archive of a fresh bookworm minbase (tests/interop/test_build_debian.py), made
    once per session for every test that asks (here, so there is one fixture, not one per module
    that imports it)."""
    import shutil

    from tests.interop.test_build_debian import debian_base_archive, debootstrap

    if os.geteuid() != 0:
        absent("debootstrap needs root")
    base = tmp_path_factory.mktemp("debian")
    rootfs = debootstrap(base / "rootfs")
    archive = debian_base_archive(rootfs, base / "bookworm.tar")
    shutil.rmtree(rootfs)
    yield archive
