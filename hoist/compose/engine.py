"""The compose engine: the project's desired state brought about over ``runtime/`` and the builder.

Containers are named ``<project>-<service>-<n>`` (or ``container_name``) and carry docker
compose's labels (``com.docker.compose.project``, ``.service``, ``.container-number``,
``.config-hash``, ``.oneoff``, ``.project.working_dir``, ``.project.config_files``). ``up``
converges each service in dependency order: a container whose config hash and image id match
the model is kept (started if stopped), any other is replaced; a dependency's condition
(``service_started``, ``service_healthy``, ``service_completed_successfully``) is met before its
dependants start. If ``up`` fails, the containers it created are removed again (pre-existing
ones are left as they were). ``down`` stops and removes in reverse dependency order.

What the specification has and hoist does not do is one warning naming the key
(``UNSUPPORTED``, and the network notes of ``hoist.compose.network``). Project networks are
made before the first container of ``up`` (and removed again if that ``up`` fails having made
them) and removed by ``down`` after the containers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from hoist.compose import health, network
from hoist.compose.errors import ComposeError
from hoist.compose.loader import Project
from hoist.compose.volumes import VolumeStore, volume_labels

if TYPE_CHECKING:
    from runtime.containers import Container
    from runtime.image import Image

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
HASH = "com.docker.compose.config-hash"
ONEOFF = "com.docker.compose.oneoff"
WORKDIR = "com.docker.compose.project.working_dir"
FILES = "com.docker.compose.project.config_files"

# Keys hoist carries out (the rest of the specification is a warning naming the key).
SUPPORTED = frozenset({
    "image", "build", "command", "entrypoint", "environment", "env_file", "volumes", "depends_on",
    "healthcheck", "user", "working_dir", "labels", "hostname", "extra_hosts", "init", "stop_signal",
    "stop_grace_period", "deploy", "mem_limit", "cpus", "pids_limit", "pull_policy", "container_name",
    "profiles", "networks", "network_mode", "ports", "expose", "dns", "security_opt", "restart", "scale",
    "platform", "extends", "cap_add", "cap_drop", "read_only", "tmpfs",
})
_DEPLOY_SUPPORTED = {"resources", "replicas"}
_LIMITS_SUPPORTED = {"memory", "cpus", "pids"}


def config_hash(svc: dict[str, Any]) -> str:
    """docker compose's idea of the service's container configuration: what is not about
    building, pulling, scaling or ordering."""
    doc = {k: v for k, v in svc.items() if k not in ("build", "pull_policy", "scale", "profiles", "depends_on")}
    if isinstance(doc.get("deploy"), dict):
        doc["deploy"] = {k: v for k, v in doc["deploy"].items() if k != "replicas"}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def image_name(project: Project, service: str) -> str:
    return project.services.get(service, project.disabled.get(service, {})).get("image") or \
        f"{project.name}-{service}"


@dataclass
class UpOptions:
    detach: bool = True
    build: bool = False
    no_build: bool = False
    pull: str | None = None                # always | missing | never
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    remove_orphans: bool = False
    wait: bool = False
    no_start: bool = False


@dataclass
class _Started:
    created: list[Container] = field(default_factory=list)


class Engine:
    def __init__(self, project: Project, root: Path, out: TextIO | None = None, err: TextIO | None = None) -> None:
        from runtime.lifecycle import Runtime

        self.project = project
        self.root = root
        self.runtime = Runtime(root)
        self.volumes = VolumeStore(root / "volumes")
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._warned: set[str] = set()
        self._built: set[str] = set()          # images built by this command (replicas share one)

    # -- output ---------------------------------------------------------------------------------------
    def warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            print(f"hoist compose: warning: {message}", file=self.err, flush=True)

    def event(self, kind: str, name: str, what: str) -> None:
        print(f" {kind} {name}  {what}", file=self.err, flush=True)

    # -- containers of the project ------------------------------------------------------------------------
    def containers(self, services: list[str] | None = None, oneoff: bool = False) -> list[Container]:
        out = []
        for c in self.runtime.containers.all():
            labels = c.spec.labels
            if labels.get(PROJECT) != self.project.name:
                continue
            if (labels.get(ONEOFF) == "True") != oneoff:
                continue
            if services is not None and labels.get(SERVICE) not in services:
                continue
            out.append(c)
        return sorted(out, key=lambda c: (c.spec.labels.get(SERVICE, ""), int(c.spec.labels.get(NUMBER, "0") or 0)))

    def service_containers(self, service: str) -> dict[int, Container]:
        return {int(c.spec.labels.get(NUMBER) or 0): c for c in self.containers([service])}

    def orphans(self) -> list[Container]:
        known = set(self.project.services) | set(self.project.disabled)
        return [c for c in self.containers() if c.spec.labels.get(SERVICE) not in known]

    # -- images -------------------------------------------------------------------------------------------
    def local_image(self, ref: str) -> Image | None:
        from runtime.errors import ImageNotFound
        from runtime.image import load_image

        try:
            return load_image(self.root / "images", ref)
        except ImageNotFound:
            return None

    def build(self, service: str, no_cache: bool = False, pull: bool = False) -> None:
        from hoist.compose.images import build_service

        svc = self.project.services[service]
        for key in ("cache_from", "cache_to", "ssh", "secrets", "additional_contexts", "platforms",
                    "extra_hosts", "shm_size", "ulimits", "isolation", "privileged", "entitlements", "tags"):
            if (svc.get("build") or {}).get(key):
                self.warn(f'service "{service}": build.{key} is not supported by hoist; ignored')
        self.event("⠿", f"Service {service}", "Building")
        build_service(self.project, service, image_name(self.project, service), no_cache, pull, self.err)
        self.event("✔", f"Service {service}", "Built")

    def pull(self, service: str, ignore_failures: bool = False) -> None:
        from hoist.compose.images import pull_image

        ref = image_name(self.project, service)
        self.event("⠿", ref, "Pulling")
        try:
            pull_image(ref, self.err)
        except ComposeError as e:
            if ignore_failures:
                self.warn(str(e))
                return
            raise ComposeError(f"{e}", where=f'service "{service}": image') from None
        self.event("✔", ref, "Pulled")

    def ensure_image(self, service: str, opts: UpOptions) -> Image:
        svc = self.project.services[service]
        ref = image_name(self.project, service)
        policy = opts.pull or svc.get("pull_policy") or "missing"
        has_build = "build" in svc
        if ref in self._built:
            pass
        elif has_build and not opts.no_build and (opts.build or policy == "build" or self.local_image(ref) is None):
            self.build(service)
            self._built.add(ref)
        elif not has_build or "image" in svc:
            if policy == "always" or (policy == "missing" and self.local_image(ref) is None):
                if not has_build or policy == "always":
                    self.pull(service)
        image = self.local_image(ref)
        if image is None:
            if has_build and opts.no_build:
                raise ComposeError(f"image {ref} is not built and --no-build was given", where=f'service "{service}"')
            raise ComposeError(f"no image {ref} (pull_policy: {policy})", where=f'service "{service}"')
        return image

    # -- unsupported keys ---------------------------------------------------------------------------------
    def check_supported(self, service: str) -> None:
        svc = self.project.services[service]
        for key in svc:
            if key not in SUPPORTED and not key.startswith("x-"):
                self.warn(f'service "{service}": "{key}" is not supported by hoist; ignored')
        deploy = svc.get("deploy") or {}
        for key in deploy:
            if key not in _DEPLOY_SUPPORTED and not key.startswith("x-"):
                self.warn(f'service "{service}": "deploy.{key}" is not supported by hoist; ignored')
        resources = deploy.get("resources") or {}
        for key in resources:
            if key != "limits":
                self.warn(f'service "{service}": "deploy.resources.{key}" is not supported by hoist; ignored')
        for key in resources.get("limits") or {}:
            if key not in _LIMITS_SUPPORTED:
                self.warn(f'service "{service}": "deploy.resources.limits.{key}" is not supported by hoist; ignored')
        if svc.get("platform"):
            from storage.platform import Platform

            if not Platform.parse(svc["platform"]).matches(Platform.host()):
                raise ComposeError(f"platform {svc['platform']} cannot run on this {Platform.host()} host",
                                   where=f'service "{service}"')
        for opt in svc.get("security_opt") or []:
            if not opt.startswith("seccomp") and not opt.startswith("no-new-privileges"):
                self.warn(f'service "{service}": security_opt {opt!r} is not supported by hoist; ignored')
        for i, vol in enumerate(svc.get("volumes") or []):
            if vol.get("type") not in ("bind", "volume"):
                self.warn(f'service "{service}": volumes.{i}: type {vol.get("type")} is not supported by hoist; '
                          f"ignored")
            for key in ("consistency",):
                if key in vol:
                    self.warn(f'service "{service}": volumes.{i}.{key} is not supported by hoist; ignored')
            extra = vol.get("bind") or vol.get("volume") or {}
            for key in extra:
                if key not in ("create_host_path",):
                    self.warn(f'service "{service}": volumes.{i}.{vol["type"]}.{key} is not supported by hoist; '
                              f"ignored")

    # -- creating a container ------------------------------------------------------------------------------
    def _mounts(self, service: str, svc: dict[str, Any]) -> list[str]:
        out = []
        for i, vol in enumerate(svc.get("volumes") or []):
            kind = vol.get("type")
            target = vol["target"]
            if kind == "bind":
                source = Path(vol["source"])
                if not source.exists():
                    if (vol.get("bind") or {}).get("create_host_path"):
                        source.mkdir(parents=True, exist_ok=True)
                    else:
                        raise ComposeError(f"bind source {source} does not exist",
                                           where=f'service "{service}": volumes.{i}')
            elif kind == "volume":
                source = self._volume_dir(service, vol)
            else:
                continue
            for text in (str(source), target):
                if ":" in text:
                    raise ComposeError(f"a volume path with ':' ({text}) is not supported by hoist",
                                       where=f'service "{service}": volumes.{i}')
            out.append(f"{source}:{target}" + (":ro" if vol.get("read_only") else ""))
        return out

    def _volume_dir(self, service: str, vol: dict[str, Any]) -> Path:
        key = vol.get("source")
        if not key:
            # Anonymous: named after the service and target, so a recreated container gets it back.
            digest = hashlib.sha256(f"{service}\0{vol['target']}".encode()).hexdigest()[:16]
            name = f"{self.project.name}_{service}_anon_{digest}"
            return self.volumes.create(name, {PROJECT: self.project.name, "com.docker.compose.volume": ""})
        res = self.project.volumes[key]
        name = res["name"]
        if res.get("external"):
            if not self.volumes.exists(name):
                raise ComposeError(f"external volume {name!r} not found", where=f'service "{service}": volumes')
            return self.volumes.data(name)
        if res.get("driver") not in (None, "local") or res.get("driver_opts"):
            self.warn(f'volume "{key}": driver and driver_opts are not supported by hoist; a local directory is used')
        return self.volumes.create(name, {**volume_labels(self.project.name, key), **(res.get("labels") or {})})

    def _run_options(self, service: str, number: int, image: Image, plan: network.NetworkPlan,
                     oneoff: bool = False, name: str | None = None, command: list[str] | None = None,
                     entrypoint: list[str] | None = None, extra_env: list[str] | None = None,
                     user: str | None = None, workdir: str | None = None, remove: bool = False) -> Any:
        from runtime.lifecycle import RunOptions
        from runtime.spec import Limits

        svc = self.project.services[service]
        env = [f"{k}={v}" for k, v in (svc.get("environment") or {}).items() if v is not None]
        env += extra_env or []
        ep = entrypoint if entrypoint is not None else svc.get("entrypoint")
        args = command if command is not None else (svc.get("command") or [])
        ep_text: str | None = None
        if ep is not None:
            ep_text = ep[0] if ep else ""
            args = list(ep[1:]) + list(args)
        limits_doc = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        memory = limits_doc.get("memory") or svc.get("mem_limit")
        cpus = limits_doc.get("cpus") or svc.get("cpus")
        pids = limits_doc.get("pids") or svc.get("pids_limit")
        labels = {str(k): str(v) for k, v in (svc.get("labels") or {}).items()}
        labels.update({PROJECT: self.project.name, SERVICE: service, NUMBER: str(number),
                       HASH: config_hash(svc), ONEOFF: "True" if oneoff else "False",
                       WORKDIR: str(self.project.working_dir),
                       FILES: ",".join(str(f) for f in self.project.files)})
        seccomp_choice = "default"
        for opt in svc.get("security_opt") or []:
            key, _sep, value = opt.partition("=")
            if key == "seccomp" and value:
                seccomp_choice = value
        from runtime import seccomp as runtime_seccomp

        return RunOptions(
            image=image.config_digest, args=[str(a) for a in args], name=name, env=env,
            volumes=self._mounts(service, svc), workdir=workdir or svc.get("working_dir"),
            user=user if user is not None else svc.get("user"), entrypoint=ep_text, network=plan.mode,
            ip=plan.first.ip if plan.first else None, aliases=list(plan.first.aliases) if plan.first else [],
            # ``compose run`` publishes no ports (its --service-ports is not offered)
            publish=[] if oneoff else list(plan.publish), dns=list(plan.dns),
            add_hosts=[] if plan.mode == "host" else list(plan.add_hosts),
            hostname=svc.get("hostname"), init=bool(svc.get("init")),
            limits=Limits(memory=int(memory) if memory else None, cpus=float(cpus) if cpus else None,
                          pids=int(pids) if pids and int(pids) > 0 else None),
            remove=remove, detach=True,
            seccomp=runtime_seccomp.DEFAULT if seccomp_choice == "default" else seccomp_choice,
            labels=labels,
            # docker's restart policies (a one-off `compose run` container is never restarted)
            restart="no" if oneoff or remove else str(svc.get("restart") or "no"),
            cap_add=[str(c) for c in svc.get("cap_add") or []], cap_drop=[str(c) for c in svc.get("cap_drop") or []],
            read_only=bool(svc.get("read_only")), tmpfs=_tmpfs_list(svc.get("tmpfs")),
            healthcheck=health.container_healthcheck(svc))

    def create(self, service: str, number: int, image: Image, **kw: Any) -> Container:
        from runtime.errors import RuntimeFailure
        from runtime.spec import parse_signal

        svc = self.project.services[service]
        name = kw.pop("name", None) or svc.get("container_name") or f"{self.project.name}-{service}-{number}"
        plan = self.network_plan(service, name)
        if kw.get("oneoff"):
            self.ensure_networks([service])
        try:
            opts = self._run_options(service, number, image, plan, name=name, **kw)
            container = self.runtime.create(opts)
        except RuntimeFailure as e:
            raise ComposeError(str(e), where=f'service "{service}"') from None
        spec = container.spec
        # The image is named by its id (what was checked above); show the name users gave.
        spec.image = image_name(self.project, service)
        if svc.get("stop_signal"):
            try:
                spec.stop_signal = parse_signal(svc["stop_signal"])
            except RuntimeFailure as e:
                container.destroy()
                raise ComposeError(str(e), where=f'service "{service}": stop_signal') from None
        container.write_spec(spec)
        if plan.mode == "host" and plan.add_hosts:
            # The runtime writes the host's /etc/hosts as it is for network host; docker (and so
            # compose) adds --add-host lines to it all the same.
            from runtime.network.dns import parse_add_host

            with open(container.path / "hosts", "a") as f:
                for h in plan.add_hosts:
                    f.write(parse_add_host(h) + "\n")
        return container

    # -- networks ---------------------------------------------------------------------------------------
    def network_plan(self, service: str, container_name: str) -> network.NetworkPlan:
        svc = self.project.services[service]
        try:
            return network.plan(self.project, service, svc, container_name, self.warn, self._resolve_mode)
        except ComposeError:
            raise
        except Exception as e:           # the runtime's NetworkError (a bad address, ...)
            raise ComposeError(str(e), where=f'service "{service}"') from None

    def _resolve_mode(self, kind: str, ref: str) -> str:
        if kind == "service":
            if ref not in self.project.services:
                raise ComposeError(f'network_mode service:{ref} refers to undefined service "{ref}"')
            running = [c for c in self.service_containers(ref).values() if c.status()[0] == "running"]
            if not running:
                raise ComposeError(f'network_mode service:{ref}: service "{ref}" has no running container')
            return running[0].id
        from runtime.errors import ContainerNotFound

        try:
            return self.runtime.containers.get(ref).id
        except ContainerNotFound:
            raise ComposeError(f"network_mode container:{ref}: no such container") from None

    def ensure_networks(self, services: list[str]) -> list[str]:
        """The project networks ``services`` use, created if missing; returns those created."""
        keys = network.used_networks(self.project, services)
        if not keys:
            return []
        return network.ensure_networks(self.root, self.project, keys, self.warn, self.event)

    def _connect_rest(self, container: Container, plan: network.NetworkPlan) -> None:
        """Join the service's other networks (the runtime attached the first at start)."""
        from runtime.network import NetworkError, manage

        for join in plan.joins[1:]:
            try:
                manage.connect(self.root, join.network, container.id, join.ip, list(join.aliases))
            except NetworkError as e:
                raise ComposeError(f"network {join.network}: {e}", where=f"container {container.name}") from None

    def start(self, container: Container) -> None:
        from runtime import cgroups
        from runtime.errors import RuntimeFailure

        status, _ = container.status()
        if status == "running":
            return
        try:
            plan = self._plan_of(container)
            spec = container.spec
            if status == "exited":
                # The monitor removed the cgroups when the container ended; a start makes them again.
                spec.cgroups = cgroups.create(spec.id, spec.limits)
            if plan is not None and len(plan.joins) > 1:
                # Connected at the last start: the runtime would attach them without their aliases.
                spec.networks = [plan.joins[0].network]
            container.write_spec(spec)
            self.runtime.start_detached(container)
        except RuntimeFailure as e:
            raise ComposeError(str(e), where=f"container {container.name}") from None
        if plan is not None and len(plan.joins) > 1:
            self._connect_rest(container, plan)

    def _plan_of(self, container: Container) -> network.NetworkPlan | None:
        """The plan of a container on more than one network (None otherwise)."""
        svc = self.project.services.get(container.spec.labels.get(SERVICE, ""))
        if svc is None or svc.get("network_mode") or len(network.service_networks(svc)) < 2:
            return None
        return self.network_plan(container.spec.labels[SERVICE], container.name)

    def stop(self, container: Container, timeout: float | None = None) -> None:
        from storage.duration import parse_duration

        if timeout is None:
            service = container.spec.labels.get(SERVICE, "")
            grace = (self.project.services.get(service) or {}).get("stop_grace_period")
            timeout = parse_duration(grace) / 1e9 if grace else 10.0
        if container.status()[0] == "running":
            self.event("⠿", f"Container {container.name}", "Stopping")
            self.runtime.stop(container, timeout)
            self.event("✔", f"Container {container.name}", "Stopped")

    def remove(self, container: Container) -> None:
        name = container.name
        self.runtime.remove(container, force=True)
        self.event("✔", f"Container {name}", "Removed")

    # -- up ---------------------------------------------------------------------------------------------
    def scale_of(self, service: str) -> int:
        svc = self.project.services[service]
        replicas = (svc.get("deploy") or {}).get("replicas")
        scale = svc.get("scale", replicas if replicas is not None else 1)
        return max(int(scale), 0)

    def up(self, services: list[str] | None, opts: UpOptions) -> list[Container]:
        names = self.project.order(services or None, with_deps=not opts.no_deps)
        for name in names:
            self.check_supported(name)
        orphans = self.orphans()
        if orphans and opts.remove_orphans:
            for c in orphans:
                self.stop(c)
                self.remove(c)
        elif orphans:
            self.warn(f"found orphan containers ({', '.join(c.name for c in orphans)}) for this project; "
                      f"run with --remove-orphans to clean them up")
        images = {name: self.ensure_image(name, opts) for name in names}
        started = _Started()
        result: list[Container] = []
        made_networks = self.ensure_networks(names)
        try:
            for name in names:
                self._wait_dependencies(name, started)
                result += self._converge(name, images[name], opts, started)
            if opts.wait:
                for name in names:
                    self._wait_ready(name)
        except BaseException:
            for c in reversed(started.created):
                with contextlib.suppress(Exception):
                    self.runtime.remove(c, force=True)
            if made_networks:
                with contextlib.suppress(Exception):
                    network.remove_networks(self.root, self.project, self.warn, self.event, made_networks)
            raise
        return result

    def _converge(self, service: str, image: Image, opts: UpOptions, started: _Started) -> list[Container]:
        svc = self.project.services[service]
        want = config_hash(svc)
        existing = self.service_containers(service)
        out = []
        for number in range(1, self.scale_of(service) + 1):
            c = existing.pop(number, None)
            if c is not None:
                same = c.spec.labels.get(HASH) == want and c.spec.image_id == image.config_digest
                if (same and not opts.force_recreate) or opts.no_recreate:
                    if not opts.no_start:
                        if c.status()[0] != "running":
                            self.start(c)
                            self.event("✔", f"Container {c.name}", "Started")
                        else:
                            self.event("✔", f"Container {c.name}", "Running")
                    out.append(c)
                    continue
                self.event("⠿", f"Container {c.name}", "Recreate")
                self.stop(c)
                self.runtime.remove(c, force=True)
            new = self.create(service, number, image)
            started.created.append(new)
            self.event("✔", f"Container {new.name}", "Created" if c is None else "Recreated")
            if not opts.no_start:
                self.start(new)
                self.event("✔", f"Container {new.name}", "Started")
            out.append(new)
        for c in existing.values():          # scaled down
            self.stop(c)
            self.remove(c)
        return out

    def _wait_dependencies(self, service: str, started: _Started) -> None:
        for dep, spec in sorted(self.project.dependencies(service).items()):
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                self._wait_healthy(dep)
            elif condition == "service_completed_successfully":
                self._wait_completed(dep)

    def _wait_healthy(self, service: str, dependency: bool = True) -> None:
        """Until each container of ``service`` is healthy, by its runtime Health."""
        for c in self.service_containers(service).values():
            self.event("⠿", f"Container {c.name}", "Waiting")
            try:
                health.wait_healthy(c)
            except ComposeError as e:
                if not dependency:   # `up --wait`: compose's error as it is
                    raise
                raise ComposeError(f"dependency failed to start: {e}") from None
            self.event("✔", f"Container {c.name}", "Healthy")

    def _wait_completed(self, service: str) -> None:
        for c in self.service_containers(service).values():
            self.event("⠿", f"Container {c.name}", "Waiting")
            while c.status()[0] == "running":
                time.sleep(0.05)
            code = c.status()[1].get("exit_code", 255)
            if code != 0:
                raise ComposeError(f'service "{service}" didn\'t complete successfully: exit {code}')
            self.event("✔", f"Container {c.name}", "Exited")

    def _wait_ready(self, service: str) -> None:
        for c in self.service_containers(service).values():
            if health.has_healthcheck(c):
                self._wait_healthy(service, dependency=False)
                return
            if c.status()[0] != "running":
                code = c.status()[1].get("exit_code", 255)
                if code != 0:
                    raise ComposeError(f"container {c.name} exited ({code})")

    # -- down and friends -------------------------------------------------------------------------------
    def down(self, remove_volumes: bool = False, remove_orphans: bool = False, rmi: str | None = None) -> None:
        order = self.project.order(None, with_deps=False) if self.project.services else []
        disabled = sorted(self.project.disabled)
        for name in reversed(order + disabled):
            for c in reversed(list(self.service_containers(name).values())):
                self.stop(c)
                self.remove(c)
        for c in self.containers(oneoff=True):
            self.stop(c)
            self.remove(c)
        orphans = self.orphans()
        if orphans and remove_orphans:
            for c in orphans:
                self.stop(c)
                self.remove(c)
        elif orphans:
            self.warn(f"found orphan containers ({', '.join(c.name for c in orphans)}) for this project; "
                      f"run with --remove-orphans to clean them up")
        network.remove_networks(self.root, self.project, self.warn, self.event)
        if remove_volumes:
            for vol in self.volumes.all():
                if self.volumes.labels(vol).get(PROJECT) == self.project.name:
                    self.volumes.remove(vol)
                    self.event("✔", f"Volume {vol}", "Removed")
        if rmi:
            self._remove_images(rmi)

    def _remove_images(self, mode: str) -> None:
        from hoist.config import local_store
        from storage.errors import StorageError

        layout = local_store()
        for name in sorted(set(self.project.services) | set(self.project.disabled)):
            svc = self.project.services.get(name) or self.project.disabled[name]
            if mode == "local" and svc.get("image"):
                continue
            ref = image_name(self.project, name)
            try:
                found = layout.find(ref)
                for n in ([found.name] if found.name else layout.names_of(found.descriptor)):
                    layout.untag(n)
                    self.event("✔", f"Image {n}", "Removed")
            except StorageError:
                continue
        layout.gc()

    def stop_services(self, services: list[str] | None, timeout: float | None = None) -> None:
        for name in reversed(self.project.order(services or None, with_deps=False)):
            for c in self.service_containers(name).values():
                self.stop(c, timeout)

    def start_services(self, services: list[str] | None) -> None:
        started = _Started()
        names = self.project.order(services or None, with_deps=False)
        touched = False
        for name in names:
            self._wait_dependencies(name, started)
            for c in self.service_containers(name).values():
                touched = True
                if c.status()[0] != "running":
                    self.start(c)
                    self.event("✔", f"Container {c.name}", "Started")
        if not touched:
            raise ComposeError("no containers to start (run up first)")

    def rm(self, services: list[str] | None, stop: bool, remove_volumes: bool) -> None:
        for name in reversed(self.project.order(services or None, with_deps=False)):
            for c in self.service_containers(name).values():
                if c.status()[0] == "running":
                    if not stop:
                        continue
                    self.stop(c)
                self.remove(c)

    # -- logs -------------------------------------------------------------------------------------------
    def logs(self, services: list[str] | None, follow: bool, tail: int | None, color: bool,
             timestamps: bool = False, out: Any = None) -> None:
        containers = self.containers(services)
        follow_logs(containers, follow, tail, color, out or sys.stdout.buffer)


