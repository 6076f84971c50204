"""The builder's view of platforms: ``--platform`` and ``FROM --platform`` read with the one
platform model (``storage.platform``), errors as BuildKit words them, and the predefined
``BUILDPLATFORM``/``TARGETPLATFORM`` argument families."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import DockerfileError

if TYPE_CHECKING:
    from builder.lint import BuildCheck
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


# -- what this host can run -----------------------------------------------------------------------

# Architectures a host runs without emulation besides its own (BuildKit's archutil probes the
# same pairs by running a tiny binary of each).
_NATIVE_EXTRA = {"amd64": ("386",), "arm64": ()}
# binfmt_misc handler names (qemu-user-static's) by OCI architecture.
_BINFMT_NAMES = {"arm64": "aarch64", "arm": "arm", "386": "i386", "amd64": "x86_64", "riscv64": "riscv64",
                 "ppc64le": "ppc64le", "s390x": "s390x", "mips64le": "mips64el", "mips64": "mips64",
                 "loong64": "loongarch64"}
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


def image_platform(image: Mapping[str, Any]) -> Platform:
    """The platform an image config says it is for."""
    return Platform.of(dict(image))


def emulated_by(platform: Platform, binfmt: Path = BINFMT_MISC) -> str | None:
    """The binfmt_misc handler that runs ``platform``'s binaries here (qemu-user), if one is
    registered and enabled."""
    name = _BINFMT_NAMES.get(platform.architecture)
    if name is None:
        return None
    for candidate in (f"qemu-{name}", name):
        try:
            first = (binfmt / candidate).read_text().split("\n", 1)[0].strip()
        except OSError:
            continue
        if first == "enabled":
            return candidate
    return None


def can_run(platform: Platform, host: Platform | None = None, binfmt: Path = BINFMT_MISC) -> bool:
    """Whether a RUN step of ``platform`` can execute on this host: natively (the host's own
    platform, or a compatible 32-bit one) or through a registered binfmt_misc emulator."""
    host = host or Platform.host()
    if platform.os != host.os:
        return False
    if host.matches(platform) or platform.architecture in _NATIVE_EXTRA.get(host.architecture, ()):
        return True
    return emulated_by(platform, binfmt) is not None


def emulation_error(platform: Platform, host: Platform | None = None) -> str:
    host = host or Platform.host()
    return (f"cannot run a {platform} step on this {host} host: it needs emulation, and no binfmt_misc "
            f"handler for {platform.architecture} is registered (install qemu-user-static, or build the "
            f"stage FROM --platform=$BUILDPLATFORM and COPY its results into the {platform} stage)")


def result_platform(image: dict[str, Any], target: Platform, explicit: bool) -> None:
    """BuildKit's finalizeResultImage: with ``--platform`` given, the image says it is for the
    target platform (the variant replaced when it names one or the OS/architecture changed);
    otherwise the target stage's own platform stays."""
    if not explicit:
        return
    same = image.get("os") == target.os and image.get("architecture") == target.architecture
    image["os"], image["architecture"] = target.os, target.architecture
    if target.variant or not same:
        if target.variant:
            image["variant"] = target.variant
        else:
            image.pop("variant", None)


def base_platform_warning(ref: str, config: Mapping[str, Any], wanted: Platform, line: int | None) -> BuildCheck | None:
    """BuildKit's InvalidBaseImagePlatform: the base image is for another platform than the
    stage's (a single-platform image is used as it is)."""
    from builder.lint import BuildCheck

    if not (config.get("architecture") and config.get("os")):
        return None
    actual = image_platform(config)
    if wanted.matches(actual):
        return None
    return BuildCheck("InvalidBaseImagePlatform",
                      f'Base image {ref} was pulled with platform "{actual}", expected "{wanted}" for current build',
                      line)
