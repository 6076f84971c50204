"""``hoist run``: run a command in a new container from a local image."""

from __future__ import annotations

import argparse
import gc
import sys

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin attached")
    parser.add_argument("--name", help="a unique name for the container")
    parser.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    parser.add_argument("--env-file", action="append", default=[], metavar="FILE")
    parser.add_argument("-v", "--volume", action="append", default=[], metavar="HOST:CTR[:ro]")
    parser.add_argument("-w", "--workdir", metavar="DIR")
    parser.add_argument("-u", "--user", metavar="USER[:GROUP]")
    parser.add_argument("--entrypoint", metavar="CMD", help="replace the image's ENTRYPOINT (and drop its CMD)")
    parser.add_argument("--network", "--net", default="none", metavar="MODE",
                        help="none (the default), host, bridge, a network's name, or container:NAME")
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
    parser.add_argument("-l", "--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                        help="set a label on the container (hoist ps --filter label=KEY finds it)")
    parser.add_argument("--init", action="store_true", help="run a reaper as PID 1 that forwards signals")
    parser.add_argument("--memory", "-m", metavar="SIZE", help="memory limit (e.g. 512m)")
    parser.add_argument("--cpus", type=float, metavar="N", help="CPU limit (e.g. 1.5)")
    parser.add_argument("--pids-limit", type=int, metavar="N")
    parser.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                        help="seccomp=unconfined or seccomp=PROFILE.json (docker's format); "
                             "no-new-privileges (always on)")
    parser.add_argument("--pull", default="missing", choices=("missing", "always", "never"),
                        help="pull the image first: missing (the default: when it is not local), always, never")
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import RunOptions, Runtime, StartFailed
    from runtime.spec import Limits, parse_size

    from storage.fsutil import secure_store_root

    from hoist.commands.pull import pull_for_run

    pull_for_run(args.image, args.pull)
    # An older hoist left its stores 0755: tighten them here too, not only in pull/load/images.
    runtime = Runtime(secure_store_root(paths.hoist_root()))
    try:
        limits = Limits(memory=parse_size(args.memory) if args.memory else None,
                        cpus=args.cpus, pids=args.pids_limit)
        opts = RunOptions(
            image=args.image, args=list(args.command), name=args.name, env=args.env,
            env_files=args.env_file, volumes=args.volume, workdir=args.workdir, user=args.user,
            entrypoint=args.entrypoint, network=args.network, hostname=args.hostname,
            init=args.init, limits=limits, remove=args.rm, detach=args.detach,
            interactive=args.interactive, seccomp=_seccomp_choice(args.security_opt),
            ip=args.ip, aliases=args.network_alias, publish=args.publish, publish_all=args.publish_all,
            dns=args.dns, add_hosts=args.add_host,
            labels=_labels(args.labels),
        )
        if args.network == "host" and (args.publish or args.publish_all):
            print("WARNING: Published ports are discarded when using host network mode",
                  file=sys.stderr)
        container = runtime.create(opts)
        # Everything alive now lives until this command exits: moving it out of the collector's
        # reach spares the exit's final collection (~7 ms) and keeps the forked monitor from
        # touching (copying) the parent's pages when it collects.
        gc.freeze()
        if not args.detach:
            return runtime.run_foreground(container, interactive=args.interactive)
        runtime.start_detached(container)
    except StartFailed as e:
        raise UserError(str(e), exit_code=e.exit_code) from None
    except RuntimeFailure as e:
        raise UserError(str(e), exit_code=125) from None
    except OSError as e:
        raise UserError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""), exit_code=125) from None
    print(container.id)
    return 0


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UserError(f"invalid --label {item!r}: expected KEY=VALUE", exit_code=125)
        labels[key] = value
    return labels


def _seccomp_choice(options: list[str]) -> str:
    """docker's ``--security-opt`` values that hoist knows; the last seccomp= wins, as in docker."""
    from runtime import seccomp

    choice = seccomp.DEFAULT
    for opt in options:
        key, sep, value = opt.partition("=")
        if key == "seccomp" and sep and value:
            choice = value
        elif key == "no-new-privileges" and value in ("", "true"):
            continue  # hoist always sets no_new_privs
        else:
            raise UserError(f"unsupported --security-opt {opt!r}",
                            hint="use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges",
                            exit_code=125)
    return choice
