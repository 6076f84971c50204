"""Container start-up and first-run unpack speed: hoist against docker and runc, in one run.

    sudo .venv/bin/python bench/run_bench.py [--runs 15] [--big-mb 500] [--skip-docker] [--skip-big]
                                             [--compare /path/to/other/checkout]

1. ``hoist run --rm IMAGE true`` against ``docker run --rm --network none IMAGE true`` (a private
   dockerd started here, like tests/peers.py's) and ``runc run`` of a bundle unpacked by umoci,
   all on the same busybox image, snapshots already unpacked; median wall time of N runs each.
2. The first run of a large image (~``--big-mb`` MB of files in one gzip layer): hoist's unpack
   rate, with ``cat`` of the uncompressed tar and ``tar -xzf`` of the same layer as references.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.images import add_image, busybox_image  # noqa: E402


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up: page cache, first unpack
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _check(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    res = subprocess.run(cmd, capture_output=True, env=env, cwd=cwd)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode(errors='replace')}")


class PrivateDockerd:
    """Its own socket, data root and exec root; no iptables, no bridge (as tests/peers.py)."""

    def __init__(self, base: Path) -> None:
        self.base, self.socket = base, base / "docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateDockerd:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--host", f"unix://{self.socket}", "--data-root", str(self.base / "root"),
             "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "dockerd.pid")],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.socket.exists() and self.docker("info").returncode == 0:
                return self
            time.sleep(0.2)
        raise SystemExit("dockerd did not come up")

    def docker(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        return subprocess.run(["docker", *args], capture_output=True, env=env)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _hoist_env(root: Path, tree: Path = REPO, pycache: Path | None = None) -> dict[str, str]:
    """The environment of one ``hoist run``: ``pycache`` set, bytecode is written to and read from
    there (as an installed hoist, whose .pyc files pip compiles); unset, the caller's
    environment decides (PYTHONDONTWRITEBYTECODE=1 means every run compiles hoist's source)."""
    env = dict(os.environ, HOIST_ROOT=str(root), PYTHONPATH=str(tree))
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


Case = tuple[list[str], dict[str, str], Path]   # argv, environment, working directory


def _interleaved_medians(cases: dict[str, Case], runs: int) -> dict[str, float]:
    """Median wall time of each case, the cases taking turns run after run (a noisy machine
    then slows every case alike)."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for cmd, env, cwd in cases.values():
        _check(cmd, env, cwd)  # warm-up: page cache, bytecode, first unpack
    for _ in range(runs):
        for name, (cmd, env, cwd) in cases.items():
            start = time.perf_counter()
            _check(cmd, env, cwd)
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_startup(base: Path, runs: int, skip_docker: bool, compare: Path | None = None) -> None:
    root = base / "hoist"
    busybox_image(root / "images", "bench:latest")
    trees = {"hoist run": REPO}
    if compare is not None:
        trees[f"hoist run ({compare.name})"] = compare
    cases: dict[str, Case] = {}
    for label, tree in trees.items():
        tree_root = base / f"hoist-{len(cases)}"
        busybox_image(tree_root / "images", "bench:latest")
        # --network none, as docker's row: the same work (no bridge, no NAT) on both sides
        cmd = [sys.executable, "-m", "hoist.cli", "run", "--rm", "--network", "none", "bench:latest", "true"]
        # cwd: ``-m`` puts the working directory first on sys.path.
        cases[label] = (cmd, _hoist_env(tree_root, tree, base / f"pyc-{len(cases)}"), tree)
        cases[f"{label}, no bytecode"] = (cmd, _hoist_env(tree_root, tree), tree)
    results = _interleaved_medians(cases, runs)

    if shutil.which("umoci") and shutil.which("runc"):
        bundle = base / "bundle"
        _check(["umoci", "unpack", "--image", f"{root / 'images'}:docker.io/library/bench:latest", str(bundle)])
        config = json.loads((bundle / "config.json").read_text())
        config["process"]["args"], config["process"]["terminal"] = ["true"], False
        (bundle / "config.json").write_text(json.dumps(config))
        counter = iter(range(1_000_000))
        results["runc run"] = _median_ms(lambda: _check(
            ["runc", "--root", str(base / "runc"), "run", "-b", str(bundle), f"bench-{os.getpid()}-{next(counter)}"]),
            runs)

    if not skip_docker and shutil.which("dockerd") and shutil.which("skopeo"):
        engine = PrivateDockerd(base / "dockerd").start()
        try:
            _check(["skopeo", "copy", "--dest-daemon-host", f"unix://{engine.socket}",
                    f"oci:{root / 'images'}:docker.io/library/bench:latest", "docker-daemon:bench:latest"])
            results["docker run --network none"] = _median_ms(lambda: _require_ok(engine.docker(
                "run", "--rm", "--network", "none", "bench:latest", "true")), runs)
        finally:
            engine.stop()

    dont = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
    print(f"\n== start-up: median of {runs} runs of `true` (layers already unpacked) ==")
    print("  (hoist cases interleaved run by run; \"no bytecode\" is the caller's environment, "
          f"PYTHONDONTWRITEBYTECODE={dont or 'unset'})")
    ours = results["hoist run"]
    for name, ms in results.items():
        ratio = "" if name == "hoist run" else f"   {ms / ours:.2f}x hoist's time"
        print(f"  {name:<40} {ms:8.1f} ms{ratio}")
    print(f"  target < 150 ms: {'met' if ours < 150 else 'NOT met'} "
          f"(no bytecode: {'met' if results['hoist run, no bytecode'] < 150 else 'NOT met'})")


def _require_ok(res: subprocess.CompletedProcess) -> None:
    if res.returncode != 0:
        raise SystemExit(f"docker run failed: {res.stderr.decode(errors='replace')}")


def _big_layer(path: Path, total_mb: int) -> int:
    """A tar of files of mixed sizes: random bytes and compressible text, ~total_mb MB."""
    rng = random.Random(42)
    block = os.urandom(1 << 20)
    text = (b"hoist benchmark line of fairly compressible text 0123456789\n" * 20000)[: 1 << 20]
    written = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        i = 0
        while written < total_mb << 20:
            size = rng.choice((4 << 10, 32 << 10, 256 << 10, 1 << 20, 4 << 20))
            source = block if i % 2 else text
            data = (source * (size // len(source) + 1))[:size]
            info = tarfile.TarInfo(f"data/d{i % 64}/f{i}")
            info.size, info.mode, info.mtime = size, 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
            written += size
            i += 1
    return written


def bench_unpack(base: Path, big_mb: int) -> None:
    root = base / "hoist-big"
    raw = base / "big.tar"
    print(f"\n== first run of a {big_mb} MB image ==")
    payload = _big_layer(raw, big_mb)
    raw_bytes = raw.read_bytes()
    add_image(root / "images", "big:latest", [raw_bytes], {"Cmd": ["true"]})
    gz = base / "big.tar.gz"
    gz.write_bytes(gzip.compress(raw_bytes, compresslevel=1))
    del raw_bytes
    subprocess.run(["sync"])

    from runtime.image import load_image
    from runtime.snapshots import SnapshotStore
    image = load_image(root / "images", "big:latest")
    store = SnapshotStore(root / "snapshots")
    start = time.perf_counter()
    store.ensure_chain(list(image.layer_blobs), image.diff_ids)
    ours = time.perf_counter() - start

    start = time.perf_counter()
    subprocess.run(["cat", str(raw)], stdout=subprocess.DEVNULL, check=True)
    cat_s = time.perf_counter() - start
    target = base / "tar-x"
    target.mkdir()
    start = time.perf_counter()
    subprocess.run(["tar", "-xzf", str(gz), "-C", str(target)], check=True)
    tar_s = time.perf_counter() - start
    target2 = base / "tar-x-plain"
    target2.mkdir()
    start = time.perf_counter()
    subprocess.run(["tar", "-xf", str(raw), "-C", str(target2)], check=True)
    tarx_s = time.perf_counter() - start

    mb = payload / (1 << 20)
    print(f"  hoist unpack (gzip layer, verify diff_id)  {ours * 1000:8.0f} ms  {mb / ours:7.0f} MB/s")
    print(f"  tar -xzf of the same layer                 {tar_s * 1000:8.0f} ms  {mb / tar_s:7.0f} MB/s"
          f"   hoist/tar = {tar_s / ours:.2f}x")
    print(f"  tar -xf of the uncompressed tar            {tarx_s * 1000:8.0f} ms  {mb / tarx_s:7.0f} MB/s")
    print(f"  cat of the uncompressed tar (read speed)   {cat_s * 1000:8.0f} ms  {mb / cat_s:7.0f} MB/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--big-mb", type=int, default=500)
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--compare", type=Path, metavar="TREE",
                        help="another hoist checkout (e.g. main's worktree) run interleaved, for an A/B")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run_bench.py needs root (hoist runs containers as root for now)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="hoist-bench-", dir="/tmp"))
    try:
        bench_startup(base, args.runs, args.skip_docker, args.compare)
        if not args.skip_big:
            bench_unpack(base, args.big_mb)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
