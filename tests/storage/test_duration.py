"""storage.duration against Go's own time.ParseDuration table (src/time/time_test.go, Go 1.22),
and properties: what Go's Duration.String() prints parses back, and integer parts sum exactly."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from storage.duration import HOUR, MICROSECOND, MILLISECOND, MINUTE, NANOSECOND, SECOND, UNITS, DurationError
from storage.duration import format_duration
from storage.duration import parse_duration as parse

MAX, MIN = (1 << 63) - 1, -(1 << 63)

GO_ACCEPTS = [
    # simple
    ("0", 0), ("5s", 5 * SECOND), ("30s", 30 * SECOND), ("1478s", 1478 * SECOND),
    # sign
    ("-5s", -5 * SECOND), ("+5s", 5 * SECOND), ("-0", 0), ("+0", 0),
    # decimal
    ("5.0s", 5 * SECOND), ("5.6s", 5 * SECOND + 600 * MILLISECOND), ("5.s", 5 * SECOND),
    (".5s", 500 * MILLISECOND), ("1.0s", SECOND), ("1.00s", SECOND), ("1.004s", SECOND + 4 * MILLISECOND),
    ("1.0040s", SECOND + 4 * MILLISECOND), ("100.00100s", 100 * SECOND + MILLISECOND),
    # different units
    ("10ns", 10 * NANOSECOND), ("11us", 11 * MICROSECOND), ("12\u00b5s", 12 * MICROSECOND),
    ("12\u03bcs", 12 * MICROSECOND), ("13ms", 13 * MILLISECOND), ("14s", 14 * SECOND), ("15m", 15 * MINUTE),
    ("16h", 16 * HOUR),
    # composite durations
    ("3h30m", 3 * HOUR + 30 * MINUTE), ("10.5s4m", 4 * MINUTE + 10 * SECOND + 500 * MILLISECOND),
    ("-2m3.4s", -(2 * MINUTE + 3 * SECOND + 400 * MILLISECOND)),
    ("1h2m3s4ms5us6ns", HOUR + 2 * MINUTE + 3 * SECOND + 4 * MILLISECOND + 5 * MICROSECOND + 6),
    ("39h9m14.425s", 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425 * MILLISECOND),
    # large value
    ("52763797000ns", 52763797000),
    # more than 9 digits after the decimal point (golang.org/issue/6617)
    ("0.3333333333333333333h", 20 * MINUTE),
    # 1<<53+1 cannot be stored exactly in a float64
    ("9007199254740993ns", (1 << 53) + 1),
    # the extremes of int64 nanoseconds
    ("9223372036854775807ns", MAX), ("9223372036854775.807us", MAX), ("9223372036s854ms775us807ns", MAX),
    ("-9223372036854775807ns", MIN + 1),
    ("-9223372036854775808ns", MIN), ("-9223372036854775.808us", MIN), ("-9223372036s854ms775us808ns", MIN),
    ("-2562047h47m16.854775808s", MIN),   # golang.org/issue/48629
    # huge string (golang.org/issue/15011); the first overflow check in leadingFraction
    ("0.100000000000000000000h", 6 * MINUTE),
    ("0.830103483285477580700h", 49 * MINUTE + 48 * SECOND + 372539827),
]

GO_REFUSES = [
    "", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "\x85\x85", "\xffff", "hello \xffff world",
    "\ufffd", "\ufffd hello \ufffd world", "..s", "5..s", "1.2.3s", "--1s", "+-1s", " 1s", "1s ", "1 s",
    "1e3s", "nan", "inf",
    "3000000h",                                            # overflow
    "9223372036854775808ns", "9223372036854775.808us", "9223372036854ms775us808ns",
    "-9223372036854775809ns", "-9223372036854775808ns1ns", "2562048h",
]


@pytest.mark.parametrize(("text", "want"), GO_ACCEPTS)
def test_what_go_accepts(text: str, want: int) -> None:
    assert parse(text) == want


@pytest.mark.parametrize("text", GO_REFUSES)
def test_what_go_refuses(text: str) -> None:
    with pytest.raises(DurationError, match=r"^time: "):
        parse(text)


@pytest.mark.parametrize(("text", "message"), [
    ("", "time: invalid duration ''"),
    ("3", "time: missing unit in duration '3'"),
    ("1x", "time: unknown unit 'x' in duration '1x'"),
    ("1h5", "time: missing unit in duration '1h5'"),
])
def test_messages_name_the_text_as_go_does(text: str, message: str) -> None:
    with pytest.raises(DurationError) as e:
        parse(text)
    assert str(e.value) == message


@given(st.integers(min_value=MIN + 1, max_value=MAX))
def test_what_go_prints_parses_back(d: int) -> None:
    assert parse(format_duration(d)) == d


_PART = st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS)))


@example([(562048, "h"), (1000000, "h"), (1000000, "h")], "")        # 2562048h: one hour past int64
@example([(2562047, "h"), (47, "m"), (16, "s"), (854775807, "ns")], "")  # exactly the largest
@example([(2562047, "h"), (47, "m"), (16, "s"), (854775808, "ns")], "-")  # exactly the smallest
@given(st.lists(_PART, min_size=1, max_size=6), st.sampled_from(["", "+", "-"]))
def test_integer_parts_sum_exactly(parts: list[tuple[int, str]], sign: str) -> None:
    text = sign + "".join(f"{n}{unit}" for n, unit in parts)
    total = sum(n * UNITS[unit] for n, unit in parts)
    want = -total if sign == "-" else total
    if not MIN <= want <= MAX:            # Go: past int64 nanoseconds (~2562047h) is invalid
        with pytest.raises(DurationError, match="invalid duration"):
            parse(text)
    else:
        assert parse(text) == want


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**9 - 1),
       st.sampled_from(sorted(UNITS)))
def test_fractions_are_within_a_nanosecond_of_exact(whole: int, frac: int, unit: str) -> None:
    digits = f"{frac:09d}"
    exact = (whole + Fraction(frac, 10**9)) * UNITS[unit]
    got = parse(f"{whole}.{digits}{unit}")
    assert exact - 1 <= got <= exact   # Go truncates toward zero, in float64 for the fraction
