"""Differential builds: every fixture of tests/builder/build_fixtures built by BuildKit (the spec:
Debian's docker 20.10, ``DOCKER_BUILDKIT=1``), by buildah and by ``hoist build``, compared as
flattened root filesystems and config fields (tests/builder/differential.py).

Rows are ``buildkit-vs-buildah`` (proves the harness today) and ``buildkit-vs-hoist``. Fixtures of
features newer than docker 20.10 (``"newer": true`` in fixture.json) are hoist-only and checked
against the tree their ``expect.json`` writes down from the Dockerfile reference.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.builder.differential import (
    Allowance,
    Buildah,
    Builder,
    BuildKit,
    Entry,
    Fixture,
    Hoist,
    Normalised,
    compare,
    current_buildkit_created_by,
    expected_tree,
    flatten,
    load_fixtures,
    prepare_context,
    write_base_archive,
)
from tests.peers import Dockerd, need_tool

FIXTURES = load_fixtures()
CLASSIC = [f for f in FIXTURES if not f.newer]
NEWER = [f for f in FIXTURES if f.newer]

# Known buildah-vs-BuildKit differences, each explained. BuildKit is the spec; these are
# allowances for the peer that proves the harness, never for hoist.
BUILDAH_ALWAYS = (
    # buildah (without --layers) commits one layer per build and writes its own created_by
    # strings ("/bin/sh -c #(nop) USER app"), so history and diff_id counts differ by design.
    Allowance("history", "*", "buildah squashes the build into one layer and words history its own way"),
    # buildah leaves the mount points it bind-mounted into RUN containers in the image as empty
    # files (/etc/hosts, /etc/hostname, /etc/resolv.conf) and an empty /run directory;
    # BuildKit provides them to the step and does not commit them.
    Allowance("path", "/etc/hosts", "buildah commits its RUN bind-mount targets"),
    Allowance("path", "/etc/hostname", "buildah commits its RUN bind-mount targets"),
    Allowance("path", "/etc/resolv.conf", "buildah commits its RUN bind-mount targets"),
    Allowance("path", "/run", "buildah commits its RUN bind-mount targets"),
)

# Per fixture, differences found by running both (keyed by fixture name).
BUILDAH_KNOWN: dict[str, tuple[Allowance, ...]] = {
    # A RUN that hardlinks to a file of an earlier layer: BuildKit's layer for the RUN holds the
    # linked file again (its link count changed) with the new name, so the flattened image has
    # two inodes, {one, made-by-run} and {two, sub/three}; buildah's single squashed layer keeps
    # all four in one group.
    "hardlink_across_layers": tuple(
        Allowance("path", p, "buildah squashes layers, so hardlink groups do not split across them")
        for p in ("/tree/one", "/tree/two", "/tree/sub/three", "/tree/made-by-run")),
    # BuildKit gives an image built FROM scratch WorkingDir "/"; buildah leaves it unset.
    "from_scratch": (Allowance("config", "WorkingDir", "BuildKit sets WorkingDir / on scratch images"),),
    # A shell-form CMD goes through the stage's SHELL in BuildKit; buildah always uses /bin/sh -c.
    "run_forms": (Allowance("config", "Cmd", "buildah ignores SHELL for shell-form CMD"),),
    "metadata": (
        # buildah creates every VOLUME directory in the image and (like the classic builder)
        # discards what later RUN steps write under a volume; BuildKit does neither, so it has
        # /data/f and no empty /cache, /logs, /spool.
        *(Allowance("path", p, "buildah materialises VOLUME dirs and drops writes under them")
          for p in ("/cache", "/logs", "/spool", "/data", "/data/f")),
        # BuildKit expands 8000-8002/tcp into three ports and lower-cases 9000/TCP; buildah
        # records the specs as written.
        Allowance("config", "ExposedPorts", "buildah does not expand port ranges or fold protocol case"),
    ),
}


# History entries where docker 20.10's BuildKit (the binary here) and current BuildKit (the spec
# for hoist) write different created_by strings, per fixture: 20.10's string -> current's. Only
# history: the file systems and config fields are compared unchanged. (HEALTHCHECK's 20.10 form
# is translated for every fixture by differential.current_buildkit_created_by.)
_ARG_WHY = ("current BuildKit's dispatchArg writes the value the ARG resolves to (the --build-arg, "
            "else the expanded default, else the global ARG's value); 20.10's wrote the declaration")
_COPY_WHY = ("current BuildKit's dispatchCopy (convert_copy.go) writes --parents, --chown=, --chmod= "
             "before the sources; 20.10's wrote none of them")
BUILDKIT_2010_HISTORY: dict[str, dict[str, str]] = {
    "target_stage": {"ARG MODE=dev": "ARG MODE=targeted"},                       # _ARG_WHY
    "arg_from": {"ARG FLAVOUR=inner-default": "ARG FLAVOUR=override"},           # _ARG_WHY
    "env_arg_scope": {"ARG GLOBAL": "ARG GLOBAL=global-default",                 # _ARG_WHY
                      "ARG OVERRIDDEN=default": "ARG OVERRIDDEN=from-cli"},
    "copy_chown_chmod": {                                                        # _COPY_WHY
        "COPY f.txt /by-names/ # buildkit": "COPY --chown=app:staff f.txt /by-names/ # buildkit",
        "COPY f.txt /by-numbers/ # buildkit": "COPY --chown=1001:50 f.txt /by-numbers/ # buildkit",
        "COPY f.txt /user-only/ # buildkit": "COPY --chown=app f.txt /user-only/ # buildkit",
        "COPY tree /tree-owned/ # buildkit": "COPY --chown=web:1000 tree /tree-owned/ # buildkit",
        "COPY f.txt /chmod/ # buildkit": "COPY --chmod=0750 f.txt /chmod/ # buildkit",
        "COPY tree /tree-chmod/ # buildkit": "COPY --chmod=640 tree /tree-chmod/ # buildkit",
        "COPY f.txt /both/ # buildkit": "COPY --chown=app:app --chmod=0700 f.txt /both/ # buildkit",
        "ADD f.txt /added/ # buildkit": "ADD --chown=1001:1001 f.txt /added/ # buildkit",
    },
}


@dataclass
class Peers:
    work: Path
    buildkit: BuildKit
    buildah: Buildah
    hoist: Hoist
    hoist_loaded: bool = False
    results: dict[tuple[str, str], Normalised] = field(default_factory=dict)
    contexts: dict[str, Path] = field(default_factory=dict)

    def context(self, fixture: Fixture) -> Path:
        if fixture.name not in self.contexts:
            self.contexts[fixture.name] = prepare_context(fixture, self.work / "contexts" / fixture.name)
        return self.contexts[fixture.name]

    def result(self, builder: str, fixture: Fixture) -> Normalised:
        key = (builder, fixture.name)
        if key not in self.results:
            peers: dict[str, Builder] = {"buildkit": self.buildkit, "buildah": self.buildah, "hoist": self.hoist}
            peer = peers[builder]
            if builder == "hoist" and not self.hoist_loaded:
                self.hoist.load_base(self.work / "base.tar")
                self.hoist_loaded = True
            out = self.work / "out" / builder / fixture.name
            out.mkdir(parents=True)
            tag = f"diff-{fixture.name.replace('_', '-')}:{builder}"
            self.results[key] = peer.build(self.context(fixture), tag=tag, build_args=fixture.build_args,
                                           target=fixture.target, work=out)
        return self.results[key]


@pytest.fixture(scope="session")
def peers(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """One dockerd (the session's), one buildah root and one HOIST_ROOT, each with the base loaded once."""
    need_tool("buildah")
    work = tmp_path_factory.mktemp("differential")
    archive = write_base_archive(work / "base.tar")
    buildkit = BuildKit(dockerd.socket, dockerd.base / "client-config", dockerd.docker)
    buildkit.load_base(archive)
    buildah = Buildah(work / "buildah")
    buildah.load_base(archive)
    (work / "hoist").mkdir()
    yield Peers(work, buildkit, buildah, Hoist(work / "hoist"))


def _without_buildah_label(result: Normalised) -> Normalised:
    """buildah stamps io.buildah.version on every image it builds; BuildKit adds no label."""
    labels = dict(result.config.get("Labels") or {})
    labels.pop("io.buildah.version", None)
    config = dict(result.config)
    if labels:
        config["Labels"] = labels
    else:
        config.pop("Labels", None)
    return Normalised(result.rootfs, config, result.history, result.layers, result.raw_config)


_PAIRS = [pytest.param("buildah", id="buildkit-vs-buildah"),
          pytest.param("hoist", id="buildkit-vs-hoist")]


@pytest.mark.parametrize("other", _PAIRS)
@pytest.mark.parametrize("fixture", CLASSIC, ids=[f.name for f in CLASSIC])
def test_build_matches_buildkit(peers: Peers, fixture: Fixture, other: str) -> None:
    spec = peers.result("buildkit", fixture)
    result = peers.result(other, fixture)
    if other == "buildah":
        diffs = compare(spec, _without_buildah_label(result), other_name="buildah",
                        allow=BUILDAH_ALWAYS + BUILDAH_KNOWN.get(fixture.name, ()))
    else:
        diffs = compare(spec, result, other_name="hoist", history_rewrites=BUILDKIT_2010_HISTORY.get(fixture.name))
    assert not diffs, f"{fixture.name}: {len(diffs)} difference(s) from BuildKit:\n" + "\n".join(diffs)


@pytest.mark.parametrize("fixture", NEWER, ids=[f.name for f in NEWER])
def test_newer_feature_follows_the_reference(peers: Peers, fixture: Fixture) -> None:
    expect = json.loads((fixture.path / "expect.json").read_text())
    result = peers.result("hoist", fixture)
    problems = []
    for path, entry in expected_tree(expect.get("files", {})).items():
        got = result.rootfs.get(path)
        if got != entry:
            problems.append(f"{path}: expected {entry.describe()}, got {got.describe() if got else 'nothing'}")
    for path in expect.get("absent", []):
        if path in result.rootfs:
            problems.append(f"{path}: expected absent, got {result.rootfs[path].describe()}")
    for key, value in expect.get("config", {}).items():
        if result.config.get(key) != value:
            problems.append(f"config {key}: expected {value!r}, got {result.config.get(key)!r}")
    if "layers" in expect and result.layers != expect["layers"]:
        problems.append(f"diff_ids: expected {expect['layers']}, got {result.layers}")
    assert not problems, f"{fixture.name}:\n" + "\n".join(problems)


def test_corpus_covers_every_instruction() -> None:
    """Each Dockerfile instruction appears in at least one classic (differential) fixture."""
    seen: set[str] = set()
    for f in CLASSIC:
        for line in (f.path / "Dockerfile").read_text().splitlines():
            word = line.strip().split(" ", 1)[0].upper()
            seen.add(word)
    wanted = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
              "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
    assert wanted <= seen, f"no fixture uses {sorted(wanted - seen)}"


# The harness itself: the applier and the comparison must see what they claim to.

def _tar(entries: list[tuple[str, str, str]]) -> io.BytesIO:
    """entries: (name, kind "f"/"d"/"l"/"h", content or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("l", "h"):
                info.type, info.linkname = (tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE), value
                tar.addfile(info)
            else:
                info.size, info.mode = len(value), 0o644
                tar.addfile(info, io.BytesIO(value.encode()))
    buf.seek(0)
    return buf


def test_flatten_applies_whiteouts_opaque_dirs_and_hardlinks() -> None:
    lower = _tar([("a", "d", ""), ("a/old", "f", "1"), ("a/keep", "f", "2"), ("b", "f", "3"), ("c", "d", ""),
                  ("c/x", "f", "4"), ("h1", "f", "5"), ("h2", "h", "h1")])
    upper = _tar([("a/.wh.old", "f", ""), ("c/.wh..wh..opq", "f", ""), ("c/new", "f", "6"), (".wh.b", "f", ""),
                  ("s", "l", "h1")])
    tree = flatten([lower, upper])
    assert set(tree) == {"/a", "/a/keep", "/c", "/c/new", "/h1", "/h2", "/s"}
    assert tree["/h1"].group == tree["/h2"].group == "/h1"
    assert tree["/s"].type == "symlink" and tree["/s"].link == "h1" and tree["/s"].group is None


def test_compare_reports_each_difference_and_honours_allowances() -> None:
    one = flatten([_tar([("f", "f", "x"), ("g", "f", "y")])])
    two = dict(one)
    two["/f"] = Entry("file", 0o600, 0, 0, one["/f"].size, one["/f"].sha256)
    del two["/g"]
    a = Normalised(one, {"Cmd": ["sh"]}, [], 1)
    b = Normalised(two, {"Cmd": ["bash"]}, [], 1)
    diffs = compare(a, b, other_name="peer")
    assert len(diffs) == 3 and diffs[0].startswith("/f: buildkit file mode=644") and "mode=600" in diffs[0]
    assert diffs[1].startswith("/g: missing from peer") and diffs[2].startswith("config Cmd:")
    assert compare(a, b, allow=[Allowance("path", "/f", ""), Allowance("path", "/g", ""),
                                Allowance("config", "Cmd", "")]) == []


def test_healthcheck_history_of_20_10_read_as_current_buildkit_writes_it() -> None:
    """Only docker 20.10's exact HEALTHCHECK shape is rewritten; everything else is left alone."""
    assert current_buildkit_created_by('HEALTHCHECK &{["CMD" "/bin/true"] "5s" "2s" "1m0s" \'\\x04\'}') == \
        "HEALTHCHECK {Test:[CMD /bin/true] Interval:5s Timeout:2s StartPeriod:1m0s StartInterval:0s Retries:4}"
    assert current_buildkit_created_by('HEALTHCHECK &{["CMD-SHELL" "echo \\"a\\" b"] "0s" "0s" "0s" \'\\n\'}') == \
        'HEALTHCHECK {Test:[CMD-SHELL echo "a" b] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:10}'
    for other in ('HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}',   # five fields: not 20.10's
                  "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}",
                  "RUN /bin/sh -c true # buildkit", "ARG MODE=dev"):
        assert current_buildkit_created_by(other) == other
    spec = Normalised({}, {}, [("ARG A=1", True), ('HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}', True)], 0)
    other = Normalised({}, {}, [("ARG A=2", True), (
        "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}", True)], 0)
    assert len(compare(spec, other)) == 1
    assert compare(spec, other, history_rewrites={"ARG A=1": "ARG A=2"}) == []
