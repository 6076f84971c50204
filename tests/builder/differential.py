"""Differential build harness: build one Dockerfile + context with BuildKit, buildah and hoist,
normalise each result and report precisely where they differ.

Normal form of an image (``Normalised``):

- ``rootfs``: the flattened root filesystem, path -> ``Entry`` (type, mode, uid, gid, size, sha256 of
  the content, link target, hardlink group), computed by applying the layers in order with
  whiteouts (``.wh.NAME``) and opaque markers (``.wh..wh..opq``) as the OCI image spec says;
- ``config``: the container config fields a build sets (Env, Cmd, Entrypoint, WorkingDir, User,
  ExposedPorts, Labels, Volumes, StopSignal, Healthcheck, Shell, OnBuild), empty values dropped;
- ``history``: (created_by, empty_layer) per entry, and ``layers``: the number of diff_ids.

The base image every fixture builds on is written here, byte for byte, as a docker-archive:
``FROM scratch`` plus Debian's busybox-static with one symlink per applet the fixtures use, an
/etc/passwd and /etc/group with named users, and /tmp. Each builder loads that same archive
(``docker load``, ``buildah pull docker-archive:``, ``hoist load``), so the three start from the
same layer.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

BASE_REF = "busybox:hoist-test"
BUSYBOX = Path("/bin/busybox")

# The applets the fixtures run (busybox-static decides by argv[0]).
APPLETS = (
    "sh", "echo", "mkfifo", "cat", "ls", "mkdir", "rm", "rmdir", "touch", "chmod", "chown", "ln", "cp", "mv",
    "id", "whoami", "env", "printf", "test", "[", "true", "false", "sleep", "stat", "find", "sed",
    "grep", "tar", "gzip", "wc", "head", "sort", "hostname", "pwd", "readlink", "sha256sum", "seq",
    "dd", "xargs", "tr", "cut", "basename", "dirname", "uname", "date",
)

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
    "web:x:1001:1001:web:/home/web:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "daemon:x:1:\n"
    "staff:x:50:app\n"
    "app:x:1000:\n"
    "web:x:1001:\n"
    "nogroup:x:65534:\n"
)

CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels", "Volumes",
                 "StopSignal", "Healthcheck", "Shell", "OnBuild")


# --------------------------------------------------------------------------------------------
# The base image


def base_layer() -> bytes:
    """The base image's single layer: an uncompressed, deterministic tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.uname = info.gname = ""
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for d, mode in (("bin", 0o755), ("etc", 0o755), ("home", 0o755), ("home/app", 0o755),
                        ("root", 0o700), ("tmp", 0o1777), ("usr", 0o755), ("usr/share", 0o755),
                        ("usr/share/doc", 0o755), ("var", 0o755)):
            add(d, tarfile.DIRTYPE, mode)
        add("bin/busybox", tarfile.REGTYPE, 0o755, BUSYBOX.read_bytes())
        for applet in sorted(APPLETS):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
        add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
        add("usr/share/doc/README", tarfile.REGTYPE, 0o644, b"base image file\n")
        add("usr/share/doc/old", tarfile.REGTYPE, 0o644, b"replaced by the opaque fixture\n")
        add("var/base-file", tarfile.REGTYPE, 0o600, b"deleted by the whiteout fixture\n")
    return buf.getvalue()


def write_base_archive(path: Path, ref: str = BASE_REF) -> Path:
    """A docker-archive (``docker save`` format) of the base image, tagged ``ref``."""
    layer = base_layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "busybox-static base (tests)"}],
    }
    raw_config = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(raw_config).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
    with tarfile.open(path, "w") as tar:
        for name, data in ((config_name, raw_config), (layer_name, layer),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------------------------
# Normal form


@dataclass(frozen=True, slots=True)
class Entry:
    """One path of a flattened root filesystem. ``link`` is a symlink's target; ``group`` names a
    hardlink group by its smallest member's path (None when the file has one link)."""

    type: str  # "file", "dir", "symlink", "fifo", "char", "block"
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""
    link: str = ""
    group: str | None = None

    def describe(self) -> str:
        parts = [self.type, f"mode={self.mode:o}", f"uid={self.uid}", f"gid={self.gid}"]
        if self.type == "file":
            parts += [f"size={self.size}", f"sha256={self.sha256[:12]}"]
        if self.link:
            parts.append(f"-> {self.link}")
        if self.group:
            parts.append(f"hardlink-group={self.group}")
        return " ".join(parts)


@dataclass
class Normalised:
    rootfs: dict[str, Entry]
    config: dict[str, Any]
    history: list[tuple[str, bool]]
    layers: int
    raw_config: dict[str, Any] = field(default_factory=dict)


_TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
          tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block",
          tarfile.CONTTYPE: "file"}


