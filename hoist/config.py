"""Client configuration: registry credentials and insecure registries.

Credentials live where docker and podman keep them, ``$DOCKER_CONFIG/config.json`` (default
``~/.docker/config.json``): a credential helper named by ``credHelpers[<registry>]`` or
``credsStore`` (the ``docker-credential-<name>`` protocol: get/store/erase over stdin), else
``auths``: ``{"<registry>": {"auth": base64("user:pass")}}``. Other keys in that file (proxies,
...) are kept untouched when hoist writes it.

Certificates for a registry with a private CA, or that wants a client certificate, go where
docker and podman look for them: ``certs.d/<registry>/`` under ``$HOIST_ROOT``,
``/etc/docker`` or ``/etc/containers``: ``*.crt`` are CAs to trust, ``NAME.cert`` + ``NAME.key``
a client certificate.

Insecure registries (plain HTTP, or HTTPS without verification) are listed in
``$HOIST_ROOT/config.json`` as ``{"insecure-registries": ["host:port", ...]}``; loopback
registries are always spoken to over plain HTTP, as docker does.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Iterator

from hoist.errors import UserError
from hoist.paths import hoist_root, images_dir
from registry.client.auth import Credentials
from registry.client.client import DOCKER_HUB, RegistryClient
from registry.client.errors import ClientError
from storage.fsutil import secure_store_root
from storage.errors import NameInvalid, StorageError, TagInvalid
from storage.layout import ImageLayout
from storage.platform import Platform
from storage.reference import Reference, parse_reference

# docker stores Docker Hub credentials under this legacy key.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON: {e}", hint="fix or remove the file") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path} must hold a JSON object")
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


def _auth_keys(registry: str) -> list[str]:
    """The keys docker may have stored ``registry`` under."""
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]
    if registry == DOCKER_HUB:
        keys = [DOCKER_HUB_AUTH_KEY, "index.docker.io", "registry-1.docker.io"] + keys
    return keys


def _helper_name(doc: dict[str, Any], registry: str) -> str | None:
    helpers = doc.get("credHelpers") or {}
    for key in _auth_keys(registry):
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str) and helpers[key]:
            return helpers[key]
    store = doc.get("credsStore")
    return store if isinstance(store, str) and store else None


def _helper(name: str, action: str, payload: str) -> subprocess.CompletedProcess:
    binary = shutil.which(f"docker-credential-{name}")
    if binary is None:
        raise UserError(f"credential helper docker-credential-{name} (named in {docker_config_path()}) "
                        "is not on PATH")
    try:
        return subprocess.run([binary, action], input=payload, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"credential helper docker-credential-{name} failed: {e}") from None


def _helper_get(name: str, registry: str) -> Credentials | None:
    server = DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry
    res = _helper(name, "get", server)
    if res.returncode != 0:
        if "credentials not found" in (res.stdout + res.stderr).lower():
            return None
        raise UserError(f"credential helper docker-credential-{name} failed: "
                        f"{(res.stderr or res.stdout).strip()[:200]}")
    try:
        doc = json.loads(res.stdout)
        return Credentials(str(doc["Username"]), str(doc["Secret"]))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"credential helper docker-credential-{name} answered something that is not "
                        "credentials") from None


def load_credentials(registry: str) -> Credentials | None:
    """The stored credentials for ``registry``, or None."""
    doc = _read_json(docker_config_path())
    helper = _helper_name(doc, registry)
    if helper is not None:
        found = _helper_get(helper, registry)
        if found is not None:
            return found
    auths = doc.get("auths") or {}
    for key in _auth_keys(registry):
        entry = auths.get(key)
        if isinstance(entry, dict) and entry.get("auth"):
            return _decode_auth(entry["auth"], key)
        if isinstance(entry, dict) and entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"])
    return None


def _decode_auth(value: str, key: str) -> Credentials:
    try:
        user, sep, password = base64.b64decode(value).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise UserError(f"the stored credentials for {key} in {docker_config_path()} are malformed",
                        hint=f"run 'hoist login {key}' again")
    return Credentials(user, password)


def store_credentials(registry: str, credentials: Credentials) -> Path:
    """Store credentials in the configured helper (as docker does), else in ``auths``."""
    path = docker_config_path()
    doc = _read_json(path)
    auths = doc.setdefault("auths", {})
    key = DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry
    helper = _helper_name(doc, registry)
    if helper is not None:
        payload = json.dumps({"ServerURL": key, "Username": credentials.username, "Secret": credentials.password})
        res = _helper(helper, "store", payload)
        if res.returncode != 0:
            raise UserError(f"credential helper docker-credential-{helper} could not store credentials: "
                            f"{(res.stderr or res.stdout).strip()[:200]}")
        auths[key] = {}
    else:
        raw = f"{credentials.username}:{credentials.password}".encode()
        auths[key] = {"auth": base64.b64encode(raw).decode()}
    _write_json(path, doc)
    return path


def remove_credentials(registry: str) -> bool:
    """Forget ``registry``'s credentials; False if there were none."""
    path = docker_config_path()
    doc = _read_json(path)
    helper = _helper_name(doc, registry)
    erased = False
    if helper is not None:
        server = DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry
        erased = _helper(helper, "erase", server).returncode == 0
    auths = doc.get("auths") or {}
    gone = [k for k in _auth_keys(registry) if k in auths]
    for key in gone:
        del auths[key]
    if gone:
        _write_json(path, doc)
    return bool(gone) or erased


