"""Image platforms (``os/arch[/variant]``): parse and normalise as containerd's ``platforms``
package does, match, and select an index entry. The one model of a platform: the client's pull
and push, the local store, the runtime and the builder's ``--platform`` and ``FROM --platform``
all use it.

Normalisation (containerd's ``Normalize``): lower case; ``x86_64``/``x86-64`` → ``amd64``,
``aarch64`` → ``arm64``, ``i386``/``i686`` → ``386``, ``armhf`` → ``arm/v7``, ``armel`` →
``arm/v6``; ``arm64/v8`` → ``arm64`` (v8 is its only variant) and a bare ``arm`` → ``arm/v7``.
A single component is an OS (with the host's architecture) when it names one, else an
architecture (on linux).
"""

from __future__ import annotations

import platform as _host
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage import mediatypes as mt

if TYPE_CHECKING:
    from storage.manifest import Descriptor, Manifest

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_KNOWN_OS = frozenset({"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js",
                       "linux", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows"})
# Go's GOARCH names (and a default variant) for other spellings and for platform.machine().
_ARCH_ALIASES = {"x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
                 "aarch64": ("arm64", ""), "arm64": ("arm64", ""), "armhf": ("arm", "v7"),
                 "armel": ("arm", "v6"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
                 "i386": ("386", ""), "i686": ("386", "")}


class PlatformInvalid(ValueError):
    """A platform specifier that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """The normalised platform ``text`` names. Raises PlatformInvalid."""
        parts = text.strip().split("/")
        if len(parts) > 3 or any(not _COMPONENT.match(p) for p in parts):
            raise PlatformInvalid(f"{text!r}: invalid platform specifier")
        lowered = [p.lower() for p in parts]
        if len(lowered) == 1:
            if lowered[0] in _KNOWN_OS:
                host = cls.host()
                return cls(lowered[0], host.architecture, host.variant)
            return cls.normalised("linux", lowered[0], "")
        return cls.normalised(lowered[0], lowered[1], lowered[2] if len(lowered) == 3 else "")

    @classmethod
    def normalised(cls, os_name: str, arch: str, variant: str = "") -> Platform:
        arch, default = _ARCH_ALIASES.get(arch.lower(), (arch.lower(), ""))
        variant = (variant or default).lower()
        if arch == "arm64" and variant == "v8":
            variant = ""
        if arch == "arm" and not variant:
            variant = "v7"
        return cls(os_name.lower(), arch, variant)

    @classmethod
    def host(cls) -> Platform:
        return cls.normalised("linux", _host.machine() or "amd64")

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Platform:
        """The platform of an index entry's ``platform`` or an image config (os, architecture,
        variant), normalised."""
        return cls.normalised(str(obj.get("os", "")), str(obj.get("architecture", "")),
                              str(obj.get("variant") or ""))

    def matches(self, other: Platform) -> bool:
        """Whether an image for ``other`` runs where ``self`` is wanted: the same OS and
        architecture, and the same variant where both name one (containerd's matcher, without
        its arm v7 → v6 fallback)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return self.variant == other.variant or not self.variant or not other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def select_platform(index: Manifest, wanted: Platform) -> Descriptor | None:
    """The index entry for ``wanted``: an exact match first, then a compatible one."""
    candidates = [d for d in index.manifests if d.platform and d.media_type in mt.MANIFESTS]
    for desc in candidates:
        if Platform.of(desc.platform or {}) == wanted:
            return desc
    for desc in candidates:
        if wanted.matches(Platform.of(desc.platform or {})):
            return desc
    return None
