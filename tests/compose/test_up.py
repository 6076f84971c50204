"""``hoist compose up/ps/logs/exec/run/stop/start/down`` with real containers (busybox images, one
service built from a local Dockerfile by ``hoist build``).

This app runs with ``network_mode: host`` (so it needs no test-made namespace; project networks
and published ports are ``test_networks.py``'s) on loopback ports the test picks, and reaches its
database by name through ``extra_hosts`` (``db=127.0.0.1``): a db serving a named volume (healthcheck, so ``web`` waits on
``service_healthy``), a one-shot seeding job (``service_completed_successfully``), and a web front
built here that fetches from the db and serves the result. Changing the front's image and running
``up`` again recreates only it; ``down`` keeps the named volume, ``down -v`` removes it.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist, Result
from tests.images import busybox_image
from tests.runtime.conftest import need_root_and_busybox


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _wait_for(url: str) -> str:
    last: Exception | None = None
    for _ in range(200):
        try:
            return _get(url)
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered: {last}")


COMPOSE = """\
name: shop
services:
  db:
    image: busybox:latest
    network_mode: host
    volumes: [data:/data]
    command: ["sh", "-c", "echo ok > /data/health && exec /bin/busybox httpd -f -p 127.0.0.1:${DB_PORT} -h /data"]
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:${DB_PORT}/health"]
      interval: 200ms
      retries: 50
    stop_signal: SIGKILL
  seed:
    image: busybox:latest
    network_mode: none
    volumes: [data:/data]
    command: ["sh", "-c", "test -f /data/value || echo $$SEED > /data/value"]
    environment:
      SEED: ${SEED:-hello-from-the-volume}
  web:
    build: ./web
    network_mode: host
    extra_hosts: ["db=127.0.0.1"]
    depends_on:
      db: {condition: service_healthy}
      seed: {condition: service_completed_successfully}
    environment: ["WEB_PORT=${WEB_PORT}", DB_PORT]
    labels: {tier: front}
    stop_signal: SIGKILL
volumes:
  data:
"""

DOCKERFILE = """\
FROM busybox:latest
COPY banner /srv/banner
CMD ["sh", "-c", "mkdir -p /srv/www && cp /srv/banner /srv/www/banner && \
/bin/busybox wget -q -O /srv/www/value http://db:$DB_PORT/value && \
exec /bin/busybox httpd -f -p 127.0.0.1:$WEB_PORT -h /srv/www"]
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[Hoist, Path, dict[str, str]]]:
    need_root_and_busybox()
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    project = tmp_path / "shop"
    (project / "web").mkdir(parents=True)
    (project / "compose.yaml").write_text(COMPOSE)
    (project / "web" / "Dockerfile").write_text(DOCKERFILE)
    (project / "web" / "banner").write_text("v1\n")
    ports = {"DB_PORT": str(_free_port()), "WEB_PORT": str(_free_port())}
    hoist.env.update(ports)
    try:
        yield hoist, project, ports
    finally:
        from runtime.lifecycle import Runtime

        runtime = Runtime(hoist.root)
        for c in runtime.containers.all():
            runtime.remove(c, force=True)


def compose(hoist: Hoist, project: Path, *args: str, ok: bool = True) -> Result:
    return hoist("compose", "-f", str(project / "compose.yaml"), *args, ok=ok, subprocess=True, timeout=300)


def _containers(hoist: Hoist) -> dict[str, tuple[str, dict[str, str]]]:
    from runtime.containers import ContainerStore

    return {c.name: (c.id, c.spec.labels) for c in ContainerStore(hoist.root / "containers").all()}


