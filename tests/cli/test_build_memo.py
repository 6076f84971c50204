"""The build memo (builder.memo, hoist/build_memo.py): a rebuild whose inputs are all as they
were is answered by the memo, printing what a build whose every step was cached prints; any
change the build could see makes it miss, and the build runs (and gives the image a build
with no memo gives).

Whether the memo answered is read off its file: a hit marks the memo used (its mtime) and
leaves its bytes, a build that runs writes a new one (with the time of its context walk)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from builder import memo
from tests.cli.helpers import Hoist
from tests.images import busybox_image

DOCKERFILE = """\
FROM busybox
ARG GREETING=hello
COPY src/ /src/
RUN echo "$GREETING" > /greeting && cat /src/a.txt > /out.txt && ls -l /src > /list.txt
CMD ["sh", "-c", "cat /greeting /out.txt /list.txt"]
"""


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    path = tmp_path / "ctx"
    (path / "src").mkdir(parents=True)
    (path / "Dockerfile").write_text(DOCKERFILE)
    (path / "src" / "a.txt").write_text("one\n")
    (path / "src" / "b.txt").write_text("two\n")
    (path / "notes.log").write_text("ignored\n")
    (path / ".dockerignore").write_text("*.log\n")
    return path


def memos(h: Hoist) -> dict[str, bytes]:
    folder = h.root / "cache" / "build" / "memo"
    return {p.name: p.read_bytes() for p in folder.glob("*.json")} if folder.is_dir() else {}


def build(h: Hoist, ctx: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> tuple[bool, str]:
    """(whether the memo answered, stderr) of ``hoist build --progress plain -t app:1 ARGS CTX``."""
    before = memos(h)
    for name in before:
        os.utime(h.root / "cache" / "build" / "memo" / name, (1, 1))
    saved = dict(h.env)
    h.env.update(env or {})
    try:
        res = h("build", "--progress", "plain", "-t", "app:1", *args, str(ctx), ok=ok)
    finally:
        h.env = saved
    after = memos(h)
    folder = h.root / "cache" / "build" / "memo"
    hit = any(after.get(name) == data and (folder / name).stat().st_mtime != 1 for name, data in before.items())
    return hit, res.err


def output(h: Hoist, ref: str = "app:1") -> str:
    return h("run", "--rm", ref).out


def _plain(err: str) -> str:
    return re.sub(r"DONE \d+\.\ds", "DONE", err)


def test_a_rebuild_is_answered_as_a_cached_build_shows_it(h: Hoist, ctx: Path) -> None:
    hit, cold = build(h, ctx)
    assert not hit and "CACHED" not in cold
    image_id = h("build", "-q", "-t", "app:1", str(ctx)).out.strip()
    hit, answered = build(h, ctx)
    assert hit
    # The same display a cached build makes without the memo: touch a source (its ctime moves,
    # its bytes do not) and every step is a cache hit.
    os.utime(ctx / "src" / "a.txt")
    hit, cached = build(h, ctx)
    assert not hit and _plain(answered) == _plain(cached)
    assert cached.count("CACHED") == 2 and f"writing image {image_id} done" in cached
    # Tags are not part of what is memoised: a hit names the image under every -t.
    hit, err = build(h, ctx, "-t", "app:2", "--iidfile", str(ctx.parent / "iid"))
    assert hit and "naming to docker.io/library/app:2 done" in err
    assert (ctx.parent / "iid").read_text() == image_id
    assert h("build", "-q", "-t", "app:3", str(ctx)).out.strip() == image_id
    assert output(h, "app:3") == "hello\none\n" + output(h).split("one\n", 1)[1]


def _same_size_same_mtime(ctx: Path) -> None:
    path = ctx / "src" / "a.txt"
    st = path.stat()
    path.write_text("ONE\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _symlink_retargeted(ctx: Path) -> None:
    link = ctx / "src" / "link"
    link.unlink()
    link.symlink_to("b.txt")


CHANGES = {
    "bytes changed, same size and mtime": (_same_size_same_mtime, "ONE"),
    "a file added": (lambda c: (c / "src" / "c.txt").write_text("three\n"), "c.txt"),
    "a file removed": (lambda c: (c / "src" / "b.txt").unlink(), None),
    "a file renamed": (lambda c: (c / "src" / "b.txt").rename(c / "src" / "bee.txt"), "bee.txt"),
    "a mode changed": (lambda c: (c / "src" / "b.txt").chmod(0o600), "-rw-------"),
    # COPY gives its files to root: the image stays, but the memo cannot know that.
    "an owner changed": (lambda c: os.chown(c / "src" / "b.txt", 4242, 4242), ""),
    "a symlink retargeted": (_symlink_retargeted, "link -> b.txt"),
    "the Dockerfile": (lambda c: (c / "Dockerfile").write_text(DOCKERFILE.replace("hello", "bonjour")), "bonjour"),
    "the ignore file": (lambda c: (c / ".dockerignore").write_text("*.log\nsrc/b.txt\n"), None),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_change_the_build_can_see_misses(h: Hoist, ctx: Path, change: str) -> None:
    (ctx / "src" / "link").symlink_to("a.txt")
    build(h, ctx)
    assert build(h, ctx)[0]
    before = output(h)
    mutate, shows = CHANGES[change]
    mutate(ctx)
    hit, err = build(h, ctx)
    assert not hit
    after = output(h)
    if shows == "":
        assert after == before and err.count("CACHED") == 2
    elif shows is not None:
        assert after != before and shows in after
    else:
        assert after != before and "b.txt" not in after
    # The build that ran recorded its own answer: the same inputs again are a hit.
    assert build(h, ctx)[0] and output(h) == after


def test_what_the_build_cannot_see_does_not_miss(h: Hoist, ctx: Path) -> None:
    build(h, ctx)
    (ctx / "notes.log").write_text("changed, and still ignored\n")
    (ctx / "other.log").write_text("new, and ignored\n")
    assert build(h, ctx)[0]


@pytest.mark.parametrize("args, env", [
    (["--build-arg", "GREETING=hi"], {}),
    (["--label", "a=b"], {}),
    (["--format", "docker"], {}),
    ([], {"SOURCE_DATE_EPOCH": "1700000000"}),
    ([], {"HOIST_UNPACK_MAX_DEPTH": "200"}),
])
def test_each_option_and_setting_is_part_of_the_key(h: Hoist, ctx: Path, args: list[str], env: dict[str, str]
                                                   ) -> None:
    build(h, ctx)
    assert not build(h, ctx, *args, env=env)[0]
    assert build(h, ctx, *args, env=env)[0]
    assert build(h, ctx)[0]


def test_a_base_tagged_anew_misses(h: Hoist, ctx: Path) -> None:
    build(h, ctx)
    busybox_image(h.images, config={"Env": ["PATH=/bin", "NEW=1"]})
    hit, err = build(h, ctx)
    # The same layers, another config: the COPY onto the same chain hits, the RUN (a new ENV) runs.
    assert not hit and err.count("CACHED") == 1
    assert build(h, ctx)[0]


def test_pruned_cache_and_removed_images_miss(h: Hoist, ctx: Path) -> None:
    build(h, ctx)
    h("builder", "prune", "--all")
    assert memos(h) == {}
    hit, err = build(h, ctx)
    assert not hit and "CACHED" not in err
    # Untagged and collected: the image's manifest and config are gone (its layers are the
    # cache's roots); the build runs, every step cached, and stores them again.
    h("rmi", "app:1")
    hit, err = build(h, ctx)
    assert not hit and err.count("CACHED") == 2
    assert "one" in output(h)


def test_an_evicted_cache_entry_misses(h: Hoist, ctx: Path) -> None:
    # What the cache's bound evicts (least recently used first) leaves the memos: one that
    # names a gone entry is a miss, and the step runs again.
    build(h, ctx)
    entries = sorted((h.root / "cache" / "build").glob("v*.json"), key=lambda p: p.stat().st_mtime_ns)
    entries[-1].unlink()
    hit, err = build(h, ctx)
    assert not hit and err.count("CACHED") == 1
    assert build(h, ctx)[0]


@pytest.mark.parametrize("args", [["--no-cache"], ["--pull"], ["--secret", "id=s,env=HOME"]])
def test_builds_with_inputs_the_memo_does_not_see_never_use_it(h: Hoist, ctx: Path, args: list[str]) -> None:
    build(h, ctx)
    hit, err = build(h, ctx, *args, ok=args != ["--pull"])
    assert not hit
    if args == ["--no-cache"]:
        assert "CACHED" not in err


def test_a_dockerfile_on_stdin(h: Hoist, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN echo piped > /p\n"
    first = h("build", "-q", "-t", "piped:1", "-", stdin=dockerfile).out
    before = memos(h)
    assert len(before) == 1
    assert h("build", "-q", "-t", "piped:1", "-", stdin=dockerfile).out == first
    assert memos(h) == before
    assert h("build", "-q", "-t", "piped:1", "-", stdin=dockerfile + "RUN true\n").out != first


def test_racy_files_are_described_by_their_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    read: list[str] = []
    real = memo._content_digest

    def spy(path: str, st: os.stat_result) -> str:
        read.append(os.path.basename(path))
        return real(path, st)

    monkeypatch.setattr(memo, "_content_digest", spy)
    walked = memo.walk_context(tmp_path, None)
    assert walked is not None and [name for name, _, _ in walked.entries] == ["d", "f"]
    recent = walked.digest(walked.started_ns)
    assert read == ["f"]            # just written: its timestamps could still be reused
    read.clear()
    settled = walked.digest(walked.started_ns + 10 * memo.RACY_NS)
    assert read == [] and recent is not None and settled is not None and recent != settled
    again = memo.walk_context(tmp_path, None)
    assert again is not None and again.digest(walked.started_ns) == recent


def test_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}").write_bytes(b"x" * 100)
    monkeypatch.setattr(memo, "MAX_ENTRIES", 4)
    with pytest.raises(memo.TooLarge):
        memo.walk_context(folder, None)
    monkeypatch.setattr(memo, "MAX_ENTRIES", 10)
    monkeypatch.setattr(memo, "MAX_RACY_BYTES", 250)
    walked = memo.walk_context(folder, None)
    assert walked is not None and walked.digest(walked.started_ns) is None
    store = memo.MemoStore(tmp_path / "memos")
    monkeypatch.setattr(memo, "KEEP", 3)
    for i in range(5):
        store.save(f"k{i}", {"i": i})
        os.utime(store.folder / f"k{i}.json", (i + 1, i + 1))
    store.save("k5", {"i": 5})
    assert sorted(p.name for p in store.folder.iterdir()) == ["k3.json", "k4.json", "k5.json"]
    assert store.load("k5") == {"i": 5, "memo": memo.MEMO_VERSION}
    (store.folder / "k4.json").write_text("{not json")
    assert store.load("k4") is None


@pytest.mark.parametrize("damage", [
    lambda doc: doc.pop("steps"),
    lambda doc: doc.update(steps=[["a", 1, None]]),
    lambda doc: doc.update(entries=["../../images/index"]),
    lambda doc: doc.update(blobs=["sha256:nothex"]),
    lambda doc: doc.update(manifest={"digest": 5}),
    lambda doc: doc.update(taken="soon"),
])
def test_a_damaged_memo_is_a_miss(h: Hoist, ctx: Path, damage: object) -> None:
    import json

    build(h, ctx)
    (path,) = (h.root / "cache" / "build" / "memo").glob("*.json")
    doc = json.loads(path.read_text())
    damage(doc)     # type: ignore[operator]
    path.write_text(json.dumps(doc))
    hit, err = build(h, ctx)
    assert not hit and err.count("CACHED") == 2
    assert build(h, ctx)[0]


def test_a_context_too_large_to_memoise_is_not_walked_again(h: Hoist, ctx: Path) -> None:
    import json

    env = {"HOIST_BUILD_MEMO_MAX_ENTRIES": "3"}
    hit, _ = build(h, ctx, env=env)
    assert not hit
    (mark,) = (h.root / "cache" / "build" / "memo").glob("*.json")
    assert json.loads(mark.read_text()) == {"too_large": True, "memo": memo.MEMO_VERSION}
    written = mark.stat().st_mtime_ns
    h.env.update(env)
    err = h("build", "--progress", "plain", "-t", "app:1", str(ctx)).err
    assert err.count("CACHED") == 2
    assert mark.stat().st_mtime_ns == written      # not walked (nor marked) again
    # A day later it is tried again.
    os.utime(mark, (1, 1))
    h("build", "-t", "app:1", str(ctx))
    assert mark.stat().st_mtime_ns != 1_000_000_000
