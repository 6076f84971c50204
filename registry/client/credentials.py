"""Registry credentials where docker and podman keep them: ``config.json`` in ``$DOCKER_CONFIG``
(default ``~/.docker``).

A credential helper named by ``credHelpers[<registry>]`` or ``credsStore`` is asked first (the
``docker-credential-<name>`` protocol: ``get``/``store``/``erase`` with the server on stdin), else
``auths``: ``{"<registry>": {"auth": base64("user:pass")}}``. Other keys in that file (proxies,
...) are kept untouched when credentials are written.

Every function takes the file's path (``path=None``: :func:`docker_config_path`, the one place
that reads ``$DOCKER_CONFIG``), so the CLI, the builder's FROM and ``--push`` share one lookup.
Problems with the file or a helper raise :class:`ConfigurationError` with a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from registry.client.auth import Credentials
from registry.client.client import DOCKER_HUB
from registry.client.errors import ConfigurationError

# docker stores Docker Hub credentials under this legacy key.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT_SECONDS = 60


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, default ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` ({} if the file does not exist)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigurationError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise ConfigurationError(f"{path} is not valid JSON: {e} (fix or remove the file)") from None
    if not isinstance(doc, dict):
        raise ConfigurationError(f"{path} must hold a JSON object")
    return doc


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def auth_keys(registry: str) -> list[str]:
    """The keys docker may have stored ``registry`` under."""
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]
    if registry == DOCKER_HUB:
        keys = [DOCKER_HUB_AUTH_KEY, "index.docker.io", "registry-1.docker.io"] + keys
    return keys


def _server_key(registry: str) -> str:
    return DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry


def helper_name(doc: dict[str, Any], registry: str) -> str | None:
    """The credential helper ``doc`` names for ``registry`` (credHelpers, else credsStore)."""
    helpers = doc.get("credHelpers") or {}
    for key in auth_keys(registry):
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str) and helpers[key]:
            return str(helpers[key])
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _helper(name: str, action: str, payload: str, path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(f"docker-credential-{name}")
    if binary is None:
        raise ConfigurationError(f"credential helper docker-credential-{name} (named in {path}) is not on PATH")
    try:
        return subprocess.run([binary, action], input=payload, capture_output=True, text=True,
                              timeout=HELPER_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigurationError(f"credential helper docker-credential-{name} failed: {e}") from None


def _helper_get(name: str, registry: str, path: Path) -> Credentials | None:
    res = _helper(name, "get", _server_key(registry), path)
    if res.returncode != 0:
        if "credentials not found" in (res.stdout + res.stderr).lower():
            return None
        raise ConfigurationError(f"credential helper docker-credential-{name} failed: "
                                 f"{(res.stderr or res.stdout).strip()[:200]}")
    try:
        doc = json.loads(res.stdout)
        return Credentials(str(doc["Username"]), str(doc["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(f"credential helper docker-credential-{name} answered something that "
                                 "is not credentials") from None


def _decode_auth(value: str, key: str, path: Path) -> Credentials:
    try:
        user, sep, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise ConfigurationError(f"the stored credentials for {key} in {path} are malformed "
                                 f"(run 'hoist login {key}' again)")
    return Credentials(user, password)


def load_credentials(registry: str, path: Path | None = None) -> Credentials | None:
    """The stored credentials for ``registry``, or None."""
    path = path or docker_config_path()
    doc = read_json_object(path)
    helper = helper_name(doc, registry)
    if helper is not None:
        found = _helper_get(helper, registry, path)
        if found is not None:
            return found
    auths = doc.get("auths") or {}
    if not isinstance(auths, dict):
        return None
    for key in auth_keys(registry):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            return _decode_auth(str(entry["auth"]), key, path)
        if isinstance(entry, dict) and entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]))
    return None


def store_credentials(registry: str, credentials: Credentials, path: Path | None = None) -> Path:
    """Store credentials in the configured helper (as docker does), else in ``auths``; return the
    config file's path."""
    path = path or docker_config_path()
    doc = read_json_object(path)
    auths = doc.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise ConfigurationError(f"auths in {path} must be a JSON object")
    key = _server_key(registry)
    helper = helper_name(doc, registry)
    if helper is not None:
        payload = json.dumps({"ServerURL": key, "Username": credentials.username, "Secret": credentials.password})
        res = _helper(helper, "store", payload, path)
        if res.returncode != 0:
            raise ConfigurationError(f"credential helper docker-credential-{helper} could not store "
                                     f"credentials: {(res.stderr or res.stdout).strip()[:200]}")
        auths[key] = {}
    else:
        raw = f"{credentials.username}:{credentials.password}".encode()
        auths[key] = {"auth": base64.b64encode(raw).decode()}
    _write_json(path, doc)
    return path


def remove_credentials(registry: str, path: Path | None = None) -> bool:
    """Forget ``registry``'s credentials; False if there were none."""
    path = path or docker_config_path()
    doc = read_json_object(path)
    helper = helper_name(doc, registry)
    erased = False
    if helper is not None:
        erased = _helper(helper, "erase", _server_key(registry), path).returncode == 0
    auths = doc.get("auths") or {}
    gone = [k for k in auth_keys(registry) if isinstance(auths, dict) and k in auths]
    for key in gone:
        del auths[key]
    if gone:
        _write_json(path, doc)
    return bool(gone) or erased
