"""hoist images: list the local image store as ``docker images`` does. (Every verb that takes a
local image name finds it with ``ImageLayout.find``, docker's rules.)

One row per name, newest image first; ``-a`` is accepted (there are no intermediate images).
SIZE is the image's unpacked size as docker shows it (its layers' file bytes, the same however
the image arrived: pulled gzipped, loaded uncompressed, built), computed once per layer and kept
under ``$HOIST_ROOT/cache/layer-sizes/``. ``--filter``: ``dangling=true|false``,
``reference=PATTERN`` (docker's glob on the familiar name, with or without its tag),
``label=KEY[=VALUE]``, ``before=IMAGE``, ``since=IMAGE``. ``--format`` is a Go template over
``.ID .Repository .Tag .Digest .CreatedSince .CreatedAt .Size .Containers``, ``table ...``, or
``json``; ``-q`` prints the IDs; ``--digests`` adds the DIGEST column.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import time
from typing import Any

from hoist import filters, paths
from hoist.config import local_store
from hoist.errors import UserError
from hoist.progress import docker_size, human_duration
from storage.digest import Digest
from storage.errors import StorageError
from storage.layout import ImageLayout
from storage.manifest import Descriptor, Manifest
from storage.reference import parse_reference

FILTERS = ("dangling", "reference", "label", "before", "since")
DEFAULT_TABLE = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
DIGESTS_TABLE = "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
           "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS",
           "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="only this repository")
    parser.add_argument("-a", "--all", action="store_true", help="all images (hoist keeps no intermediate ones)")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("-q", "--quiet", action="store_true", help="only image IDs")
    parser.add_argument("--no-trunc", action="store_true", help="full image IDs")
    parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE")
    parser.add_argument("--format", metavar="TEMPLATE",
                        help="a Go template ('table ...' for columns with a header), or json")


class LayerSizes:
    """Unpacked layer sizes by diff_id, computed from the blob once and kept in the cache."""

    def __init__(self, layout: ImageLayout) -> None:
        self.layout = layout
        self.dir = paths.cache_dir() / "layer-sizes"

    def image(self, manifest: Manifest, config: dict[str, Any]) -> int:
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        return sum(self.layer(layer, str(diff)) for layer, diff in zip(manifest.layers, diff_ids, strict=False))

    def layer(self, desc: Descriptor, diff_id: str) -> int:
        from storage.archive import layer_content_size
        from storage.fsutil import atomic_write

        try:
            key = Digest.parse(diff_id).hex
        except StorageError:
            return 0
        cached = self.dir / key
        try:
            return int(cached.read_text())
        except (OSError, ValueError):
            pass
        if not self.layout.has_blob(desc.digest):
            return 0  # part of an index pulled for another platform
        try:
            size = layer_content_size(self.layout.blob_path(desc.digest))
        except StorageError:
            return desc.size
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(cached, str(size).encode(), durable=False)
        except OSError:
            pass  # a read-only cache only costs the next listing the same work
        return size


def image_size(manifest: Manifest) -> int:
    """Bytes the image's blobs take in the store (config and layers as stored)."""
    return sum(d.size for d in manifest.blob_references())


def unpacked_size(image_id: str) -> int:
    """The unpacked size of the local image whose config is ``image_id`` (0 if none has it)."""
    layout = local_store()
    sizes = LayerSizes(layout)
    for _, desc in layout.refs():
        try:
            _, manifest = layout.platform_image(desc)
            if manifest.config is not None and str(manifest.config.digest) == image_id:
                return sizes.image(manifest, layout.config(manifest))
        except (StorageError, ValueError):
            continue
    return 0


def created_of(layout: ImageLayout, manifest: Manifest) -> str:
    try:
        return str(layout.config(manifest).get("created") or "")
    except (StorageError, ValueError):
        return ""


