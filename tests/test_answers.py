"""Reading a fetcher answer: JSON bodies that are cut or nested too deep, reasons cut at head and tail, Retry-After."""

from __future__ import annotations

import json

import pytest

from scheduler_api.answers import REASON_MAX_CHARS, body_message, cut_reason, decode_json, parse_retry_after

from conftest import ts
from origin_fetcher import SELENIUM_ERROR


def test_a_reason_of_300_characters_is_kept_whole():
    assert cut_reason("r" * REASON_MAX_CHARS) == "r" * 300


def test_a_reason_over_300_characters_keeps_its_first_150_and_last_150():
    text = "a" * 150 + "b" * 51 + "c" * 150
    assert cut_reason(text) == "a" * 150 + " … " + "c" * 150


def test_the_cause_at_the_end_of_a_long_selenium_error_survives():
    reason = cut_reason(f"HTTP 500: {SELENIUM_ERROR}")
    assert len(reason) == 303 and "\n" not in reason
    assert reason.startswith("HTTP 500: Message: unknown error: session deleted because of page crash")
    assert reason.endswith("Failed to fetch all rounds: timeout waiting for https://www.formula1.com/en/racing/2026.html")


def test_a_reason_never_shows_a_secret_of_a_url_in_it():
    reason = cut_reason("HTTP 500: GET https://bob:hunter2@calendar.example/2026.json?api_key=s3cret failed")
    assert "hunter2" not in reason and "s3cret" not in reason
    assert reason == "HTTP 500: GET https://calendar.example/2026.json?api_key=*** failed"


def test_a_secret_is_masked_before_the_reason_is_cut():
    """Cutting first could leave half a URL in the tail, where no URL rule recognises it."""
    reason = cut_reason("x" * 140 + " https://example.test/?token=" + "s" * 400)
    assert "sss" not in reason


@pytest.mark.parametrize("raw", [
    b'{"success": true, "count": 2',  # cut short at the read cap
    b"[" * 100_000,  # nested too deep for the decoder
    b"\xff\xfe\x00garbage",
    b"<html>Bad Gateway</html>",
    b"",
    b"1" * 5000,  # an integer over Python's digit limit
])
def test_an_unreadable_body_decodes_to_none_and_never_raises(raw):
    assert decode_json(raw) is None


def test_a_body_decodes_as_json():
    assert decode_json(b'{"detail": "Not Found"}') == {"detail": "Not Found"}


@pytest.mark.parametrize(("body", "message"), [
    ({"detail": "Not Found"}, "Not Found"),
    ({"detail": [{"type": "missing", "loc": ["query", "season"], "msg": "Field required", "input": None}]},
     "query.season: Field required"),
    ({"detail": [{"msg": "no place"}, "plain", 7]}, "no place; plain; 7"),
    ({"message": {"code": 5}}, '{"code": 5}'),
    ({"detail": ""}, None),
    ([1, 2], None),
    (None, None),
])
def test_body_message_shapes(body, message):
    assert body_message(body) == message


def test_a_detail_nested_too_deep_to_write_is_a_placeholder_never_an_error():
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    assert body_message({"detail": {"x": deep}}) == "(unreadable value)"
    json.loads(b"[]")  # the decoder is still usable afterwards


@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0.0),
    ("7", 7.0),
    (" 30 ", 30.0),
    ("Mon, 30 Nov 2026 12:00:10 GMT", 10.0),
    ("Mon, 30 Nov 2026 11:00:00 GMT", 0.0),  # a date in the past: no wait, never negative
    (None, None),
    ("", None),
    ("soon", None),
    ("-5", None),
    ("1.5", None),
    ("٣", None),  # a non-ASCII digit
    ("9" * 400, 86400.0),  # would read as infinity
    ("172800", 86400.0),
    ("Fri, 31 Dec 9999 23:59:59 GMT", 86400.0),
    ("Mon, 30 Nov 99999 12:00:10 GMT", None),
])
def test_retry_after_parsing(value, expected):
    assert parse_retry_after(value, ts("2026-11-30T12:00:00Z")) == expected
