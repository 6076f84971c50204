"""Registry configuration: unknown keys are refused by name; the one duration parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from registry.config_values import ConfigError, duration_seconds
from registry.server.config import from_dict

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text,key", [
    ("storage: {filesystem: {rootdirectroy: /tmp/x}}", "storage.filesystem.rootdirectroy"),
    ("storage: {s3: {bucket: b, regoin: eu-west-1}}", "storage.s3.regoin"),
    ("stroage: {inmemory: {}}", "stroage"),
    ("http: {addr: '127.0.0.1:5000', idle: 5m}", "http.idle"),
    ("storage: {inmemory: {}, maintenance: {uploadpurging: {enabeld: true}}}",
     "storage.maintenance.uploadpurging.enabeld"),
    ("auth: {token: {signingkey: /k, acl: []}, htpasswd: null}", None),
    ("auth: {htpasswd: {path: /p, realms: x}}", "auth.htpasswd.realms"),
])
def test_unknown_keys_are_named(text: str, key: str | None) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(yaml.safe_load(text))
    if key is not None:
        assert f"unknown config key {key!r}" in str(e.value)
    else:
        assert "cannot read signing key" in str(e.value)  # the keys were fine; the file is not


def test_acl_rule_with_an_unknown_key(tmp_path: Path) -> None:
    from registry.auth.access import ACL
    from registry.auth.errors import AuthConfigError

    with pytest.raises(AuthConfigError, match="acl\\[0\\]: unknown key 'action'"):
        ACL.from_config([{"account": "a", "name": "*", "actions": ["pull"], "action": "push"}])


def test_known_keys_and_distributions_default_config_are_accepted() -> None:
    cfg = from_dict(yaml.safe_load("""
version: 0.1
log: {fields: {service: registry}, level: info, accesslog: {disabled: true}}
storage:
  cache: {blobdescriptor: inmemory}
  filesystem: {rootdirectory: /var/lib/registry}
  delete: {enabled: false}
  maintenance: {uploadpurging: {enabled: true, age: 0, interval: 1h, dryrun: false}}
http:
  addr: :5000
  headers: {X-Content-Type-Options: [nosniff]}
  idletimeout: 0
  readheadertimeout: 10s
health: {storagedriver: {enabled: true, interval: 10s, threshold: 3}}
"""))
    assert cfg.driver_params == {"rootdirectory": "/var/lib/registry"}
    assert not cfg.delete_enabled and not cfg.access_log
    assert cfg.upload_purge_age == 0 and cfg.upload_purge_interval == 3600
    assert cfg.idle_timeout == 0 and cfg.read_header_timeout == 10


@pytest.mark.parametrize("text,seconds", [
    ("0", 0.0), ("+0", 0.0), (0, 0.0), ("0s", 0.0), ("90s", 90.0), ("1h30m", 5400.0), (".5s", 0.5),
    ("1.5h", 5400.0), ("250ms", 0.25), (2.5, 2.5), ("-0", 0.0), (" 90s ", 90.0), ("168h", 604800.0),
])
def test_durations(text: object, seconds: float) -> None:
    assert duration_seconds(text, "k") == seconds


@pytest.mark.parametrize("text", ["", "30", "-1h", "1d", "h", "1h 30m", "nan", float("nan"), -1, "1e3s",
                                  float("inf"), True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError, match=r"^k: "):
        duration_seconds(text, "k")


def test_token_expiration_is_a_duration_naming_its_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = tmp_path / "key.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    token = {"signingkey": str(key), "acl": []}
    cfg = from_dict({"auth": {"token": {**token, "expiration": "1h30m"}}})
    assert cfg.auth is not None and cfg.auth.issuer is not None and cfg.auth.issuer.expiration == 5400.0
    for bad in ("5d", "-5m"):
        with pytest.raises(ConfigError, match=r"^auth\.token\.expiration: "):
            from_dict({"auth": {"token": {**token, "expiration": bad}}})


def test_auth_config_does_not_import_the_server() -> None:
    # registry/auth/ must not reach back into registry/server/ (the old setup.py <-> config.py circle).
    code = ("import sys, registry.auth.config, registry.config_values; "
            "bad = sorted(m for m in sys.modules if m.startswith('registry.server')); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def _hoist(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hoist.cli", "registry", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_serve_refuses_a_misspelt_key_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage: {{filesystem: {{rootdirectroy: {tmp_path / 'elsewhere'}}}}}\n")
    r = _hoist("serve", "--config", str(cfg), "--addr", "127.0.0.1:1")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "'storage.filesystem.rootdirectroy'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "elsewhere").exists()


def test_gc_grace_zero_means_zero(tmp_path: Path) -> None:
    r = _hoist("gc", "--root", str(tmp_path / "root"), "--grace", "0", "--dry-run")
    assert r.returncode == 0, r.stderr
    r = _hoist("gc", "--root", str(tmp_path / "root"), "--grace", "-5m", "--dry-run")
    assert r.returncode != 0 and "--grace" in r.stderr and "Traceback" not in r.stderr
