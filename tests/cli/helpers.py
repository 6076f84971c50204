"""Helpers for driving the hoist CLI and building small images in tests."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess as _subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storage import mediatypes as mt
from tests.images import layer_tar
from storage.digest import Digest
from storage.layout import ImageLayout
from storage.manifest import Descriptor

REPO_ROOT = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox")


@dataclass
class Result:
    code: int
    out: str
    err: str


# Verbs that fork, unshare namespaces, install signal handlers or serve forever: always a process.
SUBPROCESS_VERBS = frozenset({"run", "exec", "registry"})

# os.environ, sys.std* and the working directory are process-wide: one in-process call at a time.
_IN_PROCESS = threading.Lock()


def run_in_process(args: Sequence[str], env: dict[str, str], stdin: bytes | None = None) -> Result:
    """``hoist.cli.main(args)`` in this process, as if it were ``python -m hoist.cli ARGS`` run with
    ``env`` in REPO_ROOT: stdout/stderr captured, stdin from ``stdin`` (empty and not a tty if None),
    the exit code from the return value or a SystemExit (argparse's). Exceptions propagate: in a
    subprocess they would be a traceback, which the callers refuse anyway."""
    from hoist.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    with _IN_PROCESS:
        saved_env = dict(os.environ)
        saved_cwd = os.getcwd()
        saved_std = sys.stdin, sys.stdout, sys.stderr
        streams = (io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8"),
                   io.TextIOWrapper(out, encoding="utf-8", write_through=True),
                   io.TextIOWrapper(err, encoding="utf-8", write_through=True))
        sys.stdin, sys.stdout, sys.stderr = streams
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(REPO_ROOT)
            try:
                code = main(list(args))
            except SystemExit as e:
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:                                  # sys.exit("message"): printed, status 1
                    print(e.code, file=sys.stderr)
                    code = 1
        finally:
            for stream in streams[1:]:
                stream.flush()
            sys.stdin, sys.stdout, sys.stderr = saved_std
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        result = Result(code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace"))
        for stream in streams:
            stream.detach()                        # leave the buffers to the garbage collector
    return result


class Hoist:
    """Runs the hoist CLI with its own HOIST_ROOT and DOCKER_CONFIG (and whatever else is put in
    ``env``): in this process through ``hoist.cli.main`` (fast), or as ``python -m hoist.cli`` for
    the verbs in SUBPROCESS_VERBS or when asked with ``subprocess=True``."""

    def __init__(self, base: Path) -> None:
        self.root = base / "hoist-root"
        self.docker_config = base / "docker-config"
        self.env = dict(os.environ, HOIST_ROOT=str(self.root), DOCKER_CONFIG=str(self.docker_config),
                        PYTHONPATH=str(REPO_ROOT))

    @property
    def images(self) -> Path:
        return self.root / "images"

    def layout(self) -> ImageLayout:
        return ImageLayout(self.images).init()

    def needs_process(self, args: Sequence[str]) -> bool:
        return bool(args) and args[0] in SUBPROCESS_VERBS

    def __call__(self, *args: str, ok: bool = True, stdin: str | None = None, timeout: float = 120,
                 subprocess: bool = False) -> Result:
        if subprocess or self.needs_process(args):
            proc = _subprocess.run([sys.executable, "-m", "hoist.cli", *args], capture_output=True, text=True,
                                   env=self.env, input=stdin, timeout=timeout, cwd=REPO_ROOT)
            result = Result(proc.returncode, proc.stdout, proc.stderr)
        else:
            result = run_in_process(args, self.env, stdin.encode() if stdin is not None else None)
        return self.check(args, result, ok)

    @staticmethod
    def check(args: Sequence[str], result: Result, ok: bool) -> Result:
        assert "Traceback" not in result.err, result.err
        if ok:
            assert result.code == 0, f"hoist {' '.join(args)} failed:\n{result.out}\n{result.err}"
        return result


def tar_layer(files: dict[str, bytes | Path], mode: int = 0o755) -> bytes:
    """A deterministic tar of ``files`` (path -> bytes, or a file to copy)."""
    return layer_tar(dict(files), mode)


def build_image(layout: ImageLayout, ref: str | None, layers: list[bytes], *, arch: str = "amd64",
                compress: bool = True, docker_types: bool = False, labels: dict[str, str] | None = None
                ) -> Descriptor:
    """Store an image made of these layer tars in ``layout`` (tagged ``ref`` if given)."""
    blobs, diff_ids = [], []
    for tar in layers:
        diff_ids.append(str(Digest.of(tar)))
        data = gzip.compress(tar, mtime=0) if compress else tar
        media = (mt.DOCKER_LAYER if docker_types else mt.OCI_LAYER_GZIP) if compress else mt.OCI_LAYER
        blobs.append(Descriptor(media, layout.put_blob(data), len(data)).to_json())
    config = {"architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
              "config": {"Cmd": ["/bin/busybox", "sh"], "Labels": labels or {}},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": []}
    config_desc = layout.put_json(config, mt.DOCKER_CONFIG if docker_types else mt.OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST if docker_types else mt.OCI_MANIFEST,
                "config": config_desc.to_json(), "layers": blobs}
    desc = layout.put_json(manifest, manifest["mediaType"])
    if ref:
        layout.tag(ref, desc)
    return desc


def build_index(layout: ImageLayout, ref: str, children: dict[str, Descriptor]) -> Descriptor:
    """An OCI index of ``children`` (platform "os/arch[/variant]" -> manifest descriptor)."""
    entries = []
    for plat, desc in children.items():
        parts = plat.split("/")
        platform = {"os": parts[0], "architecture": parts[1]}
        if len(parts) == 3:
            platform["variant"] = parts[2]
        entries.append(dict(desc.to_json(), platform=platform))
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    desc = layout.put_json(index, mt.OCI_INDEX)
    layout.tag(ref, desc)
    return desc


def busybox_image(layout: ImageLayout, ref: str | None, extra: bytes = b"", arch: str = "amd64") -> Descriptor:
    """busybox-static in one layer, plus a small layer that makes each image distinct."""
    base = tar_layer({"bin/busybox": BUSYBOX})
    top = tar_layer({"etc/hoist-test": extra or ref.encode() if ref else b"x"}, mode=0o644)
    return build_image(layout, ref, [base, top], arch=arch)


def manifest_digest(layout_dir: Path, ref: str) -> str:
    doc = json.loads((layout_dir / "index.json").read_text())
    for entry in doc["manifests"]:
        if entry.get("annotations", {}).get(mt.ANNOTATION_REF_NAME) == ref:
            return entry["digest"]
    raise KeyError(ref)
