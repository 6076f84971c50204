"""Short syntax to long syntax, one file at a time (before the files are merged), as docker
compose's ``config`` prints the model.

- ``ports: ["127.0.0.1:8080:80/udp"]`` → ``{mode: ingress, host_ip, target: 80, published: "8080",
  protocol: udp}``; ranges are expanded (``8000-8001:80-81`` is two entries);
- ``volumes: ["data:/d:ro", "./src:/src"]`` → ``{type: volume, source: data, target: /d,
  read_only: true, volume: {}}``, ``{type: bind, source: /abs/src, ..., bind: {create_host_path:
  true}}``; relative paths are resolved against the base directory given (the project directory
  for ``-f`` files, the file's own directory for ``extends: {file: ...}``);
- ``environment``, ``labels``, ``annotations``, ``build.args``, ``sysctls``: lists of ``K=V`` become
  maps with string values; a bare ``K`` in ``environment`` or ``args`` takes the project
  environment's value (or null);
- ``depends_on: [db]`` → ``{db: {condition: service_started, required: true}}``;
- ``networks: [front]`` → ``{front: null}``; ``command``/``entrypoint`` strings are split as a shell
  splits words; ``healthcheck.test`` strings become ``[CMD-SHELL, ...]``; durations are printed as
  Go prints them (``90s`` → ``1m30s``); sizes become bytes; ``"true"`` where a boolean belongs
  becomes ``true`` (after interpolation every value may be a string).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hoist.compose.errors import ComposeError, where
from hoist.compose.yamlio import Override, Reset

_TRUE = {"true", "yes", "y", "on", "1"}
_FALSE = {"false", "no", "n", "off", "0"}
_PROPAGATION = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}
_PULL_ALIASES = {"if_not_present": "missing"}
BOOL_KEYS = ("init", "read_only", "privileged", "tty", "stdin_open", "oom_kill_disable", "attach")
INT_KEYS = ("scale", "pids_limit", "cpu_count", "cpu_percent", "mem_swappiness", "oom_score_adj")
SIZE_KEYS = ("mem_limit", "mem_reservation", "memswap_limit", "shm_size")


class Context:
    """What canonicalising a file needs: its name (for errors), the directory relative paths are
    resolved against, and the project environment (for bare ``environment`` keys)."""

    def __init__(self, file: str, base_dir: Path, env: Mapping[str, str]) -> None:
        self.file = file
        self.base_dir = base_dir
        self.env = env

    def error(self, service: str | None, key: str, message: str) -> ComposeError:
        return ComposeError(message, where=where(self.file, service, key))

    def path(self, p: str) -> str:
        if p.startswith("~"):
            p = os.path.expanduser(p)
        return os.path.normpath(os.path.join(self.base_dir, p))


def _wrapped(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` inside a ``!reset``/``!override`` wrapper, keeping the wrapper."""
    if isinstance(value, (Reset, Override)):
        return value.with_value(fn(value.value) if value.value is not None else None)
    return fn(value)