def _clean(name: str) -> str:
    """A tar member name as an absolute, normalised path ("./a/b/" -> "/a/b")."""
    return posixpath.normpath("/" + name.lstrip("/"))


class _Tree:
    """A root filesystem being assembled; hardlinked paths share one inode number."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.inode: dict[str, int] = {}
        self._next = 0

    def _new_inode(self) -> int:
        self._next += 1
        return self._next

    def remove(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for p in [p for p in self.entries if p == path or p.startswith(prefix)]:
            del self.entries[p]
            self.inode.pop(p, None)

    def clear_children(self, path: str) -> None:
        prefix = path.rstrip("/") + "/"
        for p in [p for p in self.entries if p.startswith(prefix)]:
            del self.entries[p]
            self.inode.pop(p, None)

    def apply(self, layer: IO[bytes]) -> None:
        with tarfile.open(fileobj=layer, mode="r|*") as tar:
            whiteouts: list[str] = []
            opaque: list[str] = []
            members: list[tuple[tarfile.TarInfo, str, bytes | None]] = []
            for info in tar:
                path = _clean(info.name)
                base = posixpath.basename(path)
                parent = posixpath.dirname(path)
                if base == ".wh..wh..opq":
                    opaque.append(parent)
                    continue
                if base.startswith(".wh."):
                    whiteouts.append(posixpath.join(parent, base[4:]))
                    continue
                data = None
                if info.isreg():
                    f = tar.extractfile(info)
                    data = f.read() if f else b""
                members.append((info, path, data))
            # Whiteouts and opaque markers hide what lower layers had, never this layer's own files.
            for d in opaque:
                self.clear_children(d)
            for w in whiteouts:
                self.remove(w)
            for info, path, data in members:
                self._add(info, path, data)

    def _add(self, info: tarfile.TarInfo, path: str, data: bytes | None) -> None:
        existing = self.entries.get(path)
        if existing is not None and not (existing.type == "dir" and info.isdir()):
            self.remove(path)
        if info.islnk():
            target = _clean(info.linkname)
            if target not in self.entries:
                raise ValueError(f"hardlink {path} -> {target}: target not in the tree")
            t = self.entries[target]
            self.entries[path] = t
            self.inode[path] = self.inode[target]
            return
        kind = _TYPES.get(info.type)
        if kind is None:
            raise ValueError(f"{path}: unsupported tar entry type {info.type!r}")
        content = data or b""
        self.entries[path] = Entry(
            type=kind, mode=info.mode & 0o7777, uid=info.uid, gid=info.gid,
            size=len(content) if kind == "file" else 0,
            sha256=hashlib.sha256(content).hexdigest() if kind == "file" else "",
            link=info.linkname if kind == "symlink" else "")
        self.inode[path] = self._new_inode()

    def result(self) -> dict[str, Entry]:
        groups: dict[int, list[str]] = {}
        for p, ino in self.inode.items():
            if self.entries[p].type != "dir":
                groups.setdefault(ino, []).append(p)
        out = dict(self.entries)
        for members in groups.values():
            if len(members) > 1:
                name = min(members)
                for p in members:
                    e = out[p]
                    out[p] = Entry(e.type, e.mode, e.uid, e.gid, e.size, e.sha256, e.link, name)
        out.pop("/", None)
        return out


def flatten(layers: Iterable[IO[bytes]]) -> dict[str, Entry]:
    """Apply layer tars (any compression tarfile sniffs) in order; the resulting tree."""
    tree = _Tree()
    for layer in layers:
        tree.apply(layer)
    return tree.result()


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def _normal_config(config: Mapping[str, Any]) -> dict[str, Any]:
    c = config.get("config") or {}
    out: dict[str, Any] = {}
    for key in CONFIG_FIELDS:
        value = c.get(key)
        if value in (None, "", [], {}):
            continue
        out[key] = value
    return out


def normalise(config: Mapping[str, Any], layers: Iterable[bytes]) -> Normalised:
    history = [(h.get("created_by", ""), bool(h.get("empty_layer", False))) for h in config.get("history") or []]
    rootfs = flatten(io.BytesIO(_decompress(layer)) for layer in layers)
    return Normalised(rootfs=rootfs, config=_normal_config(config), history=history,
                      layers=len((config.get("rootfs") or {}).get("diff_ids") or []), raw_config=dict(config))


def read_archive(path: Path) -> tuple[dict[str, Any], list[bytes]]:
    """The config and the layer blobs of the single image in a docker-archive or OCI archive."""
    with tarfile.open(path) as tar:
        names = set(tar.getnames())

        def read(name: str) -> bytes:
            f = tar.extractfile(name[2:] if name.startswith("./") and name[2:] in names else name)
            if f is None:
                raise ValueError(f"{path}: {name} is not a file")
            return f.read()

        if "manifest.json" in names:
            manifest = json.loads(read("manifest.json"))[0]
            return json.loads(read(manifest["Config"])), [read(name) for name in manifest["Layers"]]
        index = json.loads(read("index.json"))
        desc = index["manifests"][0]
        m = json.loads(read(f"blobs/{desc['digest'].replace(':', '/')}"))
        if "manifests" in m:  # an index inside the index
            m = json.loads(read(f"blobs/{m['manifests'][0]['digest'].replace(':', '/')}"))
        config = json.loads(read(f"blobs/{m['config']['digest'].replace(':', '/')}"))
        return config, [read(f"blobs/{layer['digest'].replace(':', '/')}") for layer in m["layers"]]


def read_layout(layout: Path, ref: str) -> tuple[dict[str, Any], list[bytes]]:
    """The config and layers of ``ref`` in an OCI image layout (hoist's local store)."""
    index = json.loads((layout / "index.json").read_text())
    want = {ref, f"docker.io/library/{ref}", f"docker.io/{ref}"}
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") in want:
            break
    else:
        raise KeyError(f"{ref} not in {layout}")

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / digest.replace(":", "/")).read_bytes()

    m = json.loads(blob(desc["digest"]))
    config = json.loads(blob(m["config"]["digest"]))
    return config, [blob(layer["digest"]) for layer in m["layers"]]


