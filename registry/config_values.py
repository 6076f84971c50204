"""What every registry config reader shares, in a leaf module (it imports only ``storage``), so
``registry/server/config.py`` and ``registry/auth/config.py`` both use it without importing each
other: ``ConfigError`` (a config that cannot be used; the message names the key) and durations.
"""

from __future__ import annotations

import math

from storage.duration import SECOND, DurationError, parse_duration

MAX_DURATION_SECONDS = 100 * 365 * 24 * 3600.0


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


def duration_seconds(value: object, key: str) -> float:
    """Seconds in a config duration: Go syntax ("168h", "1h30m", "0") or a YAML number of seconds,
    between 0 and 100 years; ConfigError naming ``key`` otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(str(value).strip()) / SECOND
        except DurationError:
            raise ConfigError(f"{key}: invalid duration {value!r} (expected e.g. 0, 90s, 30m, 1h30m)") from None
    if math.isnan(seconds) or not 0 <= seconds <= MAX_DURATION_SECONDS:
        raise ConfigError(f"{key}: duration {value!r} must be between 0 and 100 years")
    return seconds
