"""Platform strings (``os/arch[/variant]``) as containerd's platforms.Parse reads them."""

from __future__ import annotations

import platform as _host
import re
from dataclasses import dataclass

from builder.errors import DockerfileError

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_KNOWN_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
                       "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"})
_ARCH_ALIASES = {"x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
                 "aarch64": ("arm64", ""), "arm64": ("arm64", ""), "armhf": ("arm", "v7"),
                 "armel": ("arm", "v6"), "i386": ("386", ""), "i686": ("386", "")}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    arch: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.arch, self.variant) if p)


def parse_platform(text: str) -> Platform:
    """A normalised Platform; raises DockerfileError for a malformed specifier."""
    parts = text.split("/")
    if len(parts) > 3 or any(not _COMPONENT.match(p) for p in parts):
        raise DockerfileError(f"failed to parse platform {text}: {text!r}: invalid platform specifier")
    lowered = [p.lower() for p in parts]
    if len(lowered) == 1:
        if lowered[0] in _KNOWN_OS:
            return Platform(lowered[0], _host_arch()[0], _host_arch()[1])
        arch, variant = _ARCH_ALIASES.get(lowered[0], (lowered[0], ""))
        return Platform("linux", arch, variant)
    arch, variant = _ARCH_ALIASES.get(lowered[1], (lowered[1], ""))
    if len(lowered) == 3:
        variant = lowered[2]
    if arch == "arm64" and variant == "v8":
        variant = ""
    return Platform(lowered[0], arch, variant)


def _host_arch() -> tuple[str, str]:
    return _ARCH_ALIASES.get(_host.machine().lower(), (_host.machine().lower() or "amd64", ""))


def host_platform() -> Platform:
    arch, variant = _host_arch()
    return Platform("linux", arch, variant)


def platform_args(prefix: str, value: Platform) -> dict[str, str]:
    """``<prefix>PLATFORM``, ``<prefix>OS``, ``<prefix>ARCH``, ``<prefix>VARIANT``."""
    return {f"{prefix}PLATFORM": str(value), f"{prefix}OS": value.os,
            f"{prefix}ARCH": value.arch, f"{prefix}VARIANT": value.variant}
