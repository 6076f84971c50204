"""``hoist registry serve [--addr HOST:PORT] [--root DIR] [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hoist.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the OCI distribution API")
    serve.add_argument("--config", help="YAML config (Distribution's format); default: embedded")
    serve.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--root", help="filesystem storage root (default /var/lib/hoist/registry)")
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")


def run(args: argparse.Namespace) -> int:
    from registry.server import config as cfgmod
    from registry.server.app import serve

    try:
        cfg = cfgmod.load(args.config)
        if args.addr:
            cfgmod.parse_addr(args.addr)
            cfg.addr = args.addr
        if args.root:
            cfg.driver, cfg.driver_params = "filesystem", {"rootdirectory": args.root}
        if args.no_access_log:
            cfg.access_log = False
    except cfgmod.ConfigError as e:
        raise UserError(str(e)) from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(addr: str) -> None:
        print(f"hoist registry listening on http://{addr} "
              f"(storage: {cfg.driver} {cfg.driver_params.get('rootdirectory', '')})".rstrip(), flush=True)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await serve(cfg, ready)
        except asyncio.CancelledError:
            pass
        except OSError as e:
            raise UserError(f"cannot listen on {cfg.addr}: {e.strerror}") from None
        except ValueError as e:
            raise UserError(str(e)) from None

    asyncio.run(main())
    return 0
