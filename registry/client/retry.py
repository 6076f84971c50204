"""The one retry loop of the client, used by pull (resumable downloads) and push (uploads).

What is worth another try: a connection that dropped (:class:`ConnectionLost`) or could not be
opened mid-transfer (:class:`RegistryUnreachable`), and a registry that failed or asked to slow
down (:class:`ServerError`: 5xx, or 429 with ``Retry-After``). Everything else is an answer that
the same request would get again (401/403 auth, 404 not found, bytes that do not match their
digest, a protocol violation) and is raised at once.

The n-th retry waits ``base * 2**(n-1)`` seconds (at most ``cap``), less up to ``jitter`` of it
at random, so parallel transfers that failed together do not retry together; a ``Retry-After``
the registry sent is waited instead when longer (at most ``max_retry_after``). The clock is
injectable (``sleep`` and ``random``) so the policy is tested without waiting.
"""

from __future__ import annotations

import asyncio
import datetime
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

from registry.client.errors import (
    ClientError,
    ConnectionLost,
    PlainHTTP,
    RegistryUnreachable,
    ServerError,
    TransferFailed,
)

T = TypeVar("T")

RETRYABLE: tuple[type[ClientError], ...] = (ConnectionLost, RegistryUnreachable, ServerError)

# Called before each wait: (the error, which retry this is (1-based), the seconds it will wait).
OnRetry = Callable[[ClientError, int, float], None]


def _no_report(error: ClientError, retry: int, delay: float) -> None:
    pass


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5                # tries after the first one
    base: float = 0.25              # seconds before the first retry
    cap: float = 30.0               # no backoff wait longer than this
    jitter: float = 0.5             # up to this fraction of each wait is taken off at random
    max_retry_after: float = 60.0   # a Retry-After longer than this is cut to it
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False, compare=False)
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    @staticmethod
    def retryable(error: BaseException) -> bool:
        return isinstance(error, RETRYABLE)

    def delay(self, retry: int, error: ClientError | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) after ``error``."""
        backoff = min(self.cap, self.base * 2 ** (retry - 1))
        backoff *= 1 - self.jitter * self.random()
        if isinstance(error, ServerError) and error.retry_after is not None:
            return max(backoff, min(error.retry_after, self.max_retry_after))
        return backoff

    async def run(self, attempt: Callable[[], Awaitable[T]], what: str, on_retry: OnRetry = _no_report) -> T:
        """``attempt()`` until it returns; a retryable error waits and tries again, up to
        ``retries`` times, then becomes :class:`TransferFailed` naming ``what``. Other errors
        propagate unchanged."""
        retry = 0
        while True:
            try:
                return await attempt()
            except RETRYABLE as e:
                if isinstance(e, PlainHTTP):  # asking again over TLS gets the same plain answer
                    raise
                retry += 1
                if retry > self.retries:
                    raise TransferFailed(f"{what}: gave up after {self.retries} retries ({e})") from None
                wait = self.delay(retry, e)
                on_retry(e, retry, wait)
                await self.sleep(wait)


DEFAULT_POLICY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP-date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
