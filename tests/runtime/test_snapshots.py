"""Snapshots by chain id, the overlay plan, the copy fallback and the upper dir as a diff."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from runtime.errors import EscapeAttempt
from runtime.snapshots import SnapshotStore, chain_ids, merge_into, plan_rootfs
from storage.tree import walk_changes
from tests.images import Entry, busybox_image, layer_tar
from tests.runtime.conftest import Hoist


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(tmp_path: Path, entries: list[Entry]) -> tuple[Path, str]:
    raw = layer_tar(entries)
    path = tmp_path / _sha(raw)[7:]
    path.write_bytes(raw)
    return path, _sha(raw)


def test_chain_ids_follow_the_spec() -> None:
    a, b, c = "sha256:" + "a" * 64, "sha256:" + "b" * 64, "sha256:" + "c" * 64
    ids = chain_ids([a, b, c])
    assert ids[0] == a
    assert ids[1] == _sha(f"{a} {b}".encode())
    assert ids[2] == _sha(f"{ids[1]} {c}".encode())


def test_layers_unpacked_once_and_shared(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    blob, diff = _layer(tmp_path, [Entry("f", data=b"1")])
    first = store.ensure_chain([blob], [diff])
    mtime = first[0].stat().st_mtime_ns
    blob.unlink()  # a snapshot that exists never needs its blob again
    assert store.ensure_chain([blob], [diff]) == first
    assert first[0].stat().st_mtime_ns == mtime
    assert not [p for p in store.root.iterdir() if p.name.startswith(".unpack-")]


def test_failed_unpack_leaves_no_snapshot(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots")
    blob, _ = _layer(tmp_path, [Entry("../x", data=b"1")])
    with pytest.raises(EscapeAttempt):
        store.ensure_chain([blob], [_sha(blob.read_bytes())])
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".locks")] == []


def _chain(tmp_path: Path, layers: list[list[Entry]]) -> tuple[SnapshotStore, list[Path]]:
    store = SnapshotStore(tmp_path / "snapshots")
    blobs, diffs = zip(*(_layer(tmp_path, e) for e in layers), strict=True)
    return store, store.ensure_chain(list(blobs), list(diffs))


def test_merge_applies_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    _, chain = _chain(tmp_path, [
        [Entry("a", data=b"a"), Entry("d/", "dir"), Entry("d/old", data=b"o"), Entry("keep", data=b"k"),
         Entry("h1", data=b"h")],
        [Entry(".wh.a"), Entry("d/", "dir"), Entry("d/.wh..wh..opq"), Entry("d/new", data=b"n"),
         Entry("keep", data=b"k2"), Entry("h2", "hardlink", link="keep")],
    ])
    out = tmp_path / "merged"
    out.mkdir()
    merge_into(chain, out)
    assert sorted(os.listdir(out)) == ["d", "h1", "h2", "keep"]
    assert os.listdir(out / "d") == ["new"]
    assert (out / "keep").read_bytes() == b"k2"
    assert (out / "h2").stat().st_ino == (out / "keep").stat().st_ino


def test_merge_does_not_follow_symlink_from_earlier_layer(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    _, chain = _chain(tmp_path, [[Entry("esc", "symlink", link=str(outside))],
                                 [Entry("esc/", "dir"), Entry("esc/pwned", data=b"x")]])
    out = tmp_path / "merged"
    out.mkdir()
    merge_into(chain, out)
    assert list(outside.iterdir()) == []
    assert (out / "esc").is_dir() and not (out / "esc").is_symlink()
    assert (out / "esc/pwned").read_bytes() == b"x"


def test_too_many_layers_for_overlay_options_are_named_by_short_links(tmp_path: Path) -> None:
    layers = [[Entry(f"f{i}", data=str(i).encode())] for i in range(70)]
    store, chain = _chain(tmp_path, layers)
    cdir = tmp_path / "c"
    cdir.mkdir()
    plan = plan_rootfs(store, chain, cdir)
    lowers = plan.options.split("lowerdir=")[1].split(",")[0].split(":")
    assert plan.kind == "overlay" and plan.cwd == str(cdir / "lowers")
    assert lowers == [str(i) for i in range(70)]
    # Top first, as overlay stacks them, each a link to its snapshot (nothing merged or copied).
    assert [os.readlink(cdir / "lowers" / name) for name in lowers] == [str(p) for p in reversed(chain)]
    assert not [p for p in store.root.iterdir() if p.name.startswith("flat-")]
    few = plan_rootfs(store, chain[:3], cdir)
    assert few.cwd == str(store.root)
    assert few.options.startswith(f"lowerdir={chain[2].name}:{chain[1].name}:{chain[0].name},")


def test_chain_past_overlays_limit_is_merged_into_the_container(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.snapshots as snapshots

    layers = [[Entry(f"f{i}", data=str(i).encode())] for i in range(69)] + [[Entry(".wh.f3")]]
    store, chain = _chain(tmp_path, layers)
    monkeypatch.setattr(snapshots, "OVERLAY_MAX_LOWERS", 60)
    cdir = tmp_path / "c"
    cdir.mkdir()
    plan = plan_rootfs(store, chain, cdir)
    assert plan.cwd == str(cdir) and plan.options.startswith("lowerdir=lower,")
    assert sorted(os.listdir(cdir / "lower")) == sorted(f"f{i}" for i in range(69) if i != 3)
    # Hard links to the snapshots' files (a lowerdir is never written), nothing kept in the store.
    assert (cdir / "lower/f7").stat().st_ino == (chain[7] / "f7").stat().st_ino
    assert not [p for p in store.root.iterdir() if p.name.startswith("flat-")]


def test_run_on_a_chain_too_long_for_one_page_of_names(hoist: Hoist) -> None:
    # 80 layers: their snapshot names need ~5,200 bytes of mount options; the short links fit.
    more = [layer_tar([Entry("data/", "dir"), Entry(f"data/f{i}", data=f"{i}".encode())]) for i in range(78)]
    more.append(layer_tar([Entry("data/", "dir"), Entry("data/.wh.f10"), Entry("data/f5", data=b"top")]))
    busybox_image(hoist.root / "images", "tall", more_layers=more)
    out = hoist.ok("run", "--rm", "tall", "sh", "-c", "ls /data | wc -l; cat /data/f5; echo; cat /data/f77; "
                   "echo; cat /data/f10 2>/dev/null || echo gone")
    assert out.split() == ["77", "top", "77", "gone"]
    assert not [p for p in (hoist.root / "snapshots").iterdir() if p.name.startswith("flat-")]


def test_walk_changes_lists_whiteouts_and_opaque(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "gone_dir_parent").mkdir(parents=True)
    os.mknod(upper / "deleted", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    (upper / "opq/f").write_text("x")
    kinds = {c.path: c.kind for c in walk_changes(upper)}
    assert kinds == {"deleted": "deleted", "gone_dir_parent": "changed", "opq": "opaque", "opq/f": "changed"}


@pytest.mark.parametrize("overlay", [True, False])
def test_run_with_earlier_layer_symlink(hoist: Hoist, tmp_path: Path, overlay: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    busybox_image(hoist.root / "images", "tricky", extra=[Entry("esc", "symlink", link=str(outside))],
                  more_layers=[layer_tar([Entry("esc/", "dir"), Entry("esc/pwned", data=b"x"),
                                          Entry("bin/.wh.ls")])])
    if not overlay:
        monkeypatch.setenv("HOIST_NO_OVERLAY", "1")
    out = hoist(*(["run", "--rm", "tricky", "sh", "-c", "cat /esc/pwned; echo; ls /bin/ls || echo no-ls"]))
    assert out.stdout.decode().split()[0] == "x" and "no-ls" in out.stdout.decode()
    assert list(outside.iterdir()) == []


def test_copy_mode_runs(hoist: Hoist, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOIST_NO_OVERLAY", "1")
    assert hoist.ok("run", "--rm", "-u", "app", "busybox", "sh", "-c", "echo $$; id -u").split() == ["1", "1000"]
