"""``hoist build``: real builds FROM a busybox-static image, run with ``hoist run``."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from storage.layout import ImageLayout
from storage.reference import parse_reference
from tests.cli.helpers import Hoist
from tests.images import busybox_image

EPOCH = "1700000000"


def _ctx(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None, name: str = "ctx") -> Path:
    ctx = tmp_path / name
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, text in (files or {}).items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    return ctx


def _config(h: Hoist, ref: str) -> tuple[dict, dict]:
    layout = ImageLayout(h.images)
    desc, manifest = layout.resolve_image(str(parse_reference(ref)))
    assert manifest.config is not None
    return json.loads(layout.read_blob(desc.digest)), layout.config(manifest)


APP = """\
FROM busybox
ARG WHO=world
ENV GREETING=hi
WORKDIR /app
COPY a.txt ./
COPY sub /app/sub/
RUN echo "$GREETING $WHO" > out.txt && cat out.txt
COPY --chown=app:staff a.txt /home/app/
USER app
CMD ["sh", "-c", "cat /app/out.txt /app/sub/s.txt; id -u; ls -ln /home/app/a.txt"]
EXPOSE 80 443/udp
LABEL x=y
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD true
ENTRYPOINT []
"""


def test_build_run_and_config(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, APP.replace("ENTRYPOINT []\n", ""), {"a.txt": "hello\n", "sub/s.txt": "s\n"})
    r = h("build", "-t", "app:1", "--build-arg", "WHO=you", str(ctx))
    image_id = r.out.strip().splitlines()[-1]
    assert "#" in r.err and "hi you" in r.err
    out = h("run", "--rm", "app:1").out.split()
    assert out[:4] == ["hi", "you", "s", "1000"]
    assert out[6:8] == ["1000", "50"]          # --chown=app:staff resolved in the image
    manifest, config = _config(h, "app:1")
    assert manifest["config"]["digest"] == image_id
    c = config["config"]
    assert "GREETING=hi" in c["Env"] and c["WorkingDir"] == "/app" and c["User"] == "app"
    assert c["ExposedPorts"] == {"80/tcp": {}, "443/udp": {}} and c["Labels"] == {"x": "y"}
    assert c["Volumes"] == {"/data": {}} and c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "true"] and c["Healthcheck"]["Interval"] == 30_000_000_000
    created_by = [e["created_by"] for e in config["history"]]
    assert "ENV GREETING=hi" in created_by
    assert '|1 WHO=you /bin/sh -c echo "$GREETING $WHO" > out.txt && cat out.txt # buildkit' in \
        [c.removeprefix("RUN ") for c in created_by]
    assert "COPY a.txt ./ # buildkit" in created_by and "WORKDIR /app" in created_by
    layered = [e for e in config["history"] if not e.get("empty_layer")]
    # The fixture base has one layer and no history; every layer this build added has its entry.
    assert len(layered) == len(config["rootfs"]["diff_ids"]) - 1 == len(manifest["layers"]) - 1


def test_cache_hit_runs_nothing_and_one_file_change_rebuilds_dependents(h: Hoist, tmp_path: Path) -> None:
    dockerfile = """\
