"""``hoist run``: run a command in a new container from a local image."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from hoist import paths
from hoist.commands.attach import add_bool_flag, attach_streams
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser, create: bool = False) -> None:
    """run's flags; ``create`` (``hoist create``) leaves out those of attaching and detaching."""
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    parser.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
    if not create:
        parser.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
        parser.add_argument("--detach-keys", metavar="KEYS", help="the keys that detach (default ctrl-p,ctrl-q)")
        parser.add_argument("-a", "--attach", action="append", default=[], metavar="STREAM",
                            help="attach only STDIN, STDOUT or STDERR (repeatable; the others still go "
                                 "to the log)")
        add_bool_flag(parser, "--sig-proxy", "sig_proxy", True,
                      "proxy the signals hoist gets to the container (default true; not with -t)")
    parser.add_argument("--pull", default="missing", metavar="POLICY",
                        help="missing (default: pull an image that is not local), always or never")
    parser.add_argument("--restart", default="no", metavar="POLICY",
                        help="no (default), always, unless-stopped or on-failure[:N]")
    parser.add_argument("--name", help="a unique name for the container")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:CTR[:OPTS]",
                        help="a host path (created if missing) or a named volume on CTR; CTR alone: "
                             "an anonymous volume; OPTS: ro, rw, nocopy, z/Z (accepted, no SELinux here)")
    parser.add_argument("--mount", action="append", default=[], metavar="type=bind|volume|tmpfs,...",
                        help="docker's --mount: source=, target=, readonly, volume-nocopy, tmpfs-size=, ...")
    parser.add_argument("--tmpfs", action="append", default=[], metavar="CTR[:OPTS]",
                        help="a tmpfs on CTR (noexec,nosuid,nodev; size= default 64m)")
    parser.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")
    parser.add_argument("--read-only", action="store_true", help="mount the root file system read-only")
    parser.add_argument("-w", "--workdir", metavar="DIR")
    parser.add_argument("-u", "--user", metavar="USER[:GROUP]")
    parser.add_argument("--entrypoint", metavar="CMD", help="replace the image's ENTRYPOINT (and drop its CMD)")
    parser.add_argument("--network", "--net", metavar="MODE",
                        help="bridge (the default; HOIST_DEFAULT_NETWORK changes it), none, host, "
                             "a network's name, or container:NAME")
    parser.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOST:]CTR[/PROTO]",
                        help="publish a container port on the host (ranges: 8000-8001:80-81)")
    parser.add_argument("-P", "--publish-all", action="store_true",
                        help="publish every port the image EXPOSEs on an ephemeral host port")
    parser.add_argument("--ip", metavar="ADDR", help="the container's address on its user network")
    parser.add_argument("--network-alias", action="append", default=[], metavar="NAME",
                        help="another name the container has on its user network")
    parser.add_argument("--dns", action="append", default=[], metavar="IP", help="a nameserver")
    parser.add_argument("--add-host", action="append", default=[], metavar="NAME:IP",
                        help="a line for the container's /etc/hosts")
    parser.add_argument("--hostname", metavar="NAME")
    parser.add_argument("--init", action="store_true", help="run a reaper as PID 1 that forwards signals")
    parser.add_argument("--memory", "-m", metavar="SIZE", help="memory limit (e.g. 512m)")
    parser.add_argument("--cpus", type=float, metavar="N", help="CPU limit (e.g. 1.5)")
    parser.add_argument("--pids-limit", type=int, metavar="N")
    parser.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                        help="seccomp=unconfined or seccomp=PROFILE.json (docker's format); "
                             "no-new-privileges[=true|false] (off by default, as docker: setuid "
                             "binaries work, confined by seccomp and the capability set)")
    parser.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability (or ALL)")
    parser.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability (or ALL)")
    parser.add_argument("--privileged", action="store_true",
                        help="every capability, no seccomp filter, /proc unmasked (hoist keeps /sys "
                             "read-only, the device allow-list (see --device) and nodev mounts)")
    parser.add_argument("--device", action="append", default=[], metavar="HOST[:CTR][:rwm]",
                        help="give the container a host device")
    parser.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm (default 64m)")
    parser.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                        help="a resource limit, e.g. nofile=1024:2048")
    parser.add_argument("--stop-signal", metavar="SIGNAL", help="signal stop sends (default: the image's, or SIGTERM)")
    parser.add_argument("--stop-timeout", type=float, metavar="SECONDS",
                        help="seconds stop waits before SIGKILL (default 10)")
    parser.add_argument("--cidfile", metavar="FILE", help="write the container's id to FILE (which must not exist)")
    parser.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="set a label")
    parser.add_argument("--label-file", action="append", default=[], metavar="FILE",
                        help="labels from a file, one K=V a line")
    parser.add_argument("--log-driver", metavar="DRIVER", help="json-file (default) or none")
    parser.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="max-size=SIZE (default 20m), max-file=N (default 5): the log's rotation")
    # docker's health checks (runtime/health.py): over the image's HEALTHCHECK, field by field
    parser.add_argument("--health-cmd", metavar="CMD", help="command to run to check health (through the shell)")
    parser.add_argument("--health-interval", metavar="DURATION", help="time between checks (ms|s|m|h; default 30s)")
    parser.add_argument("--health-timeout", metavar="DURATION", help="longest a check may run (default 30s)")
    parser.add_argument("--health-retries", metavar="N", help="consecutive failures that make it unhealthy (default 3)")
    parser.add_argument("--health-start-period", metavar="DURATION",
                        help="time to start before failures count (default 0s)")
    parser.add_argument("--health-start-interval", metavar="DURATION",
                        help="time between checks during the start period (default 5s)")
    parser.add_argument("--no-healthcheck", action="store_true", help="disable the image's HEALTHCHECK")
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    from runtime.errors import Detached, RuntimeFailure
    from runtime.lifecycle import Runtime, StartFailed
    from storage.fsutil import secure_store_root

    # An older hoist left its stores 0755: tighten them here too, not only in pull/load/images.
    runtime = Runtime(secure_store_root(paths.hoist_root()))
    from hoist.commands.attach import detach_keys_option

    try:
        detach_keys = detach_keys_option(args.detach_keys)
    except UserError as e:
        raise UserError(str(e), exit_code=125) from None
    streams = attach_streams(args.attach)
    if args.detach and args.attach:
        raise UserError("Conflicting options: -a and -d")
    try:
        container = create_container(runtime, args)
        # Everything alive now lives until this command exits: moving it out of the collector's
        # reach spares the exit's final collection (~7 ms) and keeps the forked monitor from
        # touching (copying) the parent's pages when it collects.
        gc.freeze()
        if not args.detach and args.tty:
            return runtime.start_attached(container, args.interactive, detach_keys)
        if not args.detach and streams is not None and not streams & {"stdout", "stderr"}:
            # docker: with neither output attached, the id is printed and run returns once the
            # container runs (the container reads the caller's stdin with -i)
            runtime.start_detached(container, stdin=0 if args.interactive else None)
            print(container.id)
            return 0
        shown = frozenset(streams or ("stdout", "stderr"))
        if not args.detach and container.spec.restart and container.spec.restart.get("Name", "no") != "no":
            return runtime.run_following(container, shown, args.sig_proxy)
        if not args.detach and (streams is not None or not args.sig_proxy):
            # only some streams shown (the others still logged), or a caller that may go on a
            # signal while the container lives on: the container writes its log, the caller follows
            return runtime.attached(container, shown, args.interactive, args.sig_proxy)
        if not args.detach:
            return runtime.run_foreground(container, interactive=args.interactive)
        runtime.start_detached(container)
    except Detached:
        raise UserError("read escape sequence") from None
    except StartFailed as e:
        raise UserError(str(e), exit_code=e.exit_code) from None
    except RuntimeFailure as e:
        raise UserError(str(e), exit_code=125) from None
    except OSError as e:
        raise UserError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), exit_code=125) from None
    print(container.id)
    return 0


