"""``hoist start``: start stopped containers again (``-a`` attached, ``--all-restartable`` at boot)."""

from __future__ import annotations

import argparse
import sys

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--attach", action="store_true",
                        help="attach the output and wait for the exit; the signals hoist gets go to the "
                             "container (without -t), as docker's")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin too")
    parser.add_argument("--detach-keys", metavar="KEYS", help="the keys that detach (default ctrl-p,ctrl-q)")
    parser.add_argument("--all-restartable", action="store_true",
                        help="start every container whose restart policy brings it back after a reboot "
                             "(contrib/systemd/hoist-restart.service runs this at boot)")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime, StartFailed
    from runtime.errors import Detached

    runtime = Runtime(paths.hoist_root())
    if args.all_restartable:
        if args.containers or args.attach or args.interactive:
            raise UserError("--all-restartable takes no container names and no -a/-i")
        return _start_restartable(runtime)
    if not args.containers:
        raise UserError("start needs at least one container", hint="hoist start CONTAINER...")
    attach = args.attach or args.interactive
    from hoist.commands.attach import detach_keys_option

    detach_keys = detach_keys_option(args.detach_keys)
    if attach and len(args.containers) > 1:
        raise UserError("you cannot start and attach multiple containers at once")
    failed = []
    for ref in args.containers:
        try:
            code = runtime.start(runtime.containers.get(ref), attach=attach, interactive=args.interactive,
                                 detach_keys=detach_keys)
        except StartFailed as e:
            if attach:
                raise UserError(str(e), exit_code=e.exit_code) from None
            failed.append(f"{ref}: {e}")
            continue
        except RuntimeFailure as e:
            failed.append(str(e))
            continue
        except Detached:
            raise UserError("read escape sequence") from None
        if attach:
            return int(code or 0)
        print(ref)
    if failed:
        raise UserError("; ".join(failed))
    return 0


def _start_restartable(runtime) -> int:
    """After a reboot: what dockerd brings back when it starts (runtime.restart.restart_at_boot)."""
    from runtime.errors import RuntimeFailure
    from runtime.restart import RestartPolicy, restart_at_boot

    failed = []
    for container in reversed(runtime.containers.all()):   # oldest first
        try:
            status, state = container.status()
            spec = container.spec
        except RuntimeFailure:
            continue
        if status in ("running", "restarting"):
            continue
        if not restart_at_boot(RestartPolicy.from_json(spec.restart), state, int(state.get("exit_code", 0))):
            continue
        try:
            runtime.start(container)
            print(spec.name)
        except RuntimeFailure as e:
            failed.append(f"{spec.name}: {e}")
    for line in failed:
        print(f"hoist start: {line}", file=sys.stderr)
    return 1 if failed else 0
