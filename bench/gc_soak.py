"""Soak: garbage collection against concurrent pushes, bounded in rounds and time.

    .venv/bin/python bench/gc_soak.py [--store fs|s3|both] [--servers 3] [--workers 6]
                                      [--pushes 300] [--seconds 150] [--layers 24]

Several ``hoist registry serve`` processes share one store (a filesystem root, or an S3
bucket on moto in server mode). Workers push images that reuse a small pool of old layers
(HEAD first, upload only when missing, as clients do), delete some images again, while
``hoist registry gc --grace 0s`` runs in a loop. A push refused with MANIFEST_BLOB_UNKNOWN
(gc took a layer between the HEAD and the manifest PUT) re-uploads and retries, as a client
would. At the end every acknowledged, undeleted tag must pull with every blob's bytes matching
its digest. Prints pushes, refusals, gc runs and losses; exits 1 on any loss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry import routes  # noqa: E402
from tests.peers import MotoS3  # noqa: E402
from tests.registry.http import Client, ServerProcess  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Tally:
    pushes: int = 0
    refused: int = 0
    deletes: int = 0
    gc_runs: int = 0
    gc_failures: int = 0
    errors: list[str] = field(default_factory=list)
    acked: dict[tuple[str, str], tuple[str, list[str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def push_image(c: Client, repo: str, tag: str, layers: list[bytes], seed: str, tally: Tally) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed,
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for _attempt in range(5):
        blobs = [config, *layers]
        for b in blobs:
            if c.request("HEAD", routes.blob(repo, digest(b))).status != 200:
                r = c.request("POST", routes.upload_start(repo, digest=digest(b)), b,
                              {"Content-Type": "application/octet-stream"})
                if r.status != 201:
                    raise RuntimeError(f"blob upload: {r.status} {r.body[:200]!r}")
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                          "size": len(config)},
               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(b),
                           "size": len(b)} for b in layers]}
        raw = json.dumps(doc).encode()
        r = c.push_manifest(repo, tag, raw)
        if r.status == 201:
            with tally.lock:
                tally.pushes += 1
                tally.acked[(repo, tag)] = (digest(raw), [digest(b) for b in blobs] + [digest(raw)])
            return
        if r.status == 400 and b"MANIFEST_BLOB_UNKNOWN" in r.body:
            with tally.lock:
                tally.refused += 1
            continue
        raise RuntimeError(f"manifest PUT: {r.status} {r.body[:200]!r}")
    raise RuntimeError(f"{repo}:{tag} refused 5 times")


def worker(n: int, c: Client, pool: list[bytes], args: argparse.Namespace, deadline: float,
           counter: list[int], tally: Tally) -> None:
    rng = random.Random(n)
    mine: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        with tally.lock:
            if counter[0] >= args.pushes:
                return
            counter[0] += 1
            i = counter[0]
        repo = f"soak/r{rng.randrange(4)}"
        try:
            push_image(c, repo, f"t{i}", rng.sample(pool, 2), f"{n}-{i}", tally)
            mine.append((repo, f"t{i}"))
            if len(mine) > 3 and rng.random() < 0.3:
                # Delete an older image: its layers become garbage unless another image shares them.
                repo_d, tag_d = mine.pop(rng.randrange(len(mine) - 1))
                with tally.lock:
                    d = tally.acked[(repo_d, tag_d)][0]
                r = c.request("DELETE", routes.manifest(repo_d, d))
                if r.status != 202:
                    raise RuntimeError(f"DELETE: {r.status} {r.body[:200]!r}")
                with tally.lock:
                    tally.deletes += 1
                    for key, (md, _) in list(tally.acked.items()):
                        if key[0] == repo_d and md == d:
                            del tally.acked[key]
        except Exception as e:  # reported at the end: the soak counts, it does not stop
            with tally.lock:
                tally.errors.append(f"worker {n}: {e}")


def gc_loop(gc_args: list[str], stop: threading.Event, tally: Tally) -> None:
    cmd = [sys.executable, "-m", "hoist.cli", "registry", "gc", "--grace", "0s", *gc_args]
    while not stop.is_set():
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
        with tally.lock:
            tally.gc_runs += 1
            if out.returncode != 0:
                tally.gc_failures += 1
                tally.errors.append(f"gc: {out.stderr.strip()[-300:]}")


def verify(c: Client, tally: Tally) -> int:
    lost = 0
    for (repo, tag), (mdigest, blobs) in sorted(tally.acked.items()):
        r = c.request("GET", routes.manifest(repo, tag), headers={"Accept": OCI_MANIFEST})
        if r.status != 200 or digest(r.body) != mdigest:
            lost += 1
            print(f"LOST {repo}:{tag}: manifest {r.status}", flush=True)
            continue
        for b in blobs[:-1]:
            got = c.request("GET", routes.blob(repo, b))
            if got.status != 200 or digest(got.body) != b:
                lost += 1
                print(f"LOST {repo}:{tag}: blob {b} {got.status}", flush=True)
                break
    return lost


def soak(store: str, args: argparse.Namespace, work: Path) -> int:
    moto = None
    config = None
    if store == "s3":
        moto = MotoS3(work / "moto").start()
        moto.create_bucket("soak")
        config = work / "s3.yml"
        config.write_text(f"storage: {{s3: {{bucket: soak, region: us-east-1, regionendpoint: {moto.endpoint}, "
                          f"accesskey: test, secretkey: test, rootdirectory: /soak}}}}\n")
        gc_args = ["--config", str(config)]
    else:
        gc_args = ["--root", str(work / "root")]
    servers = [ServerProcess(work / "root", config=config) for _ in range(args.servers)]
    tally = Tally()
    rng = random.Random(7)
    pool = [rng.randbytes(args.layer_kb << 10) for _ in range(args.layers)]
    started = time.monotonic()
    try:
        stop = threading.Event()
        gc = threading.Thread(target=gc_loop, args=(gc_args, stop, tally))
        gc.start()
        deadline = time.monotonic() + args.seconds
        counter = [0]
        threads = [threading.Thread(target=worker, args=(n, servers[n % len(servers)].client(), pool, args,
                                                        deadline, counter, tally))
                   for n in range(args.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        gc.join()
        lost = verify(servers[0].client(), tally)
    finally:
        for s in servers:
            s.stop()
        if moto:
            moto.stop()
    print(f"[{store}] {args.servers} servers, {time.monotonic() - started:.0f}s: {tally.pushes} pushes acked, "
          f"{tally.refused} manifest PUTs refused (MANIFEST_BLOB_UNKNOWN, retried), {tally.deletes} deletes, "
          f"{tally.gc_runs} gc runs ({tally.gc_failures} failed), {len(tally.acked)} tags checked, "
          f"{lost} lost, {len(tally.errors)} errors", flush=True)
    for e in tally.errors[:10]:
        print("  error:", e)
    return lost + len(tally.errors)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", choices=["fs", "s3", "both"], default="both")
    p.add_argument("--servers", type=int, default=3)
    p.add_argument("--workers", type=int, default=6)
    p.add_argument("--pushes", type=int, default=300, help="per store, at most")
    p.add_argument("--seconds", type=float, default=150, help="per store, at most")
    p.add_argument("--layers", type=int, default=24, help="size of the shared layer pool")
    p.add_argument("--layer-kb", type=int, default=64)
    args = p.parse_args()
    bad = 0
    for store in (["fs", "s3"] if args.store == "both" else [args.store]):
        with tempfile.TemporaryDirectory(prefix=f"hoist-gc-soak-{store}-") as tmp:
            bad += soak(store, args, Path(tmp))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
