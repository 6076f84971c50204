"""Registry garbage collection: mark every blob a repository can still reach, sweep the rest,
while the registry keeps serving (Distribution needs read-only mode for this).

1. Clock: ``T0`` is the store's own time at the start (``RegistryStore.store_clock``).
2. Mark: for each repository, every manifest revision (with ``delete_untagged``: those a tag
   reaches, directly or through an index, plus revisions younger than ``grace``) and what it
   references: config, layers, child manifests, referrers of kept manifests.
3. Untagged (``delete_untagged`` only): for each unmarked revision, write its ``untagging``
   marker, re-read the repository's tags and revisions, and delete it only if still unreached.
4. Candidates: unmarked blobs last referenced before ``T0 - grace``; "last referenced" is the
   newest of the data's mtime and of every layer link to it (a link is rewritten whenever a
   blob is uploaded again or mounted, while an existing blob's data is never touched).
5. Markers: write ``deleting`` for every candidate, then re-mark: list every repository again
   and mark what each revision present now references, and keep any candidate whose layer link
   is now younger than ``T0 - grace``. Only then delete a candidate (its links, then its data),
   and drop its marker.

Why that is safe against a concurrent push: a manifest PUT writes its revision before it
checks its blobs for ``deleting`` markers (``RegistryStore.put_manifest``), and gc writes the
markers before it re-reads the revisions. Either gc's re-read sees the revision (the blob is
marked and kept), or the PUT sees the marker, waits for gc to decide and then finds the data
gone and answers 400 MANIFEST_BLOB_UNKNOWN (nothing acknowledged is lost). The same holds
for uploads and mounts of an existing blob (their link is the write) and for untagging.

Any storage error other than "not found" aborts the run: marking fails closed, and nothing is
deleted after an error (the markers written so far are cleared). Run one gc at a time:
``hoist registry gc`` takes a lock on a filesystem root; on S3, run it from one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from storage.digest import Digest
from storage.registry import RegistryStore

# Called with a phase name ("marked", "untagging", "deleting", "rechecked") as gc reaches
# it; tests use it to run a push at an exact point of the run.
Hook = Callable[[str], Awaitable[None]]


@dataclass
class GCReport:
    marked: set[Digest] = field(default_factory=set)
    swept: list[Digest] = field(default_factory=list)
    kept_young: list[Digest] = field(default_factory=list)
    # Candidates a concurrent push referenced while gc ran (found by the re-mark).
    kept_referenced: list[Digest] = field(default_factory=list)
    untagged_manifests: list[tuple[str, Digest]] = field(default_factory=list)
    bytes_freed: int = 0


async def _noop(phase: str) -> None:
    return None


class _Marker:
    """The reachability walk, shared by the mark and the re-mark."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self.marked: set[Digest] = set()

    async def manifest(self, name: str, d: Digest) -> None:
        if d in self.marked:
            return
        self.marked.add(d)
        # Absent or not a manifest: it references nothing more. Any other error propagates.
        m = await self.store.read_manifest(d)
        if m is None:
            return
        for desc in m.blob_references():
            self.marked.add(desc.digest)
        for desc in m.manifests:
            await self.manifest(name, desc.digest)
        for ref in await self.store.referrers(name, d):
            await self.manifest(name, ref.digest)


async def collect(store: RegistryStore, *, delete_untagged: bool = False, grace: float = 3600.0,
                  dry_run: bool = False, hook: Hook | None = None) -> GCReport:
    """One gc run (module docstring); raises on any storage error, having deleted nothing
    since the error."""
    hook = hook or _noop
    report = GCReport()
    t0 = await store.store_clock()
    cutoff = t0 - grace
    if not dry_run:
        await store.clear_all_gc_markers()
    marker = _Marker(store)
    revisions: dict[str, list[Digest]] = {}
    for name in await store.repository_names():
        revisions[name] = await store.revisions(name)
        roots = revisions[name]
        if delete_untagged:
            roots = list((await store.tag_targets(name)).values())
            roots += [d for d in revisions[name] if await _younger(store, name, d, cutoff)]
        for d in roots:
            await marker.manifest(name, d)
    await hook("marked")
    if delete_untagged:
        await _drop_untagged(store, marker, revisions, dry_run, report, hook)

    candidates: dict[Digest, int] = {}
    for d in await store.all_blobs():
        if d in marker.marked:
            continue
        info = await store.blob_info(d)
        if info is None:
            continue
        if info.modified >= cutoff:
            report.kept_young.append(d)
        else:
            candidates[d] = info.size
    if dry_run:
        report.swept = sorted(candidates, key=str)
        report.bytes_freed = sum(candidates.values())
        report.marked = marker.marked
        return report

    try:
        for d in candidates:
            await store.mark_deleting(d)
        await hook("deleting")
        linked_in: dict[Digest, list[str]] = {d: [] for d in candidates}
        fresh: set[Digest] = set()
        for name in await store.repository_names():
            for d in await store.revisions(name):
                await marker.manifest(name, d)
            for d in await store.linked_layers(name):
                if d not in candidates:
                    continue
                info = await store.layer_link_info(name, d)
                if info is None:
                    continue
                if info.modified >= cutoff:
                    fresh.add(d)
                linked_in[d].append(name)
        await hook("rechecked")
        for d, size in candidates.items():
            if d in marker.marked or d in fresh:
                report.kept_referenced.append(d)
            else:
                await store.sweep_blob(d, linked_in[d])
                report.swept.append(d)
                report.bytes_freed += size
            await store.clear_gc_marker(d)
    finally:
        # After an error (or once done) no marker may outlive the run: a writer would wait.
        for d in candidates:
            await store.clear_gc_marker(d)
    report.marked = marker.marked
    return report


async def _younger(store: RegistryStore, name: str, d: Digest, cutoff: float) -> bool:
    info = await store.revision_info(name, d)
    return info is not None and info.modified >= cutoff


async def _drop_untagged(store: RegistryStore, marker: _Marker, revisions: dict[str, list[Digest]],
                         dry_run: bool, report: GCReport, hook: Hook) -> None:
    doomed = [(name, d) for name, ds in revisions.items() for d in ds if d not in marker.marked]
    if dry_run:
        report.untagged_manifests = doomed
        return
    for name, d in doomed:
        await store.mark_untagging(d)
        try:
            await hook("untagging")
            # Re-read what a push may have added since the mark: tags, and revisions (an
            # index whose tag is not written yet already has its revision).
            for target in (await store.tag_targets(name)).values():
                await marker.manifest(name, target)
            for r in await store.revisions(name):
                if r not in revisions[name]:
                    await marker.manifest(name, r)
            if d not in marker.marked:
                await store.drop_untagged(name, d)
                report.untagged_manifests.append((name, d))
        finally:
            await store.clear_gc_marker(d, untagging=True)
