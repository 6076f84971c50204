"""The builder: the Dockerfile frontend (parser, typed instructions, expansion, stage graph),
``.dockerignore`` handling and building.

Read a Dockerfile with ``parse_dockerfile``; every failure is a ``DockerfileError``.
The names below are imported when first used, not with the package: ``import builder.memo``
(a cached build's first look) must not pay for the whole frontend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.dockerfile import Dockerfile, Stage, parse_dockerfile
    from builder.errors import DockerfileError, DockerfileErrors

__all__ = ["Dockerfile", "DockerfileError", "DockerfileErrors", "Stage", "parse_dockerfile"]

_WHERE = {"Dockerfile": "builder.dockerfile", "Stage": "builder.dockerfile", "parse_dockerfile": "builder.dockerfile",
          "DockerfileError": "builder.errors", "DockerfileErrors": "builder.errors"}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'builder' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value
