"""The output of a RUN that runs ahead of its key (builder.execute._HeldOutput): held while
the key is looked up, bounded, let through for a miss, dropped after a hit's cancel."""

from __future__ import annotations

import threading

from builder.execute import _HeldOutput
from runtime.step import StepCancel


def _held() -> tuple[_HeldOutput, list[bytes], threading.Event, StepCancel]:
    shown: list[bytes] = []
    looked, cancel = threading.Event(), StepCancel()
    return _HeldOutput(shown.append, looked, cancel), shown, looked, cancel


def test_output_is_held_until_the_lookup_then_let_through_in_order() -> None:
    held, shown, looked, _ = _held()
    held.write(b"a")
    held.write(b"b")
    assert shown == []
    looked.set()
    held.write(b"c")
    assert shown == [b"a", b"b", b"c"]


def test_a_hit_drops_what_was_held_and_what_comes_after() -> None:
    held, shown, looked, cancel = _held()
    held.write(b"secret-ish")
    cancel.cancelled = True       # what cancel() sets (no step to kill here)
    looked.set()
    held.write(b"more")
    assert shown == []


def test_release_shows_what_is_held_and_the_rest_goes_straight_through() -> None:
    held, shown, _, _ = _held()
    held.write(b"x")
    held.release()
    held.write(b"y")
    assert shown == [b"x", b"y"]


def test_at_most_the_limit_is_held() -> None:
    """A step that prints without end while a large layer is hashed: past the limit its output
    goes through, so the held bytes stay bounded."""
    held, shown, _, _ = _held()
    chunk = b"z" * 65536
    for _ in range(_HeldOutput.LIMIT // len(chunk)):
        held.write(chunk)
    assert shown == []
    held.write(b"one more")
    assert b"".join(shown) == chunk * (_HeldOutput.LIMIT // len(chunk)) + b"one more"
    for _ in range(100):
        held.write(chunk)
    assert len(shown) == _HeldOutput.LIMIT // len(chunk) + 1 + 100
