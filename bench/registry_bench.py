"""hoist registry vs CNCF Distribution, in one run on loopback.

    .venv/bin/python bench/registry_bench.py [--duration 10] [--connections 32] [--runs 3] [--layers 8] [--layer-mb 64]

1. manifest GET requests/s under N concurrent connections (wrk), both servers on fresh roots
   holding the same image;
2. push and pull time of an image of L x M MB incompressible layers with skopeo
   (median of R runs; each run on a fresh root so nothing is mounted or cached).

Prints absolute figures and the ratios hoist/Distribution. Needs wrk, skopeo and docker-registry.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.images import random_layers, write_image  # noqa: E402
from tests.peers import Distribution, free_port, wait_for_port  # noqa: E402

ACCEPT = ("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
          "application/vnd.docker.distribution.manifest.v2+json, "
          "application/vnd.docker.distribution.manifest.list.v2+json")


class Hoist:
    def __init__(self, root: Path, workdir: Path) -> None:
        self.root, self.workdir = root, workdir
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Hoist:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hoist.cli", "registry", "serve", "--no-access-log",
             "--addr", self.addr, "--root", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / f"hoist-{self.port}.log", "wb"), cwd=ROOT)
        wait_for_port(self.port, 30, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def skopeo(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["skopeo", *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def wrk_rate(addr: str, path: str, duration: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s",
                          "-H", f"Accept: {ACCEPT}", f"http://{addr}{path}"],
                         check=True, capture_output=True, text=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} error responses from {addr}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def bench_manifest_get(work: Path, args: argparse.Namespace) -> tuple[float, float]:
    small = work / "small"
    write_image(small, "s", random_layers(2, 10_000, seed=1))
    rates = {}
    for kind in ("distribution", "hoist"):
        root = work / f"get-{kind}"
        server = Distribution(root, work).start() if kind == "distribution" else Hoist(root, work).start()
        try:
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{small}:s",
                            f"docker://{server.addr}/bench/app:latest"], check=True, capture_output=True)
            wrk_rate(server.addr, "/v2/bench/app/manifests/latest", 2, args.connections)  # warm-up
            rates[kind] = wrk_rate(server.addr, "/v2/bench/app/manifests/latest", args.duration, args.connections)
        finally:
            server.stop()
    return rates["hoist"], rates["distribution"]


def bench_push_pull(work: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    big = work / "big"
    write_image(big, "b", random_layers(args.layers, args.layer_mb << 20, seed=2))
    times: dict[str, dict[str, list[float]]] = {k: {"push": [], "pull": []} for k in ("distribution", "hoist")}
    for run in range(args.runs):
        for kind in ("distribution", "hoist"):
            root = work / f"pp-{kind}-{run}"
            server = Distribution(root, work).start() if kind == "distribution" else Hoist(root, work).start()
            try:
                ref = f"docker://{server.addr}/bench/big-{run}:1"
                times[kind]["push"].append(skopeo("copy", "--dest-tls-verify=false", f"oci:{big}:b", ref))
                out = work / f"pulled-{kind}-{run}"
                times[kind]["pull"].append(skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:b"))
                shutil.rmtree(out)
            finally:
                server.stop()
                shutil.rmtree(root, ignore_errors=True)
    return {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--layer-mb", type=int, default=64)
    p.add_argument("--skip-push-pull", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hoist-bench-") as tmp:
        work = Path(tmp)
        hoist_rate, dist_rate = bench_manifest_get(work, args)
        print(f"manifest GET, {args.connections} connections, {args.duration}s (wrk):")
        print(f"  hoist         {hoist_rate:10.0f} req/s")
        print(f"  distribution  {dist_rate:10.0f} req/s")
        print(f"  ratio hoist/distribution: {hoist_rate / dist_rate:.2f}x (target >= 3x)")
        if args.skip_push_pull:
            return
        t = bench_push_pull(work, args)
        print(f"skopeo push/pull of {args.layers} x {args.layer_mb} MB, median of {args.runs}:")
        for op in ("push", "pull"):
            h, d = t["hoist"][op], t["distribution"][op]
            print(f"  {op}: hoist {h:6.2f}s  distribution {d:6.2f}s  ratio {h / d:.2f} (target <= 1.0)")
        print(json.dumps({"manifest_get": {"hoist": hoist_rate, "distribution": dist_rate}, "push_pull": t}))


if __name__ == "__main__":
    main()
