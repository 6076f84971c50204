"""hoist inspect REF...: an image's identity, manifest and config as JSON (docker's shape)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from hoist.commands.images import created_of, image_size
from hoist.config import local_store, parse_platform, user_errors
from hoist.errors import UserError
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.platform import Platform
from storage.manifest import Descriptor
from storage.reference import parse_reference


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="image name, digest or ID")
    parser.add_argument("--platform", help="os/arch[/variant] to pick from an index")


def run(args: argparse.Namespace) -> int:
    layout = local_store()
    platform = parse_platform(args.platform)
    out = []
    for text in args.refs:
        with user_errors():
            _, desc = layout.find(text)
        try:
            out.append(describe(layout, desc, platform))
        except StorageError as e:
            raise UserError(f"{text}: {e}") from None
    print(json.dumps(out, indent=4))
    return 0


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
