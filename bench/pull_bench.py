"""Pull benchmark: ``hoist pull`` against ``skopeo copy docker://... oci:...`` from a local CNCF
Distribution, same images, same run, median of N.

Two images: 8 layers of 64 MB of incompressible bytes (throughput bound) and 60 small layers
(latency bound: parallelism matters). Each pull goes into a fresh store. Prints the medians and
the ratio hoist/skopeo (below 1.0 means hoist is faster).

    .venv/bin/python bench/pull_bench.py [--runs 3] [--big-layers 8] [--big-mb 64] [--small-layers 60]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from isal import igzip  # noqa: E402

from storage import mediatypes as mt  # noqa: E402
from storage.digest import Digest  # noqa: E402
from storage.layout import ImageLayout  # noqa: E402
from storage.manifest import Descriptor  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_distribution(base: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    addr = f"127.0.0.1:{port}"
    config = base / "registry.yml"
    config.write_text("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {base / 'root'}}}, delete: {{enabled: true}}}}\n"
                      f"http: {{addr: {addr}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, addr
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("docker-registry did not start")


def layer_of(size: int, seed: int) -> bytes:
    """A gzip'd tar holding ``size`` incompressible bytes."""
    payload = os.urandom(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"data-{seed}")
        info.size = size
        tar.addfile(info, io.BytesIO(payload))
    return igzip.compress(buf.getvalue(), compresslevel=1)


def make_image(layout: ImageLayout, ref: str, count: int, size: int) -> None:
    layers, diff_ids = [], []
    for i in range(count):
        blob = layer_of(size, i)
        diff_ids.append(str(Digest.of(igzip.decompress(blob))))
        layers.append(Descriptor(mt.OCI_LAYER_GZIP, layout.put_blob(blob), len(blob)).to_json())
    config = layout.put_json({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}}, mt.OCI_CONFIG)
    manifest = layout.put_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                "config": config.to_json(), "layers": layers}, mt.OCI_MANIFEST)
    layout.tag(ref, manifest)


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def startup_seconds(runs: int) -> float:
    """What ``hoist pull`` pays before any transfer: the interpreter and the client's imports."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return statistics.median(timed([sys.executable, "-m", "hoist.cli", "pull", "--help"], env)
                             for _ in range(runs))


def compare(name: str, remote: str, runs: int, work: Path) -> tuple[float, float]:
    hoist_times, skopeo_times = [], []
    for i in range(runs):
        store = work / f"hoist-{name}-{i}"
        env = dict(os.environ, HOIST_ROOT=str(store), PYTHONPATH=str(REPO_ROOT))
        hoist_times.append(timed([sys.executable, "-m", "hoist.cli", "pull", "-q", remote], env))
        shutil.rmtree(store)
        dest = work / f"skopeo-{name}-{i}"
        skopeo_times.append(timed(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{remote}",
                                   f"oci:{dest}:bench"]))
        shutil.rmtree(dest)
    h, s = statistics.median(hoist_times), statistics.median(skopeo_times)
    print(f"{name:<28} hoist {h:6.2f}s   skopeo {s:6.2f}s   ratio hoist/skopeo {h / s:4.2f}   "
          f"(runs: hoist {', '.join(f'{t:.2f}' for t in hoist_times)}; "
          f"skopeo {', '.join(f'{t:.2f}' for t in skopeo_times)})", flush=True)
    return h, s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-layers", type=int, default=8)
    parser.add_argument("--big-mb", type=int, default=64)
    parser.add_argument("--small-layers", type=int, default=60)
    parser.add_argument("--small-kb", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hoist-bench-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    proc, addr = start_distribution(work)
    try:
        source = ImageLayout(work / "source").init()
        print(f"building images in {source.root} ...", flush=True)
        make_image(source, "big", args.big_layers, args.big_mb << 20)
        make_image(source, "small", args.small_layers, args.small_kb << 10)
        for ref in ("big", "small"):
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{source.root}:{ref}",
                            f"docker://{addr}/bench/{ref}:1"], check=True)
        compare(f"{args.big_layers} x {args.big_mb} MB layers", f"{addr}/bench/big:1", args.runs, work)
        hoist, skopeo = compare(f"{args.small_layers} x {args.small_kb} kB layers", f"{addr}/bench/small:1",
                                args.runs, work)
        startup = startup_seconds(args.runs)
        print(f"{'':<28} hoist start-up (python + imports) {startup:.2f}s; small image net of it: "
              f"hoist {hoist - startup:.2f}s, ratio {(hoist - startup) / skopeo:4.2f}")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