# --------------------------------------------------------------------------------------------
# Comparison


@dataclass(frozen=True, slots=True)
class Allowance:
    """A known, explained difference between the spec (BuildKit) and a peer: ``kind`` is
    "path" (``key`` a path whose entry may differ or be missing on one side), "config"
    (``key`` a config field) or "history"."""

    kind: str
    key: str
    why: str


# docker 20.10's BuildKit (the spec's binary here) writes HEALTHCHECK history as Go's %q of a
# *HealthConfig with four durations-and-retries fields: &{["CMD-SHELL" "true"] "0s" "0s" "0s" '\x00'}.
# Current BuildKit (dockerfile2llb dispatchHealthcheck; its TestDispatchHealthcheckHistory) writes
# %+v of the HealthcheckConfig value, which has StartInterval too:
# {Test:[CMD-SHELL true] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}.
# Current BuildKit is the spec for hoist, so the spec's entries of exactly the 20.10 shape are
# rewritten to the current one (StartInterval 0s: 20.10 has none) before history is compared.
_GO_STRING = r'"(?:[^"\\]|\\.)*"'
_HEALTHCHECK_2010 = re.compile(
    rf"HEALTHCHECK &\{{\[((?:{_GO_STRING}(?: {_GO_STRING})*)?)\] ({_GO_STRING}) ({_GO_STRING}) ({_GO_STRING}) "
    r"'((?:[^'\\]|\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[0-7]{3}|[abfnrtv\\']))+)'\}")
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
               "\\": "\\", '"': '"', "'": "'"}


