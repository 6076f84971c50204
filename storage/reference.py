"""Repository names, tags and image references, with docker's normalisation.

``busybox`` → ``docker.io/library/busybox:latest``;
``registry.local:5000/team/app:1.4``; ``app@sha256:...``; ``app:1.4@sha256:...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from storage.digest import Digest
from storage.errors import DigestInvalid, NameInvalid, TagInvalid

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)


def validate_name(name: str) -> str:
    """A repository path as the distribution spec allows it (no domain); raise NameInvalid."""
    if not isinstance(name, str) or not name or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise NameInvalid(f"invalid repository name {name!r}")
    return name


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise TagInvalid(f"invalid tag {tag!r}")
    return tag


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def repository(self) -> str:
        """``domain/path`` — the full name."""
        return f"{self.domain}/{self.path}"

    @property
    def name(self) -> str:
        """The repository name as a registry sees it (no domain)."""
        return self.path

    def __str__(self) -> str:
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def familiar(self) -> str:
        """The short form docker prints (``busybox:latest``)."""
        out = str(self)
        if self.domain == DEFAULT_DOMAIN:
            out = out[len(DEFAULT_DOMAIN) + 1:]
            if out.startswith("library/"):
                out = out[len("library/"):]
        return out

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, None, digest)


def parse_reference(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise an image reference; raise NameInvalid/TagInvalid with a reason."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise NameInvalid(f"invalid reference format: {text!r}")
    rest = text
    digest = None
    if "@" in rest:
        rest, _, dig = rest.partition("@")
        try:
            digest = Digest.parse(dig)
        except DigestInvalid:
            raise NameInvalid(f"invalid reference format: bad digest in {text!r}") from None
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        validate_tag(tag)
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN_RE.match(first):
            raise NameInvalid(f"invalid reference format: bad registry {first!r} in {text!r}")
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if path != path.lower():
        raise NameInvalid(f"invalid reference format: repository name must be lowercase: {text!r}")
    try:
        validate_name(path)
    except NameInvalid:
        raise NameInvalid(f"invalid reference format: {text!r}") from None
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise NameInvalid(f"repository name too long: {text!r}")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
