from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage import mediatypes as mt
from storage.digest import Digest, Hasher
from storage.errors import DigestInvalid, ManifestInvalid, NameInvalid, TagInvalid
from storage.manifest import parse_manifest
from storage.reference import parse_reference, validate_name

HEX = "a" * 64


@pytest.mark.parametrize("text", [f"sha256:{HEX}", "sha512:" + "b" * 128])
def test_digest_valid(text: str) -> None:
    assert str(Digest.parse(text)) == text


@pytest.mark.parametrize("text", ["", "sha256", f"sha256:{HEX[:-1]}", f"sha256:{HEX.upper()}", f"SHA256:{HEX}",
                                  f"md5:{'a' * 32}", f"sha256:{HEX}x", f" sha256:{HEX}", "sha512:" + "b" * 64,
                                  f"sha256+b64:{HEX}"])
def test_digest_invalid(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


@given(st.binary(max_size=5000), st.integers(min_value=1, max_value=100))
def test_hasher_matches_hashlib_in_any_chunking(data: bytes, step: int) -> None:
    h = Hasher()
    for i in range(0, len(data), step):
        h.update(data[i:i + step])
    assert h.digest() == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert h.size == len(data)


@given(st.text(max_size=80))
def test_digest_parse_only_raises_its_own_error(text: str) -> None:
    try:
        Digest.parse(text)
    except DigestInvalid:
        pass


def _desc(mt_: str = mt.OCI_LAYER_GZIP) -> dict:
    return {"mediaType": mt_, "digest": f"sha256:{HEX}", "size": 1}


def test_manifest_kinds() -> None:
    m = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                                   "config": _desc(mt.OCI_CONFIG), "layers": [_desc()]}).encode())
    assert m.media_type == mt.OCI_MANIFEST and len(m.blob_references()) == 2
    i = parse_manifest(json.dumps({"schemaVersion": 2, "manifests": [_desc(mt.OCI_MANIFEST)]}).encode())
    assert i.is_index and i.media_type == mt.OCI_INDEX
    # No mediaType: the shape and Content-Type decide.
    m2 = parse_manifest(json.dumps({"schemaVersion": 2, "config": _desc(), "layers": []}).encode(), mt.DOCKER_MANIFEST)
    assert m2.media_type == mt.DOCKER_MANIFEST


def test_foreign_layers_are_not_required() -> None:
    foreign = dict(_desc(mt.DOCKER_FOREIGN_LAYER), urls=["https://example.invalid/layer"])
    m = parse_manifest(json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
                                   "config": _desc(mt.DOCKER_CONFIG), "layers": [foreign]}).encode())
    assert [d.media_type for d in m.blob_references()] == [mt.DOCKER_CONFIG]


@given(st.binary(max_size=300))
def test_parse_manifest_only_raises_manifest_invalid(data: bytes) -> None:
    try:
        parse_manifest(data)
    except ManifestInvalid:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                        ["schemaVersion", "mediaType", "config", "layers", "manifests", "digest", "size",
                         "subject", "annotations", "platform", "artifactType"]), c, max_size=5), max_leaves=20))
def test_parse_manifest_on_json_shapes(doc: object) -> None:
    try:
        parse_manifest(json.dumps(doc).encode())
    except ManifestInvalid:
        pass


@pytest.mark.parametrize("text,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("index.docker.io/user/app", "docker.io/user/app:latest"),
    ("registry.local:5000/team/app:1.4", "registry.local:5000/team/app:1.4"),
    ("localhost/app", "localhost/app:latest"),
    ("127.0.0.1:5000/app@sha256:" + HEX, "127.0.0.1:5000/app@sha256:" + HEX),
    ("app:v1@sha256:" + HEX, "docker.io/library/app:v1@sha256:" + HEX),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
])
def test_reference_normalisation(text: str, want: str) -> None:
    assert str(parse_reference(text)) == want


@pytest.mark.parametrize("text", ["", "app/UPPER", "app:", "app:-bad", "a//b", "app@sha256:short",
                                  "host:port/app", "-app", "app/", " app"])
def test_reference_invalid(text: str) -> None:
    with pytest.raises((NameInvalid, TagInvalid)):
        parse_reference(text)


def test_name_length_limit() -> None:
    validate_name("a" * 255)
    with pytest.raises(NameInvalid):
        validate_name("a" * 256)
