"""hoist rmi / tag / inspect by image id through the CLI: a full id is never ambiguous, a short
one that several images share is refused with their names."""

from __future__ import annotations

import json

from tests.cli.helpers import Hoist
from tests.images import build_image
from tests.images import files_layer as tar_layer


def test_rmi_force_full_id_of_an_image_with_two_manifests(hoist: Hoist) -> None:
    layout = hoist.layout()
    tar = tar_layer({"etc/data": b"shared"})
    build_image(layout, "example.com/one:1", [tar])
    build_image(layout, "example.com/two:1", [tar], compress=False)  # same config, another manifest
    ident = json.loads(hoist("inspect", "example.com/one:1").out)[0]["Id"]
    assert json.loads(hoist("inspect", ident).out)[0]["Id"] == ident
    refused = hoist("rmi", ident, ok=False)
    assert refused.code != 0 and "several names" in refused.err and "more than one" not in refused.err
    out = hoist("rmi", "-f", ident).out
    assert "Untagged: example.com/one:1" in out and "Untagged: example.com/two:1" in out
    assert layout.refs() == [] and list(layout.blobs()) == []


def test_short_id_shared_by_two_images_is_refused_with_candidates(hoist: Hoist) -> None:
    layout = hoist.layout()
    ids: dict[str, str] = {}
    n = 0
    while True:
        ref = f"example.com/app:{n}"
        build_image(layout, ref, [tar_layer({"f": str(n).encode()})])
        ids[ref] = str(layout.image_id(layout.find(ref).descriptor))[7:]
        firsts = [i[0] for i in ids.values()]
        clash = next((c for c in firsts if firsts.count(c) > 1), None)
        if clash:
            break
        n += 1
    result = hoist("rmi", "-f", clash, ok=False)
    assert result.code == 1 and "matches more than one image" in result.err
    assert len(result.err.strip().splitlines()) == 1
    for ref, ident in ids.items():
        if ident[0] == clash:
            assert ref in result.err and ident[:12] in result.err
    assert len(layout.refs()) == len(ids)  # nothing was removed
    missing = hoist("tag", "nosuch", "x:1", ok=False)
    assert missing.code == 1 and "no such image: nosuch" in missing.err
