"""``hoist cp``: copy between a container and the host, never following the container's symlinks
on the host (out of a stopped container, ``hoist/commands/cp.py`` gives a merged copy of its file
system as the root).

The container side is reached through ``/proc/PID/root`` of its PID 1 (its own mount namespace's
root, volumes and tmpfs mounts included) and every path there is opened with
``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)``: a symlink, absolute or ``..``, resolves
inside the container. Trees are copied by directory descriptors, each child opened with
``O_NOFOLLOW``, so a directory the container swaps for a symlink while the copy runs stops the
copy (ELOOP) instead of leading it anywhere else. Symlinks are copied as symlinks, device nodes
are skipped. docker's rules for names: a file onto a missing path is created there, onto a
directory goes inside it; a directory onto a missing path becomes it, onto a directory goes
inside it, and ``SRC/.`` copies its contents. Without ``archive`` everything copied is owned by
the caller (host side) or by root (container side), as docker's ``cp`` without ``-a``.

``follow_link`` (``cp -L``): a source that is itself a symlink is copied as what it points to,
under the link's name (docker's rebase); inside a container the link is resolved inside its
root (``resolve``), so a link to ``/etc/shadow`` is the container's, never the host's.

A stopped container (created or exited) has no PID 1 to lend its root: ``in_stopped`` builds the
same view, its root file system (overlay or copy) with its volumes and /etc files bound on, in a
private mount namespace of a forked child, and copies there; nothing of it is visible on the
host. Into a container, docker's refusals hold: a path under a read-only volume ("mounted volume
is marked read-only"), or outside every volume of a ``--read-only`` container ("container rootfs
is marked read-only").
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from runtime.errors import SetupError
from storage.openat2 import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2
from storage.tree import DIR_FLAGS, copy_meta, copy_node

if TYPE_CHECKING:
    from runtime.containers import Container
    from runtime.spec import ContainerSpec

_RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
MAX_DEPTH = 512
MAX_LINKS = 40     # the kernel's bound on symlinks in one lookup (ELOOP past it)


class CopyError(SetupError):
    pass


def _split(path: str) -> tuple[str, str]:
    path = path.rstrip("/") or "/"
    parent, _, name = path.rpartition("/")
    return parent or "/", name


def _open_dir(root: int | None, path: str) -> int:
    """A directory descriptor: inside the container (``root``) by openat2, or on the host."""
    if root is None:
        return os.open(path or "/", DIR_FLAGS & ~os.O_NOFOLLOW)
    return openat2(root, path.lstrip("/") or ".", os.O_RDONLY | os.O_DIRECTORY, _RESOLVE)


def _lstat(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def copy(src_root: int | None, src: str, dst_root: int | None, dst: str, archive: bool = False,
         follow_link: bool = False) -> None:
    """Copy ``src`` (inside ``src_root``, or on the host when None) to ``dst`` (likewise);
    ``follow_link``: a symlink ``src`` is copied as its target, under its own name."""
    contents_only = src.endswith("/.")
    src_parent_path, src_name = _split(src[:-2] if contents_only else src)
    as_name = src_name
    if follow_link and not contents_only and src_name:
        src_parent_path, src_name = _split(_follow(src_root, src))
    try:
        sparent = _open_dir(src_root, src_parent_path)
    except OSError as e:
        raise CopyError(f"could not find the file {src}: {e.strerror}") from None
    try:
        st = _lstat(sparent, src_name) if src_name else os.fstat(sparent)
        if st is None:
            raise CopyError(f"could not find the file {src} in the {'container' if src_root is not None else 'host'}")
        _copy_to(sparent, src_name, st, dst_root, dst, archive, contents_only, as_name)
    finally:
        os.close(sparent)


def _follow(root: int | None, path: str) -> str:
    """``path`` with its symlinks, the last one included, resolved: on the host as the host
    resolves them (docker's client trusts its own side), inside the container within its root."""
    if root is None:
        return os.path.realpath(path)
    return resolve(root, path)


def resolve(root: int, path: str) -> str:
    """The absolute path, inside the container whose root is ``root``, that ``path`` names once
    every symlink on it is resolved there: an absolute target restarts from the container's
    root, ``..`` never climbs above it (moby's FollowSymlinkInScope). Components that do not
    exist are kept as they are. Each step is looked up by openat2 within the root, so a link the
    container swaps in meanwhile still resolves inside it. ELOOP past MAX_LINKS links."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links, missing = 0, False
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        if missing:              # below a missing component nothing is a link: taken as written
            done.append(part)
            continue
        try:
            fd = openat2(root, "/".join(done + [part]), os.O_PATH | os.O_NOFOLLOW, _RESOLVE)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            missing = True
            continue
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                done.append(part)
                continue
            target = os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)
        links += 1
        if links > MAX_LINKS:
            raise CopyError(f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p] + todo
    return "/" + "/".join(done)


def _copy_to(sparent: int, name: str, st: os.stat_result, dst_root: int | None, dst: str, archive: bool,
             contents_only: bool, as_name: str) -> None:
    is_dir = stat.S_ISDIR(st.st_mode)
    if contents_only and not is_dir:
        raise CopyError("source content ('/.') is only for a directory")
    dst_parent_path, dst_name = _split(dst)
    try:
        dparent = _open_dir(dst_root, dst_parent_path)
    except OSError as e:
        raise CopyError(f"destination directory {dst_parent_path} does not exist ({e.strerror})") from None
    try:
        existing = _lstat(dparent, dst_name) if dst_name else os.fstat(dparent)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            into = _child_dir(dparent, dst_name) if dst_name else os.dup(dparent)
            try:
                if is_dir and contents_only:
                    _copy_contents(sparent, name, into, archive)
                else:
                    _copy_entry(sparent, name, st, into, as_name or name or "root", archive)
            finally:
                os.close(into)
            return
        if dst.endswith("/"):
            raise CopyError(f"destination directory {dst} does not exist")
        if existing is not None and is_dir:
            raise CopyError(f"cannot copy a directory to a file: {dst}")
        _copy_entry(sparent, name, st, dparent, dst_name, archive)
    finally:
        os.close(dparent)


def _child_dir(parent: int, name: str) -> int:
    return os.open(name, DIR_FLAGS, dir_fd=parent)


def _fix_owner(dfd: int, name: str, archive: bool) -> None:
    if not archive and os.geteuid() == 0:
        os.chown(name, 0, 0, dir_fd=dfd, follow_symlinks=False)


def _copy_entry(sparent: int, name: str, st: os.stat_result, dparent: int, dname: str, archive: bool) -> None:
    if not stat.S_ISDIR(st.st_mode):
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            _replace(dparent, dname)
            if name == dname:
                copy_node(sparent, dparent, name, st, devices=False)
            else:
                _copy_renamed(sparent, name, st, dparent, dname)
            _fix_owner(dparent, dname, archive)
        return
    try:
        os.mkdir(dname, 0o700, dir_fd=dparent)
    except FileExistsError:
        pass
    src = _child_dir(sparent, name) if name else os.dup(sparent)
    try:
        dst = _child_dir(dparent, dname)
        try:
            _copy_tree(src, dst, archive)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_contents(sparent: int, name: str, into: int, archive: bool) -> None:
    src = _child_dir(sparent, name) if name else os.dup(sparent)
    try:
        _copy_tree(src, into, archive, own_meta=False)
    finally:
        os.close(src)


def _replace(dparent: int, dname: str) -> None:
    st = _lstat(dparent, dname)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        os.unlink(dname, dir_fd=dparent)


def _copy_renamed(sparent: int, name: str, st: os.stat_result, dparent: int, dname: str) -> None:
    """copy_node keeps the name; a file copied to a new name is copied, then renamed."""
    tmp = f".hoist-cp-{os.getpid()}-{dname}"[:255]
    _replace(dparent, tmp)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=sparent), tmp, dir_fd=dparent)
    else:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sparent)
        try:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=dparent)
            try:
                while block := os.read(src, 1 << 20):
                    os.write(dst, block)
                copy_meta(src, dst)
            finally:
                os.close(dst)
        finally:
            os.close(src)
    os.rename(tmp, dname, src_dir_fd=dparent, dst_dir_fd=dparent)


def _copy_tree(src: int, dst: int, archive: bool, own_meta: bool = True) -> None:
    """Everything under directory ``src`` into directory ``dst``, by descriptors, iteratively."""
    stack: list[tuple[int, int, list[str], bool]] = [(os.dup(src), os.dup(dst), sorted(os.listdir(src), reverse=True),
                                                     own_meta)]
    try:
        while stack:
            sfd, dfd, names, meta = stack[-1]
            if not names:
                if meta:
                    copy_meta(sfd, dfd)
                    if not archive and os.geteuid() == 0:
                        os.fchown(dfd, 0, 0)
                stack.pop()
                os.close(sfd)
                os.close(dfd)
                continue
            name = names.pop()
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if len(stack) >= MAX_DEPTH:
                    raise CopyError(f"more than {MAX_DEPTH} directory levels: not copied")
                try:
                    os.mkdir(name, 0o700, dir_fd=dfd)
                except FileExistsError:
                    pass
                child_s = _child_dir(sfd, name)
                try:
                    child_d = _child_dir(dfd, name)
                except OSError:
                    os.close(child_s)
                    raise
                stack.append((child_s, child_d, sorted(os.listdir(child_s), reverse=True), True))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                _replace(dfd, name)
                copy_node(sfd, dfd, name, st, devices=False)
                _fix_owner(dfd, name, archive)
    finally:
        for sfd, dfd, _, _ in stack:
            os.close(sfd)
            os.close(dfd)


def container_root(pid: int) -> int:
    """A descriptor of the running container's root (its PID 1's ``/proc/PID/root``)."""
    return os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


# -- tar streams (``hoist cp CONTAINER:PATH -`` and ``hoist cp - CONTAINER:DIR``) ------------------

def tar_out(root: int, src: str, out: IO[bytes], follow_link: bool = False) -> None:
    """``src`` inside ``root`` (a file, a link or a tree) as a tar on ``out``, named from its
    base name as docker names it; read by descriptors, links never followed (but ``src``
    itself with ``follow_link``: its target, resolved inside ``root``, under its name)."""
    import tarfile

    parent_path, name = _split(src)
    top = name or "root"
    if follow_link and name:
        parent_path, name = _split(resolve(root, src))
    parent = _open_dir(root, parent_path)
    try:
        st = _lstat(parent, name) if name else os.fstat(parent)
        if st is None:
            raise CopyError(f"could not find the file {src} in the container")
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            todo: list[tuple[int, str, str, os.stat_result]] = [(os.dup(parent), name, top, st)]
            while todo:
                dfd, entry, arcname, est = todo.pop()
                try:
                    _tar_entry(tar, dfd, entry, arcname, est, todo)
                finally:
                    os.close(dfd)
    finally:
        os.close(parent)


def _tar_entry(tar: Any, dfd: int, name: str, arcname: str, st: os.stat_result,
               todo: list[tuple[int, str, str, os.stat_result]]) -> None:
    import tarfile

    info = tarfile.TarInfo(arcname)
    info.mode, info.uid, info.gid, info.mtime = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        child = _child_dir(dfd, name) if name else os.dup(dfd)
        try:
            for sub in sorted(os.listdir(child), reverse=True):
                sst = os.stat(sub, dir_fd=child, follow_symlinks=False)
                todo.append((os.dup(child), sub, f"{arcname}/{sub}", sst))
        finally:
            os.close(child)
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)


def tar_in(root: int, dst: str, source: IO[bytes], archive: bool = False) -> None:
    """Extract the tar ``source`` into the directory ``dst`` inside ``root`` (``dst`` itself
    resolved inside the container). Members' names stay under ``dst`` (``..`` and leading ``/``
    are dropped) and their directories are walked with ``O_NOFOLLOW``: a symlink on the way is
    refused, never followed. Symlinks are made as symlinks; devices, FIFOs and hard links are
    refused. Without ``archive``, root owns what is made."""
    import tarfile

    from storage.tarlimits import bounded_tarinfo

    try:
        base = _open_dir(root, dst)
    except OSError as e:
        raise CopyError(f"destination directory {dst} does not exist in the container ({e.strerror})") from None
    try:
        try:
            tar = tarfile.open(fileobj=source, mode="r|*", tarinfo=bounded_tarinfo(CopyError, CopyError))
            for member in tar:
                _extract(base, tar, member, archive)
                tar.members.clear()  # type: ignore[attr-defined]
        except tarfile.TarError as e:
            raise CopyError(f"the input is not a readable tar archive ({e})") from None
    finally:
        os.close(base)


def _extract(base: int, tar: Any, member: Any, archive: bool) -> None:
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    if not parts:
        return
    parent_path, name = "/".join(parts[:-1]), parts[-1]
    if name == "..":
        return
    parent = _mkdirs(base, parent_path)
    try:
        existing = _lstat(parent, name)
        if member.isdir():
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            elif not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = _child_dir(parent, name)
            try:
                os.fchmod(fd, member.mode & 0o7777)
                _own(fd, member, archive)
            finally:
                os.close(fd)
            return
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"cannot overwrite directory {member.name} with a non-directory")
        if existing is not None:
            os.unlink(name, dir_fd=parent)
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=parent)
            if archive and os.geteuid() == 0:
                os.chown(name, member.uid, member.gid, dir_fd=parent, follow_symlinks=False)
        elif member.isfile() and not member.issparse():
            data = tar.extractfile(member)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            try:
                while block := data.read(1 << 20):
                    os.write(fd, block)
                _own(fd, member, archive)
                os.fchmod(fd, member.mode & 0o7777)
            finally:
                os.close(fd)
        else:
            raise CopyError(f"{member.name}: only files, directories and symlinks can be copied in")
    finally:
        os.close(parent)


def _own(fd: int, member: Any, archive: bool) -> None:
    if os.geteuid() == 0:
        os.fchown(fd, member.uid if archive else 0, member.gid if archive else 0)


def _mkdirs(base: int, path: str) -> int:
    """The directory ``path`` under ``base`` (its root), created level by level as needed."""
    fd = os.dup(base)
    for part in [p for p in path.split("/") if p and p != "."]:
        if part == "..":
            continue   # never above the destination (it is the root of the extraction)
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            os.mkdir(part, 0o755, dir_fd=fd)
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            raise CopyError(f"{path}: a component is not a directory (links are not followed)") from None
        os.close(fd)
        fd = child
    return fd


# -- docker's refusals, and the root of a stopped container ---------------------------------------

def extraction_dir(root: int, dst: str) -> str:
    """The directory inside the container that a copy to ``dst`` writes in (resolved there):
    ``dst`` when it is a directory, else its parent (the copy makes or replaces ``dst`` there)."""
    parent, name = _split(dst)
    where = resolve(root, parent)
    if not name:
        return where
    try:
        fd = openat2(root, f"{where}/{name}".lstrip("/"), os.O_PATH | os.O_NOFOLLOW, _RESOLVE)
    except OSError:
        return where
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    return f"{where.rstrip('/')}/{name}" if is_dir else where


def check_writable(spec: ContainerSpec, path: str) -> None:
    """docker's rule for a copy into the container directory ``path`` (resolved): the volume it
    is under (the innermost) must be writable; outside every volume, the root file system must
    not be ``--read-only``. Raises CopyError with docker's words."""
    inner = None
    for vol in spec.volumes:
        target = "/" + vol.target.strip("/")
        if path == target or path.startswith(target.rstrip("/") + "/"):
            if inner is None or len(target) > len("/" + inner.target.strip("/")):
                inner = vol
    if inner is not None:
        if inner.readonly:
            raise CopyError("mounted volume is marked read-only")
        return
    if spec.read_only:
        raise CopyError("container rootfs is marked read-only")