FROM busybox
RUN --mount=type=cache,target=/cache echo run >> /cache/count; cat /cache/count | wc -l > /ran
COPY a.txt /a.txt
RUN cat /a.txt > /b.txt; echo second >> /cache2 || true
"""
    ctx = _ctx(tmp_path, dockerfile, {"a.txt": "one\n"})
    env = dict(h.env, SOURCE_DATE_EPOCH=EPOCH)
    h.env = env
    first = h("build", "-t", "c:1", str(ctx)).out.strip()
    again = h("build", "-t", "c:1", "--progress", "plain", str(ctx))
    assert again.out.strip() == first
    assert again.err.count("CACHED") == 3       # RUN, COPY, RUN (FROM is resolved, not cached)
    (ctx / "a.txt").write_text("two\n")
    third = h("build", "-t", "c:2", str(ctx))
    assert third.out.strip() != first
    assert third.err.count("CACHED") == 1        # only the first RUN
    # The first RUN ran once: its cache mount saw one run.
    assert h("run", "--rm", "c:2", "cat", "/ran", "/b.txt").out.split() == ["1", "two"]


def test_reproducible_from_two_empty_roots(tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nRUN echo hi > /f && mkdir /d\nCOPY a.txt /d/\nENV X=1\n"
    ctx = _ctx(tmp_path, dockerfile, {"a.txt": "a\n"})
    digests = []
    for name in ("one", "two"):
        hoist = Hoist(tmp_path / name)
        busybox_image(hoist.images)
        hoist.env["SOURCE_DATE_EPOCH"] = EPOCH
        hoist("build", "-t", "r:1", str(ctx))
        digests.append(str(ImageLayout(hoist.images).find("r:1").descriptor.digest))
        _, config = _config(hoist, "r:1")
        assert config["created"] == "2023-11-14T22:13:20Z"
    assert digests[0] == digests[1]


def test_multistage_target_and_from_scratch(h: Hoist, tmp_path: Path) -> None:
    dockerfile = """\
FROM busybox AS build
RUN echo built > /out
FROM busybox AS unused
RUN exit 1
FROM scratch
COPY --from=build /out /out
COPY --from=build /bin/busybox /bin/busybox
ENTRYPOINT ["/bin/busybox", "cat", "/out"]
"""
    ctx = _ctx(tmp_path, dockerfile)
    r = h("build", "-t", "m:1", str(ctx))
    assert "exit 1" not in r.err                   # the unused stage is never built
    assert h("run", "--rm", "m:1").out == "built\n"
    _, config = _config(h, "m:1")
    assert config["config"]["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert config["config"]["WorkingDir"] == "/"    # BuildKit's emptyImage
    assert len(config["rootfs"]["diff_ids"]) == 2


def _layer_members(h: Hoist, ref: str) -> list[dict[str, tuple[str, int, int, int]]]:
    """Per layer: name -> (type, mode, uid, gid)."""
    layout = ImageLayout(h.images)
    _, manifest = layout.resolve_image(str(parse_reference(ref)))
    out = []
    for layer in manifest.layers:
        with tarfile.open(fileobj=io.BytesIO(layout.read_blob(layer.digest))) as tar:
            out.append({m.name.strip("./").rstrip("/"): ("d" if m.isdir() else "f" if m.isfile() else "o",
                                                          m.mode, m.uid, m.gid) for m in tar.getmembers()})
    return out


def test_run_layer_keeps_proc_sys_dev_mount_points_as_buildkit(h: Hoist, tmp_path: Path) -> None:
    """A RUN on a base without /proc, /sys, /dev leaves their mount points in its layer (runc
    makes them, BuildKit keeps them: empty, 0755, root); the /etc files bound into the step (and
    the /etc made for them) are not committed; a later RUN finds them and adds nothing."""
    ctx = _ctx(tmp_path, """\
