"""The registry layout, pinned: every path kind and the exact path it makes."""

from __future__ import annotations

import pytest

from storage import paths
from storage.digest import Digest

D = Digest.parse("sha256:" + "ab" * 32)
S = Digest.parse("sha256:" + "cd" * 32)
R = "/docker/registry/v2"

TABLE = [
    (paths.blob_data(D), f"{R}/blobs/sha256/ab/{'ab' * 32}/data"),
    (paths.blob_dir(D), f"{R}/blobs/sha256/ab/{'ab' * 32}"),
    (paths.repository("team/app"), f"{R}/repositories/team/app"),
    (paths.layer_link("team/app", D), f"{R}/repositories/team/app/_layers/sha256/{'ab' * 32}/link"),
    (paths.revision_link("team/app", D), f"{R}/repositories/team/app/_manifests/revisions/sha256/{'ab' * 32}/link"),
    (paths.tags_root("team/app"), f"{R}/repositories/team/app/_manifests/tags"),
    (paths.tag_current_link("team/app", "1.0"), f"{R}/repositories/team/app/_manifests/tags/1.0/current/link"),
    (paths.tag_index_link("team/app", "1.0", D),
     f"{R}/repositories/team/app/_manifests/tags/1.0/index/sha256/{'ab' * 32}/link"),
    (paths.upload_data("team/app", "u-1"), f"{R}/repositories/team/app/_uploads/u-1/data"),
    (paths.upload_started_at("team/app", "u-1"), f"{R}/repositories/team/app/_uploads/u-1/startedat"),
    (paths.referrer_link("team/app", S, D),
     f"{R}/repositories/team/app/_referrers/sha256/{'cd' * 32}/sha256/{'ab' * 32}/link"),
    (paths.gc_clock(), f"{R}/_gc/clock"),
    (paths.gc_deleting(D), f"{R}/_gc/deleting/sha256/{'ab' * 32}"),
    (paths.gc_untagging(D), f"{R}/_gc/untagging/sha256/{'ab' * 32}"),
]


@pytest.mark.parametrize("got,want", TABLE)
def test_layout(got: str, want: str) -> None:
    assert got == want
