"""Registry configuration: a YAML file in CNCF Distribution's shape (so an existing
``config.yml`` mostly carries over), an embedded default, and command-line overrides.

::

    version: 0.1
    http:
      addr: 127.0.0.1:5000
      tls: {certificate: /etc/hoist/tls.crt, key: /etc/hoist/tls.key}   # optional: serve HTTPS
      idletimeout: 5m           # close connections idle this long (0: never)
      readheadertimeout: 60s    # a request's headers must arrive within this (0: no limit)
    storage:
      filesystem: {rootdirectory: /var/lib/hoist/registry}   # or  inmemory: {}
      delete: {enabled: true}                                # hoist's default: enabled
      automaticcrossmount: true     # a mount without from= links any blob the store holds
      maintenance: {uploadpurging: {enabled: true, age: 168h, interval: 24h, dryrun: false}}
    manifests: {maxsize: 4194304}                            # bytes
    log: {accesslog: {disabled: false}}
    auth: ...                                                # see registry/auth/config.py

Unknown keys are refused, naming the key (``KNOWN_KEYS``); a few Distribution keys that change
nothing here (log.level, storage.cache, http.headers, health) are accepted and ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from registry.config_values import ConfigError, duration_seconds

if TYPE_CHECKING:
    import ssl

    from registry.auth.config import AuthSetup

DEFAULT_ADDR = "127.0.0.1:5000"
DEFAULT_ROOT = "/var/lib/hoist/registry"


@dataclass
class Config:
    addr: str = DEFAULT_ADDR
    driver: str = "filesystem"
    driver_params: dict[str, Any] = field(default_factory=lambda: {"rootdirectory": DEFAULT_ROOT})
    delete_enabled: bool = True
    automatic_crossmount: bool = True
    max_manifest_bytes: int = 4 << 20
    access_log: bool = True
    upload_purge_age: float = 7 * 24 * 3600.0
    upload_purge_interval: float = 24 * 3600.0
    upload_purging: bool = True
    upload_purge_dryrun: bool = False
    auth: AuthSetup | None = None
    tls_certificate: str | None = None
    tls_key: str | None = None
    # A connection with no request in flight is closed after idle_timeout (also before its first
    # request); a request's headers must arrive within read_header_timeout of its first byte.
    # 0 turns either off. A request body is not timed: a slow upload that keeps sending lives.
    idle_timeout: float = 300.0
    read_header_timeout: float = 60.0

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_addr(self.addr)


def server_tls_context(cfg: Config) -> ssl.SSLContext | None:
    """The TLS context for serving HTTPS, or None for plain HTTP; ConfigError if unusable."""
    if not cfg.tls_certificate:
        return None
    if not cfg.tls_key:
        raise ConfigError("http.tls needs both certificate and key")
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (cfg.tls_certificate, cfg.tls_key):
        if not os.access(path, os.R_OK):
            raise ConfigError(f"http.tls: cannot read {path}")
    try:
        ctx.load_cert_chain(cfg.tls_certificate, cfg.tls_key)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"http.tls: cannot use {cfg.tls_certificate} / {cfg.tls_key}: {e}") from None
    return ctx


def parse_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"http.addr: expected HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


IGNORED = "ignored"   # a Distribution key hoist accepts and does not use (harmless to ignore)
VALUE = "value"       # a leaf read (and checked) by from_dict or registry/auth/config.py
# Every key hoist knows, as nested sections. Anything else is an error naming the key, so a
# misspelt key (rootdirectroy) never silently sends data somewhere else.
KNOWN_KEYS: dict[str, Any] = {
    "version": VALUE,
    "log": {"level": IGNORED, "formatter": IGNORED, "fields": IGNORED, "accesslog": {"disabled": VALUE}},
    "loglevel": IGNORED,
    "http": {"addr": VALUE, "idletimeout": VALUE, "readheadertimeout": VALUE,
             "tls": {"certificate": VALUE, "key": VALUE}, "headers": IGNORED, "secret": IGNORED},
    "storage": {
        "filesystem": {"rootdirectory": VALUE},
        "inmemory": {},
        "s3": {k: VALUE for k in ("bucket", "region", "regionendpoint", "accesskey", "secretkey",
                                  "rootdirectory", "chunksize", "redirect")},
        "delete": {"enabled": VALUE},
        "maintenance": {"uploadpurging": {"enabled": VALUE, "age": VALUE, "interval": VALUE, "dryrun": VALUE}},
        "automaticcrossmount": VALUE,
        "cache": IGNORED,
    },
    "manifests": {"maxsize": VALUE},
    "health": IGNORED,
    "auth": {
        "htpasswd": {"realm": VALUE, "path": VALUE},
        "token": {k: VALUE for k in ("realm", "service", "issuer", "rootcertbundle", "signingkey",
                                     "htpasswd", "expiration", "acl")},
    },
}
_DRIVERS = ("filesystem", "inmemory", "s3")


def check_keys(doc: Any, known: dict[str, Any] = KNOWN_KEYS, where: str = "") -> None:
    """ConfigError naming the first key hoist does not know."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping")
    for key, value in doc.items():
        path = f"{where}.{key}" if where else str(key)
        spec = known.get(key) if isinstance(key, str) else None
        if spec is None:
            choices = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"unknown config key {path!r} (known here: {choices})")
        if isinstance(spec, dict):
            check_keys(value, spec, path)


