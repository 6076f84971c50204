"""Image reference syntax (``[registry/]path[:tag][@digest]``), as distribution/reference checks it.

Only validation lives here: FROM bases that are not stage names must be valid references.
"""

from __future__ import annotations

import re

from builder.errors import DockerfileError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^((?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)(?::({_TAG}))?(?:@({_DIGEST}))?$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")
_NAME_MAX = 255


def check_reference(ref: str) -> None:
    """Raise DockerfileError unless ``ref`` is a valid image reference."""
    if _HEX64.match(ref):
        raise DockerfileError(f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    match = _REFERENCE.match(ref)
    if match is None:
        if _REFERENCE.match(_lower_path(ref)):
            raise DockerfileError(f"invalid reference format: repository name ({ref}) must be lowercase")
        raise DockerfileError(f"invalid reference format: {ref!r}")
    if len(match.group(1)) > _NAME_MAX:
        raise DockerfileError(f"invalid reference format: repository name ({ref}) must not be more than "
                              f"{_NAME_MAX} characters")


def _lower_path(ref: str) -> str:
    """``ref`` with its repository path (not the registry, tag or digest) lower-cased."""
    name, at, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon:]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first + "/" + rest.lower() + tag + at + digest
    return name.lower() + tag + at + digest
