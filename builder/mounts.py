"""``RUN --mount=type=...,key=value`` specifications.

The value is a CSV record (Go's encoding/csv rules: quoted fields, ``""`` for a quote) of
``key=value`` fields or bare ``ro``/``rw``/``required``. Values holding ``$`` are expanded
at dispatch, so they are only checked once expanded (``expand`` given).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from builder import keywords
from builder.errors import DockerfileError

_KEYS = frozenset({
    "type", "from", "source", "src", "target", "dst", "destination", "readonly", "ro",
    "readwrite", "rw", "required", "id", "sharing", "mode", "uid", "gid", "size", "env",
})
# go-units' RAMInBytes, which BuildKit reads a tmpfs ``size`` with: binary multiples.
_RAM_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_RAM_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True, slots=True)
class Mount:
    """One ``--mount``; fields still holding ``$`` are unexpanded."""

    type: str = keywords.MOUNT_BIND
    target: str | None = None
    source: str | None = None
    from_stage: str | None = None
    readonly: bool = True
    cache_id: str | None = None
    sharing: str | None = None
    mode: str | None = None
    uid: str | None = None
    gid: str | None = None
    required: bool = False
    size: str | None = None
    env: str | None = None
    spec: str = ""


def split_csv(text: str) -> list[str]:
    """One CSV record, as Go's csv.Reader reads it."""
    if text == "":
        raise DockerfileError("failed to parse csv mounts: EOF")
    fields: list[str] = []
    pos, n = 0, len(text)
    while True:
        if pos < n and text[pos] == '"':
            field, pos = _quoted_field(text, pos + 1)
        else:
            end = text.find(",", pos)
            end = n if end < 0 else end
            field = text[pos:end]
            if '"' in field:
                raise DockerfileError('failed to parse csv mounts: bare " in non-quoted-field')
            pos = end
        fields.append(field)
        if pos >= n:
            return fields
        pos += 1  # the comma


