"""Credentials through a docker-credential-* helper (credsStore / credHelpers), against hoist's
registry with htpasswd auth."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Hoist
from tests.images import distinct_busybox_image as busybox_image
from tests.registry.http import ServerProcess, htpasswd_registry

# A real implementation of the helper protocol, keeping its secrets in a JSON file.
HELPER = """#!{python}
import json, sys
path = {store!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action = sys.argv[1]
if action == "get":
    server = sys.stdin.read().strip()
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    json.dump({{"ServerURL": server, **data[server]}}, sys.stdout)
elif action == "store":
    doc = json.load(sys.stdin)
    data[doc["ServerURL"]] = {{"Username": doc["Username"], "Secret": doc["Secret"]}}
    json.dump(data, open(path, "w"))
elif action == "erase":
    data.pop(sys.stdin.read().strip(), None)
    json.dump(data, open(path, "w"))
"""


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[ServerProcess]:
    server = htpasswd_registry(tmp_path, {"ci": "pw"})
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["credsStore", "credHelpers"])
def test_login_push_pull_logout_through_a_helper(tmp_path: Path, auth_registry: ServerProcess, mode: str) -> None:
    import sys
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-hoisttest"
    secrets = tmp_path / "secrets.json"
    helper.write_text(HELPER.format(python=sys.executable, store=str(secrets)))
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    h = Hoist(tmp_path)
    h.env["PATH"] = f"{bindir}{os.pathsep}{h.env['PATH']}"
    h.docker_config.mkdir(parents=True)
    conf = {"credsStore": "hoisttest"} if mode == "credsStore" else {"credHelpers": {auth_registry.addr: "hoisttest"}}
    (h.docker_config / "config.json").write_text(json.dumps(conf))
    h("login", "-u", "ci", "--password-stdin", auth_registry.addr, stdin="pw\n")
    stored = json.loads((h.docker_config / "config.json").read_text())
    assert stored["auths"][auth_registry.addr] == {}          # the secret is in the helper, not the file
    assert json.loads(secrets.read_text())[auth_registry.addr] == {"Username": "ci", "Secret": "pw"}
    busybox_image(h.layout(), f"{auth_registry.addr}/team/bb:1")
    h("push", f"{auth_registry.addr}/team/bb:1")
    h("rmi", f"{auth_registry.addr}/team/bb:1")
    h("pull", f"{auth_registry.addr}/team/bb:1")
    h("logout", auth_registry.addr)
    assert auth_registry.addr not in json.loads(secrets.read_text())
    r = h("pull", f"{auth_registry.addr}/team/bb:1", ok=False)
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1


def test_missing_helper_is_one_line_error(tmp_path: Path, auth_registry: ServerProcess) -> None:
    h = Hoist(tmp_path)
    h.docker_config.mkdir(parents=True)
    (h.docker_config / "config.json").write_text(json.dumps({"credsStore": "does-not-exist"}))
    r = h("pull", f"{auth_registry.addr}/team/bb:1", ok=False)
    assert r.code != 0
    assert "docker-credential-does-not-exist" in r.err and len(r.err.strip().splitlines()) == 1
