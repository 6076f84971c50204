"""Layer benchmark: ``layer_from_upper`` (gzip) against GNU tar piped into ``gzip -1``, on the same
generated tree in the same run, median of N.

The tree (~300 MB by default) mixes large files, half incompressible and half text-like (think
binaries and assets), with many small text-like files in a few hundred directories (think a
``node_modules``). Both sides read a warm page cache and write to the same filesystem. Prints
MB/s of file data for each side and the time ratio hoist/GNU (below 1.0 means hoist is faster).

    .venv/bin/python bench/layer_bench.py [--runs 3] [--big 4] [--big-mb 40] [--small 24000] [--level 1]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder.layers import layer_from_upper

_BLOCK = 64 << 10
_WORDS = [w.encode() for w in (
    "the layer tar entry header digest config manifest index blob upload registry mount overlay "
    "function return import class const value string number error module package version build "
    "install require export default async await promise object array length index buffer stream"
).split()]


def text_like(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(_WORDS, k=12)) + b";\n"
    return bytes(out[:size])


def make_tree(root: Path, big: int, big_mb: int, small: int) -> int:
    """Write the tree; return the bytes of file data in it."""
    rng = random.Random(42)
    total = 0
    (root / "assets").mkdir(parents=True)
    for i in range(big):
        with open(root / "assets" / f"blob{i}.bin", "wb") as f:
            for n in range(big_mb * (1 << 20) // _BLOCK):
                f.write(rng.randbytes(_BLOCK) if n % 2 else text_like(rng, _BLOCK))
        total += big_mb << 20
    per_dir = 100
    for i in range(small):
        d = root / "node_modules" / f"pkg{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        data = text_like(rng, rng.randint(512, 9 * 1024))
        (d / f"file{i % per_dir:03d}.js").write_bytes(data)
        total += len(data)
    return total


def time_hoist(tree: Path, out: Path, level: int) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    blob = layer_from_upper(tree, out, "gzip", level=level)
    return time.perf_counter() - start, blob.size


def time_gnu(tree: Path, out: Path) -> tuple[float, int]:
    target = out / "layer.tar.gz"
    out.mkdir(parents=True, exist_ok=True)
    command = (f"tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C {tree} -cf - . "
               f"| gzip -1 > {target}")
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True)
    return time.perf_counter() - start, target.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", type=int, default=4, help="number of large files")
    parser.add_argument("--big-mb", type=int, default=40, help="size of each large file in MB")
    parser.add_argument("--small", type=int, default=24000, help="number of small files (0.5-9 KB)")
    parser.add_argument("--level", type=int, default=1, help="ISA-L level for hoist (0..3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hoist-layer-bench-", dir="/var/tmp") as tmp:
        base = Path(tmp)
        print("building the tree ...", flush=True)
        data = make_tree(base / "tree", args.big, args.big_mb, args.small)
        time_hoist(base / "tree", base / "warm", args.level)     # warm the page cache
        hoist_runs = [time_hoist(base / "tree", base / "hoist", args.level) for _ in range(args.runs)]
        gnu_runs = [time_gnu(base / "tree", base / "gnu") for _ in range(args.runs)]
    mb = data / 1e6
    h = statistics.median(t for t, _ in hoist_runs)
    g = statistics.median(t for t, _ in gnu_runs)
    print(f"tree: {mb:.0f} MB of file data, {args.big} large + {args.small} small files; median of {args.runs}")
    print(f"hoist layer_from_upper gzip (ISA-L level {args.level}) {h:6.2f}s {mb / h:7.1f} MB/s  "
          f"blob {hoist_runs[0][1] / 1e6:.1f} MB")
    print(f"GNU tar | gzip -1                        {g:6.2f}s {mb / g:7.1f} MB/s  "
          f"blob {gnu_runs[0][1] / 1e6:.1f} MB")
    print(f"ratio hoist/GNU time {h / g:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
