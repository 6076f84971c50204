"""``hoist registry serve [--addr HOST:PORT] [--root DIR] [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hoist.errors import UserError

if TYPE_CHECKING:
    from storage.drivers import StorageDriver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = sub.add_parser("serve", help="serve the OCI distribution API")
    serve.add_argument("--config", help="YAML config (Distribution's format); default: embedded")
    serve.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    serve.add_argument("--root", help="filesystem storage root (default /var/lib/hoist/registry)")
    serve.add_argument("--no-access-log", action="store_true", help="do not log each request")
    serve.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM, chain first)")
    serve.add_argument("--tls-key", help="the certificate's private key (PEM)")
    gc = sub.add_parser("gc", help="delete blobs no manifest references (safe while serving)")
    gc.add_argument("--config", help="YAML config (as for serve)")
    gc.add_argument("--root", help="filesystem storage root")
    gc.add_argument("--delete-untagged", action="store_true", help="also delete manifests no tag reaches")
    gc.add_argument("--grace", default="1h", help="never delete blobs younger than this (default 1h)")
    gc.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    pw = sub.add_parser("htpasswd", help="print an htpasswd line (bcrypt) for a user")
    pw.add_argument("user")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    key = sub.add_parser("keygen", help="write a new EC P-256 token signing key (PEM)")
    key.add_argument("path")


def run(args: argparse.Namespace) -> int:
    if args.action == "htpasswd":
        return _htpasswd(args)
    if args.action == "keygen":
        return _keygen(args)
    if args.action == "gc":
        return _gc(args)
    return _serve(args)


def _gc(args: argparse.Namespace) -> int:
    from registry.config_values import ConfigError, duration_seconds
    from registry.server import config as cfgmod
    from storage.drivers import create_driver
    from storage.errors import DriverError, StorageError
    from storage.gc import collect
    from storage.registry import RegistryStore

    try:
        cfg = cfgmod.load(args.config)
        if args.root:
            cfg.driver, cfg.driver_params = "filesystem", {"rootdirectory": args.root}
        grace = duration_seconds(args.grace, "--grace")
        driver = create_driver(cfg.driver, cfg.driver_params)
    except (ConfigError, ValueError, DriverError) as e:
        raise UserError(str(e)) from None

    async def main() -> None:
        try:
            with _one_gc_at_a_time(driver):
                report = await collect(RegistryStore(driver), delete_untagged=args.delete_untagged,
                                       grace=grace, dry_run=args.dry_run)
        except StorageError as e:
            raise UserError(f"gc stopped on a storage error, nothing more deleted: {e}") from None
        finally:
            await driver.close()
        verb = "would delete" if args.dry_run else "deleted"
        for name, d in report.untagged_manifests:
            print(f"{verb} untagged manifest {name}@{d}")
        for d in report.swept:
            print(f"{verb} blob {d}")
        print(f"{len(report.marked)} blobs in use, {verb} {len(report.swept)} ({report.bytes_freed} bytes), "
              f"kept {len(report.kept_young)} younger than the grace period and "
              f"{len(report.kept_referenced)} referenced during the run")

    asyncio.run(main())
    return 0


@contextlib.contextmanager
def _one_gc_at_a_time(driver: StorageDriver) -> Iterator[None]:
    """Two gc runs would clear each other's markers: hold an flock on a filesystem root (on S3
    the operator runs gc from one place, as the docs say)."""
    import fcntl
    import os

    from storage import paths

    local = driver.local_path(paths.gc_clock())
    if local is None:
        yield
        return
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(os.path.join(os.path.dirname(local), "lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError("another hoist registry gc is running on this root") from None
        yield


def _htpasswd(args: argparse.Namespace) -> int:
    import getpass

    from registry.auth.errors import PasswordTooLong
    from registry.auth.htpasswd import hash_password

    if ":" in args.user or not args.user:
        raise UserError(f"invalid user name {args.user!r}")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")
    if not password:
        raise UserError("empty password")
    try:
        line = f"{args.user}:{hash_password(password)}"
    except PasswordTooLong as e:
        raise UserError(f"{e}: choose a shorter password") from None
    print(line)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    import os

    from cryptography.hazmat.primitives import serialization

    from registry.auth.tokens import generate_key

    pem = generate_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    try:
        fd = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{args.path} exists; not overwriting a key") from None
    except OSError as e:
        raise UserError(f"cannot write {args.path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    print(f"wrote {args.path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from registry.config_values import ConfigError
    from registry.server import config as cfgmod
    from registry.server.app import serve
    from storage.errors import DriverError

    try:
        cfg = cfgmod.load(args.config)
        if args.addr:
            cfgmod.parse_addr(args.addr)
            cfg.addr = args.addr
        if args.root:
            cfg.driver, cfg.driver_params = "filesystem", {"rootdirectory": args.root}
        if args.no_access_log:
            cfg.access_log = False
        if bool(args.tls_cert) != bool(args.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if args.tls_cert:
            cfg.tls_certificate, cfg.tls_key = args.tls_cert, args.tls_key
        cfgmod.server_tls_context(cfg)
    except ConfigError as e:
        raise UserError(str(e)) from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ready(addr: str) -> None:
        print(f"hoist registry listening on {addr} "
              f"(storage: {cfg.driver} {cfg.driver_params.get('rootdirectory', '')})".rstrip(), flush=True)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None  # main() runs as asyncio.run's task
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await serve(cfg, ready)
        except asyncio.CancelledError:
            pass
        except DriverError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"cannot listen on {cfg.addr}: {e.strerror}") from None
        except ValueError as e:
            raise UserError(str(e)) from None

    asyncio.run(main())
    return 0
