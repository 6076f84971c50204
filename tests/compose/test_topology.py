"""``docker-compose.test.yml`` (the integration topology) validates against the specification and
normalises as expected: two identical registry replicas of hoist's image on the moto S3 bucket
with token auth, started after the bucket exists, and the client (profile ``client``) after both
replicas are healthy. Then the real thing: built by ``hoist compose build`` on the host (pip
reaches PyPI there; hoist's image is a cache hit of the one ``conftest.hoist_image`` built), brought
up by ``hoist compose up -d --wait`` inside a test "host" network namespace (its bridge, its nft
rules), the client's round trip through both replicas, and ``down -v`` leaving nothing."""

from __future__ import annotations

from pathlib import Path

import yaml

from hoist.compose.engine import config_hash
from tests.compose.conftest import PYTHON_BASE
from hoist.compose.loader import LoadOptions, load_project
from registry.server import config as registry_config
from tests.cli.helpers import REPO_ROOT, Hoist
from tests.runtime.test_network import Bed, Res

FILE = REPO_ROOT / "docker-compose.test.yml"


def _load(**kw: object) -> object:
    warnings: list[str] = []
    project = load_project(LoadOptions(files=[str(FILE)], cwd=str(REPO_ROOT), environ={}, **kw),  # type: ignore[arg-type]
                           warn=warnings.append)
    assert warnings == [], warnings
    return project


def test_topology_normalises() -> None:
    project = _load()
    assert project.name == "hoist-test"
    assert project.order() == ["s3", "bucket", "registry-1", "registry-2"]      # client is in a profile
    r1, r2 = project.services["registry-1"], project.services["registry-2"]
    assert config_hash(r1) == config_hash(r2)
    assert r1["image"] == "hoist-test/hoist:latest"
    assert r1["build"] == {"args": {"BASE": "python:3.11-slim-bookworm"}, "context": str(REPO_ROOT),
                           "dockerfile": "Dockerfile"}
    assert r1["depends_on"] == {"bucket": {"condition": "service_completed_successfully", "required": True}}
    assert project.services["bucket"]["depends_on"]["s3"]["condition"] == "service_healthy"
    topo = REPO_ROOT / "tests" / "compose" / "topology"
    assert [v["source"] for v in r1["volumes"]] == [str(topo / n) for n in ("registry.yml", "token-key.pem", "htpasswd")]
    assert all(Path(v["source"]).is_file() for v in r1["volumes"])
    assert project.networks == {"registry": {"name": "hoist-test_registry"}}
    inline = project.services["s3"]["build"]["dockerfile_inline"]
    assert "FROM ${BASE}\n" in inline                                             # $$ kept for the builder

    with_client = _load(profiles=["client"])
    client = with_client.services["client"]
    assert with_client.order()[-1] == "client"
    assert client["entrypoint"] == ["python3", "/topology/roundtrip.py"]
    assert set(client["depends_on"]) == {"registry-1", "registry-2"}


def test_topology_base_is_a_variable() -> None:
    project = load_project(LoadOptions(files=[str(FILE)], cwd=str(REPO_ROOT), environ={"HOIST_TEST_BASE": "local/py:3"}))
    assert project.services["s3"]["build"]["args"] == {"BASE": "local/py:3"}
    assert project.services["registry-2"]["build"]["args"] == {"BASE": "local/py:3"}


def test_registry_config_of_the_replicas_loads(tmp_path: Path) -> None:
    """The replicas' config, its key and users as mounted (/etc/hoist is the topology folder)."""
    topo = REPO_ROOT / "tests" / "compose" / "topology"
    text = (topo / "registry.yml").read_text().replace("/etc/hoist/", f"{topo}/")
    (tmp_path / "registry.yml").write_text(text)
    cfg = registry_config.load(str(tmp_path / "registry.yml"))
    assert cfg.driver == "s3"
    assert cfg.driver_params["regionendpoint"] == "http://s3:5000"
    assert yaml.safe_load(text)["auth"]["token"]["issuer"] == "hoist-test"


def test_services_plan_onto_the_registry_network() -> None:
    from hoist.compose import network

    project = _load(profiles=["client"])
    assert network.used_networks(project, list(project.services)) == ["registry"]
    for name, svc in project.services.items():
        warnings: list[str] = []
        plan = network.plan(project, name, svc, f"c-{name}", warnings.append)
        assert plan.mode == f"{project.name}_registry"
        assert plan.joins[0].aliases[0] == name and plan.joins[0].aliases[-1] == f"c-{name}"
        assert warnings == []


def test_topology_comes_up_round_trips_and_goes(hoist_image: Hoist) -> None:
    env = {"HOIST_TEST_BASE": PYTHON_BASE}
    hoist_image.env.update(env)
    built = hoist_image("compose", "-f", str(FILE), "build", subprocess=True, timeout=1800)
    assert "moto" in built.err                                      # the S3 image: pip install moto[server]
    images = hoist_image("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").out
    ids = dict(line.split() for line in images.splitlines())
    assert ids["hoist-test/hoist:latest"] == ids["hoist:latest"]    # the same build, from the cache

    bed = Bed(hoist_image.root).start()
    try:
        pristine = bed.kernel_state()

        def compose(*args: str) -> Res:
            return bed.hoist("compose", "-f", str(FILE), *args, env=bed.env(**env))

        up = compose("up", "-d", "--wait")
        assert up.code == 0, f"up -> {up.code}\n{up.out}\n{up.err}"
        ps = compose("ps", "--format", "{{.Service}} {{.Status}}")
        status = dict(line.split(" ", 1) for line in ps.out.splitlines())
        assert status["registry-1"].endswith("(healthy)") and status["registry-2"].endswith("(healthy)"), ps.out
        assert "bucket" not in status or status["bucket"].startswith("Exited (0)"), ps.out

        trip = compose("run", "--rm", "client")
        assert trip.code == 0, f"client -> {trip.code}\n{trip.out}\n{trip.err}"
        assert "round trip ok: sha256:" in trip.out, trip.out

        down = compose("down", "-v")
        assert down.code == 0, down.err
        assert bed.hoist("ps", "-aq").out == "" and "hoist-test_" not in bed.ok("network", "ls")
        assert bed.kernel_state() == pristine
    finally:
        bed.stop()
