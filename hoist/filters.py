"""docker's ``--filter KEY=VALUE`` lists (``ps``, ``images``): the same key repeated is "or",
different keys "and"; a malformed item or an unknown key is docker's one-line error."""

from __future__ import annotations

from collections.abc import Iterable

from hoist.errors import UserError


def parse_filters(items: Iterable[str], known: Iterable[str]) -> dict[str, list[str]]:
    """``KEY=VALUE`` items by key (keys lower-cased, as docker's), each key one of ``known``."""
    allowed = set(known)
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise UserError(f"bad format of filter (expected name=value): {item}")
        if key not in allowed:
            raise UserError(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out