def hoist_config_path() -> Path:
    return hoist_root() / "config.json"


def insecure_registries(extra: Iterable[str] = ()) -> set[str]:
    listed = _read_json(hoist_config_path()).get("insecure-registries") or []
    if not isinstance(listed, list):
        raise UserError(f"insecure-registries in {hoist_config_path()} must be a list")
    return {str(r) for r in listed} | set(extra)


def is_insecure(registry: str, extra: Iterable[str] = ()) -> bool:
    return registry in insecure_registries(extra)


# -- wiring the configuration into the client and the store ------------------------------------

def certs_dirs(registry: str) -> list[Path]:
    return [base / "certs.d" / registry for base in (hoist_root(), Path("/etc/docker"), Path("/etc/containers"))]


def tls_context(registry: str) -> ssl.SSLContext | None:
    """System CAs plus the registry's certs.d CAs and client certificate; None when it has none."""
    dirs = [d for d in certs_dirs(registry) if d.is_dir()]
    if not dirs:
        return None
    ctx = ssl.create_default_context()
    try:
        for d in dirs:
            for ca in sorted(d.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(ca))
            for cert in sorted(d.glob("*.cert")):
                key = cert.with_suffix(".key")
                if not key.exists():
                    raise UserError(f"client certificate {cert} has no {key.name} beside it")
                ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        raise UserError(f"cannot use the certificates in {', '.join(map(str, dirs))}: {e}") from None
    return ctx


def open_client(registry: str, insecure: bool = False, connections: int = 8,
                credentials: Credentials | None = None) -> RegistryClient:
    """A client for ``registry`` with ``credentials`` (default: the stored ones), its insecure
    setting and its certificates."""
    return RegistryClient(registry, credentials=credentials or load_credentials(registry),
                          insecure=insecure or is_insecure(registry), connections=connections,
                          tls=tls_context(registry))


def local_store() -> ImageLayout:
    secure_store_root(hoist_root())
    return ImageLayout(images_dir()).init()


def parse_ref(text: str) -> Reference:
    try:
        return parse_reference(text)
    except (NameInvalid, TagInvalid) as e:
        raise UserError(str(e)) from None


def parse_platform(text: str | None) -> Platform | None:
    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError as e:
        raise UserError(str(e), hint="e.g. linux/amd64 or linux/arm/v7") from None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn client and store errors into one-line UserErrors (their messages already name what
    went wrong); an interrupted transfer is left as it is, to resume next time."""
    try:
        yield
    except ClientError as e:
        raise UserError(str(e)) from None
    except StorageError as e:
        raise UserError(str(e)) from None
