"""FROM bases that are not stage names must be valid image references: checked with the one
reference grammar (``storage.reference``), errors worded as BuildKit words them."""

from __future__ import annotations

import re

from builder.errors import DockerfileError
from storage.errors import StorageError
from storage.reference import NAME_MAX, parse_reference

_HEX64 = re.compile(r"^[a-f0-9]{64}$")


def normalised(ref: str) -> str:
    """``ref`` in full (``app`` is ``docker.io/library/app:latest``); raises ValueError with
    the message a build shows for a bad one."""
    try:
        return str(parse_reference(ref))
    except (ValueError, StorageError) as e:
        raise ValueError(f"invalid reference format: {ref}: {e}") from None


def _valid(ref: str) -> bool:
    try:
        parse_reference(ref)
        return True
    except StorageError:
        return False


def check_reference(ref: str) -> None:
    """Raise DockerfileError unless ``ref`` is a valid image reference."""
    if _HEX64.match(ref):
        raise DockerfileError(f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    if _valid(ref):
        return
    if _valid(_lower_path(ref)):
        raise DockerfileError(f"invalid reference format: repository name ({ref}) must be lowercase")
    if len(_name(ref)) > NAME_MAX:
        raise DockerfileError(f"invalid reference format: repository name ({ref}) must not be more than "
                              f"{NAME_MAX} characters")
    raise DockerfileError(f"invalid reference format: {ref!r}")


def _name(ref: str) -> str:
    name = ref.partition("@")[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[:name.rfind(":")]
    return name


def _lower_path(ref: str) -> str:
    """``ref`` with its repository path (not the registry, tag or digest) lower-cased."""
    name, at, digest = ref.partition("@")
    tag = name[len(_name(name)):]
    name = _name(name)
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first + "/" + rest.lower() + tag + at + digest
    return name.lower() + tag + at + digest
