"""hoist logout REGISTRY: forget the stored credentials for a registry."""

from __future__ import annotations

import argparse

from hoist.commands.login import registry_host
from hoist.config import remove_credentials
from registry.client.client import DOCKER_HUB


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry", nargs="?", default=DOCKER_HUB, metavar="REGISTRY",
                        help="host[:port] (default docker.io)")


def run(args: argparse.Namespace) -> int:
    registry = registry_host(args.registry)
    if remove_credentials(registry):
        print(f"Removing login credentials for {registry}")
    else:
        print(f"Not logged in to {registry}")
    return 0