def _go_unquote(text: str) -> str:
    """The value of a Go quoted string or rune literal body (escapes as strconv.Quote writes them)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = text[i + 1]
        if kind in _GO_ESCAPES:
            out.append(_GO_ESCAPES[kind])
            i += 2
        elif kind in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[kind]
            out.append(chr(int(text[i + 2:i + 2 + width], 16)))
            i += 2 + width
        else:
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
    return "".join(out)


def current_buildkit_created_by(created_by: str) -> str:
    """A history entry as current BuildKit writes it, given docker 20.10's: only the HEALTHCHECK
    form above differs (see there); anything else is returned unchanged."""
    m = _HEALTHCHECK_2010.fullmatch(created_by)
    if not m:
        return created_by
    test = [_go_unquote(t[1:-1]) for t in re.findall(_GO_STRING, m.group(1))]
    interval, timeout, start = (_go_unquote(g[1:-1]) for g in m.group(2, 3, 4))
    retries = ord(_go_unquote(m.group(5)))
    return (f"HEALTHCHECK {{Test:[{' '.join(test)}] Interval:{interval} Timeout:{timeout} "
            f"StartPeriod:{start} StartInterval:0s Retries:{retries}}}")


def compare(spec: Normalised, other: Normalised, *, allow: Iterable[Allowance] = (),
            history: bool = True, spec_name: str = "buildkit", other_name: str = "other",
            history_rewrites: Mapping[str, str] | None = None) -> list[str]:
    """Every difference of ``other`` from ``spec``, one line each, allowances excluded. The
    spec's history is read as current BuildKit writes it (``current_buildkit_created_by``);
    ``history_rewrites`` maps further exact created_by strings of the spec to what current
    BuildKit writes for them (differences of docker 20.10's BuildKit, each explained where given)."""
    allowed = list(allow)
    allowed_paths = {a.key for a in allowed if a.kind == "path"}
    allowed_fields = {a.key for a in allowed if a.kind == "config"}
    diffs: list[str] = []
    for path in sorted(set(spec.rootfs) | set(other.rootfs)):
        if path in allowed_paths or any(path.startswith(p.rstrip("/") + "/") for p in allowed_paths if p.endswith("/")):
            continue
        a, b = spec.rootfs.get(path), other.rootfs.get(path)
        if a == b:
            continue
        if a is None:
            assert b is not None
            diffs.append(f"{path}: only in {other_name} ({b.describe()})")
        elif b is None:
            diffs.append(f"{path}: missing from {other_name} ({spec_name}: {a.describe()})")
        else:
            diffs.append(f"{path}: {spec_name} {a.describe()} != {other_name} {b.describe()}")
    for key in CONFIG_FIELDS:
        if key in allowed_fields:
            continue
        a_val, b_val = spec.config.get(key), other.config.get(key)
        if a_val != b_val:
            diffs.append(f"config {key}: {spec_name} {a_val!r} != {other_name} {b_val!r}")
    if history and not any(a.kind == "history" for a in allowed):
        rewrites = history_rewrites or {}
        spec_history = [(current_buildkit_created_by(rewrites.get(c, c)), e) for c, e in spec.history]
        if spec_history != other.history:
            diffs.append(f"history: {spec_name} {spec_history!r} != {other_name} {other.history!r}")
        if spec.layers != other.layers:
            diffs.append(f"diff_ids: {spec_name} {spec.layers} != {other_name} {other.layers}")
    return diffs


def expected_tree(spec: Mapping[str, Mapping[str, Any]]) -> dict[str, Entry]:
    """Entries from a fixture's ``expect.json`` "files" map: path -> {type, mode (octal string),
    uid, gid, content (text) | link | hardlink group}."""
    out: dict[str, Entry] = {}
    for path, e in spec.items():
        content = str(e.get("content", "")).encode()
        kind = e.get("type", "file")
        out[path] = Entry(
            type=kind, mode=int(str(e.get("mode", "644" if kind == "file" else "755")), 8),
            uid=int(e.get("uid", 0)), gid=int(e.get("gid", 0)),
            size=len(content) if kind == "file" else 0,
            sha256=hashlib.sha256(content).hexdigest() if kind == "file" else "",
            link=str(e.get("link", "")), group=e.get("group"))
    return out


# --------------------------------------------------------------------------------------------
# Fixtures and builders


FIXTURES = Path(__file__).parent / "build_fixtures"


@dataclass(frozen=True)
class Fixture:
    """``build_fixtures/<name>/``: a Dockerfile, its context, and an optional ``fixture.json``:
    build_args, target, ``newer`` (a feature BuildKit 20.10 lacks: hoist-only, checked against
    ``expect``), ``allow`` (buildah allowances), ``dockerignore`` etc."""

    name: str
    path: Path
    meta: Mapping[str, Any]

    @property
    def build_args(self) -> dict[str, str]:
        return dict(self.meta.get("build_args", {}))

    @property
    def target(self) -> str | None:
        return self.meta.get("target")

    @property
    def newer(self) -> bool:
        return bool(self.meta.get("newer", False))


def load_fixtures() -> list[Fixture]:
    out = []
    for d in sorted(FIXTURES.iterdir()):
        if not (d / "Dockerfile").is_file():
            continue
        meta_path = d / "fixture.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        out.append(Fixture(d.name, d, meta))
    return out


def prepare_context(fixture: Fixture, dest: Path) -> Path:
    """A copy of the fixture's context in ``dest`` (fixture.json dropped), plus what git cannot
    hold (tar archives generated, hardlinks made from ``hardlinks`` pairs, empty dirs)."""
    shutil.copytree(fixture.path, dest, symlinks=True, ignore=shutil.ignore_patterns("fixture.json", "expect.json"))
    for name, member_files in fixture.meta.get("tars", {}).items():
        _make_tar(dest / name, member_files)
    for target, link in fixture.meta.get("hardlinks", []):
        (dest / link).parent.mkdir(parents=True, exist_ok=True)  # git keeps no directory of links alone
        os.link(dest / target, dest / link)
    for d in fixture.meta.get("empty_dirs", []):
        (dest / d).mkdir(parents=True, exist_ok=True)
    for path, mode in fixture.meta.get("modes", {}).items():
        os.chmod(dest / path, int(mode, 8))
    return dest


def _make_tar(path: Path, files: Mapping[str, str]) -> None:
    """A tar of ``files`` (member -> text; a name ending in / is a dir), compressed by the
    archive name's suffix (.tar.gz/.tgz, .tar.xz, .tar.bz2, .tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.uid, info.gid = 1_600_000_000, 1234, 5678
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                data = text.encode()
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    n = path.name
    if n.endswith((".gz", ".tgz")):
        raw = gzip.compress(raw, mtime=0)
    elif n.endswith(".xz"):
        raw = lzma.compress(raw)
    elif n.endswith(".bz2"):
        raw = bz2.compress(raw)
    path.write_bytes(raw)


class Builder(Protocol):
    name: str

    def build(self, context: Path, *, tag: str, build_args: Mapping[str, str], target: str | None,
              work: Path) -> Normalised: ...


class BuildError(AssertionError):
    pass


def _run(argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    res = subprocess.run(argv, capture_output=True, env=dict(os.environ, **(env or {})), timeout=timeout)
    if res.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed ({res.returncode}):\n"
                         f"{res.stdout.decode(errors='replace')[-3000:]}{res.stderr.decode(errors='replace')[-3000:]}")
    return res.stdout.decode(errors="replace")


def _flag_args(build_args: Mapping[str, str], target: str | None) -> list[str]:
    argv = [a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")]
    return argv + (["--target", target] if target else [])


class BuildKit:
    """Debian's docker 20.10 with DOCKER_BUILDKIT=1 against a private dockerd."""

    name = "buildkit"

    def __init__(self, socket: Path, client_config: Path, docker: str = "/usr/bin/docker") -> None:
        self.docker = docker
        self.env = {"DOCKER_HOST": f"unix://{socket}", "DOCKER_CONFIG": str(client_config), "DOCKER_BUILDKIT": "1"}

    def load_base(self, archive: Path) -> None:
        _run([self.docker, "load", "-i", str(archive)], self.env)

    def build(self, context: Path, *, tag: str, build_args: Mapping[str, str], target: str | None,
              work: Path, no_cache: bool = False) -> Normalised:
        self.build_only(context, tag=tag, build_args=build_args, target=target, no_cache=no_cache)
        out = work / "buildkit.tar"
        _run([self.docker, "save", "-o", str(out), tag], self.env)
        return normalise(*read_archive(out))

    def build_only(self, context: Path, *, tag: str, build_args: Mapping[str, str] = {}, target: str | None = None,
                   no_cache: bool = False) -> None:
        _run([self.docker, "build", "--network", "host", "-q", "-t", tag, *_flag_args(build_args, target),
              *(["--no-cache"] if no_cache else []), str(context)], self.env)

    def remove(self, tag: str) -> None:
        subprocess.run([self.docker, "rmi", "-f", tag], capture_output=True, env=dict(os.environ, **self.env))


class Buildah:
    """``buildah bud --isolation chroot --storage-driver vfs`` over a private storage root. The docker
    format, since OCI image configs cannot hold Healthcheck, Shell, OnBuild (buildah drops them)."""

    name = "buildah"

    def __init__(self, root: Path, buildah: str = "buildah") -> None:
        self.buildah = buildah
        self.globals = ["--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]

    def load_base(self, archive: Path) -> None:
        _run([self.buildah, *self.globals, "pull", "-q", f"docker-archive:{archive}"])

    def build(self, context: Path, *, tag: str, build_args: Mapping[str, str], target: str | None,
              work: Path, no_cache: bool = False) -> Normalised:
        self.build_only(context, tag=tag, build_args=build_args, target=target, no_cache=no_cache)
        out = work / "buildah.tar"
        _run([self.buildah, *self.globals, "push", "-q", tag, f"docker-archive:{out}:{tag}"])
        return normalise(*read_archive(out))

    def build_only(self, context: Path, *, tag: str, build_args: Mapping[str, str] = {}, target: str | None = None,
                   no_cache: bool = False, layers: bool = False) -> None:
        try:
            self._bud(context, tag, build_args, target, no_cache, layers)
        except BuildError as e:
            # buildah 1.28's chroot isolation re-execs itself from a sealed memfd copy, which now and
            # then fails with EBUSY on a loaded machine ("sealing memfd copy: Device or resource busy").
            # That is buildah's flake, not a build result: retried once, and only for that message.
            if "sealing memfd copy" not in str(e):
                raise
            self._bud(context, tag, build_args, target, no_cache, layers)

    def _bud(self, context: Path, tag: str, build_args: Mapping[str, str], target: str | None,
             no_cache: bool, layers: bool) -> None:
        _run([self.buildah, *self.globals, "bud", "--isolation", "chroot", "--pull=never", "--format", "docker",
              "-q", "-t", tag, *(["--layers"] if layers else []), *_flag_args(build_args, target),
              *(["--no-cache"] if no_cache else []), str(context)], {"BUILDAH_ISOLATION": "chroot"})

    def remove(self, tag: str) -> None:
        subprocess.run([self.buildah, *self.globals, "rmi", "-f", tag], capture_output=True)


class NotLanded(BuildError):
    """``hoist build`` answered that only ``--check`` is implemented."""


class Hoist:
    """``hoist build`` with its own HOIST_ROOT; the result read from the local OCI layout."""

    name = "hoist"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {"HOIST_ROOT": str(root)}

    def cli(self, *args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True,
                             env=dict(os.environ, **self.env), timeout=600)
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace")
            if "only 'hoist build --check' is implemented" in err:
                raise NotLanded(err.strip())
            raise BuildError(f"hoist {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout.decode(errors='replace')[-3000:]}{err[-3000:]}")
        return res.stdout.decode(errors="replace")

    def load_base(self, archive: Path) -> None:
        self.cli("load", "-i", str(archive))

    def build(self, context: Path, *, tag: str, build_args: Mapping[str, str], target: str | None,
              work: Path, no_cache: bool = False) -> Normalised:
        self.build_only(context, tag=tag, build_args=build_args, target=target, no_cache=no_cache)
        return normalise(*read_layout(self.root / "images", tag))

    def build_only(self, context: Path, *, tag: str, build_args: Mapping[str, str] = {}, target: str | None = None,
                   no_cache: bool = False) -> None:
        self.cli("build", "-t", tag, *_flag_args(build_args, target), *(["--no-cache"] if no_cache else []),
                 str(context))
