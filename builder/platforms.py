"""The builder's view of platforms: ``--platform`` and ``FROM --platform`` read with the one
platform model (``storage.platform``), errors as BuildKit words them, and the predefined
``BUILDPLATFORM``/``TARGETPLATFORM`` argument families."""

from __future__ import annotations

from builder.errors import DockerfileError
from storage.platform import Platform, PlatformInvalid


def parse_platform(text: str) -> Platform:
    """A normalised Platform; raises DockerfileError for a malformed specifier."""
    try:
        return Platform.parse(text)
    except PlatformInvalid:
        raise DockerfileError(f"failed to parse platform {text}: {text!r}: invalid platform specifier") from None


def platform_args(prefix: str, value: Platform) -> dict[str, str]:
    """``<prefix>PLATFORM``, ``<prefix>OS``, ``<prefix>ARCH``, ``<prefix>VARIANT``."""
    return {f"{prefix}PLATFORM": str(value), f"{prefix}OS": value.os,
            f"{prefix}ARCH": value.architecture, f"{prefix}VARIANT": value.variant}
