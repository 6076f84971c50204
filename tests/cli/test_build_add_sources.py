"""COPY/ADD with heredoc sources mixed with file sources, and ADD's archive rules, through the CLI.

The Dockerfile reference and BuildKit's dispatchCopy: heredoc sources are files named after
their delimiter (mode 0644, root's), copied after every path source; ``--chmod``/``--chown``
apply to them too; several sources need a directory destination. ADD extracts a local tar
(sniffed by content, compressed or not) unless ``--unpack=false``, and copies anything else.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.helpers import Hoist
from tests.images import busybox_image


@pytest.fixture
def h(tmp_path: Path) -> Hoist:
    hoist = Hoist(tmp_path)
    busybox_image(hoist.layout())
    return hoist


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, bytes] | None = None) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
    return ctx


def _layers(h: Hoist, ref: str) -> list[dict[str, tarfile.TarInfo]]:
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference(ref)))
    out = []
    for layer in manifest.layers[1:]:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layout.read_blob(layer.digest)))) as tar:
            entries = {}
            for info in tar:
                entries[info.name] = info
                if info.isfile():
                    f = tar.extractfile(info)
                    assert f is not None
                    info.pax_headers = {"data": f.read().decode()}
            out.append(entries)
    return out


def _data(info: tarfile.TarInfo) -> str:
    return info.pax_headers["data"]


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_heredocs_mixed_with_files(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nARG WHO=you\n"
                         "COPY file1 <<EOF /dest/\nhello $WHO\nEOF\n"
                         "COPY --chmod=600 --chown=1000:50 <<'RAW' file1 /owned/\nkeep $WHO\nRAW\n"
                         "COPY --parents sub/file2 <<one <<two /p/\n1\none\n2\ntwo\n",
               {"file1": b"one\n", "sub/file2": b"two\n"})
    h("build", "-t", "hd:1", str(ctx))
    first, owned, parents = _layers(h, "hd:1")
    assert _data(first["dest/file1"]) == "one\n" and _data(first["dest/EOF"]) == "hello you\n"
    assert first["dest/EOF"].mode & 0o7777 == 0o644 and (first["dest/EOF"].uid, first["dest/EOF"].gid) == (0, 0)
    for name in ("owned/RAW", "owned/file1"):
        info = owned[name]
        assert (info.mode & 0o7777, info.uid, info.gid) == (0o600, 1000, 50), name
    assert _data(owned["owned/RAW"]) == "keep $WHO\n"         # a quoted delimiter: not expanded
    assert _data(parents["p/sub/file2"]) == "two\n"
    assert _data(parents["p/one"]) == "1\n" and _data(parents["p/two"]) == "2\n"
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference("hd:1")))
    created = [e["created_by"] for e in layout.config(manifest)["history"]]
    assert "COPY file1 <<EOF /dest/ # buildkit" in created
    assert "COPY --chown=1000:50 --chmod=600 file1 <<RAW /owned/ # buildkit" in created


def test_several_sources_need_a_directory(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nCOPY file1 <<EOF /dest\nx\nEOF\n", {"file1": b"one\n"})
    r = h("build", str(ctx), ok=False)
    last = r.err.strip().splitlines()[-1]
    assert r.code == 1 and last.endswith("Dockerfile:2: When using COPY with more than one source file, the "
                                         "destination must be a directory and end with a /"), last


def test_add_unpack_rules(h: Hoist, tmp_path: Path) -> None:
    tar = _tar({"in/a.txt": b"a\n"})
    ctx = _ctx(tmp_path, "FROM busybox\nADD a.tar /x/\nADD --unpack=false a.tar /y/\nADD b.tgz /z/\n"
                         "ADD --unpack=true plain.txt /w/\nADD fake.tar /v/\n",
               {"a.tar": tar, "b.tgz": gzip.compress(_tar({"b.txt": b"b\n"})), "plain.txt": b"plain\n",
                "fake.tar": b"not a tar at all\n" * 40})
    h("build", "-t", "up:1", str(ctx))
    extracted, kept, gz, plain, fake = _layers(h, "up:1")
    assert _data(extracted["x/in/a.txt"]) == "a\n" and "x/a.tar" not in extracted
    assert "y/a.tar" in kept and "y/in/a.txt" not in kept
    assert _data(gz["z/b.txt"]) == "b\n"
    assert _data(plain["w/plain.txt"]) == "plain\n"
    assert "v/fake.tar" in fake                                 # named .tar, but not a tar: copied
