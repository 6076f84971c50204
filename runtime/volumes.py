"""Named volumes, and a container's mounts from docker's flags.

::

    <root>/volumes/
    ├── .lock                 flock held while volumes are created, removed or pruned
    └── <name>/               0700
        ├── volume.json       name, created, labels, anonymous
        └── _data/            what containers see (docker's layout)

``-v NAME:/path`` and ``--mount type=volume`` use (and create) a named volume; ``-v /path``
alone an anonymous one (a random 64-hex name, removed with the container by ``--rm`` and by
``rm -v``). A volume that is empty when a container is created is filled, by the container's
PID 1 inside its mount namespace, with what the image has at the mount point (docker's copy;
``nocopy`` or ``volume-nocopy`` turns it off): the image side is opened with
``openat2(RESOLVE_IN_ROOT)`` and walked by descriptors, so nothing outside the image's root is
read and nothing outside ``_data`` is written.

``-v /host:/path`` creates a missing host directory, as docker does; ``--mount type=bind``
refuses a missing source (as docker). ``--tmpfs /path[:opts]`` and ``--mount type=tmpfs`` are a
fresh tmpfs, ``noexec,nosuid,nodev`` by default and capped at ``DEFAULT_TMPFS_SIZE`` unless
``size=`` says otherwise (docker leaves them unbounded: half the RAM). ``:z``/``:Z`` (SELinux
relabelling) are accepted and do nothing: this host has no SELinux. ``--volumes-from`` takes
another container's volumes and binds, ``:ro`` making them all read-only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runtime.errors import SetupError
from runtime.spec import Volume, check_volume_target, parse_size

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DEFAULT_TMPFS_SIZE = 64 << 20
MAX_POPULATE_DEPTH = 256    # directory levels copied into a new volume (two descriptors a level)


class VolumeInUse(SetupError):
    pass


class VolumeNotFound(SetupError):
    pass


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    path: Path          # the volume's folder; containers see path / "_data"
    created: float
    labels: dict[str, str]
    anonymous: bool

    @property
    def data(self) -> Path:
        return self.path / "_data"

    def inspect(self) -> dict[str, Any]:
        """docker volume inspect's object."""
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        return {"CreatedAt": when, "Driver": "local", "Labels": self.labels or None,
                "Mountpoint": str(self.data), "Name": self.name, "Options": None, "Scope": "local"}


class VolumeStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.made: list[str] = []   # the volumes this object created (undone if a create fails)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        from storage.fsutil import file_lock, private_dir

        private_dir(self.root)
        with file_lock(self.root / ".lock"):
            yield

    def create(self, name: str | None = None, labels: dict[str, str] | None = None,
               anonymous: bool | None = None) -> tuple[VolumeInfo, bool]:
        """The volume ``name`` (a new one with a random name if None: anonymous unless said
        otherwise), created if missing; (info, created)."""
        from storage.fsutil import atomic_write

        anonymous = name is None if anonymous is None else anonymous
        name = name or os.urandom(32).hex()
        check_name(name)
        with self.locked():
            path = self.root / name
            if (path / "volume.json").is_file():
                return self.get(name), False
            path.mkdir(mode=0o700, exist_ok=True)
            (path / "_data").mkdir(mode=0o755, exist_ok=True)
            doc = {"name": name, "created": time.time(), "labels": labels or {}, "anonymous": anonymous}
            atomic_write(path / "volume.json", json.dumps(doc).encode())
            return self.get(name), True

    def get(self, name: str) -> VolumeInfo:
        path = self.root / name
        try:
            doc = json.loads((path / "volume.json").read_text())
        except (OSError, ValueError):
            raise VolumeNotFound(f"no such volume: {name}") from None
        return VolumeInfo(name, path, float(doc.get("created", 0)), dict(doc.get("labels") or {}),
                          bool(doc.get("anonymous")))

    def all(self) -> list[VolumeInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for entry in sorted(os.listdir(self.root)):
            with contextlib.suppress(VolumeNotFound):
                if NAME_RE.match(entry):
                    out.append(self.get(entry))
        return out

    def remove(self, name: str, users: Iterable[tuple[str, str]] = (), force: bool = False) -> None:
        """Remove volume ``name``; refused while a container in ``users`` ((id, volume) pairs)
        uses it, even with ``force`` (docker: force only ignores a missing volume)."""
        from runtime.snapshots import remove_tree

        with self.locked():
            try:
                info = self.get(name)
            except VolumeNotFound:
                if force:
                    return
                raise
            using = sorted({cid[:12] for cid, vol in users if vol == name})
            if using:
                raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(using)}]")
            remove_tree(info.path)

    def prune(self, users: Iterable[tuple[str, str]], everything: bool = False) -> list[str]:
        """Remove the unused volumes (anonymous ones only unless ``everything``, as docker 23+)."""
        used = {vol for _, vol in users}
        gone = []
        for info in self.all():
            if info.name in used or not (everything or info.anonymous):
                continue
            with contextlib.suppress(VolumeInUse, VolumeNotFound):
                self.remove(info.name, users)
                gone.append(info.name)
        return gone


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise SetupError(f'"{name}" includes invalid characters for a local volume name, only '
                         '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                         "directory, use absolute path")


def volume_users(containers_root: Path) -> list[tuple[str, str]]:
    """(container id, volume name) for every container's named or anonymous volume."""
    out: list[tuple[str, str]] = []
    if not containers_root.is_dir():
        return out
    for entry in os.listdir(containers_root):
        try:
            doc = json.loads((containers_root / entry / "config.json").read_text())
        except (OSError, ValueError):
            continue
        for vol in doc.get("volumes") or []:
            if vol.get("volume"):
                out.append((entry, vol["volume"]))
    return out


# -- flags -> mounts ------------------------------------------------------------------------------

def _target(text: str, what: str) -> str:
    if not text.startswith("/"):
        raise SetupError(f"invalid mount target {text!r} in {what}: an absolute path is needed")
    target = os.path.normpath(text).replace("//", "/")
    check_volume_target(target)
    return target


def _is_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def parse_v(text: str, store: VolumeStore) -> Volume:
    """``-v``: ``HOST:CTR[:opts]``, ``NAME:CTR[:opts]`` or ``CTR`` (opts: ro, rw, z, Z, nocopy)."""
    parts = text.split(":")
    if len(parts) == 1:
        return _volume(store, None, _target(parts[0], f"-v {text}"), False, True, {})
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise SetupError(f"invalid volume specification {text!r} "
                         "(use HOST:CONTAINER[:ro], NAME:CONTAINER or CONTAINER)")
    opts = parts[2].split(",") if len(parts) == 3 else []
    readonly, nocopy = False, False
    for opt in opts:
        if opt == "ro":
            readonly = True
        elif opt in ("rw", "z", "Z", ""):
            continue   # z/Z: SELinux relabelling; there is no SELinux here
        elif opt == "nocopy":
            nocopy = True
        else:
            raise SetupError(f"invalid mode {opt!r} in volume {text!r} (ro, rw, z, Z, nocopy)")
    source, target = parts[0], _target(parts[1], f"-v {text}")
    if not _is_path(source):
        return _volume(store, source, target, readonly, not nocopy, {})
    if nocopy:
        raise SetupError(f"invalid mode nocopy in volume {text!r}: it is for named volumes")
    host = os.path.abspath(os.path.expanduser(source))
    if not os.path.exists(host):
        try:
            os.makedirs(host, 0o755)   # docker creates a missing -v source directory
        except OSError as e:
            raise SetupError(f"cannot create volume source {host}: {e.strerror}") from None
    return Volume(host, target, readonly)


def _volume(store: VolumeStore, name: str | None, target: str, readonly: bool, copy: bool,
            labels: dict[str, str]) -> Volume:
    info, created = store.create(name, labels)
    if created:
        store.made.append(info.name)
    populate = copy and not any(info.data.iterdir())
    return Volume(str(info.data), target, readonly, volume=info.name, populate=populate)


def _truthy(value: str, what: str) -> bool:
    if value.lower() in ("", "1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise SetupError(f"invalid value {value!r} for {what}")


def parse_mount(text: str, store: VolumeStore) -> Volume:
    """``--mount type=bind|volume|tmpfs,source=,target=,readonly,...`` (docker's keys)."""
    fields: dict[str, str] = {}
    labels: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if key == "volume-label":
            k, _, v = value.partition("=")
            labels[k] = v
            continue
        fields[key] = value if sep else ""
    kind = fields.pop("type", "volume")
    source = fields.pop("source", fields.pop("src", ""))
    target_text = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    if not target_text:
        raise SetupError(f"invalid --mount {text!r}: target is required")
    target = _target(target_text, f"--mount {text}")
    readonly = False
    for key in ("readonly", "ro"):
        if key in fields:
            readonly = _truthy(fields.pop(key), key)
    fields.pop("consistency", None)
    if kind != "volume" and labels:
        raise SetupError(f"invalid --mount {text!r}: volume-label is for type=volume")
    if kind == "bind":
        fields.pop("bind-propagation", None)
        fields.pop("bind-recursive", None)
        _no_more(fields, text)
        if not source:
            raise SetupError(f"invalid --mount {text!r}: source is required for a bind mount")
        host = os.path.abspath(source)
        if not os.path.exists(host):
            raise SetupError(f"invalid mount config for type \"bind\": bind source path does not exist: {host}")
        return Volume(host, target, readonly)
    if kind == "volume":
        nocopy = _truthy(fields.pop("volume-nocopy"), "volume-nocopy") if "volume-nocopy" in fields else False
        driver = fields.pop("volume-driver", "local")
        if driver not in ("", "local"):
            raise SetupError(f"unsupported volume driver {driver!r} (only local)")
        _no_more(fields, text)
        return _volume(store, source or None, target, readonly, not nocopy, labels)
    if kind == "tmpfs":
        if source:
            raise SetupError(f"invalid --mount {text!r}: a tmpfs has no source")
        size = fields.pop("tmpfs-size", "")
        mode = fields.pop("tmpfs-mode", "")
        _no_more(fields, text)
        return _tmpfs(target, readonly, size, mode, [])
    raise SetupError(f"invalid --mount type {kind!r} (bind, volume or tmpfs)")


def _no_more(fields: dict[str, str], text: str) -> None:
    if fields:
        raise SetupError(f"unexpected key {next(iter(fields))!r} in --mount {text!r}")


def parse_tmpfs(text: str) -> Volume:
    """``--tmpfs /path[:size=64m,mode=1777,exec,...]``."""
    path, _, opts = text.partition(":")
    target = _target(path, f"--tmpfs {text}")
    size, mode, extra, readonly = "", "", [], False
    for opt in [o for o in opts.split(",") if o]:
        key, _, value = opt.partition("=")
        if key == "size":
            size = value
        elif key == "mode":
            mode = value
        elif key == "ro":
            readonly = True
        elif key in ("rw", "noexec", "nosuid", "nodev"):
            continue
        elif key == "exec":
            extra.append("exec")
        elif key in ("nr_inodes", "uid", "gid"):
            if not value.isdigit():
                raise SetupError(f"invalid tmpfs option {opt!r}")
            extra.append(opt)
        else:
            raise SetupError(f"unsupported tmpfs option {opt!r} in --tmpfs {text!r}")
    return _tmpfs(target, readonly, size, mode, extra)


def _tmpfs(target: str, readonly: bool, size: str, mode: str, extra: list[str]) -> Volume:
    nbytes = parse_size(size) if size else DEFAULT_TMPFS_SIZE
    if nbytes <= 0:
        raise SetupError(f"invalid tmpfs size {size!r}")
    options = [f"size={nbytes}"]
    if mode:
        try:
            options.append(f"mode={int(mode, 8):o}")
        except ValueError:
            raise SetupError(f"invalid tmpfs mode {mode!r} (octal, e.g. 1777)") from None
    options += [o for o in extra if o != "exec"]
    return Volume("tmpfs", target, readonly, tmpfs=",".join(options), noexec="exec" not in extra)


def volumes_from(refs: list[str], containers: Any) -> list[Volume]:
    """``--volumes-from CONTAINER[:ro|rw]``: that container's volumes and binds (not its tmpfs)."""
    out = []
    for ref in refs:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise SetupError(f"invalid mode {mode!r} in --volumes-from {ref!r} (ro or rw)")
        for vol in containers.get(name).spec.volumes:
            if vol.tmpfs is not None:
                continue
            readonly = vol.readonly if not mode else mode == "ro"
            out.append(replace(vol, readonly=readonly, populate=False))
    return out


def container_mounts(volumes: list[str], mounts: list[str], tmpfs: list[str], from_: list[str],
                     store: VolumeStore, containers: Any) -> list[Volume]:
    """Every mount of a new container from its flags, checked for one use of each target."""
    out = volumes_from(from_, containers)
    try:
        explicit = [parse_v(v, store) for v in volumes] + [parse_mount(m, store) for m in mounts]
        explicit += [parse_tmpfs(t) for t in tmpfs]
        _check_targets(explicit)
    except BaseException:
        for name in store.made:   # a later flag was bad: the volumes made for earlier ones go
            with contextlib.suppress(SetupError, OSError):
                store.remove(name)
        raise
    targets = {v.target for v in explicit}
    return [v for v in out if v.target not in targets] + explicit   # an explicit mount wins


def _check_targets(explicit: list[Volume]) -> None:
    seen: set[str] = set()
    for vol in explicit:
        if vol.target in seen:
            raise SetupError(f"duplicate mount point: {vol.target}")
        seen.add(vol.target)


def remove_anonymous(store: VolumeStore, volumes: list[Volume], users: Iterable[tuple[str, str]]) -> None:
    """After a container is removed: its anonymous volumes that no other container uses."""
    for vol in volumes:
        if not vol.volume:
            continue
        with contextlib.suppress(SetupError):
            if store.get(vol.volume).anonymous:
                store.remove(vol.volume, users)


def forget_container(hoist_root: Path, volumes: list[Volume]) -> None:
    """A removed container's anonymous volumes go too (``--rm``, ``rm -v``), unless another
    container still uses them."""
    if any(v.volume for v in volumes):
        remove_anonymous(VolumeStore(hoist_root / "volumes"), volumes, volume_users(hoist_root / "containers"))


# -- inside the container (PID 1, its own mount namespace, before pivot_root) --------------------

def populate(root: str, target: str, data_dir: str) -> None:
    """Copy what the image has at ``target`` (resolved inside ``root``) into the empty volume
    directory ``data_dir``: files, directories, symlinks (as links), owners, modes, xattrs and
    times; no device nodes, no hard links kept. Nothing is copied if ``target`` is missing in
    the image or the volume is no longer empty."""
    from runtime import linux
    from storage.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS
    from storage.tree import DIR_FLAGS, copy_meta, copy_node

    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            src = linux.openat2(rootfd, target.lstrip("/") or ".", os.O_RDONLY | os.O_DIRECTORY,
                                RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except (FileNotFoundError, NotADirectoryError):
            return
    finally:
        os.close(rootfd)
    stack: list[tuple[int, int, list[str]]] = []
    try:
        try:
            dst = os.open(data_dir, DIR_FLAGS)
        except OSError:
            os.close(src)
            raise
        stack.append((src, dst, sorted(os.listdir(src), reverse=True)))
        if os.listdir(dst):
            return
        while stack:
            sfd, dfd, names = stack[-1]
            if not names:
                copy_meta(sfd, dfd)   # last: the copies below changed the directory's times
                stack.pop()
                os.close(sfd)
                os.close(dfd)
                continue
            name = names.pop()
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if len(stack) >= MAX_POPULATE_DEPTH:
                    raise SetupError(f"{target} in the image is more than {MAX_POPULATE_DEPTH} "
                                     "levels deep: not copied into the volume")
                os.mkdir(name, 0o700, dir_fd=dfd)
                child_s = os.open(name, DIR_FLAGS, dir_fd=sfd)
                try:
                    child_d = os.open(name, DIR_FLAGS, dir_fd=dfd)
                except OSError:
                    os.close(child_s)
                    raise
                stack.append((child_s, child_d, sorted(os.listdir(child_s), reverse=True)))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                copy_node(sfd, dfd, name, st, devices=False)
    finally:
        for sfd, dfd, _ in stack:
            os.close(sfd)
            os.close(dfd)


def make_root_readonly(root: str) -> None:
    """``--read-only``: the root mount (not /proc, /dev, /sys, the /etc files or the volumes,
    which are mounts of their own) becomes read-only; its other flags stay."""
    from runtime import linux

    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        linux.mount_setattr(fd, linux.MOUNT_ATTR_RDONLY, recursive=False)
    except OSError as e:
        if e.errno != 38:  # ENOSYS: before Linux 5.12, remount the bind with its flags
            raise
        linux.mount(None, root, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | linux.MS_NODEV)
    finally:
        os.close(fd)