FROM scratch
COPY --from=busybox /bin/busybox /bin/busybox
RUN ["/bin/busybox", "true"]
RUN ["/bin/busybox", "true"]
""")
    h("build", "-t", "stubs:1", str(ctx))
    layers = _layer_members(h, "stubs:1")
    assert len(layers) == 3
    assert layers[1] == {name: ("d", 0o755, 0, 0) for name in ("dev", "proc", "sys")}
    assert layers[2] == {}


def test_docker_format_and_stdin(h: Hoist, tmp_path: Path) -> None:
    r = h("build", "-t", "d:1", "--format", "docker", "-", stdin="FROM busybox\nRUN echo x > /x\n")
    manifest, _ = _config(h, "d:1")
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.docker.image.rootfs.diff.tar.gzip"}
    assert manifest["config"]["digest"] == r.out.strip()


@pytest.mark.parametrize("dockerfile, files, message", [
    ("FROM busybox\nCOPY missing.txt /\n", {}, ":2: "),
    ("FROM busybox\nRUN echo before; exit 3\n", {}, "exit code: 3"),
    ("FROM nosuchimage.invalid/x:1\n", {}, ":1: "),
    ("FROM busybox\nCOPY --chown=nobodyhere a.txt /\n", {"a.txt": "a"}, ":2: "),
])
def test_bad_input_tags_nothing(h: Hoist, tmp_path: Path, dockerfile: str, files: dict[str, str],
                                message: str) -> None:
    ctx = _ctx(tmp_path, dockerfile, files)
    r = h("build", "-t", "bad:1", str(ctx), ok=False)
    assert r.code == 1 and message in r.err
    assert "bad" not in h("images").out
    if "exit code" in message:
        assert "> before" in r.err


def test_unknown_target(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox AS a\n")
    r = h("build", "--target", "nope", "-t", "bad:1", str(ctx), ok=False)
    assert r.code == 1 and "nope" in r.err


def test_cache_blobs_survive_rmi_gc(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo x > /x\n")
    h("build", "-t", "g:1", str(ctx))
    h("rmi", "g:1")
    r = h("build", "-t", "g:1", str(ctx))
    assert "CACHED" in r.err
    assert h("run", "--rm", "g:1", "cat", "/x").out == "x\n"


def test_run_mounts_secret_and_bind(h: Hoist, tmp_path: Path) -> None:
    dockerfile = """\
FROM busybox
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen; stat -c %a /run/secrets/tok >> /seen
RUN --mount=type=secret,id=tok,env=TOK echo "$TOK" >> /seen
RUN --mount=type=bind,target=/src cat /src/a.txt >> /seen
RUN --mount=type=bind,target=/src,rw echo gone > /src/a.txt; cat /src/a.txt >> /seen
"""
    ctx = _ctx(tmp_path, dockerfile, {"a.txt": "ctx\n"})
    secret = tmp_path / "tok.txt"
    secret.write_text("s3cret")
    h("build", "-t", "s:1", "--secret", "id=tok,src=" + str(secret), str(ctx))
    assert h("run", "--rm", "s:1", "cat", "/seen").out.split() == ["s3cret400", "s3cret", "ctx", "gone"]
    assert (ctx / "a.txt").read_text() == "ctx\n"            # rw bind writes are discarded
    out = h("run", "--rm", "s:1", "sh", "-c", "ls /run/secrets /src 2>&1; true").out
    assert "tok" not in out and "a.txt" not in out          # neither the secret nor the mount point is kept
    layout = ImageLayout(h.images)
    for blob in layout.blobs():
        assert b"s3cret" not in gzip_or_raw(layout.read_blob(blob)) or blob_is_seen_file(layout, blob)


def gzip_or_raw(data: bytes) -> bytes:
    import gzip
    try:
        return gzip.decompress(data)
    except OSError:
        return data


def blob_is_seen_file(layout: ImageLayout, blob: object) -> bool:
    """The only place the secret may be is /seen, which the test wrote on purpose."""
    import io
    import tarfile
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip_or_raw(layout.read_blob(blob)))) as tar:  # type: ignore[arg-type]
            return all(m.name == "seen" for m in tar.getmembers() if m.isfile())
    except tarfile.TarError:
        return False


def test_heredocs_and_onbuild(h: Hoist, tmp_path: Path) -> None:
    base = """\
FROM busybox
ONBUILD RUN echo triggered > /onbuild
"""
    h("build", "-t", "base:1", str(_ctx(tmp_path, base, name="base")))
    _, config = _config(h, "base:1")
    assert config["config"]["OnBuild"] == ["RUN echo triggered > /onbuild"]
    child = """\
