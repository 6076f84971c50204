"""Fixtures for the compose tests: hoist's own image (the root ``Dockerfile``) built once per
session by ``hoist build`` on a local Python base (a debootstrap'd bookworm with python3, venv and
CA certificates: ``tests/conftest.py``'s ``debian_archive``), in one HOIST_ROOT that the tests of
the image and of ``docker-compose.test.yml`` share. Slow by nature (debootstrap, apt and pip over
the network): made once, never twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import REPO_ROOT, Hoist
from tests.runtime.conftest import need_root_and_busybox

PYTHON_BASE = "hoist-test/python:3.11-bookworm"
# The host's CA bundle goes in too: pip in the build must trust what this machine trusts (a
# TLS-inspecting proxy's CA, where there is one); pip reads PIP_CERT, not the system store.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _base_dockerfile() -> str:
    from tests.interop.test_build_debian import DEBIAN_REF

    return f"""\
FROM {DEBIAN_REF}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \\
    && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /etc/ssl/certs/host-ca.crt
ENV PIP_CERT=/etc/ssl/certs/host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt
"""


@pytest.fixture(scope="session")
def hoist_image(debian_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hoist]:
    """A hoist whose store holds ``hoist`` (built from the repository's Dockerfile) and its base
    ``hoist-test/python:3.11-bookworm``; ``built`` on the object is the build's output."""
    need_root_and_busybox()
    hoist = Hoist(tmp_path_factory.mktemp("hoist-image"))
    hoist("load", "-i", str(debian_archive), timeout=600)
    base_ctx = hoist.root.parent / "base"
    base_ctx.mkdir()
    (base_ctx / "Dockerfile").write_text(_base_dockerfile())
    (base_ctx / "host-ca.crt").write_bytes(HOST_CA.read_bytes())
    hoist("build", "--progress", "plain", "-t", PYTHON_BASE, str(base_ctx), timeout=1200)
    built = hoist("build", "--progress", "plain", "--build-arg", f"BASE={PYTHON_BASE}", "-t", "hoist",
                  str(REPO_ROOT), timeout=1800)
    hoist.built = built.err  # type: ignore[attr-defined]
    yield hoist
    ids = hoist("ps", "-aq", ok=False).out.split()
    if ids:
        hoist("rm", "-f", *ids, ok=False)