def test_up_upgrade_one_service_and_down(app: tuple[Hoist, Path, dict[str, str]]) -> None:
    hoist, project, ports = app
    up = compose(hoist, project, "up", "-d", "--wait")
    assert "Healthy" in up.err and "Exited" in up.err, up.err
    web = f"http://127.0.0.1:{ports['WEB_PORT']}"
    assert _wait_for(f"{web}/value") == "hello-from-the-volume\n"
    assert _get(f"{web}/banner") == "v1\n"

    first = _containers(hoist)
    assert sorted(first) == ["shop-db-1", "shop-seed-1", "shop-web-1"]
    labels = first["shop-web-1"][1]
    assert labels["com.docker.compose.project"] == "shop"
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.oneoff"] == "False"
    assert labels["tier"] == "front"
    hashes = compose(hoist, project, "config", "--hash", "*").out.split()
    assert dict(zip(hashes[::2], hashes[1::2], strict=True))["web"] == labels["com.docker.compose.config-hash"]

    # hoist ps finds them by compose's labels.
    ids = hoist("ps", "-q", "--filter", "label=com.docker.compose.project=shop").out.split()
    assert sorted(ids) == sorted(first[n][0][:12] for n in ("shop-db-1", "shop-web-1"))
    only_web = hoist("ps", "-q", "--filter", "label=com.docker.compose.project=shop", "--filter", "label=tier").out
    assert only_web.split() == [first["shop-web-1"][0][:12]]
    assert hoist("ps", "-q", "--filter", "label=com.docker.compose.project=other").out == ""

    ps = compose(hoist, project, "ps")
    assert "shop-db-1" in ps.out and "shop-web-1" in ps.out and "shop-seed-1" not in ps.out   # seed exited
    # db's healthcheck runs in its container (its monitor's probes): healthy, as --wait saw it
    assert "(healthy)" in next(line for line in ps.out.splitlines() if "shop-db-1" in line)
    assert hoist("inspect", "-f", "{{.State.Health.Status}}", "shop-db-1").out == "healthy\n"
    assert "shop-seed-1" in compose(hoist, project, "ps", "-a").out
    # --format as docker compose's: a Go template over each container's summary, or a table of one
    templated = compose(hoist, project, "ps", "-a", "--format", "{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}")
    assert sorted(templated.out.splitlines()) == ["db running healthy 0", "seed exited  0", "web running  0"]
    table = compose(hoist, project, "ps", "--format", "table {{.Name}}\t{{.Project}}").out.splitlines()
    assert table[0].split() == ["NAME", "PROJECT"] and sorted(table[1:])[0].split() == ["shop-db-1", "shop"]
    bad = compose(hoist, project, "ps", "--format", "{{.Nope", ok=False)
    assert bad.code != 0 and "Traceback" not in bad.err and len(bad.err.strip().splitlines()) == 1
    logs = compose(hoist, project, "logs", "seed", "db")
    assert all(line.startswith(("shop-db-1 ", "shop-seed-1 ")) for line in logs.out.splitlines())
    assert compose(hoist, project, "exec", "db", "cat", "/data/value").out == "hello-from-the-volume\n"
    top = compose(hoist, project, "top", "db").out
    assert top.startswith("shop-db-1\n") and "httpd -f -p 127.0.0.1:" in top
    run = compose(hoist, project, "run", "--rm", "--no-deps", "seed", "cat", "/data/value")
    assert run.out == "hello-from-the-volume\n"

    # Nothing changed: nothing is recreated.
    again = compose(hoist, project, "up", "-d")
    assert "Recreate" not in again.err, again.err
    assert {n: i for n, (i, _) in _containers(hoist).items()} == {n: i for n, (i, _) in first.items()}

    # A new web image: only web is recreated; the db keeps its container and the volume its data.
    (project / "web" / "banner").write_text("v2\n")
    upgrade = compose(hoist, project, "up", "-d", "--build")
    second = _containers(hoist)
    assert second["shop-db-1"][0] == first["shop-db-1"][0]
    assert second["shop-seed-1"][0] == first["shop-seed-1"][0]
    assert second["shop-web-1"][0] != first["shop-web-1"][0], upgrade.err
    assert _wait_for(f"{web}/banner") == "v2\n"
    assert _get(f"{web}/value") == "hello-from-the-volume\n"

    # A changed configuration (an environment value) recreates only the service it belongs to.
    hoist.env["SEED"] = "changed"
    compose(hoist, project, "up", "-d", "seed")
    third = _containers(hoist)
    assert third["shop-seed-1"][0] != second["shop-seed-1"][0]
    assert third["shop-db-1"][0] == second["shop-db-1"][0]

    compose(hoist, project, "stop")
    assert not compose(hoist, project, "ps").out.strip().splitlines()[1:]
    compose(hoist, project, "start")
    assert _wait_for(f"{web}/value") == "hello-from-the-volume\n"

    compose(hoist, project, "down")
    assert _containers(hoist) == {}
    assert (hoist.root / "volumes" / "shop_data" / "_data" / "value").read_text() == "hello-from-the-volume\n"
    compose(hoist, project, "up", "-d")
    assert _wait_for(f"{web}/value") == "hello-from-the-volume\n"     # the volume outlived the containers
    compose(hoist, project, "down", "-v")
    assert _containers(hoist) == {}
    assert not (hoist.root / "volumes" / "shop_data").exists()


