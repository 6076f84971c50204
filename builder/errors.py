"""Errors raised by the Dockerfile frontend.

::

    BuilderError                    base of everything builder/ raises on purpose
    ├── DockerfileError             one problem in a Dockerfile; ``.line`` is 1-based (None if unknown)
    │   ├── DockerfileErrors        several problems at once (``.errors``), as ``hoist build --check`` lists them
    │   └── ExpansionError          a word failed variable expansion (``${`` without ``}``, ``${a:?msg}``...)
    │       └── UnsetVariableError  ``${a?msg}`` / ``${a:?msg}`` on an unset (or empty) variable
    ├── DockerignoreError           a .dockerignore pattern that Go's filepath.Match rejects
    └── LayerError                  a layer blob cannot be built (``builder/layers.py``); names the path
        ├── LayerInputInvalid       the request itself is wrong: an unknown compression or level,
        │                           a path with '..' or a reserved '.wh.' name, a duplicate entry,
        │                           a bad mode, uid or SOURCE_DATE_EPOCH
        ├── LayerSourceError        the upper dir or a source file is missing, unreadable, of a kind a
        │                           layer cannot hold, or changed while it was being read
        └── LayerOutputError        the blob cannot be written to the destination directory

Every parsing and layer entry point raises only these; anything else escaping is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class BuilderError(Exception):
    """Base class for errors the builder raises deliberately."""


class DockerfileError(BuilderError):
    """A problem in a Dockerfile, located at ``line`` (1-based; None when not tied to a line)."""

    def __init__(self, message: str, line: int | None = None, end_line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.end_line = end_line if end_line is not None else line

    @property
    def errors(self) -> tuple[DockerfileError, ...]:
        """Every individual error this exception stands for (just itself here)."""
        return (self,)

    def at(self, line: int | None, end_line: int | None = None) -> DockerfileError:
        """This error, placed at ``line`` unless it already has a line."""
        if self.line is None and line is not None:
            self.line, self.end_line = line, end_line if end_line is not None else line
        return self

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class DockerfileErrors(DockerfileError):
    """Several Dockerfile errors; ``line`` and ``message`` are those of the first."""

    def __init__(self, errors: Sequence[DockerfileError]) -> None:
        if not errors:
            raise ValueError("DockerfileErrors needs at least one error")
        first = errors[0]
        super().__init__(first.message, first.line, first.end_line)
        self._errors = tuple(errors)

    @property
    def errors(self) -> tuple[DockerfileError, ...]:
        return self._errors

    def __str__(self) -> str:
        rest = len(self._errors) - 1
        more = f" (and {rest} more error{'s' if rest > 1 else ''})" if rest else ""
        return super().__str__() + more


def raise_collected(errors: Iterable[DockerfileError]) -> None:
    """Raise nothing, the one error, or a DockerfileErrors holding them all."""
    flat = [e for err in errors for e in err.errors]
    if len(flat) == 1:
        raise flat[0]
    if flat:
        raise DockerfileErrors(flat)


class ExpansionError(DockerfileError):
    """A word could not be expanded (a syntax error in ``$...`` or a failed ``?`` check)."""

    def __init__(self, message: str, word: str | None = None, line: int | None = None) -> None:
        full = f"failed to process {word!r}: {message}" if word is not None else message
        super().__init__(full, line)
        self.reason = message
        self.word = word


class UnsetVariableError(ExpansionError):
    """``${name?msg}`` or ``${name:?msg}`` met an unset (or, with ``:``, empty) variable."""


class DockerignoreError(BuilderError):
    """A .dockerignore pattern Go's filepath.Match would reject."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class LayerError(BuilderError):
    """Base of every error raised while building a layer blob."""


class LayerInputInvalid(LayerError):
    """The arguments cannot describe a valid layer."""


class LayerSourceError(LayerError):
    """What the layer is made from cannot be read as it is."""


class LayerOutputError(LayerError):
    """The blob cannot be written where it was asked for."""