def in_stopped(container: Container, work: Callable[[int], None]) -> bool:
    """Run ``work(root)`` with ``root`` a descriptor of the stopped ``container``'s file system
    as it runs it: the root file system (overlay of its layers and upper dir, or its copy), its
    new volumes filled from the image as a start would, its volumes and binds (read-only ones
    read-only) and its /etc files on their targets; tmpfs mounts are not there (nothing is,
    between runs). All of it in a private mount namespace of a forked child, gone with it.
    What ``work`` raises (CopyError, OSError) is raised here again. False (nothing done) when
    the container turns out to have a live monitor (it started meanwhile, or restarts):
    ``lifecycle.fs_lock`` is held throughout, so no start mounts its root meanwhile."""
    from runtime.lifecycle import fs_lock

    with fs_lock(container):
        _, state = container.status()
        if container.monitor_alive(state):
            return False
        _in_stopped_locked(container, work)
    return True


def _in_stopped_locked(container: Container, work: Callable[[int], None]) -> None:
    import json

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code, report = 1, b""
        try:
            os.close(r)
            root = _mount_stopped(container)
            try:
                work(root)
            finally:
                os.close(root)
            code = 0
        except CopyError as e:
            report = json.dumps({"copy": str(e)}).encode()
        except OSError as e:
            report = json.dumps({"errno": e.errno, "strerror": e.strerror,
                                 "filename": None if e.filename is None else str(e.filename)}).encode()
        except BaseException as e:
            report = json.dumps({"copy": f"{type(e).__name__}: {e}"}).encode()
        finally:
            import sys

            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    code = code or 1
            try:
                os.write(w, report)
            finally:
                os._exit(code)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if chunks:
        doc = json.loads(b"".join(chunks))
        if "copy" in doc:
            raise CopyError(doc["copy"])
        raise OSError(doc["errno"], doc["strerror"], doc["filename"])
    if status != 0:
        raise CopyError(f"the copy in container {container.name} failed (status {status})")


def _mount_stopped(container: Container) -> int:
    """In this (forked) process: a private mount namespace with the container's view on its
    rootfs directory; a descriptor of it."""
    from runtime import linux, mounts, volumes
    from runtime.linux import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY
    from runtime.snapshots import RootfsPlan

    spec = container.spec
    linux.unshare(linux.CLONE_NEWNS)
    mounts.make_private()
    root = str(container.path / "rootfs")
    plan = RootfsPlan.from_json(spec.rootfs)
    if plan.kind == "overlay":
        mounts.mount_overlay(root, plan.cwd, plan.options)
    else:
        mounts.mount_rootfs_copy(root, plan.copy)
    for vol in spec.volumes:
        if vol.populate and vol.tmpfs is None:
            volumes.populate(root, vol.target, vol.source)
    for name in ("hosts", "hostname", "resolv.conf"):
        if (container.path / name).is_file():
            mounts.bind_into(root, str(container.path / name), f"/etc/{name}", MS_NODEV | MS_NOSUID | MS_NOEXEC)
    for vol in spec.volumes:
        if vol.tmpfs is None:
            mounts.bind_into(root, vol.source, vol.target,
                             MS_NODEV | MS_NOSUID | (MS_RDONLY if vol.readonly else 0))
    return os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
