"""hoist login REGISTRY: check credentials against the registry's /v2/ and store them where
docker and podman keep theirs (``~/.docker/config.json``, or ``$DOCKER_CONFIG``)."""

from __future__ import annotations

import argparse
import getpass
import sys

from hoist.config import open_client, store_credentials, user_errors
from hoist.errors import UserError
from registry.client.auth import Credentials
from registry.client.client import DOCKER_HUB

_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", DOCKER_HUB}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry", nargs="?", default=DOCKER_HUB, metavar="REGISTRY",
                        help="host[:port] (default docker.io)")
    parser.add_argument("-u", "--username")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("-p", "--password")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP or unverified HTTPS")


def registry_host(text: str) -> str:
    """``https://host:5000/`` → ``host:5000``; Docker Hub's aliases → ``docker.io``."""
    host = text.split("://", 1)[-1].split("/", 1)[0].strip()
    if not host:
        raise UserError(f"invalid registry {text!r}")
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _credentials(args: argparse.Namespace) -> Credentials:
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise UserError("no username given", hint="use -u USER")
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        password = args.password
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
    else:
        raise UserError("no password given", hint="use -p PASSWORD or --password-stdin")
    if not username or not password:
        raise UserError("username and password must not be empty")
    return Credentials(username, password)


async def run(args: argparse.Namespace) -> int:
    registry = registry_host(args.registry)
    credentials = _credentials(args)
    with user_errors():
        async with open_client(registry, args.insecure, credentials=credentials) as client:
            await client.ping()
    path = store_credentials(registry, credentials)
    print(f"Login Succeeded (credentials stored in {path})")
    return 0