def _quoted_field(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(text)
    while pos < n:
        quote = text.find('"', pos)
        if quote < 0:
            break
        out.append(text[pos:quote])
        after = quote + 1
        if after < n and text[after] == '"':
            out.append('"')
            pos = after + 1
            continue
        if after == n or text[after] == ",":
            return "".join(out), after
        break
    raise DockerfileError('failed to parse csv mounts: extraneous or missing " in quoted-field')


def _go_bool(key: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise DockerfileError(f"invalid value for {key}: {value}")


def _uint(key: str, value: str, base: int) -> str:
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if not value.isascii() or not value.isalnum() or number < 0 or number >= 2**32:
        raise DockerfileError(f"invalid value {value} for {key}")
    return value


def ram_in_bytes(value: str) -> int:
    """A tmpfs ``size`` in bytes (``64m``, ``1GiB``, ``512``), as go-units' RAMInBytes reads
    it; raises DockerfileError as BuildKit words it."""
    m = _RAM_SIZE.match(value)
    if not m:
        raise DockerfileError(f"invalid value for size: {value}")
    try:
        number = float(m.group(1))
    except ValueError:      # "1.2.3" matches the pattern, as in Go, and fails to convert there too
        raise DockerfileError(f"invalid value for size: {value}") from None
    return int(number * _RAM_UNITS.get((m.group(2) or "").lower(), 1))


def parse_mount(spec: str, expand: Callable[[str], str] | None = None) -> Mount:
    """A Mount from a ``--mount`` value; raises DockerfileError on a bad key or value."""
    values: dict[str, object] = {"spec": spec}
    ro_auto = True
    for field in split_csv(spec):
        key, has_value, value = field.partition("=")
        key = key.lower()
        if not has_value:
            ro_auto = _bare_key(key, field, values) and ro_auto
            continue
        if key not in _KEYS:
            raise DockerfileError(f"unexpected key '{key}' in '{field}'")
        if expand is not None:
            value = expand(value)
        elif "$" in value:
            if key == "from":
                raise DockerfileError("'from' doesn't support variable expansion, define alias stage instead")
            if key not in _BOOL_KEYS:
                values[_FIELD.get(key, key)] = value
            continue
        if key in ("readonly", "ro", "readwrite", "rw"):
            ro_auto = False
        _set_field(key, value, values)
    mount = Mount(**values)  # type: ignore[arg-type]
    if ro_auto:
        mount = dataclasses.replace(mount, readonly=mount.type not in (keywords.MOUNT_CACHE, keywords.MOUNT_TMPFS))
    _check_combination(mount)
    return mount


_BOOL_KEYS = frozenset({"readonly", "ro", "readwrite", "rw", "required"})
_FIELD = {"from": "from_stage", "src": "source", "dst": "target", "destination": "target",
          "ro": "readonly", "id": "cache_id"}


def _bare_key(key: str, field: str, values: dict[str, object]) -> bool:
    """Handle ``ro``/``rw``/``required`` without a value; returns whether ro stays automatic."""
    if key in ("readonly", "ro"):
        values["readonly"] = True
        return False
    if key in ("readwrite", "rw"):
        values["readonly"] = False
        return False
    if key == "required":
        mount_type = values.get("type", keywords.MOUNT_BIND)
        if mount_type not in (keywords.MOUNT_SECRET, keywords.MOUNT_SSH):
            raise DockerfileError(f"unexpected key '{key}' for mount type '{mount_type}'")
        values["required"] = True
        return True
    raise DockerfileError(f"invalid field '{field}' must be a key=value pair")


def _set_field(key: str, value: str, values: dict[str, object]) -> None:
    if key == "type":
        lowered = value.lower()
        if lowered not in keywords.MOUNT_TYPES:
            raise DockerfileError(f"unsupported mount type {value!r} (use one of "
                                  f"{', '.join(sorted(keywords.MOUNT_TYPES))})")
        values["type"] = lowered
    elif key in ("readonly", "ro"):
        values["readonly"] = _go_bool(key, value)
    elif key in ("readwrite", "rw"):
        values["readonly"] = not _go_bool(key, value)
    elif key == "required":
        mount_type = values.get("type", keywords.MOUNT_BIND)
        if mount_type not in (keywords.MOUNT_SECRET, keywords.MOUNT_SSH):
            raise DockerfileError(f"unexpected key '{key}' for mount type '{mount_type}'")
        values["required"] = _go_bool(key, value)
    elif key == "sharing":
        if value.lower() not in keywords.MOUNT_SHARING:
            raise DockerfileError(f"unsupported sharing value {value!r}")
        values["sharing"] = value.lower()
    elif key == "mode":
        values["mode"] = _uint(key, value, 8)
    elif key in ("uid", "gid"):
        values[key] = _uint(key, value, 10)
    elif key == "size":
        ram_in_bytes(value)
        values["size"] = value
    else:
        values[_FIELD.get(key, key)] = value


def _check_combination(m: Mount) -> None:
    file_info_allowed = m.type in (keywords.MOUNT_SECRET, keywords.MOUNT_SSH, keywords.MOUNT_CACHE)
    for name in ("mode", "uid", "gid"):
        if getattr(m, name) is not None and not file_info_allowed:
            raise DockerfileError(f"{name} not allowed for {m.type!r} type mounts")
    if m.sharing is not None and m.type != keywords.MOUNT_CACHE:
        raise DockerfileError(f"invalid cache sharing set for {m.type} mount")
    if m.size is not None and m.type != keywords.MOUNT_TMPFS:
        raise DockerfileError(f"size not allowed for {m.type!r} type mounts")
    if m.env is not None and m.type != keywords.MOUNT_SECRET:
        raise DockerfileError(f"env not allowed for {m.type!r} type mounts")
    if m.type == keywords.MOUNT_SECRET:
        if m.from_stage is not None:
            raise DockerfileError("secret mount should not have a from")
        if m.source is None and m.target is None and m.cache_id is None and m.env is None:
            raise DockerfileError("invalid secret mount. one of source, target required")
        if m.source is not None and m.cache_id is not None:
            raise DockerfileError("both source and id can't be set")