def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping")
    return value


def from_dict(doc: dict[str, Any]) -> Config:
    storage_section = doc.get("storage")
    storage_keys: dict[str, Any] = storage_section if isinstance(storage_section, dict) else {}
    for key in storage_keys:
        if key not in KNOWN_KEYS["storage"]:
            # Under storage: an unknown key is most likely a driver name.
            raise ConfigError(f"storage.{key}: unknown storage driver or key {key!r} "
                              f"(drivers: {', '.join(_DRIVERS)})")
    check_keys(doc)
    cfg = Config()
    http = _section(doc, "http")
    if "addr" in http:
        cfg.addr = str(http["addr"])
        parse_addr(cfg.addr)
    if "idletimeout" in http:
        cfg.idle_timeout = duration_seconds(http["idletimeout"], "http.idletimeout")
    if "readheadertimeout" in http:
        cfg.read_header_timeout = duration_seconds(http["readheadertimeout"], "http.readheadertimeout")
    tls = http.get("tls") or {}
    if not isinstance(tls, dict):
        raise ConfigError("http.tls: expected a mapping")
    if tls:
        if not tls.get("certificate") or not tls.get("key"):
            raise ConfigError("http.tls needs both certificate and key")
        cfg.tls_certificate, cfg.tls_key = str(tls["certificate"]), str(tls["key"])
    storage = _section(doc, "storage")
    drivers = [k for k in storage if k in _DRIVERS]
    if len(drivers) > 1:
        raise ConfigError(f"storage: more than one driver configured: {', '.join(drivers)}")
    if drivers:
        cfg.driver = drivers[0]
        params = storage[cfg.driver] or {}
        if not isinstance(params, dict):
            raise ConfigError(f"storage.{cfg.driver}: expected a mapping")
        cfg.driver_params = dict(params)
    delete = storage.get("delete") or {}
    if "enabled" in delete:
        cfg.delete_enabled = bool(delete["enabled"])
    if "automaticcrossmount" in storage:
        cfg.automatic_crossmount = bool(storage["automaticcrossmount"])
    purging = (storage.get("maintenance") or {}).get("uploadpurging") or {}
    if "enabled" in purging:
        cfg.upload_purging = bool(purging["enabled"])
    if "age" in purging:
        cfg.upload_purge_age = duration_seconds(purging["age"], "storage.maintenance.uploadpurging.age")
    if "interval" in purging:
        cfg.upload_purge_interval = duration_seconds(purging["interval"], "storage.maintenance.uploadpurging.interval")
    if "dryrun" in purging:
        cfg.upload_purge_dryrun = bool(purging["dryrun"])
    manifests = _section(doc, "manifests")
    if "maxsize" in manifests:
        size = manifests["maxsize"]
        if not isinstance(size, int) or size <= 0:
            raise ConfigError("manifests.maxsize: expected a positive number of bytes")
        cfg.max_manifest_bytes = size
    log = _section(doc, "log")
    if (log.get("accesslog") or {}).get("disabled"):
        cfg.access_log = False
    if doc.get("auth"):
        from registry.auth.config import build_auth
        cfg.auth = build_auth(doc["auth"])   # its AuthConfigError is a ConfigError naming the key
    return cfg


def load(path: str | Path | None) -> Config:
    """Load a YAML config file, or the embedded default when ``path`` is None."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top")
    return from_dict(doc)
