"""Pull benchmark: ``hoist pull`` against ``skopeo copy docker://... oci:...`` from a local CNCF
Distribution, same images, same run, median of N.

Two images: 8 layers of 64 MB of incompressible bytes (throughput bound) and 60 small layers
(latency bound: parallelism matters). Each pull goes into a fresh store. Prints the medians and
the ratio hoist/skopeo (below 1.0 means hoist is faster).

``--first-run``: pull-to-first-run of a ~500 MB image (busybox plus layers of 1 MB files):
``hoist pull`` + ``hoist run --rm IMAGE true`` against ``docker pull`` + ``docker run --rm``
on a dockerd this bench starts (bench/run_bench.py's PrivateDockerd), from the same registry,
each from an empty store every run.

    .venv/bin/python bench/pull_bench.py [--runs 3] [--big-layers 8] [--big-mb 64] [--small-layers 60]
    .venv/bin/python bench/pull_bench.py --first-run [--runs 3] [--first-run-mb 500]
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


def make_runnable_image(layout: ImageLayout, ref: str, total_mb: int) -> None:
    """busybox, then four layers of 1 MB incompressible files adding up to ``total_mb``."""
    from tests.images import Entry, add_image, busybox_entries, layer_tar

    per_layer = max(total_mb // 4, 1)
    layers = [layer_tar(busybox_entries())]
    for i in range(4):
        layers.append(layer_tar([Entry(f"data{i}", kind="dir", mode=0o755)] + [
            Entry(f"data{i}/f{j}", data=os.urandom(1 << 20)) for j in range(per_layer)]))
    add_image(layout, ref, layers, {"Cmd": ["/bin/busybox", "true"]}, "gzip", compresslevel=1,
              normalise=False)


def first_run(addr: str, runs: int, work: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from run_bench import PrivateDockerd

    remote = f"{addr}/bench/app:1"
    engine = PrivateDockerd(work / "dockerd").start()
    hoist_times, docker_times, pulls = [], [], []
    try:
        for i in range(runs):
            store = work / f"hoist-first-{i}"
            env = dict(os.environ, HOIST_ROOT=str(store), PYTHONPATH=str(REPO_ROOT))
            pulled = timed([sys.executable, "-m", "hoist.cli", "pull", "-q", remote], env)
            ran = timed([sys.executable, "-m", "hoist.cli", "run", "--rm", remote, "true"], env)
            hoist_times.append(pulled + ran)
            pulls.append((pulled, ran))
            subprocess.run([sys.executable, "-m", "hoist.cli", "rmi", remote], env=env, capture_output=True)
            shutil.rmtree(store, ignore_errors=True)
            start = time.perf_counter()
            for args in (["pull", "-q", remote], ["run", "--rm", "--network", "none", remote, "true"]):
                res = engine.docker(*args)
                if res.returncode != 0:
                    raise SystemExit(f"docker {' '.join(args)}: {res.stderr.decode(errors='replace')}")
            docker_times.append(time.perf_counter() - start)
            engine.docker("rmi", remote)
            engine.docker("builder", "prune", "-af")
    finally:
        engine.stop()
    h, d = statistics.median(hoist_times), statistics.median(docker_times)
    print(f"{'pull-to-first-run':<28} hoist {h:6.2f}s   docker {d:6.2f}s   ratio hoist/docker {h / d:4.2f}   "
          f"(hoist pull+run: {', '.join(f'{p:.2f}+{r:.2f}' for p, r in pulls)}; "
          f"docker {', '.join(f'{t:.2f}' for t in docker_times)})", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-layers", type=int, default=8)
    parser.add_argument("--big-mb", type=int, default=64)
    parser.add_argument("--small-layers", type=int, default=60)
    parser.add_argument("--small-kb", type=int, default=16)
    parser.add_argument("--first-run", action="store_true",
                        help="pull-to-first-run of a large image, hoist against docker")
    parser.add_argument("--first-run-mb", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hoist-bench-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    proc, addr = start_distribution(work)
    try:
        source = ImageLayout(work / "source").init()
        if args.first_run:
            print(f"building a {args.first_run_mb} MB image in {source.root} ...", flush=True)
            make_runnable_image(source, "app", args.first_run_mb)
            subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{source.root}:app",
                            f"docker://{addr}/bench/app:1"], check=True)
            first_run(addr, args.runs, work)
            return 0
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
