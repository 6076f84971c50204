"""``.env`` and ``env_file`` files, read as docker compose reads them.

One ``KEY=VALUE`` per line (``export KEY=VALUE`` too); blank lines and lines starting with ``#``
are skipped; a line with a key alone takes the value from the caller's environment (or is left
out). Values: ``'single quoted'`` are literal; ``"double quoted"`` may span lines and know
``\\n \\r \\t \\" \\\\ \\$`` escapes; unquoted values end at the line's end or at `` #`` (an inline
comment) and are trimmed. Unquoted and double-quoted values are interpolated (``${VAR}``, with
the caller's environment first, then the keys read so far).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from pathlib import Path

from hoist.compose.errors import ComposeError
from hoist.compose.interpolate import Interpolator

MAX_ENV_FILE_BYTES = 8 << 20   # a bound for hostile files: docker's own are a few lines
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$$"}


def read_env_file(path: Path, environ: Mapping[str, str], warn: Callable[[str], None]) -> dict[str, str | None]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ENV_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ComposeError(f"env file {path} not found") from None
    except OSError as e:
        raise ComposeError(f"cannot read env file {path}: {e.strerror}") from None
    if len(data) > MAX_ENV_FILE_BYTES:
        raise ComposeError(f"env file {path} is larger than {MAX_ENV_FILE_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ComposeError(f"env file {path} is not valid UTF-8 (byte {e.start})") from None
    return parse_env(text, str(path), environ, warn)


def parse_env(text: str, name: str, environ: Mapping[str, str],
              warn: Callable[[str], None]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    known: dict[str, str] = {}
    interp = Interpolator(ChainMap(dict(environ), known), warn)
    text = text.replace("\r\n", "\n")
    i, n, line = 0, len(text), 1
    while i < n:
        end = text.find("\n", i)
        end = n if end < 0 else end
        raw = text[i:end]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i, line = end + 1, line + 1
            continue
        body = raw.lstrip()
        if body.startswith(("export ", "export\t")):
            body = body[7:].lstrip()
        key, eq, rest = body.partition("=")
        key = key.strip()
        if not key or any(c.isspace() for c in key):
            raise ComposeError(f"{name}:{line}: invalid line {stripped!r} (expected KEY=VALUE)")
        offset = i + (len(raw) - len(raw.lstrip())) + (len(raw.lstrip()) - len(body)) + len(key) + 1
        if not eq:
            if key in environ:
                values[key] = environ[key]
                known[key] = environ[key]
            i, line = end + 1, line + 1
            continue
        start = offset + (len(rest) - len(rest.lstrip(" \t")))
        value, next_i, used_lines = _value(text, start, end, name, line, interp, key)
        values[key] = value
        known[key] = value
        i, line = next_i, line + used_lines
    return values


def _value(text: str, start: int, line_end: int, name: str, line: int, interp: Interpolator,
           key: str) -> tuple[str, int, int]:
    """(value, index of the next line, lines used)."""
    quote = text[start] if start < len(text) else ""
    if quote in ("'", '"'):
        j = start + 1
        out: list[str] = []
        while True:
            if j >= len(text):
                raise ComposeError(f"{name}:{line}: unterminated {quote}quoted value of {key}")
            c = text[j]
            if c == "\\" and quote == '"' and j + 1 < len(text):
                out.append(_ESCAPES.get(text[j + 1], "\\" + text[j + 1]))
                j += 2
                continue
            if c == quote:
                break
            out.append(c)
            j += 1
        raw = "".join(out)
        lines = text.count("\n", start, j) + 1
        nl = text.find("\n", j)
        next_i = len(text) if nl < 0 else nl + 1
        value = raw if quote == "'" else interp.text(raw, f"{name}:{line}")
        return value, next_i, lines
    raw = text[start:line_end]
    hash_at = raw.find(" #")
    if hash_at >= 0:
        raw = raw[:hash_at]
    return interp.text(raw.strip(), f"{name}:{line}"), line_end + 1, 1
