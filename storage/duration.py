"""Go's duration syntax (``time.ParseDuration``), the one parser for every duration hoist reads:
Dockerfile HEALTHCHECK flags, the registry config, ``registry gc --grace``, auth expirations.

A duration is an optional sign and one or more ``<number><unit>`` parts (``300ms``, ``1h30m``,
``-1.5h``, ``.5s``, ``5.s``); the bare string ``0`` (signed or not) needs no unit. Units are
``ns us µs μs ms s m h``. The result is an exact integer of nanoseconds in Go's int64 range, the
value BuildKit stores; callers that want seconds convert, and callers with a range of their own
(the registry refuses negative durations) check it themselves.
"""

from __future__ import annotations

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

UNITS: dict[str, int] = {
    "ns": NANOSECOND, "us": MICROSECOND, "\u00b5s": MICROSECOND, "\u03bcs": MICROSECOND,
    "ms": MILLISECOND, "s": SECOND, "m": MINUTE, "h": HOUR,
}
_LIMIT = 1 << 63   # magnitudes are accumulated unsigned, as Go does, then signed at the end


class DurationError(ValueError):
    """Text that Go's ``time.ParseDuration`` refuses; the message is Go's, naming the text."""


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"   # str.isdigit() would also take other scripts' digits


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text``, accepting and refusing exactly what Go's ``time.ParseDuration`` does."""
    def invalid() -> DurationError:
        return DurationError(f"time: invalid duration {text!r}")

    s, negative = text, False
    if s[:1] in ("-", "+"):
        negative, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid()
    total, i, n = 0, 0, len(s)
    while i < n:
        if not (s[i] == "." or _is_digit(s[i])):
            raise invalid()
        start = i
        whole = 0
        while i < n and _is_digit(s[i]):
            whole = whole * 10 + ord(s[i]) - 48
            if whole > _LIMIT:
                raise invalid()
            i += 1
        had_whole = i > start
        fraction, scale, had_fraction = 0, 1.0, False
        if i < n and s[i] == ".":
            i += 1
            start = i
            overflow = False
            while i < n and _is_digit(s[i]):
                # Digits past int64's precision are consumed and ignored, as Go does.
                if not overflow:
                    more = fraction * 10 + ord(s[i]) - 48
                    if fraction > (_LIMIT - 1) // 10 or more > _LIMIT:
                        overflow = True
                    else:
                        fraction, scale = more, scale * 10
                i += 1
            had_fraction = i > start
        if not had_whole and not had_fraction:
            raise invalid()   # "." or ".s": a number with no digits
        start = i
        while i < n and not (s[i] == "." or _is_digit(s[i])):
            i += 1
        unit_text = s[start:i]
        if not unit_text:
            raise DurationError(f"time: missing unit in duration {text!r}")
        unit = UNITS.get(unit_text)
        if unit is None:
            raise DurationError(f"time: unknown unit {unit_text!r} in duration {text!r}")
        if whole > _LIMIT // unit:
            raise invalid()
        value = whole * unit
        if fraction:
            # Go adds the fraction in float64 (exact to the nanosecond for up to an hour's worth).
            value += int(float(fraction) * (float(unit) / scale))
            if value > _LIMIT:
                raise invalid()
        total += value
        if total > _LIMIT:
            raise invalid()
    if negative:
        return -total   # down to -(1<<63), Go's smallest Duration (golang.org/issue/48629)
    if total > _LIMIT - 1:
        raise invalid()
    return total


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``0s``, ``1.5ms``, ``100ms``, ``2m0s``, ``-1h0m30s`` (the
    shortest text ``parse_duration`` reads back as ``ns``)."""
    if ns == 0:
        return "0s"
    sign, u = ("-" if ns < 0 else ""), abs(ns)
    if u < SECOND:
        for unit, size, digits in (("ns", NANOSECOND, 0), ("\u00b5s", MICROSECOND, 3), ("ms", MILLISECOND, 6)):
            if u < size * 1000:
                whole, rest = divmod(u, size)
                frac = f"{rest:0{digits}d}".rstrip("0") if digits else ""
                return f"{sign}{whole}{'.' + frac if frac else ''}{unit}"
    hours, rest = divmod(u, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    seconds, nanos = divmod(rest, SECOND)
    frac = f"{nanos:09d}".rstrip("0")
    out = f"{seconds}{'.' + frac if frac else ''}s"
    if hours or minutes:
        out = f"{minutes}m{out}"
    if hours:
        out = f"{hours}h{out}"
    return sign + out