FROM base:1
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /shebang
EOF
RUN <<EOF
echo plain > /plain
EOF
RUN cat <<EOT > /cat
from cat
EOT
"""
    h("build", "-t", "child:1", str(_ctx(tmp_path, child, name="child")))
    out = h("run", "--rm", "child:1", "cat", "/onbuild", "/shebang", "/plain", "/cat").out
    assert out == "triggered\nshebang /dev/pipes/EOF\nplain\nfrom cat\n"
    _, config = _config(h, "child:1")
    assert not config["config"].get("OnBuild")
    assert "pipes" not in h("run", "--rm", "child:1", "ls", "/dev").out


def test_two_builds_at_once_share_store_and_cache(h: Hoist, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cli.helpers import REPO_ROOT

    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo x > /x\nCOPY a.txt /\nRUN cat /a.txt /x > /y\n", {"a.txt": "a\n"})
    env = dict(h.env, SOURCE_DATE_EPOCH=EPOCH)
    procs = [subprocess.Popen([sys.executable, "-m", "hoist.cli", "build", "-q", "-t", f"p:{i}", str(ctx)],
                              env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert results[0][0] == results[1][0]
    assert h("run", "--rm", "p:1", "cat", "/y").out == "a\nx\n"


def test_copy_add_options(h: Hoist, tmp_path: Path) -> None:
    import io
    import tarfile

    dockerfile = """\