def _created_ts(created: str) -> float | None:
    if not created:
        return None
    text = created.replace("Z", "+00:00")
    # Go writes up to nine fractional digits; Python reads six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def path_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never cross a ``/``; ``[...]`` classes; ``\\`` escapes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                raise UserError(f"invalid reference pattern {pattern!r}: syntax error in pattern")
            body = pattern[i + 1:end]
            if body.startswith("^"):
                body = "^" + body[1:].replace("\\", "\\\\")
            else:
                body = body.replace("\\", "\\\\")
            out.append(f"(?!/)[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(out), name) is not None


def _parse_filters(items: list[str]) -> dict[str, list[str]]:
    out = filters.parse_filters(items, FILTERS)
    for value in out.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise UserError(f"invalid filter 'dangling={value}'", hint="true or false")
    return out


def run(args: argparse.Namespace) -> int:
    filters = _parse_filters(args.filter)
    layout = local_store()
    sizes = LayerSizes(layout)
    rows: list[dict[str, Any]] = []
    wanted = _split(str(_parse_arg(args.repository))) if args.repository else None
    for ref_name, desc in layout.refs():
        repo, tag, familiar = _split(ref_name)
        if wanted and (repo != wanted[0] or wanted[1] not in ("<none>", tag)):
            continue
        try:
            _, manifest = layout.platform_image(desc)
            config = layout.config(manifest) if manifest.config else {}
            ident = str(manifest.config.digest) if manifest.config else str(desc.digest)
            size, created = sizes.image(manifest, config), str(config.get("created") or "")
        except (StorageError, json.JSONDecodeError):
            ident, size, created, config = str(desc.digest), 0, "", {}
        labels = (config.get("config") or {}).get("Labels") or {}
        rows.append({"repo": repo, "tag": tag, "familiar": familiar, "id": ident, "size": size,
                     "created": _created_ts(created), "digest": _repo_digest(layout, desc),
                     "labels": labels if isinstance(labels, dict) else {}})
    rows = [r for r in rows if _keep(r, filters, layout)]
    rows.sort(key=lambda r: (-(r["created"] or 0), r["repo"], r["tag"]))
    fmt = args.format or "table"
    if fmt == "json":
        fmt = "{{json .}}"
    if args.quiet and fmt == "table":
        fmt = "{{.ID}}"
    _print(fmt, [_context(r, args.no_trunc) for r in rows], args.digests)
    return 0


def _parse_arg(text: str) -> object:
    try:
        return parse_reference(text, default_tag=False)
    except StorageError as e:
        raise UserError(str(e)) from None


def _keep(row: dict[str, Any], filters: dict[str, list[str]], layout: ImageLayout) -> bool:
    from hoist.commands.ps import match_labels

    if "dangling" in filters:
        dangling = row["tag"] == "<none>"
        if not any((v.lower() in ("true", "1")) == dangling for v in filters["dangling"]):
            return False
    if "reference" in filters:
        if row["tag"] == "<none>":
            return False
        names = (row["familiar"], row["familiar"].rsplit(":", 1)[0])
        if not any(path_match(p, n) for p in filters["reference"] for n in names):
            return False
    if "label" in filters and not match_labels(filters["label"], row["labels"]):
        return False
    for key, before in (("before", True), ("since", False)):
        for text in filters.get(key, []):
            pivot = _created_of_image(layout, text)
            if row["created"] is None or (row["created"] >= pivot if before else row["created"] <= pivot):
                return False
    return True


def _created_of_image(layout: ImageLayout, text: str) -> float:
    try:
        _, manifest = layout.platform_image(layout.find(text).descriptor)
        created = _created_ts(str(layout.config(manifest).get("created") or ""))
    except StorageError as e:
        raise UserError(str(e)) from None
    return created or 0.0


def _repo_digest(layout: ImageLayout, desc: Descriptor) -> str:
    """The manifest digest a registry knows the image by (it was pulled or pushed: the store
    records where a digest came from or went); ``<none>`` for a local build or load, as docker."""
    return str(desc.digest) if layout.sources(desc.digest) else "<none>"


def _context(row: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    ident = row["id"] if no_trunc else row["id"].removeprefix("sha256:")[:12]
    created = row["created"]
    return {  # in key order: `{{json .}}` lists them so, as docker's map
        "Containers": "N/A",
        "CreatedAt": _go_time(created) if created else "",
        "CreatedSince": f"{human_duration(time.time() - created)} ago" if created else "N/A",
        "Digest": row["digest"],
        "ID": ident,
        "Repository": row["repo"],
        "SharedSize": "N/A",
        "Size": docker_size(row["size"]),
        "Tag": row["tag"],
        "UniqueSize": "N/A",
        "VirtualSize": docker_size(row["size"], 4),
    }


def _go_time(when: float) -> str:
    local = dt.datetime.fromtimestamp(int(when)).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z ") + (local.tzname() or "")


def _print(fmt: str, rows: list[dict[str, Any]], digests: bool) -> None:
    from hoist import gotemplate

    try:
        text = gotemplate.format_rows(fmt, [gotemplate.Struct("*formatter.imageContext", r) for r in rows],
                                      HEADERS, default=DIGESTS_TABLE if digests else DEFAULT_TABLE)
    except gotemplate.TemplateError as e:
        raise UserError(str(e)) from None
    print(text, end="")


def _split(ref_name: str | None) -> tuple[str, str, str]:
    """(repository, tag, familiar name) for display, docker's familiar form (``busybox``,
    ``registry.local:5000/team/app``); digest-only refs are ``<none>``."""
    if not ref_name or ref_name.startswith("sha256:"):
        return "<none>", "<none>", "<none>:<none>"
    try:
        ref = parse_reference(ref_name, default_tag=False)
    except StorageError:
        return ref_name, "<none>", ref_name
    familiar = ref.familiar()
    repo = familiar.rsplit("@", 1)[0]
    if ref.tag:
        repo = repo[: -(len(ref.tag) + 1)]
    return repo, ref.tag or "<none>", familiar

