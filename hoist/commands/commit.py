"""``hoist commit [-m MSG] [-a AUTHOR] CONTAINER [REPOSITORY[:TAG]]``: a container's changes as a
new image over its image, as ``docker commit`` makes it: the upper directory becomes one more
layer (``builder.layers.layer_from_upper``; the mount points hoist's init made for /etc/hosts,
/etc/hostname, /etc/resolv.conf and volumes left out, as docker keeps them in an init layer),
and the config is the container's (its Env without HOSTNAME, Entrypoint, Cmd, WorkingDir, User,
Labels, Healthcheck) over the image's, with a history entry, and ``-c`` instructions applied to it. A running
container is read as it runs (docker pauses it; hoist has no freezer here): a file changing
meanwhile fails the commit, cleanly."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
from typing import Any

from hoist import paths
from hoist.commands._changes import apply_changes
from hoist.config import local_store, parse_ref, user_errors
from hoist.errors import UserError
from storage import mediatypes as mt
from storage.digest import Digest
from storage.errors import StorageError
from storage.manifest import Descriptor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--message", default="", help="the history entry's comment")
    parser.add_argument("-a", "--author", default="", help='e.g. "Jane <jane@example.com>"')
    parser.add_argument("-p", "--pause", action="store_true", default=True,
                        help="accepted (docker pauses the container; hoist reads it as it runs)")
    parser.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                        help="a Dockerfile instruction for the new config (CMD, ENTRYPOINT, ENV, EXPOSE, "
                             "LABEL, ONBUILD, USER, VOLUME, WORKDIR)")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")


def run(args: argparse.Namespace) -> int:
    from builder.errors import BuilderError
    from builder.layers import layer_from_upper
    from runtime import containerfs
    from runtime.containers import ContainerStore
    from runtime.errors import RuntimeFailure

    ref = parse_ref(args.reference) if args.reference else None
    layout = local_store()
    try:
        container = ContainerStore(paths.containers_dir()).get(args.container)
        spec = container.spec
        lowers, upper = containerfs.layers(container)
        stubs = [*containerfs.MOUNT_STUBS, *(v.target.lstrip("/") for v in spec.volumes)]
        exclude = {s for s in stubs if not containerfs.in_image(lowers, s)}
    except RuntimeFailure as e:
        raise UserError(str(e)) from None
    with user_errors(), layout.lease():
        parent, config_desc = _parent(layout, spec.image_id)
        try:
            layer = layer_from_upper(upper, layout, "gzip", exclude=exclude)
        except BuilderError as e:
            raise UserError(f"cannot commit {container.name}: {e}") from None
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        config = apply_changes(_config(json.loads(layout.read_blob(config_desc.digest)), spec, str(layer.diff_id),
                                       now, args.message, args.author), args.change)
        docker = parent.get("mediaType") == mt.DOCKER_MANIFEST
        new_config = layout.put_json(config, config_desc.media_type)
        layers = list(parent.get("layers") or []) + [
            {"mediaType": mt.DOCKER_LAYER if docker else layer.media_type, "digest": str(layer.digest),
             "size": layer.size}]
        manifest_type = str(parent.get("mediaType") or mt.OCI_MANIFEST)
        manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": new_config.to_json(), "layers": layers}
        desc = layout.put_json(manifest, manifest_type)
        layout.tag(str(ref) if ref else str(desc.digest), desc)
    print(new_config.digest)
    return 0


def _parent(layout: Any, image_id: str) -> tuple[dict[str, Any], Descriptor]:
    """The manifest document and the config descriptor of the container's image."""
    for _, desc in layout.refs():
        try:
            _, manifest = layout.platform_image(desc)
        except (StorageError, ValueError):
            continue
        if manifest.config is not None and str(manifest.config.digest) == image_id:
            return json.loads(manifest.raw), manifest.config
    raise UserError(f"the container's image {Digest.parse(image_id).hex[:12]} is no longer in the store",
                    hint="pull or load it again")


def _config(base: dict[str, Any], spec: Any, diff_id: str, now: str, message: str, author: str) -> dict[str, Any]:
    config = dict(base)
    run_config = dict(config.get("config") or {})
    run_config["Env"] = [e for e in spec.env if not e.startswith("HOSTNAME=")]
    run_config["Entrypoint"] = spec.entrypoint
    run_config["Cmd"] = spec.cmd
    run_config["WorkingDir"] = "" if spec.cwd == "/" and not run_config.get("WorkingDir") else spec.cwd
    run_config["User"] = spec.user
    run_config["Labels"] = dict(spec.labels) or None
    if spec.stop_signal != int(signal.SIGTERM) or run_config.get("StopSignal"):
        run_config["StopSignal"] = signal.Signals(spec.stop_signal).name
    check = (spec.config or {}).get("Healthcheck")
    if check:
        run_config["Healthcheck"] = check        # the container's (its --health-* over the image's), as docker's
    config["config"] = {k: v for k, v in run_config.items() if v is not None}
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [diff_id]
    config["rootfs"] = rootfs
    entry: dict[str, Any] = {"created": now, "created_by": " ".join(spec.argv)}
    if message:
        entry["comment"] = message
    if author:
        entry["author"] = author
        config["author"] = author
    config["history"] = list(config.get("history") or []) + [entry]
    config["created"] = now
    return config
