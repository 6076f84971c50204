"""The build context: a directory and the ``.dockerignore`` rules that hide part of it.

BuildKit sends the client's context to the builder with the ignored paths left out, so an
ignored file is simply not there for COPY/ADD. Here the context is read in place and the rules
travel with it (``BuildContext.ignore``); ``builder/copy.py`` applies them while it selects
sources. ``<Dockerfile>.dockerignore`` next to the Dockerfile wins over ``.dockerignore`` at the
context root (BuildKit's rule).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from builder.dockerignore import PatternMatcher, find_ignore_file, load_patterns
from builder.errors import BuilderError, DockerignoreError

_MAX_IGNORE_FILE = 16 << 20


class ContextError(BuilderError):
    """The build context cannot be used: missing, not a directory, or a bad ignore file."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class BuildContext:
    """The context root and the rules that hide part of it (``ignore`` is None when no
    ignore file applies)."""

    root: Path
    ignore: PatternMatcher | None
    ignore_file: Path | None = None


def load_context(context_dir: Path, dockerfile_path: Path | None) -> BuildContext:
    """The context at ``context_dir`` with its ignore rules; raises ContextError."""
    root = Path(os.path.abspath(context_dir))
    try:
        st = os.stat(root)
    except FileNotFoundError:
        raise ContextError(f"build context {str(context_dir)!r} does not exist") from None
    except OSError as e:
        raise ContextError(f"build context {str(context_dir)!r} cannot be read: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ContextError(f"build context {str(context_dir)!r} is not a directory")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ContextError(f"build context {str(context_dir)!r} cannot be read: permission denied")
    dockerfile = Path(os.path.abspath(dockerfile_path)) if dockerfile_path is not None else None
    path = find_ignore_file(root, dockerfile)
    if path is None:
        return BuildContext(root=root, ignore=None)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_IGNORE_FILE + 1)
    except OSError as e:
        raise ContextError(f"{path} cannot be read: {e.strerror}") from None
    if len(data) > _MAX_IGNORE_FILE:
        raise ContextError(f"{path} is larger than {_MAX_IGNORE_FILE} bytes")
    try:
        matcher = load_patterns(data)
    except DockerignoreError as e:
        raise ContextError(f"{path}: {e}") from None
    return BuildContext(root=root, ignore=matcher, ignore_file=path)