_COLORS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


@dataclass
class _Reader:
    container: Container
    reader: Any             # runtime.logfile.LogReader
    prefix: bytes
    partial: bytes = b""

    def emit(self, data: bytes, out: Any, final: bool) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        for line in lines:
            out.write(self.prefix + line + b"\n")


def follow_logs(containers: list[Container], follow: bool, tail: int | None, color: bool, out: Any) -> None:
    """Print each container's log (``runtime.logfile``'s records, stdout and stderr alike), each
    line prefixed ``name  | `` (coloured per service); with ``follow``, until every container
    has exited."""
    from runtime import logfile

    width = max((len(c.name) for c in containers), default=0)
    readers: list[_Reader] = []
    for i, c in enumerate(containers):
        prefix = f"{c.name:<{width}} | " if c.name else ""
        if color and prefix:
            prefix = f"\x1b[{_COLORS[i % len(_COLORS)]}m{prefix}\x1b[0m"
        r = _Reader(c, logfile.LogReader(c.path), prefix.encode())
        history = list(logfile.read_records(c.path, rotated_only=True)) + r.reader.read()
        if tail is not None:
            history = history[-tail:] if tail > 0 else []
        r.emit(b"".join(rec.data for rec in history), out, final=False)
        readers.append(r)
    out.flush()
    while readers:
        progressed = False
        for r in list(readers):
            records = r.reader.read()
            if records:
                progressed = True
                r.emit(b"".join(rec.data for rec in records), out, final=False)
                continue
            c = r.container
            if not (follow and c.path.exists() and c.status()[0] in ("running", "created", "restarting")):
                # One last read: the container may have written just before it exited.
                r.emit(b"".join(rec.data for rec in r.reader.read()), out, final=True)
                r.reader.close()
                readers.remove(r)
        out.flush()
        if not progressed and readers:
            time.sleep(0.1)


@contextlib.contextmanager
def stdout_to(stream: TextIO) -> Iterator[None]:
    """Send what a reused CLI verb prints on stdout (an image id, a ref) to ``stream``."""
    with contextlib.redirect_stdout(stream):
        yield


RunExec = Callable[[list[str]], int]


def _tmpfs_list(value: Any) -> list[str]:
    """compose's ``tmpfs:`` (a path or a list of ``/path[:options]``) as ``--tmpfs`` items."""
    if not value:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]
