"""hoist inspect NAME...: containers and images as JSON in docker's shape, or ``-f`` templates.

docker's lookup: without ``--type`` a name is a container first, then an image; a name that is
neither is "No such object" (the others are still printed; the exit status is 1). ``--format``
is Go's text/template (hoist/gotemplate.py), executed as docker does: on the typed object first
and, when that fails (a field the struct does not have), on its JSON form, where a missing key
prints ``<no value>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from hoist.commands.images import created_of, image_size
from hoist.config import local_store, parse_platform, user_errors
from hoist.errors import UserError
from storage.errors import ImageUnknown, StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor
from storage.platform import Platform
from storage.reference import parse_reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="NAME", help="container or image name, digest or ID")
    parser.add_argument("-f", "--format", metavar="TEMPLATE", help="Go template (docker's --format)")
    parser.add_argument("--type", choices=("container", "image"), help="only look for this kind of object")
    parser.add_argument("--platform", help="os/arch[/variant] to pick from an index")


def run(args: argparse.Namespace) -> int:
    from hoist import gotemplate

    template = None
    if args.format and args.format != "json":
        try:
            template = gotemplate.parse(args.format)
        except gotemplate.TemplateError as e:
            raise UserError(f"template parsing error: {e}") from None
    platform = parse_platform(args.platform)
    found: list[tuple[dict[str, Any], Any]] = []
    missing: list[str] = []
    for text in args.refs:
        obj = _find(text, args.type, platform)
        if obj is None:
            kind = {"container": "container", "image": "image"}.get(args.type or "", "object")
            missing.append(f"No such {kind}: {text}")
        else:
            found.append(obj)
    if template is None:
        print(json.dumps([raw for raw, _ in found], indent=4, ensure_ascii=False))
    else:
        for raw, typed in found:
            try:
                try:
                    out = template.execute(typed)
                except gotemplate.ExecError:
                    out = template.execute(raw)
            except gotemplate.TemplateError as e:
                raise UserError(f"template: {e}") from None
            sys.stdout.write(out + "\n")
    if missing:
        sys.stdout.flush()
        raise UserError("; ".join(missing))
    return 0


def _find(text: str, kind: str | None, platform: Platform | None) -> tuple[dict[str, Any], Any] | None:
    """(JSON form, typed form) of the container or image ``text`` names, or None."""
    if kind in (None, "container"):
        container = _container(text)
        if container is not None:
            doc = describe_container(container)
            return doc, typed_container(doc)
    if kind in (None, "image"):
        layout = local_store()
        try:
            with user_errors():   # an ambiguous short id is an error, not "no such image"
                try:
                    _, desc = layout.find(text)
                except ImageUnknown:
                    return None
        except UserError:
            if kind == "image":
                raise
            return None
        try:
            doc = describe(layout, desc, platform)
        except StorageError as e:
            raise UserError(f"{text}: {e}") from None
        return doc, doc
    return None


def _container(text: str) -> Any:
    from hoist import paths
    from runtime.containers import ContainerStore
    from runtime.errors import ContainerNotFound

    try:
        return ContainerStore(paths.containers_dir()).get(text)
    except ContainerNotFound:
        return None


# -- containers ---------------------------------------------------------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float | None) -> str:
    """Go's time.RFC3339Nano in UTC, as docker writes its times (trailing zeros dropped)."""
    if not ts:
        return ZERO_TIME
    whole = int(ts)
    nanos = round((ts - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    frac = f"{nanos:09d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"


def describe_container(container: Any) -> dict[str, Any]:
    """docker's ContainerJSON for the fields scripts read (in docker's field order)."""
    from runtime.restart import RestartPolicy

    status, state = container.status()
    spec = container.spec
    paused = bool(state.get("paused")) and status == "running"
    running = status == "running"
    docker_status = "paused" if paused else status
    config = spec.config or {}
    policy = RestartPolicy.from_json(spec.restart)
    binds = [f"{v.source}:{v.target}" + (":ro" if v.readonly else "") for v in spec.volumes]
    limits = spec.limits
    return {
        "Id": spec.id,
        "Created": rfc3339(spec.created),
        "Path": spec.argv[0] if spec.argv else "",
        "Args": spec.argv[1:],
        "State": {
            "Status": docker_status,
            "Running": running,
            "Paused": paused,
            "Restarting": status == "restarting",
            "OOMKilled": False,
            "Dead": False,
            "Pid": int(state.get("pid") or 0) if running else 0,
            "ExitCode": int(state.get("exit_code") or 0),
            "Error": state.get("error") or "",
            "StartedAt": rfc3339(state.get("started_at")),
            "FinishedAt": rfc3339(state.get("finished_at")),
            # docker's State.Health (omitted for a container without one, or never started)
            **({"Health": state["health"]} if isinstance(state.get("health"), dict) else {}),
        },
        "Image": spec.image_id,
        "ResolvConfPath": str(container.path / "resolv.conf"),
        "HostnamePath": str(container.path / "hostname"),
        "HostsPath": str(container.path / "hosts"),
        "LogPath": str(container.log_path),
        "Name": "/" + spec.name,
        "RestartCount": int(state.get("restart_count") or 0),
        "Driver": "overlay2" if (spec.rootfs or {}).get("kind") == "overlay" else "vfs",
        "Platform": "linux",
        "HostConfig": {
            "Binds": binds or None,
            "NetworkMode": spec.network,
            "PortBindings": port_bindings(spec),
            "RestartPolicy": policy.to_json(),
            "AutoRemove": spec.remove,
            "Init": spec.init or None,
            "Memory": limits.memory or 0,
            "NanoCpus": round(limits.cpus * 1e9) if limits.cpus else 0,
            "PidsLimit": limits.pids if limits.pids else None,
        },
        "Mounts": [{"Type": "bind", "Source": v.source, "Destination": v.target,
                    "Mode": "ro" if v.readonly else "", "RW": not v.readonly, "Propagation": "rprivate"}
                   for v in spec.volumes],
        "Config": {
            "Hostname": spec.hostname,
            "Domainname": "",
            "User": spec.user,
            "AttachStdin": spec.interactive and not spec.detach,
            "AttachStdout": not spec.detach,
            "AttachStderr": not spec.detach,
            "ExposedPorts": config.get("ExposedPorts") or None,
            "Tty": spec.tty,
            "OpenStdin": spec.interactive,
            "StdinOnce": spec.interactive and not spec.detach,
            "Env": spec.env,
            "Cmd": config.get("Cmd"),
            **({"Healthcheck": config["Healthcheck"]} if config.get("Healthcheck") else {}),
            "Image": spec.image,
            "Volumes": config.get("Volumes"),
            "WorkingDir": spec.cwd,
            "Entrypoint": config.get("Entrypoint"),
            "OnBuild": None,
            "Labels": dict(sorted((config.get("Labels") or {}).items())),
            **({"Shell": config["Shell"]} if config.get("Shell") else {}),
        },
        "NetworkSettings": network_settings(container),
    }


def port_bindings(spec: Any) -> dict[str, list[dict[str, str]]]:
    """docker's HostConfig.PortBindings: what ``-p`` asked for, by ``PORT/PROTO``."""
    out: dict[str, list[dict[str, str]]] = {}
    for b in spec.ports:
        out.setdefault(f"{b['container_port']}/{b['proto']}", []).append(
            {"HostIp": b.get("host_ip") or "", "HostPort": str(b.get("host_port") or "")})
    return out


_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "",
             "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
             "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DNSNames": None}


def network_settings(container: Any) -> dict[str, Any]:
    """docker's NetworkSettings: for a bridged container its networks' endpoints (address,
    gateway, aliases) and published ports while it runs (``runtime.network.attach``); for none
    and host, the empty endpoint docker shows."""
    spec = container.spec
    settings: dict[str, Any] = {"Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
                                "Networks": {spec.network: dict(_ENDPOINT)}}
    if spec.networks:
        from runtime.network.attach import network_settings as live

        now = live(container.path.parent.parent, spec.id)
        settings["Ports"] = now["Ports"]
        settings["Networks"] = {name: {**_ENDPOINT, **endpoint} for name, endpoint in now["Networks"].items()} \
            or {name: dict(_ENDPOINT) for name in spec.networks}
    return settings


_STRUCTS = {"State": "*types.ContainerState", "HostConfig": "*container.HostConfig",
            "Config": "*container.Config", "NetworkSettings": "*types.NetworkSettings"}


def typed_container(doc: dict[str, Any]) -> Any:
    """The document as docker's typed ContainerJSON: structs (a missing field is an error, ``%v``
    prints ``{...}``) where docker has structs, maps where it has maps."""
    from hoist.gotemplate import Struct

    typed = Struct("types.ContainerJSON", doc)
    for key, go_type in _STRUCTS.items():
        if isinstance(doc.get(key), dict):
            typed[key] = Struct(go_type, doc[key])
    host = typed["HostConfig"]
    host["RestartPolicy"] = Struct("container.RestartPolicy", host["RestartPolicy"])
    typed["Mounts"] = [Struct("types.MountPoint", m) for m in doc["Mounts"]]
    # (without a healthcheck the fields are left out, as docker's JSON omits its nil pointers)
    health = doc["State"].get("Health")
    if isinstance(health, dict):
        typed["State"]["Health"] = Struct("*types.Health", {**health, "Log": [
            Struct("*types.HealthcheckResult", entry) for entry in health.get("Log") or []]})
    check = doc["Config"].get("Healthcheck")
    if isinstance(check, dict):
        typed["Config"]["Healthcheck"] = Struct("*container.HealthConfig", check)
    return typed


# -- images -------------------------------------------------------------------------------------

def describe(layout: ImageLayout, named: Descriptor, platform: Platform | None = None) -> dict[str, Any]:
    image_desc, manifest = layout.platform_image(named, platform)
    config = layout.config(manifest)
    names = [n for n, d in layout.refs() if n and d.digest == named.digest]
    tags, digests = [], []
    for name in names:
        ref = parse_reference(name, default_tag=False)
        if ref.tag:
            tags.append(name)
        digests.append(f"{ref.repository}@{named.digest}")
    return {
        "Id": str(manifest.config.digest) if manifest.config else str(image_desc.digest),
        "RepoTags": tags,
        "RepoDigests": sorted(set(digests)),
        "Created": created_of(layout, manifest),
        "Architecture": config.get("architecture", ""),
        "Os": config.get("os", ""),
        **({"Variant": config["variant"]} if config.get("variant") else {}),
        "Size": image_size(manifest),
        "Config": config.get("config") or {},
        "RootFS": config.get("rootfs") or {},
        "Descriptor": named.to_json(),
        "Manifest": json.loads(manifest.raw),
    }

