"""``hoist stop``: send each container its stop signal, then SIGKILL after a grace period. The
containers are stopped at once (each in its own thread), their names printed in the order given
as each is done (docker's parallel stop); every failure is reported in one line at the end."""

from __future__ import annotations

import argparse

from hoist import paths
from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", type=float, default=None,
                        help="seconds before SIGKILL (default: the container's --stop-timeout, else 10)")
    parser.add_argument("-s", "--signal", help="the signal to send (default: the container's stop signal)")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def run(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from runtime.errors import RuntimeFailure
    from runtime.lifecycle import Runtime
    from runtime.spec import parse_signal

    runtime = Runtime(paths.hoist_root())
    try:
        sig = parse_signal(args.signal) if args.signal else None
    except RuntimeFailure as e:
        raise UserError(str(e)) from None

    def stop(ref: str) -> None:
        container = runtime.containers.get(ref)
        spec = container.spec
        timeout = args.time if args.time is not None else (spec.stop_timeout if spec.stop_timeout is not None
                                                          else 10.0)
        runtime.stop(container, timeout, sig=sig)

    failed = []
    with ThreadPoolExecutor(max(1, min(len(args.containers), 16))) as pool:
        futures = [pool.submit(stop, ref) for ref in args.containers]
        for ref, future in zip(args.containers, futures, strict=True):
            try:
                future.result()
                print(ref, flush=True)
            except RuntimeFailure as e:
                failed.append(str(e))
    if failed:
        raise UserError("; ".join(failed))
    return 0
