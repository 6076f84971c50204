"""Digests (``algorithm:hex``) and streaming hashers.

A digest is ``sha256:<64 lowercase hex>``; ``sha512:<128 lowercase hex>`` is accepted
where the OCI image spec allows it. Parsing is strict: anything else raises
:class:`storage.errors.DigestInvalid`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from storage.errors import DigestInvalid

# Registered algorithms and the exact hex length each one produces.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

# The OCI grammar: algorithm-component(+/./_/- separated) ":" encoded.
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``text``; raise DigestInvalid unless it is a supported, well-formed digest."""
        if not isinstance(text, str) or not _GRAMMAR.match(text):
            raise DigestInvalid(f"invalid digest {text!r}")
        algorithm, _, encoded = text.partition(":")
        size = ALGORITHMS.get(algorithm)
        if size is None:
            raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != size or not all(c in "0123456789abcdef" for c in encoded):
            raise DigestInvalid(f"invalid {algorithm} digest {text!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class Hasher:
    """Hash bytes as they stream past, counting them."""

    __slots__ = ("_h", "algorithm", "size")

    def __init__(self, algorithm: str = "sha256") -> None:
        if algorithm not in ALGORITHMS:
            raise DigestInvalid(f"unsupported digest algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)
        self.size = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    def copy(self) -> Hasher:
        other = Hasher.__new__(Hasher)
        other.algorithm, other._h, other.size = self.algorithm, self._h.copy(), self.size
        return other

    def digest(self) -> Digest:
        return Digest(self.algorithm, self._h.hexdigest())
