"""``USER`` as docker and runc read it: ``name``, ``uid``, ``name:group``, ``uid:gid``, resolved in
the image's own /etc/passwd and /etc/group. A number is always an id, whether or not a line has
it; supplementary groups come from /etc/group only when no group was given (runc's rule), and
the primary group is always among them (docker's rule: ``id`` shows it under groups=).
"""

from __future__ import annotations

from dataclasses import dataclass


class UserNotFound(Exception):
    """Raised with docker's wording; the container init reports it with exit code 125."""


@dataclass(frozen=True)
class ExecUser:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str = ""


def _read(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


# (uid_t)-1 means "leave unchanged" to setresuid and friends, so the largest id is 2**32 - 2.
MAX_ID = 2**32 - 2
_MAX_ID_DIGITS = len(str(MAX_ID))  # longer is out of range; int() of 4301+ digits would raise


def _as_id(text: str) -> int | None:
    """A numeric id, or None for a name; raises UserNotFound for a number out of range."""
    if not (text.isascii() and text.isdigit()):
        return None
    if len(text) > _MAX_ID_DIGITS or int(text) > MAX_ID:
        raise UserNotFound(f"user or group id {text[:20]}{'...' if len(text) > 20 else ''} "
                           f"is out of range (0-{MAX_ID})")
    return int(text)


def _int(text: str, default: int) -> int:
    """An id field of /etc/passwd or /etc/group; out of range counts as malformed."""
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS or int(text) > MAX_ID:
        return default
    return int(text)


def check_user_spec(spec: str) -> None:
    """Refuse numeric ids out of range before anything is created. Raises UserNotFound."""
    user_part, _, group_part = spec.partition(":")
    _as_id(user_part)
    _as_id(group_part)


def resolve_user(spec: str, passwd_path: str = "/etc/passwd", group_path: str = "/etc/group") -> ExecUser:
    """Resolve ``spec`` (empty means root). Raises UserNotFound."""
    user_part, _, group_part = (spec or "0").partition(":")
    passwd = [p for p in _read(passwd_path) if len(p) >= 7]
    uid_wanted = _as_id(user_part)
    entry = next((p for p in passwd if p[0] == user_part), None) if uid_wanted is None else \
        next((p for p in passwd if _int(p[2], -1) == uid_wanted), None)
    if entry is None and uid_wanted is None:
        raise UserNotFound(f"unable to find user {user_part}: no matching entries in passwd file")
    uid = uid_wanted if uid_wanted is not None else int(entry[2])  # type: ignore[index]
    gid = _int(entry[3], 0) if entry else 0
    home = entry[5] if entry and entry[5] else "/"
    name = entry[0] if entry else ""
    groups = [g for g in _read(group_path) if len(g) >= 4]
    if group_part:
        gid = _resolve_group(group_part, groups)
        extra: tuple[int, ...] = ()
    else:
        extra = tuple(_int(g[2], 0) for g in groups if name and name in g[3].split(","))
    groups_all = (gid,) + tuple(g for g in extra if g != gid)
    return ExecUser(uid, gid, groups_all, home, name)


def _resolve_group(text: str, groups: list[list[str]]) -> int:
    for g in groups:
        if g[0] == text:
            return _int(g[2], 0)
    gid = _as_id(text)
    if gid is None:
        raise UserNotFound(f"unable to find group {text}: no matching entries in group file")
    return gid
