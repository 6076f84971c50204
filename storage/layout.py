"""The local image store: a standard OCI image layout.

::

    <root>/
    ├── oci-layout                    {"imageLayoutVersion": "1.0.0"}
    ├── index.json                    one descriptor per name, annotated with
    │                                 org.opencontainers.image.ref.name = the full reference
    ├── blobs/sha256/<hex>            manifests, configs and layers
    ├── ingest/<alg>-<hex>.partial    blobs being written (resumable; never visible as blobs)
    └── sources.json                  hoist's own record: blob digest -> repositories it was seen
                                      in ("registry/name"), so a push can mount instead of upload

skopeo (``oci:<root>:<ref>``) and umoci read it unchanged; they ignore ``sources.json`` and
``ingest/``. Writes are atomic: a blob appears under its digest only after its bytes were hashed,
verified and fsynced; index.json is replaced by rename under an exclusive lock, so concurrent
hoist processes do not lose each other's tags.

The methods here block on local file I/O; async callers run large ones in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, TextIO

from storage import mediatypes as mt
from storage.digest import Digest, Hasher
from storage.errors import (
    BlobUnknown,
    DigestInvalid,
    ImageAmbiguous,
    ImageUnknown,
    ManifestInvalid,
    SizeInvalid,
    StorageError,
)
from storage.fsutil import atomic_write, file_lock, fsync_dir, private_dir
from storage.manifest import Descriptor, Manifest, parse_manifest
from storage.platform import Platform, select_platform
from storage.reference import Reference, parse_reference

LAYOUT_VERSION = "1.0.0"


class BlobWriter:
    """A resumable blob being written into the layout. Use as a context manager or call
    commit()/close(); an uncommitted writer leaves its partial file for a later resume.

    One writer per blob at a time, across processes: the constructor waits for an exclusive
    lock on ``ingest/<blob>.lock`` (so two pulls sharing a layer never append to one partial
    file). If the blob was committed while it waited, ``present`` is True and nothing is opened.
    """

    def __init__(self, layout: ImageLayout, expected: Digest, size: int | None, resume: bool) -> None:
        self.layout, self.expected, self.size = layout, expected, size
        self.partial = layout.root / "ingest" / f"{expected.algorithm}-{expected.hex}.partial"
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.hasher = Hasher(expected.algorithm)
        self._lock_path = self.partial.with_suffix(".lock")
        self._lock = self._acquire()
        self.present = layout.has_blob(expected)
        if self.present:
            self._f = open(os.devnull, "wb")
        elif resume and self.partial.exists():
            with open(self.partial, "rb") as f:
                while block := f.read(1 << 20):
                    self.hasher.update(block)
            self._f = open(self.partial, "ab")
        else:
            self._f = open(self.partial, "wb")

    @property
    def offset(self) -> int:
        return self.hasher.size

    def write(self, chunk: bytes) -> None:
        self._f.write(chunk)
        self.hasher.update(chunk)

    def write_all(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def reset(self) -> None:
        """Start again from byte zero (the source could not continue where the partial ends)."""
        self._f.seek(0)
        self._f.truncate()
        self.hasher = Hasher(self.expected.algorithm)

    def commit(self) -> Path:
        """Verify size and digest, fsync, rename into blobs/. On mismatch the partial is removed."""
        if self.present:
            self.close()
            return self.layout.blob_path(self.expected)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        got = self.hasher.digest()
        if (self.size is not None and self.hasher.size != self.size) or got != self.expected:
            self.partial.unlink(missing_ok=True)
            if got != self.expected:
                raise DigestInvalid(f"content of {self.expected} hashes to {got}")
            raise SizeInvalid(f"{self.expected}: expected {self.size} bytes, got {self.hasher.size}")
        dest = self.layout.blob_path(self.expected)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial, dest)
        fsync_dir(dest.parent)
        self._unlock()
        return dest

    def _acquire(self) -> TextIO:
        """Lock ``ingest/<blob>.lock``. The holder removes the file when done, so after
        waiting, check that the lock is still the one at that path (else take the new one)."""
        while True:
            f = open(self._lock_path, "a")
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                if os.fstat(f.fileno()).st_ino == os.stat(self._lock_path).st_ino:
                    return f
            except FileNotFoundError:
                pass
            f.close()

    def _unlock(self) -> None:
        if not self._lock.closed:
            self._lock_path.unlink(missing_ok=True)
            self._lock.close()  # closing the descriptor releases the flock

    def close(self) -> None:
        try:
            if not self._f.closed:
                self._f.close()
        finally:
            self._unlock()

    def discard(self) -> None:
        # Unlink while still holding the lock, so a writer waiting for it starts afresh.
        self.partial.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the last buffered bytes cannot be flushed (a full disk)
            self.close()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalImage(NamedTuple):
    """What :meth:`ImageLayout.find` found: the ref name typed (None for an id or a digest) and
    the descriptor that name or id points at."""

    name: str | None
    descriptor: Descriptor


_HEX = frozenset("0123456789abcdef")


def _full_id(text: str) -> Digest | None:
    hexpart = text.removeprefix("sha256:").lower()
    if len(hexpart) == 64 and all(c in _HEX for c in hexpart):
        return Digest.parse(f"sha256:{hexpart}")
    return None


def _repository_of(ref_name: str) -> str | None:
    try:
        return parse_reference(ref_name, default_tag=False).repository
    except StorageError:
        return None


def _describe_hit(ident: str, refs: list[tuple[str | None, Descriptor]]) -> str:
    names = sorted({n for n, _ in refs if n})
    short = ident.removeprefix("sha256:")[:12]
    return f"{short} ({', '.join(names)})" if names else short


class ImageLayout:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- set-up ---------------------------------------------------------------------------
    def init(self) -> ImageLayout:
        # 0700: the store holds other people's images (setuid binaries, secrets in layers).
        private_dir(self.root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            self._atomic_write(marker, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        if not (self.root / "index.json").exists():
            self._atomic_write(self.root / "index.json", self._index_bytes([]))
        return self

    # -- blobs ----------------------------------------------------------------------------
    def blob_path(self, digest: Digest | str) -> Path:
        d = Digest.parse(digest) if isinstance(digest, str) else digest
        return self.root / "blobs" / d.algorithm / d.hex

    def has_blob(self, digest: Digest | str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: Digest | str) -> bytes:
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobUnknown(str(digest), f"blob {digest} is not in the image store") from None

    def blob_size(self, digest: Digest | str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobUnknown(str(digest), f"blob {digest} is not in the image store") from None

    def writer(self, expected: Digest, size: int | None = None, resume: bool = True) -> BlobWriter:
        return BlobWriter(self, expected, size, resume)

    def put_blob(self, data: bytes, expected: Digest | None = None) -> Digest:
        digest = expected or Digest.of(data)
        if self.has_blob(digest):
            return digest
        with self.writer(digest, len(data), resume=False) as w:
            try:
                w.write(data)
                w.commit()
            except BaseException:
                w.discard()  # the whole blob was at hand: a partial of it is worth nothing
                raise
        return digest

    def put_stream(self, f: IO[bytes], chunk: int = 1 << 20,
                   record: list[Digest] | None = None) -> tuple[Digest, int]:
        """Store a blob whose digest is not known in advance (e.g. a layer inside a tar). Its
        digest is appended to ``record`` when the store did not hold it before."""
        ingest = self.root / "ingest"
        ingest.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=ingest, prefix="stream-", suffix=".partial")
        hasher = Hasher()
        try:
            with os.fdopen(fd, "wb") as out:
                while block := f.read(chunk):
                    out.write(block)
                    hasher.update(block)
                out.flush()
                os.fsync(out.fileno())
            digest = hasher.digest()
            dest = self.blob_path(digest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if record is not None and not dest.exists():
                record.append(digest)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return digest, hasher.size

    def ingest_dir(self) -> Path:
        """Where a producer (the builder) writes a blob before :meth:`ingest` takes it in: inside
        the layout, so the rename is atomic. Temporary names there are never blobs."""
        ingest = self.root / "ingest"
        ingest.mkdir(parents=True, exist_ok=True)
        return ingest

    def ingest(self, path: str | os.PathLike[str], digest: Digest, verify: bool = True) -> Path:
        """Take in the finished blob file ``path`` (written in :meth:`ingest_dir`) as blob
        ``digest``, and return its path in the store.

        With ``verify`` its bytes are hashed first and a mismatch raises DigestInvalid; with
        ``verify=False`` the caller vouches for ``digest`` (it hashed the bytes as it wrote
        them). The file is fsynced and renamed into blobs/ under a lease, so a running gc never
        sees half of it; a blob already present is kept and ``path`` dropped. ``path`` is
        consumed either way (on error too). Until the blob is tagged, the caller holds
        :meth:`lease` so that ``rmi``'s gc does not sweep it.
        """
        src = Path(path)
        try:
            if verify:
                hasher = Hasher(digest.algorithm)
                with open(src, "rb") as f:
                    while block := f.read(1 << 20):
                        hasher.update(block)
                if hasher.digest() != digest:
                    raise DigestInvalid(f"content of {digest} hashes to {hasher.digest()}")
            fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dest = self.blob_path(digest)
            with self.lease():
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.is_file():
                    src.unlink()
                else:
                    os.replace(src, dest)
                    fsync_dir(dest.parent)
        except BaseException:
            src.unlink(missing_ok=True)
            raise
        return dest

    def put_json(self, doc: Any, media_type: str) -> Descriptor:
        data = json.dumps(doc, separators=(",", ":")).encode()
        return Descriptor(media_type, self.put_blob(data), len(data))

    def blobs(self) -> Iterator[Digest]:
        base = self.root / "blobs"
        if not base.is_dir():
            return
        for algo in sorted(os.listdir(base)):
            for hexd in sorted(os.listdir(base / algo)):
                try:
                    yield Digest.parse(f"{algo}:{hexd}")
                except DigestInvalid:
                    continue

    def delete_blob(self, digest: Digest) -> None:
        self.blob_path(digest).unlink(missing_ok=True)

    # -- where blobs came from (for cross-repository mounts) --------------------------------
    def record_sources(self, digests: list[Digest], repository: str) -> None:
        """Remember that ``repository`` ("registry/name") holds these blobs."""
        with self._locked():
            table = self._read_sources()
            for d in digests:
                repos = table.setdefault(str(d), [])
                if repository not in repos:
                    repos.append(repository)
            self._atomic_write(self.root / "sources.json", json.dumps(table, indent=1).encode())

    def sources(self, digest: Digest) -> list[str]:
        return list(self._read_sources().get(str(digest), []))

    def _read_sources(self) -> dict[str, list[str]]:
        try:
            table = json.loads((self.root / "sources.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        return table if isinstance(table, dict) else {}

    # -- garbage collection -----------------------------------------------------------------
    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Hold off garbage collection while blobs are written but not yet tagged (a pull, a
        load): writers share this lock, gc() takes it exclusively."""
        with file_lock(self.root / ".gc.lock", shared=True):
            yield

    def reachable(self) -> set[Digest]:
        """Every blob some ref needs: manifests, the children of indexes that are present,
        configs and layers; and the blobs listed under ``gc-roots/``."""
        seen: set[Digest] = set()
        todo = [desc for _, desc in self.refs()]
        while todo:
            desc = todo.pop()
            if desc.digest in seen or not self.has_blob(desc.digest):
                continue
            seen.add(desc.digest)
            if desc.media_type not in mt.MANIFESTS:
                continue
            try:
                manifest = self.manifest(desc)
            except ManifestInvalid:
                continue
            todo += list(manifest.manifests) + list(manifest.blob_references())
        # Roots are added after the walk: one that is also a ref's manifest is still walked into.
        return seen | set(self._gc_roots())

    def _gc_roots(self) -> Iterator[Digest]:
        """Blobs other users of the store keep (the build cache): ``gc-roots/*``, a digest a line."""
        base = self.root / "gc-roots"
        for path in sorted(base.iterdir()) if base.is_dir() else ():
            for line in path.read_text(errors="replace").split():
                with contextlib.suppress(DigestInvalid):
                    yield Digest.parse(line)

    def gc(self) -> list[Digest]:
        """Delete blobs no ref reaches; return them. Waits for running pulls to finish."""
        with file_lock(self.root / ".gc.lock"):
            return self.collect()

    def collect(self) -> list[Digest]:
        """``gc``'s work, for a caller that holds ``.gc.lock`` exclusively already."""
        keep = self.reachable()
        gone = [d for d in self.blobs() if d not in keep]
        for d in gone:
            self.delete_blob(d)
        if gone:
            self._forget_sources(gone)
        return gone

    def _forget_sources(self, digests: list[Digest]) -> None:
        with self._locked():
            table = self._read_sources()
            for d in digests:
                table.pop(str(d), None)
            self._atomic_write(self.root / "sources.json", json.dumps(table, indent=1).encode())

    # -- index.json -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with file_lock(self.root / ".lock"):
            yield

    def _atomic_write(self, path: Path, data: bytes) -> None:
        atomic_write(path, data)

    @staticmethod
    def _index_bytes(manifests: list[dict[str, Any]]) -> bytes:
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
        return json.dumps(doc, indent=2).encode() + b"\n"

    def _read_index(self) -> list[dict[str, Any]]:
        try:
            doc = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        return list(doc.get("manifests") or [])

    def refs(self) -> list[tuple[str | None, Descriptor]]:
        """Every entry of index.json: (ref name or None, descriptor)."""
        out = []
        for entry in self._read_index():
            desc = Descriptor.from_json(entry, "index.json")
            out.append((desc.annotations.get(mt.ANNOTATION_REF_NAME), desc))
        return out

    def tag(self, ref: str, desc: Descriptor) -> None:
        """Point ``ref`` at ``desc`` (replacing what it named before; nothing is written when it
        names exactly that already)."""
        annotations = dict(desc.annotations)
        annotations[mt.ANNOTATION_REF_NAME] = ref
        entry = Descriptor(desc.media_type, desc.digest, desc.size, annotations,
                           desc.platform, desc.artifact_type).to_json()
        with self._locked():
            self.init()
            current = self._read_index()
            entries = [e for e in current if (e.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) != ref]
            if len(entries) == len(current) - 1 and entry in current:
                return
            entries.append(entry)
            self._atomic_write(self.root / "index.json", self._index_bytes(entries))

    def named(self, ref: str) -> Descriptor | None:
        """The descriptor stored under exactly the ref name ``ref``, if any (no docker rules:
        ``find`` applies those)."""
        return next((desc for name, desc in self.refs() if name == ref), None)

    def untag(self, ref: str) -> Descriptor:
        with self._locked():
            entries = self._read_index()
            keep, gone = [], None
            for e in entries:
                if (e.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) == ref:
                    gone = Descriptor.from_json(e, "index.json")
                else:
                    keep.append(e)
            if gone is None:
                raise ImageUnknown(f"no image named {ref}")
            self._atomic_write(self.root / "index.json", self._index_bytes(keep))
            return gone

    # -- finding a local image ------------------------------------------------------------
    def find(self, text: str) -> LocalImage:
        """The image ``text`` names, by docker's rules, in this order:

        1. a full id, ``sha256:<64 hex>`` or 64 hex: the image whose id (config digest) or
           manifest digest it is. Never ambiguous: several names of one image are one image.
        2. a reference, normalised as docker does (``app`` is ``docker.io/library/app:latest``):
           ``name[:tag]`` is that ref name; ``name@digest`` is that ref name, or a tag of the same
           repository whose manifest is that digest.
        3. a ref name stored exactly as typed (written by another tool, e.g. skopeo's ``oci:``).
        4. a short id: a hex prefix (1 or more digits, any case, ``sha256:`` optional) of image ids and
           manifest digests; prefixes of more than one image raise ImageAmbiguous naming them.

        Raises ImageUnknown when nothing matches; ``name`` in the answer is the ref name the text
        named, or None when it named an id or digest (every name of the image then applies).
        """
        refs = self.refs()
        full = _full_id(text)
        if full is not None:
            for _, desc in refs:
                if desc.digest == full or self.image_id(desc) == full:
                    return LocalImage(None, desc)
            raise ImageUnknown(f"no such image: {text}")
        named = self._find_named(refs, text)
        if named is not None:
            return named
        for ref_name, desc in refs:
            if ref_name == text:
                return LocalImage(ref_name, desc)
        hexpart = text.removeprefix("sha256:").lower()
        if hexpart and len(hexpart) < 64 and all(c in _HEX for c in hexpart):
            hits: dict[str, list[tuple[str | None, Descriptor]]] = {}
            for ref_name, desc in refs:
                ident = self.image_id(desc)
                if desc.digest.hex.startswith(hexpart) or ident.hex.startswith(hexpart):
                    hits.setdefault(str(ident), []).append((ref_name, desc))
            if len(hits) == 1:
                return LocalImage(None, next(iter(hits.values()))[0][1])
            if hits:
                raise ImageAmbiguous(text, sorted(_describe_hit(ident, named_refs)
                                                  for ident, named_refs in hits.items()))
        raise ImageUnknown(f"no such image: {text}")

    def _find_named(self, refs: list[tuple[str | None, Descriptor]], text: str) -> LocalImage | None:
        try:
            ref = parse_reference(text)
        except StorageError:
            return None
        exact = str(ref)
        for ref_name, desc in refs:
            if ref_name == exact:
                return LocalImage(ref_name, desc)
        if ref.digest is None:
            return None
        by_digest = str(Reference(ref.domain, ref.path, None, ref.digest))
        for ref_name, desc in refs:
            if ref_name == by_digest:
                return LocalImage(ref_name, desc)
        for ref_name, desc in refs:
            if desc.digest == ref.digest and ref_name and _repository_of(ref_name) == ref.repository:
                return LocalImage(None, desc)
        return None

    def image_id(self, desc: Descriptor) -> Digest:
        """Docker's image id: the config digest of the image ``desc`` is (through an index, the
        host platform's); the descriptor's own digest when that is not in the store."""
        try:
            _, manifest = self.platform_image(desc)
        except (StorageError, ValueError):
            return desc.digest
        return manifest.config.digest if manifest.config is not None else desc.digest

    def names_of(self, image: Descriptor) -> list[str]:
        """Every ref name of the image ``image`` is: same manifest, or same image id."""
        ident = self.image_id(image)
        return [name for name, desc in self.refs()
                if name and (desc.digest == image.digest or self.image_id(desc) == ident)]

    def manifest(self, desc: Descriptor) -> Manifest:
        return parse_manifest(self.read_blob(desc.digest), desc.media_type)

    def config(self, manifest: Manifest) -> dict[str, Any]:
        if manifest.config is None:
            raise ImageUnknown("an index has no config; pick a platform first")
        return json.loads(self.read_blob(manifest.config.digest))

    def resolve_image(self, ref: str, platform: Platform | None = None) -> tuple[Descriptor, Manifest]:
        """The image manifest ``ref`` names; through an index, the entry for ``platform``
        (default: the host's) that is present in the store."""
        return self.platform_image(self.find(ref).descriptor, platform, ref)

    def platform_image(self, desc: Descriptor, platform: Platform | None = None,
                       what: str | None = None) -> tuple[Descriptor, Manifest]:
        """The image manifest of ``desc``; through an index, the entry for ``platform`` (default:
        the host's) that is present in the store. ``what`` names it in errors."""
        ref = what or str(desc.digest)
        manifest = self.manifest(desc)
        wanted = platform or Platform.host()
        while manifest.is_index:
            present = [d for d in manifest.manifests if self.has_blob(d.digest)]
            local = Manifest(manifest.media_type, manifest.raw, manifest.doc, manifests=tuple(present))
            child = select_platform(local, wanted)
            if child is None:
                if len(present) == 1 and not present[0].platform:
                    child = present[0]
                else:
                    raise ImageUnknown(f"{ref} has no {wanted} image in the image store")
            desc, manifest = child, self.manifest(child)
        return desc, manifest
