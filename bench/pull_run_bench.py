"""Pull to first run: ``hoist pull`` + ``hoist run`` against ``docker pull`` + ``docker run`` (a
private dockerd, Debian's docker.io), same image, same local CNCF Distribution, same run.

The image: the busybox-static layer plus ``--layers`` layers of ``--mb`` MB in total, as files
of 256 kB of incompressible bytes (so unpacking writes real files, as a Tomcat or JDK image
does). Each round starts from empty stores (a fresh HOIST_ROOT; ``docker rmi`` and a prune), and
times the pull, then the first ``run --rm IMAGE true``, then a second run. Prints the medians and
the ratios hoist/docker (below 1.0: hoist is faster).

    sudo .venv/bin/python bench/pull_run_bench.py [--mb 500] [--layers 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pull_bench import start_distribution  # noqa: E402
from storage.layout import ImageLayout  # noqa: E402
from tests.images import add_image, busybox_entries, files_layer, layer_tar  # noqa: E402
from tests.peers import Dockerd  # noqa: E402

FILE_SIZE = 256 << 10


def make_image(layout: ImageLayout, ref: str, total_mb: int, layers: int) -> None:
    per_layer = max(1, (total_mb << 20) // layers // FILE_SIZE)
    tars = [layer_tar(busybox_entries())]
    for i in range(layers):
        tars.append(files_layer({f"data/{i}/f{j}": os.urandom(FILE_SIZE) for j in range(per_layer)}, 0o644))
    add_image(layout, ref, tars, {"Env": ["PATH=/bin"], "Cmd": ["true"]}, compresslevel=1, normalise=False)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args: list[str], env: dict[str, str] | None = None) -> None:
    res = subprocess.run(args, env=env, capture_output=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.decode(errors='replace')}")


def hoist_round(ref: str, work: Path, i: int) -> tuple[float, float, float]:
    root = work / f"hoist-{i}"
    env = dict(os.environ, HOIST_ROOT=str(root), PYTHONPATH=str(REPO))
    hoist = [sys.executable, "-m", "hoist.cli"]
    try:
        pull = timed(lambda: run([*hoist, "pull", "-q", ref], env))
        # --network none for both: docker's runs below use it too (and a bridge would be made in
        # the machine's own namespace).
        first = timed(lambda: run([*hoist, "run", "--rm", "--network", "none", "--pull", "never", ref, "true"], env))
        second = timed(lambda: run([*hoist, "run", "--rm", "--network", "none", "--pull", "never", ref, "true"], env))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return pull, first, second


def docker_round(docker: Dockerd, ref: str) -> tuple[float, float, float]:
    try:
        pull = timed(lambda: docker("pull", "-q", ref))
        first = timed(lambda: docker("run", "--rm", "--network", "none", "--pull", "never", ref, "true"))
        second = timed(lambda: docker("run", "--rm", "--network", "none", "--pull", "never", ref, "true"))
    finally:
        docker("rmi", "-f", ref, check=False)
        docker("image", "prune", "-af", check=False)
    return pull, first, second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (hoist's runtime and dockerd need it)")
    # hoist measured as installed: its modules byte-compiled (pip compiles them when it installs).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for package in ("storage", "registry", "builder", "runtime", "hoist"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="hoist-bench-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    proc, addr = start_distribution(work)
    docker = Dockerd(work / "dockerd")
    try:
        source = ImageLayout(work / "source").init()
        print(f"building a {args.mb} MB image in {source.root} ...", flush=True)
        make_image(source, "big", args.mb, args.layers)
        ref = f"{addr}/bench/big:1"
        run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{source.root}:big", f"docker://{ref}"])
        docker.start()
        rows: dict[str, list[tuple[float, float, float]]] = {"hoist": [], "docker": []}
        for i in range(args.runs):
            rows["hoist"].append(hoist_round(ref, work, i))
            rows["docker"].append(docker_round(docker, ref))
        medians = {tool: [statistics.median(r[k] for r in runs) for k in range(3)] for tool, runs in rows.items()}
        for tool, (pull, first, second) in medians.items():
            print(f"{tool:<7} pull {pull:6.2f}s   first run {first:5.2f}s   pull+first run {pull + first:6.2f}s   "
                  f"second run {second:5.2f}s   (runs: "
                  + "; ".join(f"{p:.2f}+{f:.2f}" for p, f, _ in rows[tool]) + ")", flush=True)
        h, d = medians["hoist"], medians["docker"]
        print(f"ratio hoist/docker: pull {h[0] / d[0]:.2f}, first run {h[1] / d[1]:.2f}, "
              f"pull to first run {(h[0] + h[1]) / (d[0] + d[1]):.2f}, second run {h[2] / d[2]:.2f}")
    finally:
        docker.stop()
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
