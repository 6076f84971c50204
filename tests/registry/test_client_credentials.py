"""Credential lookup, certs.d and the insecure list in the registry client, with paths passed in
(no CLI, no environment): what the builder's FROM and --push use."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from registry.client.auth import Credentials
from registry.client.config import ClientConfig, open_client
from registry.client.credentials import load_credentials, remove_credentials, store_credentials
from registry.client.errors import ConfigurationError
from registry.client.tls import tls_context
from tests.cli.test_credential_helpers import HELPER


def test_auths_round_trip_in_a_given_file(tmp_path: Path) -> None:
    path = tmp_path / "somewhere" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"}},
                                "proxies": {"keep": "me"}}))
    assert load_credentials("docker.io", path) == Credentials("hub", "hubpw")
    assert load_credentials("registry.local:5000", path) is None
    assert store_credentials("registry.local:5000", Credentials("u", "p:w"), path) == path
    assert load_credentials("registry.local:5000", path) == Credentials("u", "p:w")
    doc = json.loads(path.read_text())
    assert doc["proxies"] == {"keep": "me"} and doc["auths"]["registry.local:5000"] == {"auth": "dTpwOnc="}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert remove_credentials("registry.local:5000", path) and not remove_credentials("registry.local:5000", path)


def test_helper_protocol_get_store_erase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-unit"
    secrets = tmp_path / "secrets.json"
    helper.write_text(HELPER.format(python=sys.executable, store=str(secrets)))
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"r.example": "unit"}}))
    assert load_credentials("r.example", path) is None                   # "credentials not found"
    store_credentials("r.example", Credentials("ci", "pw"), path)
    assert json.loads(path.read_text())["auths"]["r.example"] == {}      # the secret is in the helper
    assert load_credentials("r.example", path) == Credentials("ci", "pw")
    assert remove_credentials("r.example", path)
    assert load_credentials("r.example", path) is None


@pytest.mark.parametrize("content, words", [
    ("{not json", "is not valid JSON"),
    ("[1]", "must hold a JSON object"),
    (json.dumps({"auths": {"r.example": {"auth": "!!!"}}}), "malformed"),
    (json.dumps({"credsStore": "absent-helper"}), "docker-credential-absent-helper"),
])
def test_unusable_config_is_one_line_error(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=words) as info:
        load_credentials("r.example", path)
    assert "\n" not in str(info.value)


def test_certs_d_client_certificate_without_key_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "certs.d" / "r.example:5000"
    d.mkdir(parents=True)
    assert tls_context("r.example:5000", [tmp_path / "elsewhere"]) is None
    (d / "client.cert").write_text("x")
    with pytest.raises(ConfigurationError, match=r"has no client\.key"):
        tls_context("r.example:5000", [tmp_path])


def test_insecure_list_and_open_client(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"insecure-registries": ["registry.local:5000"]}))
    config = ClientConfig(tmp_path / "docker" / "config.json", (tmp_path,), tmp_path / "config.json")
    assert config.is_insecure("registry.local:5000") and not config.is_insecure("other:5000")
    assert open_client("registry.local:5000", config)._fallback == "http://registry.local:5000"
    assert open_client("other:5000", config)._fallback is None
    (tmp_path / "config.json").write_text(json.dumps({"insecure-registries": "registry.local:5000"}))
    with pytest.raises(ConfigurationError, match="must be a list"):
        config.is_insecure("registry.local:5000")


def test_from_env_reads_docker_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    config = ClientConfig.from_env(tmp_path / "state")
    assert config.docker_config == tmp_path / "dc" / "config.json"
    assert config.certs_roots[0] == tmp_path / "state" and config.insecure_file == tmp_path / "state" / "config.json"