def test_failed_dependency_leaves_nothing_started(app: tuple[Hoist, Path, dict[str, str]]) -> None:
    hoist, project, _ = app
    text = (project / "compose.yaml").read_text()
    (project / "compose.yaml").write_text(text.replace('test -f /data/value || echo $$SEED > /data/value', "exit 3"))
    result = compose(hoist, project, "up", "-d", ok=False)
    assert result.code == 1
    errors = [ln for ln in result.err.splitlines() if ln.startswith("hoist compose: ") and "warning" not in ln]
    assert errors == ['hoist compose: service "seed" didn\'t complete successfully: exit 3'], result.err
    assert _containers(hoist) == {}


def test_build_failure_is_one_error_naming_the_service(app: tuple[Hoist, Path, dict[str, str]]) -> None:
    hoist, project, _ = app
    (project / "web" / "Dockerfile").write_text("FROM busybox:latest\nRUN exit 7\n")
    result = compose(hoist, project, "up", "-d", ok=False)
    assert result.code == 1
    assert 'hoist compose: service "web": build: build failed' in result.err, result.err
    assert _containers(hoist) == {}


def test_unpullable_image_is_one_error(app: tuple[Hoist, Path, dict[str, str]]) -> None:
    hoist, project, _ = app
    (project / "compose.yaml").write_text("services:\n  a:\n    image: 127.0.0.1:9/none/such:1\n    network_mode: none\n")
    result = compose(hoist, project, "up", "-d", ok=False)
    assert result.code == 1
    assert 'service "a": image: cannot pull 127.0.0.1:9/none/such:1' in result.err, result.err


def test_attached_up_prints_prefixed_output_until_the_containers_exit(tmp_path: Path) -> None:
    need_root_and_busybox()
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    project = tmp_path / "att"
    project.mkdir()
    (project / "compose.yaml").write_text(
        "services:\n"
        "  one:\n    image: busybox:latest\n    network_mode: none\n    command: [sh, -c, 'echo first; echo second']\n"
        "  two:\n    image: busybox:latest\n    network_mode: none\n    command: [echo, from-two]\n"
        "    depends_on: {one: {condition: service_completed_successfully}}\n")
    try:
        result = compose(hoist, project, "up")
        lines = result.out.splitlines()
        assert sorted(lines) == ["att-one-1 | first", "att-one-1 | second", "att-two-1 | from-two"], result.out
        assert lines.index("att-one-1 | first") < lines.index("att-one-1 | second")
        tail = compose(hoist, project, "logs", "--tail", "1", "one")
        assert tail.out == "att-one-1 | second\n"
        assert compose(hoist, project, "logs", "--no-log-prefix", "two").out == "from-two\n"
        compose(hoist, project, "rm", "two")
        assert "att-two-1" not in compose(hoist, project, "ps", "-a").out
        assert "att-one-1" in compose(hoist, project, "ps", "-a").out
        missing = compose(hoist, project, "exec", "one", "true", ok=False)
        assert missing.code == 1 and 'service "one" is not running' in missing.err
        unknown = compose(hoist, project, "up", "-d", "nope", ok=False)
        assert unknown.code == 1 and "no such service: nope" in unknown.err
    finally:
        compose(hoist, project, "down", ok=False)