FROM busybox
COPY --exclude=**/*.log logs/ /logs/
COPY --parents a/./b/c.txt /p/
COPY <<EOT /here.txt
heredoc $HOME
EOT
COPY --chmod=u+x,go-r run.sh /run.sh
ADD arch.tar.gz /unpacked/
COPY --from=busybox:latest /etc/group /group
SHELL ["/bin/sh", "-ec"]
RUN ls /logs > /listing
ENTRYPOINT ["/bin/sh", "-c"]
"""
    ctx = _ctx(tmp_path, dockerfile, {"logs/keep.txt": "k", "logs/drop.log": "d", "a/b/c.txt": "c", "run.sh": "x"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner/file")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"inner"))
    (ctx / "arch.tar.gz").write_bytes(buf.getvalue())
    h("build", "-t", "o:1", str(ctx))
    out = h("run", "--rm", "o:1", "cat /listing /p/b/c.txt /here.txt /unpacked/inner/file; echo; "
            "stat -c %a /run.sh; grep -c staff /group").out
    assert out == "keep.txt\nc" + "heredoc \n" + "inner\n" + "700\n1\n"
    _, config = _config(h, "o:1")
    assert config["config"]["Shell"] == ["/bin/sh", "-ec"] and config["config"].get("Cmd") is None


def test_independent_stages(h: Hoist, tmp_path: Path) -> None:
    dockerfile = """\
FROM busybox AS one
RUN echo one > /one
COPY a.txt /a1
FROM busybox AS two
RUN echo two > /two
COPY a.txt /a2
FROM one AS both
COPY --from=two /two /two
RUN cat /one /two /a1 > /all
"""
    ctx = _ctx(tmp_path, dockerfile, {"a.txt": "a\n"})
    r = h("build", "-t", "i:1", "--progress", "plain", str(ctx))
    assert h("run", "--rm", "i:1", "cat", "/all").out == "one\ntwo\na\n"
    assert "[one 2/3] RUN echo one > /one" in r.err and "[two 2/3] RUN echo two > /two" in r.err


def test_proxy_args_reach_run_but_not_history_or_key(h: Hoist, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo \"p=$HTTP_PROXY\" > /p\n")
    h("build", "-t", "px:1", "--build-arg", "HTTP_PROXY=http://proxy:3128", str(ctx))
    assert h("run", "--rm", "px:1", "cat", "/p").out == "p=http://proxy:3128\n"
    _, config = _config(h, "px:1")
    assert "proxy" not in json.dumps(config)
    again = h("build", "-t", "px:2", "--build-arg", "HTTP_PROXY=http://other:3128", str(ctx))
    assert "CACHED" in again.err                                 # not part of the key


def test_interrupt_kills_the_step_and_tags_nothing(h: Hoist, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.cli.helpers import REPO_ROOT

    ctx = _ctx(tmp_path, "FROM busybox\nRUN echo started; sleep 600\n")
    proc = subprocess.Popen([sys.executable, "-m", "hoist.cli", "build", "-t", "int:1", str(ctx)], env=h.env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:           # wait until the step runs (its output, not its title)
        if line.rstrip().endswith(" started") and "RUN" not in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert "int" not in h("images").out
    assert not [p for p in (h.root / "build" / "steps").iterdir() if not p.name.startswith(".")]
    deadline = time.monotonic() + 10
    while "sleep 600" in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout:
        assert time.monotonic() < deadline, "the RUN step outlived the build"
        time.sleep(0.1)


def test_copy_link_copies_onto_an_empty_tree(h: Hoist, tmp_path: Path) -> None:
    """COPY --link (the Dockerfile reference; current BuildKit's merge of a copy onto scratch):
    the destination path is resolved in an empty tree, so a symlink of the stage on it is not
    followed, and the layer does not depend on the stage; with --chmod it is an ordinary copy
    (BuildKit too). --chown by name cannot be used with it: rejected before anything runs."""
    ctx = _ctx(tmp_path, """\
FROM busybox
RUN mkdir -m 700 /real /real2 && ln -s /real /sym && ln -s /real2 /sym2
COPY --link --chown=1000:50 a.txt /sym/
COPY --link --chmod=600 a.txt /sym2/
COPY a.txt /sym/plain.txt
CMD ["sh", "-c", "ls -ln /sym/a.txt /real2/a.txt /real/plain.txt; ls -A /real; stat -c '%a %u' /sym; ls /sym"]
""", {"a.txt": "a\n"})
    h("build", "-t", "link:1", str(ctx))
    out = h("run", "--rm", "link:1").out.splitlines()
    # --chmod: an ordinary copy, through the symlink; --link: /sym is now a directory of its own
    # (made as on scratch: 0755, the --chown owner), the later plain COPY lands in it, /real is empty
    assert out[0].startswith("-rw-------") and out[0].endswith(" /real2/a.txt")
    assert out[1].split()[0:4] == ["-rw-r--r--", "1", "1000", "50"] and out[1].endswith(" /sym/a.txt")
    assert out[2:] == ["755 1000", "a.txt", "plain.txt"]
    layers = _layer_members(h, "link:1")
    assert layers[2] == {"sym": ("d", 0o755, 1000, 50), "sym/a.txt": ("f", 0o644, 1000, 50)}

    bad = _ctx(tmp_path, "FROM busybox\nCOPY --link --chown=app:staff a.txt /x/\n", {"a.txt": "a\n"}, name="bad")
    r = h("build", "-t", "link:bad", str(bad), ok=False)
    assert r.code != 0 and "Dockerfile:2: --chown=app:staff by name cannot be used with --link" in r.err
    assert "Traceback" not in r.err


def test_run_steps_flush_nothing_but_containers_do(h: Hoist, tmp_path: Path) -> None:
    """A RUN's fsync, fdatasync, syncfs and sync succeed without being made (runtime.seccomp's
    sync_noop): fsync of a pipe, EINVAL when it is made, succeeds in a step, and fails in a
    container that ``hoist run`` starts from the image the step made."""
    pipe_syncs = "echo | sync /dev/stdin && echo | sync -d /dev/stdin"
    ctx = _ctx(tmp_path, f"FROM busybox\nRUN {pipe_syncs} && sync && sync -f /etc && echo flushed > /ok\n")
    h("build", "-t", "sync:1", str(ctx))
    assert h("run", "--rm", "sync:1", "cat", "/ok").out == "flushed\n"
    r = h("run", "--rm", "sync:1", "sh", "-c", pipe_syncs, ok=False)
    assert r.code != 0 and "Invalid argument" in r.err, r
