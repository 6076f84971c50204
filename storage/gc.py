"""Registry garbage collection: mark every blob a repository can still reach, sweep the rest.

Mark: for each repository, every manifest revision (or, with ``delete_untagged``, only those a
tag points at, directly or through an index) and everything it references: config, layers,
child manifests, and the blobs linked by referrers of kept manifests. Sweep: delete unmarked
blobs from the global store, and unlink them from repositories' ``_layers``.

Unlike Distribution, which needs the registry read-only while it runs, a blob younger than
``grace`` seconds is never swept: a push in flight links its layers before its manifest, so those
layers look unreferenced for a moment. Run it from cron with the registry up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from storage import paths
from storage.digest import Digest
from storage.errors import DigestInvalid, PathNotFound
from storage.manifest import parse_manifest
from storage.registry import RegistryStore


@dataclass
class GCReport:
    marked: set[Digest] = field(default_factory=set)
    swept: list[Digest] = field(default_factory=list)
    kept_young: list[Digest] = field(default_factory=list)
    untagged_manifests: list[tuple[str, Digest]] = field(default_factory=list)
    bytes_freed: int = 0


async def _links_under(store: RegistryStore, root: str) -> list[Digest]:
    """Digests of ``<root>/<alg>/<hex>/link`` files."""
    out = []
    try:
        algos = await store.driver.list(root)
    except PathNotFound:
        return out
    for algo in algos:
        for entry in await store.driver.list(algo):
            try:
                d = Digest.parse(f"{algo.rsplit('/', 1)[1]}:{entry.rsplit('/', 1)[1]}")
            except DigestInvalid:
                continue
            out.append(d)
    return out


async def _mark_manifest(store: RegistryStore, name: str, d: Digest, marked: set[Digest]) -> None:
    if d in marked:
        return
    marked.add(d)
    try:
        m = parse_manifest(await store.read_blob(d))
    except Exception:  # a missing or unparseable manifest references nothing more
        return
    for desc in m.blob_references():
        marked.add(desc.digest)
    for desc in m.manifests:
        await _mark_manifest(store, name, desc.digest, marked)
    for ref in await store.referrers(name, d):
        await _mark_manifest(store, name, ref.digest, marked)


async def collect(store: RegistryStore, *, delete_untagged: bool = False, grace: float = 3600.0,
                  dry_run: bool = False) -> GCReport:
    report = GCReport()
    repos = [name async for name in store.repositories()]
    for name in repos:
        revisions = await _links_under(store, paths.revisions_root(name))
        roots = revisions
        if delete_untagged:
            roots = []
            for tag in await store.tags(name):
                try:
                    roots.append(await store.resolve(name, tag))
                except Exception:
                    continue
        for d in roots:
            await _mark_manifest(store, name, d, report.marked)
        if delete_untagged:
            for d in revisions:
                if d not in report.marked:
                    report.untagged_manifests.append((name, d))
                    if not dry_run:
                        await store.delete_manifest(name, d)
    now = time.time()
    for d in await _all_blobs(store):
        if d in report.marked:
            continue
        try:
            info = await store.driver.stat(paths.blob_data(d))
        except PathNotFound:
            continue
        if info.modified and now - info.modified < grace:
            report.kept_young.append(d)
            continue
        report.swept.append(d)
        report.bytes_freed += info.size
        if not dry_run:
            await store.driver.delete(paths.blob_dir(d))
    if not dry_run and report.swept:
        swept = set(report.swept)
        for name in repos:
            for d in await _links_under(store, paths.layers_root(name)):
                if d in swept:
                    await store.driver.delete(paths.layer_link(name, d).rsplit("/", 1)[0])
    return report


async def _all_blobs(store: RegistryStore) -> list[Digest]:
    out = []
    try:
        algos = await store.driver.list(paths.blobs_root())
    except PathNotFound:
        return out
    for algo_dir in algos:
        algo = algo_dir.rsplit("/", 1)[1]
        for prefix in await store.driver.list(algo_dir):
            for entry in await store.driver.list(prefix):
                try:
                    out.append(Digest.parse(f"{algo}:{entry.rsplit('/', 1)[1]}"))
                except DigestInvalid:
                    continue
    return out
