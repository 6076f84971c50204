"""The local image store: a standard OCI image layout.

::

    <root>/
    ├── oci-layout                    {"imageLayoutVersion": "1.0.0"}
    ├── index.json                    one descriptor per name, annotated with
    │                                 org.opencontainers.image.ref.name = the full reference
    ├── blobs/sha256/<hex>            manifests, configs and layers
    └── ingest/<hex>.partial          blobs being written (resumable; never visible as blobs)

skopeo (``oci:<root>:<ref>``) and umoci read it unchanged. Writes are atomic: a blob appears
under its digest only after its bytes were hashed, verified and fsynced; index.json is replaced
by rename under an exclusive lock, so concurrent hoist processes do not lose each other's tags.

The methods here block on local file I/O; async callers run large ones in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from storage import mediatypes as mt
from storage.digest import Digest, Hasher
from storage.errors import BlobUnknown, DigestInvalid, ImageUnknown, SizeInvalid
from storage.manifest import Descriptor, Manifest, parse_manifest

LAYOUT_VERSION = "1.0.0"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter:
    """A resumable blob being written into the layout. Use as a context manager or call
    commit()/close(); an uncommitted writer leaves its partial file for a later resume."""

    def __init__(self, layout: "ImageLayout", expected: Digest, size: int | None, resume: bool) -> None:
        self.layout, self.expected, self.size = layout, expected, size
        self.partial = layout.root / "ingest" / f"{expected.algorithm}-{expected.hex}.partial"
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.hasher = Hasher(expected.algorithm)
        if resume and self.partial.exists():
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

    def commit(self) -> Path:
        """Verify size and digest, fsync, rename into blobs/. On mismatch the partial is removed."""
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
        _fsync_dir(dest.parent)
        return dest

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def discard(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageLayout:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- set-up ---------------------------------------------------------------------------
    def init(self) -> "ImageLayout":
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
            raise BlobUnknown(f"blob {digest} is not in the image store") from None

    def blob_size(self, digest: Digest | str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobUnknown(f"blob {digest} is not in the image store") from None

    def writer(self, expected: Digest, size: int | None = None, resume: bool = True) -> BlobWriter:
        return BlobWriter(self, expected, size, resume)

    def put_blob(self, data: bytes, expected: Digest | None = None) -> Digest:
        digest = expected or Digest.of(data)
        if self.has_blob(digest):
            return digest
        with self.writer(digest, len(data), resume=False) as w:
            w.write(data)
            w.commit()
        return digest

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

    # -- index.json -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

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
        """Point ``ref`` at ``desc`` (replacing what it named before)."""
        annotations = dict(desc.annotations)
        annotations[mt.ANNOTATION_REF_NAME] = ref
        entry = Descriptor(desc.media_type, desc.digest, desc.size, annotations,
                           desc.platform, desc.artifact_type).to_json()
        with self._locked():
            self.init()
            entries = [e for e in self._read_index()
                       if (e.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME) != ref]
            entries.append(entry)
            self._atomic_write(self.root / "index.json", self._index_bytes(entries))

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

    def resolve(self, ref: str) -> Descriptor:
        """A ref name, or a digest (full, or a unique hex prefix of 12+ chars) of a manifest in the store."""
        entries = self.refs()
        for name, desc in entries:
            if name == ref:
                return desc
        candidates = {str(d.digest): d for _, d in entries}
        text = ref if ":" in ref and ref.startswith("sha") else f"sha256:{ref}"
        matches = [d for key, d in candidates.items() if key.startswith(text)]
        if len(matches) == 1 and (len(text) >= len("sha256:") + 12 or text in candidates):
            return matches[0]
        raise ImageUnknown(f"no image named {ref} in the image store")

    def manifest(self, desc: Descriptor) -> Manifest:
        return parse_manifest(self.read_blob(desc.digest), desc.media_type)

    def config(self, manifest: Manifest) -> dict[str, Any]:
        if manifest.config is None:
            raise ImageUnknown("an index has no config; pick a platform first")
        return json.loads(self.read_blob(manifest.config.digest))
