"""The client's one retry policy (registry/client/retry.py), on an injected clock: which errors
are retried, how long each wait is, Retry-After, and giving up."""

from __future__ import annotations

import email.utils
import time

import pytest

from registry.client.errors import (
    AccessDenied,
    AuthenticationFailed,
    BlobNotFound,
    ClientError,
    ConnectionLost,
    ContentInvalid,
    ManifestNotFound,
    ProtocolError,
    RegistryUnreachable,
    ServerError,
    TransferFailed,
)
from registry.client.retry import RetryPolicy, parse_retry_after


class Clock:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(clock: Clock, rand: float = 0.0, **kw: float) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, random=lambda: rand, **kw)  # type: ignore[arg-type]


class Failing:
    """Fails with the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize("error", [ConnectionLost("dropped"), RegistryUnreachable("refused"),
                                   ServerError("500", 500), ServerError("busy", 429, 3.0)])
async def test_transient_errors_are_retried(error: ClientError) -> None:
    clock = Clock()
    attempt = Failing(error, error)
    assert await policy(clock).run(attempt, "blob x") == "ok"
    assert attempt.calls == 3 and len(clock.waits) == 2


@pytest.mark.parametrize("error", [AccessDenied("denied"), AuthenticationFailed("refused"),
                                   ManifestNotFound("nope"), BlobNotFound("nope"),
                                   ContentInvalid("bad digest"), ProtocolError("HTTP 400")])
async def test_answers_that_would_repeat_are_raised_at_once(error: ClientError) -> None:
    clock = Clock()
    attempt = Failing(error)
    with pytest.raises(type(error)):
        await policy(clock).run(attempt, "blob x")
    assert attempt.calls == 1 and clock.waits == []


async def test_exponential_backoff_capped() -> None:
    clock = Clock()
    attempt = Failing(*[ConnectionLost("x")] * 6)
    await policy(clock, retries=6, base=1.0, cap=10.0).run(attempt, "blob x")
    assert clock.waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_takes_off_at_most_its_fraction() -> None:
    clock = Clock()
    assert policy(clock, rand=0.0, base=2.0).delay(1) == 2.0
    assert policy(clock, rand=1.0, base=2.0, jitter=0.5).delay(1) == 1.0
    assert policy(clock, rand=0.5, base=2.0, jitter=0.5).delay(2) == 3.0


def test_retry_after_is_waited_when_longer_and_capped() -> None:
    clock = Clock()
    p = policy(clock, base=0.25, max_retry_after=60.0)
    assert p.delay(1, ServerError("429", 429, 7.0)) == 7.0
    assert p.delay(1, ServerError("429", 429, 0.0)) == 0.25       # never shorter than the backoff
    assert p.delay(1, ServerError("429", 429, 3600.0)) == 60.0
    assert p.delay(1, ServerError("503", 503, None)) == 0.25


async def test_gives_up_after_its_retries_naming_what_and_why() -> None:
    clock = Clock()
    attempt = Failing(*[ServerError("registry answered with HTTP 502", 502)] * 10)
    reports: list[tuple[str, int, float]] = []
    with pytest.raises(TransferFailed, match=r"^blob sha256:ab: gave up after 3 retries \(registry answered"):
        await policy(clock, retries=3).run(attempt, "blob sha256:ab",
                                           lambda e, n, w: reports.append((str(e), n, w)))
    assert attempt.calls == 4
    assert [n for _, n, _ in reports] == [1, 2, 3] and [w for *_, w in reports] == clock.waits


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25.0 <= (parse_retry_after(later) or 0) <= 31.0
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
