"""The builder: the Dockerfile frontend (parser, typed instructions, expansion, stage graph),
``.dockerignore`` handling and, later, building.

Read a Dockerfile with ``parse_dockerfile``; every failure is a ``DockerfileError``.
"""

from builder.dockerfile import Dockerfile, Stage, parse_dockerfile
from builder.errors import DockerfileError, DockerfileErrors

__all__ = ["Dockerfile", "DockerfileError", "DockerfileErrors", "Stage", "parse_dockerfile"]