def create_container(runtime: Any, args: argparse.Namespace) -> Any:
    """The container ``run`` and ``create`` make from their (shared) flags: the image pulled by
    ``--pull``, the options checked, the container created (not started), ``--cidfile`` written."""
    from runtime.lifecycle import RunOptions
    from runtime.spec import Limits, parse_size

    pull_by_policy(args.image, args.pull)
    if args.network is None:
        from runtime.network import default_mode

        args.network = default_mode()
    limits = Limits(memory=parse_size(args.memory) if args.memory else None,
                    cpus=args.cpus, pids=args.pids_limit)
    opts = RunOptions(
        image=args.image, args=list(args.command), name=args.name, env=args.env,
        env_files=args.env_file, volumes=args.volume, workdir=args.workdir, user=args.user,
        entrypoint=args.entrypoint, network=args.network, hostname=args.hostname,
        init=args.init, limits=limits, remove=args.rm, detach=getattr(args, "detach", True),
        interactive=args.interactive, seccomp=_seccomp_choice(args.security_opt),
        log_driver=args.log_driver, log_opts=args.log_opt, labels=args.label, label_files=args.label_file,
        mounts=args.mount, tmpfs=args.tmpfs, volumes_from=args.volumes_from, read_only=args.read_only,
        cap_add=args.cap_add, cap_drop=args.cap_drop, privileged=args.privileged,
        no_new_privs=_no_new_privs(args.security_opt), devices=args.device,
        shm_size=parse_size(args.shm_size) if args.shm_size else 0, ulimits=args.ulimit,
        stop_signal=args.stop_signal, stop_timeout=args.stop_timeout,
        ip=args.ip, aliases=args.network_alias, publish=args.publish, publish_all=args.publish_all,
        dns=args.dns, add_hosts=args.add_host,
        restart=args.restart, tty=args.tty, healthcheck=health_options(args),
    )
    if args.network == "host" and (args.publish or args.publish_all):
        print("WARNING: Published ports are discarded when using host network mode", file=sys.stderr)
    if args.cidfile and os.path.lexists(args.cidfile):
        raise UserError(f"container ID file found, make sure the other container isn't running "
                        f"or delete {args.cidfile}", exit_code=125)
    container = runtime.create(opts)
    if args.cidfile:
        _write_cidfile(args.cidfile, container.id, runtime, container)
    return container


