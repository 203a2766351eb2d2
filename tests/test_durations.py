"""Tests for scheduler_api.durations: the duration syntax of the configuration and the interval display."""

from __future__ import annotations

import pytest

from scheduler_api.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("2d12h", 216000.0),
        ("1s500ms", 1.5),
        ("1d2h3m4s5ms", 93784.005),
        ("007s", 7.0),
    ],
)
def test_units_combine_in_decreasing_order(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "seconds"), [("30", 30.0), ("1.5", 1.5), ("86400", 86400.0)])
def test_bare_number_means_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_surrounding_whitespace_is_stripped() -> None:
    assert parse_duration("  5m\t\n") == 300.0


def test_result_is_float() -> None:
    assert type(parse_duration("1h")) is float
    assert type(parse_duration("30")) is float


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "-5s",
        "+5s",
        "5x",
        "1h1h",
        "30m1h",
        "1s1m",
        "500ms1s",
        "1.5s",
        "1h 30m",
        "5M",
        "1e3",
        ".5",
        "1.",
        "１０s",
        "١٠",
        "nan",
        "inf",
        "s",
        "ms",
    ],
)
def test_invalid_text_is_rejected(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0ms", "0.0", "0h0m"])
def test_zero_is_rejected(text: str) -> None:
    with pytest.raises(DurationError, match="greater than zero"):
        parse_duration(text)


def test_absurdly_long_text_is_rejected_not_crashing() -> None:
    with pytest.raises(DurationError):
        parse_duration("9" * 5000)
    with pytest.raises(DurationError):
        parse_duration("9" * 5000 + "d")


def test_duration_error_is_a_value_error_with_one_line_message() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("1h\n1h")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "30s"),
        (300, "5m"),
        (1800, "30m"),
        (3600, "1h"),
        (5400, "1h30m"),
        (21600, "6h"),
        (86400, "1d"),
        (90000, "1d1h"),
        (0.5, "500ms"),
        (1.5, "1s500ms"),
        (0, "0s"),
        (0.0, "0s"),
    ],
)
def test_format_uses_shortest_unit_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rounds_to_whole_milliseconds() -> None:
    assert format_duration(0.0004) == "0s"
    assert format_duration(1.2345678) == "1s235ms"
    assert format_duration(59.9999) == "1m"


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf")])
def test_format_rejects_negative_and_non_finite(seconds: float) -> None:
    with pytest.raises(DurationError):
        format_duration(seconds)


# Every default duration: intervals; leads, tails and calendar refresh;
# fetcher timeout and health TTL; shutdown grace and HTTP timeout.
DEFAULT_DURATIONS = ["6h", "30s", "30m", "5m", "1h", "12h", "300s", "10s"]


@pytest.mark.parametrize("text", DEFAULT_DURATIONS)
def test_spec_defaults_round_trip(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize("text", ["6h", "30s", "30m", "5m", "1h", "12h", "10s", "1h30m", "1s500ms"])
def test_shortest_form_round_trips_exactly(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


def test_format_normalises_to_shortest_form() -> None:
    assert format_duration(parse_duration("300s")) == "5m"
    assert format_duration(parse_duration("90")) == "1m30s"