def to_bool(value: Any, ctx: Context, service: str | None, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ctx.error(service, key, f"{value!r} is not a boolean")


def to_int(value: Any, ctx: Context, service: str | None, key: str) -> int:
    if isinstance(value, bool):
        raise ctx.error(service, key, f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ctx.error(service, key, f"{value!r} is not an integer") from None


def to_size(value: Any, ctx: Context, service: str | None, key: str) -> str:
    from runtime.errors import SetupError
    from runtime.spec import parse_size

    if isinstance(value, bool):
        raise ctx.error(service, key, f"{value!r} is not a size")
    if isinstance(value, (int, float)):
        return str(int(value))
    try:
        return str(parse_size(str(value)))
    except SetupError:
        raise ctx.error(service, key, f"{value!r} is not a size (e.g. 512m, 1g)") from None


def to_duration(value: Any, ctx: Context, service: str | None, key: str) -> str:
    from storage.duration import DurationError, format_duration, parse_duration

    try:
        ns = parse_duration(str(value))
    except DurationError:
        raise ctx.error(service, key, f"{value!r} is not a duration (e.g. 10s, 1m30s)") from None
    if ns < 0:
        raise ctx.error(service, key, f"{value!r}: a duration must not be negative")
    return format_duration(ns)


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def list_or_dict(value: Any, ctx: Context, service: str | None, key: str, resolve: bool,
                 sep: str = "=") -> dict[str, Any]:
    """A ``list_or_dict`` as a map of strings (null for an unresolved bare key)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (Reset, Override)):
                out[str(k)] = v
            elif v is None and resolve:
                out[str(k)] = ctx.env.get(str(k))
            else:
                out[str(k)] = _scalar_text(v)
        return out
    for item in value or []:
        k, eq, v = str(item).partition(sep)
        if not k:
            raise ctx.error(service, key, f"invalid entry {item!r} (expected KEY{sep}VALUE)")
        out[k] = v if eq else (ctx.env.get(k) if resolve else None)
    return out


def string_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def command(value: Any, ctx: Context, service: str, key: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    try:
        return shlex.split(str(value))
    except ValueError as e:
        raise ctx.error(service, key, f"cannot split {value!r} into words: {e}") from None


# -- ports ------------------------------------------------------------------------------------------
def _port_range(text: str, ctx: Context, service: str, key: str) -> tuple[int, int]:
    lo, dash, hi = text.partition("-")
    try:
        a = int(lo)
        b = int(hi) if dash else a
    except ValueError:
        raise ctx.error(service, key, f"invalid port {text!r}") from None
    if not (0 <= a <= 65535 and 0 <= b <= 65535) or b < a:
        raise ctx.error(service, key, f"invalid port range {text!r}")
    return a, b


def parse_port(spec: Any, ctx: Context, service: str, key: str) -> list[dict[str, Any]]:
    """One short-syntax port (docker's ``[ip:][host:]container[/proto]``) as long-syntax entries."""
    text = str(spec).strip()
    body, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise ctx.error(service, key, f"invalid protocol {proto!r} in port {text!r}")
    host_ip = ""
    if body.startswith("["):
        close = body.find("]:")
        if close < 0:
            raise ctx.error(service, key, f"invalid port {text!r}")
        host_ip, body = body[1:close], body[close + 2:]
        parts = body.split(":")
        if len(parts) == 1:
            parts = ["", parts[0]]
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) > 3:
            raise ctx.error(service, key, f"invalid port {text!r}")
    host = parts[0] if len(parts) == 2 else ""
    container = parts[-1]
    c_lo, c_hi = _port_range(container, ctx, service, key)
    entries: list[dict[str, Any]] = []
    if host:
        h_lo, h_hi = _port_range(host, ctx, service, key)
        if c_lo != c_hi and (h_hi - h_lo) != (c_hi - c_lo):
            raise ctx.error(service, key, f"port {text!r}: the host range must match the container range")
    for i, target in enumerate(range(c_lo, c_hi + 1)):
        entry: dict[str, Any] = {"mode": "ingress"}
        if host_ip:
            entry["host_ip"] = host_ip
        entry["target"] = target
        if host:
            if c_lo == c_hi and h_lo != h_hi:
                entry["published"] = f"{h_lo}-{h_hi}"
            else:
                entry["published"] = str(h_lo + i)
        entry["protocol"] = proto
        entries.append(entry)
    return entries


def long_port(doc: dict[str, Any], ctx: Context, service: str, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": doc.get("mode", "ingress")}
    for k in ("name", "host_ip"):
        if k in doc:
            out[k] = doc[k]
    if "target" not in doc:
        raise ctx.error(service, key, "a port needs a target")
    out["target"] = to_int(doc["target"], ctx, service, f"{key}.target")
    if doc.get("published") not in (None, ""):
        out["published"] = str(doc["published"])
    out["protocol"] = str(doc.get("protocol", "tcp")).lower()
    if "app_protocol" in doc:
        out["app_protocol"] = doc["app_protocol"]
    out.update({k: v for k, v in doc.items() if k.startswith("x-")})
    return out


def ports(value: list[Any], ctx: Context, service: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        key = f"ports.{i}"
        if isinstance(item, dict):
            out.append(long_port(item, ctx, service, key))
        else:
            out.extend(parse_port(item, ctx, service, key))
    return out


# -- volumes ----------------------------------------------------------------------------------------
def _is_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def parse_volume(spec: str, ctx: Context, service: str, key: str) -> dict[str, Any]:
    parts = spec.split(":")
    if len(parts) > 3 or any(p == "" for p in parts):
        raise ctx.error(service, key, f"invalid volume {spec!r} (use [SOURCE:]TARGET[:MODE])")
    if len(parts) == 1:
        return _check_target({"type": "volume", "target": parts[0], "volume": {}}, ctx, service, key)
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    vol: dict[str, Any]
    if _is_path(source):
        vol = {"type": "bind", "source": ctx.path(source), "target": target}
    else:
        vol = {"type": "volume", "source": source, "target": target}
    extra: dict[str, Any] = {}
    for opt in options:
        if opt == "ro":
            vol["read_only"] = True
        elif opt == "rw":
            continue
        elif opt in ("z", "Z") and vol["type"] == "bind":
            extra["selinux"] = opt
        elif opt in _PROPAGATION and vol["type"] == "bind":
            extra["propagation"] = opt
        elif opt == "nocopy" and vol["type"] == "volume":
            extra["nocopy"] = True
        else:
            raise ctx.error(service, key, f"invalid mode {opt!r} in volume {spec!r}")
    if vol["type"] == "bind":
        vol["bind"] = {"create_host_path": True, **extra}
    else:
        vol["volume"] = extra
    return _check_target(vol, ctx, service, key)


def _check_target(vol: dict[str, Any], ctx: Context, service: str, key: str) -> dict[str, Any]:
    target = vol.get("target")
    if not isinstance(target, str) or not target.startswith("/"):
        raise ctx.error(service, key, f"volume target {target!r} must be an absolute path")
    return vol


def long_volume(doc: dict[str, Any], ctx: Context, service: str, key: str) -> dict[str, Any]:
    vol = dict(doc)
    if vol.get("type") == "bind" and isinstance(vol.get("source"), str):
        vol["source"] = ctx.path(vol["source"])
    if "read_only" in vol:
        vol["read_only"] = to_bool(vol["read_only"], ctx, service, f"{key}.read_only")
    if isinstance(vol.get("bind"), dict) and "create_host_path" in vol["bind"]:
        vol["bind"] = dict(vol["bind"], create_host_path=to_bool(vol["bind"]["create_host_path"], ctx, service,
                                                                 f"{key}.bind.create_host_path"))
    if isinstance(vol.get("tmpfs"), dict) and "size" in vol["tmpfs"]:
        vol["tmpfs"] = dict(vol["tmpfs"], size=int(to_size(vol["tmpfs"]["size"], ctx, service, f"{key}.tmpfs.size")))
    if vol.get("type") in ("bind", "volume", "tmpfs"):
        return _check_target(vol, ctx, service, key)
    return vol


def volumes(value: list[Any], ctx: Context, service: str) -> list[dict[str, Any]]:
    return [long_volume(v, ctx, service, f"volumes.{i}") if isinstance(v, dict)
            else parse_volume(str(v), ctx, service, f"volumes.{i}") for i, v in enumerate(value)]


# -- the rest ---------------------------------------------------------------------------------------
def depends_on(value: Any, ctx: Context, service: str) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(name): {"condition": "service_started", "required": True} for name in value}
    out: dict[str, Any] = {}
    for name, dep in (value or {}).items():
        if isinstance(dep, (Reset, Override)):
            out[name] = dep
            continue
        entry = {"condition": dep.get("condition", "service_started")}
        if "restart" in dep:
            entry["restart"] = to_bool(dep["restart"], ctx, service, f"depends_on.{name}.restart")
        entry["required"] = dep.get("required", True)
        entry.update({k: v for k, v in dep.items() if k.startswith("x-")})
        out[name] = entry
    return out


def networks(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        return {str(n): None for n in value}
    return dict(value or {})


def extra_hosts(value: Any, ctx: Context, service: str) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        for host, ips in value.items():
            for ip in string_list(ips):
                out.append(f"{host}={ip}")
        return out
    for item in value or []:
        text = str(item)
        host, eq, ip = text.partition("=")
        if not eq:
            host, colon, ip = text.partition(":")
            if not colon:
                raise ctx.error(service, "extra_hosts", f"invalid entry {text!r} (expected HOST=IP or HOST:IP)")
        if not host or not ip:
            raise ctx.error(service, "extra_hosts", f"invalid entry {text!r} (expected HOST=IP or HOST:IP)")
        out.append(f"{host}={ip.strip('[]')}")
    return out


def healthcheck(doc: dict[str, Any], ctx: Context, service: str) -> dict[str, Any]:
    out = dict(doc)
    test = out.get("test")
    if isinstance(test, str):
        out["test"] = ["CMD-SHELL", test]
    for k in ("interval", "timeout", "start_period", "start_interval"):
        if k in out:
            out[k] = to_duration(out[k], ctx, service, f"healthcheck.{k}")
    if "retries" in out:
        out["retries"] = to_int(out["retries"], ctx, service, "healthcheck.retries")
    if "disable" in out:
        out["disable"] = to_bool(out["disable"], ctx, service, "healthcheck.disable")
    return out


def build(value: Any, ctx: Context, service: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"context": value} if isinstance(value, str) else dict(value)
    context = str(doc.get("context", "."))
    if "://" not in context and not context.startswith("git@"):
        context = ctx.path(context)
    doc["context"] = context
    if "dockerfile" not in doc and "dockerfile_inline" not in doc:
        doc["dockerfile"] = "Dockerfile"
    for k in ("args", "labels", "additional_contexts", "ssh"):
        if k in doc:
            doc[k] = list_or_dict(doc[k], ctx, service, f"build.{k}", resolve=(k == "args"))
    for k in ("no_cache", "pull", "privileged"):
        if k in doc:
            doc[k] = to_bool(doc[k], ctx, service, f"build.{k}")
    if "shm_size" in doc:
        doc["shm_size"] = to_size(doc["shm_size"], ctx, service, "build.shm_size")
    if "extra_hosts" in doc:
        doc["extra_hosts"] = extra_hosts(doc["extra_hosts"], ctx, service)
    return {k: doc[k] for k in sorted(doc)}


def env_files(value: Any, ctx: Context, service: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate([value] if isinstance(value, str) else value):
        if isinstance(item, str):
            out.append({"path": ctx.path(item), "required": True})
        else:
            entry = {"path": ctx.path(item["path"]),
                     "required": to_bool(item.get("required", True), ctx, service, f"env_file.{i}.required")}
            if "format" in item:
                entry["format"] = item["format"]
            out.append(entry)
    return out


def deploy(doc: dict[str, Any] | None, ctx: Context, service: str) -> dict[str, Any] | None:
    if doc is None:
        return None
    out = dict(doc)
    if "replicas" in out:
        out["replicas"] = to_int(out["replicas"], ctx, service, "deploy.replicas")
    resources = out.get("resources")
    if isinstance(resources, dict):
        resources = dict(resources)
        for part in ("limits", "reservations"):
            section = resources.get(part)
            if isinstance(section, dict):
                section = dict(section)
                if "memory" in section:
                    section["memory"] = to_size(section["memory"], ctx, service, f"deploy.resources.{part}.memory")
                if "cpus" in section:
                    section["cpus"] = _cpus(section["cpus"], ctx, service, f"deploy.resources.{part}.cpus")
                if "pids" in section:
                    section["pids"] = to_int(section["pids"], ctx, service, f"deploy.resources.{part}.pids")
                resources[part] = section
        out["resources"] = resources
    if "labels" in out:
        out["labels"] = list_or_dict(out["labels"], ctx, service, "deploy.labels", resolve=False)
    return out


def _cpus(value: Any, ctx: Context, service: str, key: str) -> float:
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise ctx.error(service, key, f"{value!r} is not a number of CPUs") from None
    if cpus < 0:
        raise ctx.error(service, key, f"{value!r}: must not be negative")
    return cpus


def secret_refs(value: list[Any]) -> list[dict[str, Any]]:
    return [{"source": str(v)} if not isinstance(v, dict) else dict(v) for v in value]


def service(name: str, doc: dict[str, Any] | None, ctx: Context) -> dict[str, Any]:
    """The long form of one service of one file."""
    svc: dict[str, Any] = {}
    for key, value in (doc or {}).items():
        def convert(v: Any, key: str = key) -> Any:
            return _service_key(name, key, v, ctx)

        svc[key] = _wrapped(value, convert)
    return svc


def _service_key(name: str, key: str, value: Any, ctx: Context) -> Any:
    if value is None:
        return None
    match key:
        case "build":
            return build(value, ctx, name)
        case "command" | "entrypoint":
            return command(value, ctx, name, key)
        case "environment":
            return list_or_dict(value, ctx, name, key, resolve=True)
        case "labels" | "annotations" | "sysctls":
            return list_or_dict(value, ctx, name, key, resolve=False)
        case "env_file":
            return env_files(value, ctx, name)
        case "ports":
            return ports(value, ctx, name)
        case "expose":
            return [str(v) for v in value]
        case "volumes":
            return volumes(value, ctx, name)
        case "tmpfs" | "dns" | "dns_search":
            return string_list(value)
        case "depends_on":
            return depends_on(value, ctx, name)
        case "networks":
            return networks(value)
        case "extra_hosts":
            return extra_hosts(value, ctx, name)
        case "healthcheck":
            return healthcheck(value, ctx, name)
        case "stop_grace_period":
            return to_duration(value, ctx, name, key)
        case "deploy":
            return deploy(value, ctx, name)
        case "secrets" | "configs":
            return secret_refs(value)
        case "pull_policy":
            return _PULL_ALIASES.get(str(value), str(value))
        case "cpus":
            return _cpus(value, ctx, name, key)
        case "extends":
            return {"service": value} if isinstance(value, str) else dict(value)
    if key in BOOL_KEYS:
        return to_bool(value, ctx, name, key)
    if key in INT_KEYS:
        return to_int(value, ctx, name, key)
    if key in SIZE_KEYS:
        return to_size(value, ctx, name, key)
    return value


def resource(kind: str, name: str, doc: dict[str, Any] | None, ctx: Context) -> dict[str, Any]:
    """A top-level network, volume, secret or config."""
    out = dict(doc or {})
    if "labels" in out:
        out["labels"] = list_or_dict(out["labels"], ctx, None, f"{kind}.{name}.labels", resolve=False)
    if kind in ("secrets", "configs") and isinstance(out.get("file"), str):
        out["file"] = ctx.path(out["file"])
    ext = out.get("external")
    if isinstance(ext, str):
        out["external"] = to_bool(ext, ctx, None, f"{kind}.{name}.external")
    elif isinstance(ext, dict):
        # The deprecated external.name is the resource's name.
        if "name" in ext:
            out["name"] = ext["name"]
        out["external"] = True
    for k in ("internal", "attachable", "enable_ipv6", "enable_ipv4"):
        if k in out:
            out[k] = to_bool(out[k], ctx, None, f"{kind}.{name}.{k}")
    return out
