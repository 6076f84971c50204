"""The registry's storage layout, the one CNCF Distribution uses (so either can serve the other's root)::

    /docker/registry/v2/
    ├── blobs/<algorithm>/<first two hex>/<hex>/data                 blob bytes, global
    ├── _gc/                                                          hoist's addition (below)
    │   ├── clock                                                     rewritten at each gc start: the store's own time
    │   ├── deleting/<algorithm>/<hex>                                a blob gc is about to delete
    │   └── untagging/<algorithm>/<hex>                               a manifest revision gc is about to delete
    └── repositories/<name>/
        ├── _layers/<algorithm>/<hex>/link                            blob linked into the repo
        ├── _manifests/
        │   ├── revisions/<algorithm>/<hex>/link                      manifest in the repo
        │   └── tags/<tag>/
        │       ├── current/link                                      what the tag points at
        │       └── index/<algorithm>/<hex>/link                      every digest it pointed at
        ├── _uploads/<uuid>/
        │   ├── data                                                  bytes received so far
        │   └── startedat                                             RFC 3339 start time
        └── _referrers/<algorithm>/<subject hex>/<algorithm>/<hex>/link   hoist's addition (below)

A ``link`` file holds a digest as text. ``_referrers`` is hoist's own index of manifests by
their ``subject`` (the referrers API); Distribution 2.8 skips ``_``-prefixed folders when it
walks repositories, so a root hoist wrote stays valid for it.

``_gc`` holds the markers that let garbage collection run while the registry serves (see
``storage/gc.py``); Distribution never looks at it.

Every path kind is a small function here; ``tests/storage/test_paths.py`` pins them in a table.
"""

from __future__ import annotations

from storage.digest import Digest

ROOT = "/docker/registry/v2"


def blob_dir(d: Digest) -> str:
    return f"{ROOT}/blobs/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/data"


def blobs_root() -> str:
    return f"{ROOT}/blobs"


def repositories_root() -> str:
    return f"{ROOT}/repositories"


def repository(name: str) -> str:
    return f"{ROOT}/repositories/{name}"


def layer_link(name: str, d: Digest) -> str:
    return f"{repository(name)}/_layers/{d.algorithm}/{d.hex}/link"


def layers_root(name: str) -> str:
    return f"{repository(name)}/_layers"


def manifests_root(name: str) -> str:
    return f"{repository(name)}/_manifests"


def revision_link(name: str, d: Digest) -> str:
    return f"{repository(name)}/_manifests/revisions/{d.algorithm}/{d.hex}/link"


def revisions_root(name: str) -> str:
    return f"{repository(name)}/_manifests/revisions"


def tags_root(name: str) -> str:
    return f"{repository(name)}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_root(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return f"{tag_dir(name, tag)}/index/{d.algorithm}/{d.hex}/link"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{repository(name)}/_uploads/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def uploads_root(name: str) -> str:
    return f"{repository(name)}/_uploads"


def referrers_dir(name: str, subject: Digest) -> str:
    return f"{repository(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, d: Digest) -> str:
    return f"{referrers_dir(name, subject)}/{d.algorithm}/{d.hex}/link"


def gc_clock() -> str:
    return f"{ROOT}/_gc/clock"


def gc_deleting_root() -> str:
    return f"{ROOT}/_gc/deleting"


def gc_deleting(d: Digest) -> str:
    return f"{ROOT}/_gc/deleting/{d.algorithm}/{d.hex}"


def gc_untagging_root() -> str:
    return f"{ROOT}/_gc/untagging"


def gc_untagging(d: Digest) -> str:
    return f"{ROOT}/_gc/untagging/{d.algorithm}/{d.hex}"