PULL_POLICIES = ("missing", "always", "never")


def pull_by_policy(image: str, policy: str) -> None:
    """``--pull POLICY`` (docker's semantics: ``missing`` pulls an image that is not local,
    ``always`` pulls every time, ``never`` leaves a missing image to the run's "no image" error).
    Decided here, so that a run that needs no pull loads no registry client (aiohttp alone is
    ~130 ms of imports); the pull itself is ``hoist.commands.pull.pull_for_run``."""
    if policy not in PULL_POLICIES:
        raise UserError(f"invalid --pull {policy!r}: use missing, always or never", exit_code=125)
    if policy == "never":
        return
    if policy == "missing":
        from runtime.errors import ImageNotFound, RuntimeFailure
        from runtime.image import load_image

        try:
            load_image(paths.images_dir(), image)
            return
        except ImageNotFound:
            pass
        except RuntimeFailure:
            return  # local but unusable: the run says why
    from hoist.commands.pull import pull_for_run

    pull_for_run(image, policy)


def health_options(args: argparse.Namespace) -> dict[str, object] | None:
    """The user's Config.Healthcheck from the ``--health-*`` flags (docker's CLI parsing)."""
    given = (args.health_cmd, args.health_interval, args.health_timeout, args.health_retries,
             args.health_start_period, args.health_start_interval)
    if all(v is None for v in given) and not args.no_healthcheck:
        return None             # the common case: no health module to import
    from runtime import health

    return health.from_flags(args.health_cmd, args.health_interval, args.health_timeout, args.health_retries,
                             args.health_start_period, args.health_start_interval, args.no_healthcheck)


def _write_cidfile(path: str, cid: str, runtime: object, container: object) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as e:
        runtime.remove(container, force=True)  # type: ignore[attr-defined]
        raise UserError(f"cannot create the container ID file {path}: {e.strerror}", exit_code=125) from None
    with os.fdopen(fd, "w") as f:
        f.write(cid)


def _no_new_privs(options: list[str]) -> bool:
    """``no-new-privileges`` (or ``=true``, ``:true``) turns it on; docker's default is off."""
    on = False
    for opt in options:
        key, _, value = (opt if "=" in opt else opt.replace(":", "=", 1)).partition("=")
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise UserError(f"invalid --security-opt {opt!r}", hint="no-new-privileges=true|false",
                                exit_code=125)
            on = value != "false"
    return on


def _seccomp_choice(options: list[str]) -> str:
    """docker's ``--security-opt`` values that hoist knows; the last seccomp= wins, as in docker."""
    from runtime import seccomp

    choice = seccomp.DEFAULT
    for opt in options:
        key, sep, value = (opt if "=" in opt else opt.replace(":", "=", 1)).partition("=")
        if key == "seccomp" and sep and value:
            choice = value
        elif key == "no-new-privileges":
            continue  # _no_new_privs reads it
        else:
            raise UserError(f"unsupported --security-opt {opt!r}",
                            hint="use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges",
                            exit_code=125)
    return choice


