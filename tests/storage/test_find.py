"""ImageLayout.find: docker's rules for naming a local image (full id, short id, name,
name:tag, name@digest), and the errors when they name nothing or more than one image."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import ImageAmbiguous, ImageUnknown
from storage.layout import ImageLayout
from tests.images import build_image
from tests.images import files_layer as tar_layer


@pytest.fixture
def layout(tmp_path: Path) -> ImageLayout:
    return ImageLayout(tmp_path / "images").init()


def _image_id(layout: ImageLayout, ref: str) -> str:
    return str(layout.image_id(layout.find(ref).descriptor))


def test_names_are_normalised_as_docker_does(layout: ImageLayout) -> None:
    desc = build_image(layout, "docker.io/library/app:latest", [tar_layer({"a": b"1"})])
    for text in ("app", "app:latest", "library/app", "docker.io/library/app:latest", "index.docker.io/library/app"):
        found = layout.find(text)
        assert found.name == "docker.io/library/app:latest" and found.descriptor.digest == desc.digest
    with pytest.raises(ImageUnknown, match="no such image: app:2"):
        layout.find("app:2")


def test_full_id_of_an_image_with_two_names_is_not_ambiguous(layout: ImageLayout) -> None:
    tar = tar_layer({"a": b"1"})
    one = build_image(layout, "example.com/one:1", [tar])
    # The same config under another manifest (uncompressed layers, as `docker load` makes).
    two = build_image(layout, "example.com/two:1", [tar], compress=False)
    assert one.digest != two.digest
    ident = _image_id(layout, "example.com/one:1")
    assert ident == _image_id(layout, "example.com/two:1")
    for text in (ident, ident.removeprefix("sha256:")):
        found = layout.find(text)
        assert found.name is None and layout.image_id(found.descriptor) == layout.image_id(one)
    assert sorted(layout.names_of(layout.find(ident).descriptor)) == ["example.com/one:1", "example.com/two:1"]
    # A manifest digest is a full id too, of that manifest.
    assert layout.find(str(two.digest)).descriptor.digest == two.digest
    # A short prefix of that id is one image as well.
    assert layout.find(ident[7:10]).name is None


def test_short_id_prefix_of_two_images_lists_the_candidates(layout: ImageLayout) -> None:
    images = {}
    n = 0
    # Find two images whose ids share a first hex digit.
    while True:
        ref = f"example.com/app:{n}"
        build_image(layout, ref, [tar_layer({"f": str(n).encode()})])
        images[ref] = _image_id(layout, ref)
        firsts = [i[7] for i in images.values()]
        clash = next((c for c in firsts if firsts.count(c) > 1), None)
        if clash:
            break
        n += 1
    with pytest.raises(ImageAmbiguous) as caught:
        layout.find(clash)
    names = [r for r, i in images.items() if i[7] == clash]
    assert len(caught.value.candidates) == 2
    message = str(caught.value)
    assert "\n" not in message and "matches more than one image" in message
    for ref in names:
        assert images[ref][7:19] in message and ref in message
    # More of the id picks one; sha256: in front is accepted.
    ref = names[0]
    assert layout.find(images[ref][7:20]).descriptor.digest == layout.find(ref).descriptor.digest
    assert layout.find("sha256:" + images[ref][7:20]).descriptor.digest == layout.find(ref).descriptor.digest
    assert layout.find(images[ref][7:20].upper()).descriptor.digest == layout.find(ref).descriptor.digest


def test_name_at_digest(layout: ImageLayout) -> None:
    desc = build_image(layout, "registry.local:5000/team/app:1.4", [tar_layer({"a": b"1"})])
    other = build_image(layout, "registry.local:5000/team/other:1", [tar_layer({"b": b"2"})])
    found = layout.find(f"registry.local:5000/team/app@{desc.digest}")
    assert found.descriptor.digest == desc.digest
    # The tag is ignored when a digest is given, as docker does.
    assert layout.find(f"registry.local:5000/team/app:9@{desc.digest}").descriptor.digest == desc.digest
    # A digest-only ref, as `pull NAME@DIGEST` stores it.
    layout.tag(f"registry.local:5000/team/pinned@{other.digest}", other)
    found = layout.find(f"registry.local:5000/team/pinned@{other.digest}")
    assert found.name == f"registry.local:5000/team/pinned@{other.digest}"
    # The digest must belong to that repository.
    with pytest.raises(ImageUnknown):
        layout.find(f"registry.local:5000/team/app@{other.digest}")


def test_unknown_and_hostile_text(layout: ImageLayout) -> None:
    build_image(layout, "example.com/app:1", [tar_layer({"a": b"1"})])
    for text in ("nothing", "sha256:" + "0" * 64, "0" * 64, "fff" + "0" * 40, "sha256:", "", "UPPER/Case",
                 "app@sha256:zz", "a" * 300, "../../etc/passwd", "sha256:" + "0" * 65):
        with pytest.raises(ImageUnknown) as caught:
            layout.find(text)
        assert "\n" not in str(caught.value)


def test_exact_ref_name_written_by_another_tool(layout: ImageLayout) -> None:
    # skopeo copy ... oci:<layout>:v1 stores ref.name "v1", which is no normalised reference.
    desc = build_image(layout, "v1", [tar_layer({"a": b"1"})])
    assert layout.find("v1").descriptor.digest == desc.digest
