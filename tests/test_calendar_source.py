"""Tests for scheduler_api.calendar_source: fetch and parse a calendar from a file or a URL."""

from __future__ import annotations

import json
import time

import pytest
import requests
import responses

from scheduler_api.calendar_parse import parse_calendar
from scheduler_api.calendar_source import CalendarLoadError, CalendarSource

from conftest import load_calendar
from test_httpcall import HEAD, serve, trickle  # noqa: F401  (serve is a fixture)

URL = "http://calendar.test/{season}.json"
URL_2026 = "http://calendar.test/2026.json"
EMPTY = {"MRData": {"RaceTable": {"season": "2026", "Races": []}}}


def test_describe_fills_the_season_into_the_url_or_names_the_file():
    assert CalendarSource(URL, None).describe(2026) == URL_2026
    assert CalendarSource(URL, "/etc/cal.json").describe(2026) == "/etc/cal.json"


def test_load_gets_the_url_for_the_season_and_parses_it(mocked):
    body = load_calendar("ergast-2026.json")
    mocked.add(responses.GET, URL_2026, json=body)
    calendar, loaded_body = CalendarSource(URL, None).load(2026)
    assert loaded_body == body
    assert calendar == parse_calendar(body)
    assert len(calendar.rounds) == 23
    assert mocked.calls[0].request.headers["Accept"] == "application/json"


def test_calendar_file_replaces_the_url_and_may_start_with_a_bom(tmp_path):
    path = tmp_path / "calendar.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(load_calendar("ergast-2023.json")).encode())
    calendar, _ = CalendarSource(URL, str(path)).load(2026)
    assert calendar.season == 2023


def test_unchanged_bytes_give_the_very_same_calendar_and_body(mocked):
    mocked.add(responses.GET, URL_2026, json=load_calendar("ergast-2026.json"))
    source = CalendarSource(URL, None)
    first = source.load(2026)
    second = source.load(2026)
    assert second[0] is first[0] and second[1] is first[1]
    mocked.replace(responses.GET, URL_2026, json=load_calendar("ergast-2021.json"))
    third = source.load(2026)
    assert third[0] is not first[0] and third[0].season == 2021


def test_unchanged_bytes_go_through_fetch_as_the_same_body(tmp_path):
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(load_calendar("ergast-2026.json")))
    source = CalendarSource(URL, str(path))
    assert source.fetch(2026) is source.fetch(2026)


@pytest.mark.parametrize("mock, reason", [
    ({"status": 503}, f"{URL_2026}: HTTP 503"),
    ({"body": requests.ConnectionError("Connection refused")}, f"{URL_2026}: connection refused"),
    ({"body": requests.ReadTimeout("slow")}, f"{URL_2026}: timed out: deadline of 30s passed"),
    ({"body": b"[" * 100_000}, f"{URL_2026}: body is not JSON (JSON nested too deeply)"),
    ({"body": b"\xff\xfe{}"}, f"{URL_2026}: body is not JSON"),
    ({"body": b"<html>"}, f"{URL_2026}: body is not JSON"),
    ({"json": EMPTY}, f"{URL_2026}: no rounds"),
    ({"json": {"rounds": "no"}}, "calendar body not recognised"),
    ({"json": 42}, "calendar body must be a JSON object or list, got int"),
])
def test_every_failure_is_a_calendar_load_error_with_a_one_line_reason(mocked, mock, reason):
    mocked.add(responses.GET, URL_2026, **mock)
    with pytest.raises(CalendarLoadError) as info:
        CalendarSource(URL, None).load(2026)
    assert str(info.value).startswith(reason)
    assert "\n" not in str(info.value)


def test_unreadable_calendar_file_names_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(CalendarLoadError, match=f"^{missing}: "):
        CalendarSource(URL, str(missing)).load(2026)


def test_a_calendar_without_rounds_is_refused_again_when_its_bytes_repeat(mocked):
    mocked.add(responses.GET, URL_2026, json=EMPTY)
    source = CalendarSource(URL, None)
    for _ in range(2):
        with pytest.raises(CalendarLoadError, match="no rounds$"):
            source.load(2026)


# -- deadline, size, proxies, secrets ---------------------------------------------------------


def test_describe_masks_the_secrets_of_the_calendar_url():
    source = CalendarSource("https://bob:hunter2@content.example/seasons/{season}/rounds?api_key=s3cret&x=1", None)
    assert source.describe(2026) == "https://content.example/seasons/2026/rounds?api_key=***&x=1"


def test_a_failed_load_never_shows_a_secret_of_the_calendar_url(mocked):
    url = "http://bob:hunter2@calendar.test/2026.json?token=s3cret"
    mocked.add(responses.GET, url, status=503)
    mocked.add(responses.GET, url, body=requests.ConnectionError(f"{url}: Connection aborted, retries exceeded"))
    source = CalendarSource("http://bob:hunter2@calendar.test/{season}.json?token=s3cret", None)
    for expected in ("HTTP 503", "connection error"):
        with pytest.raises(CalendarLoadError) as info:
            source.load(2026)
        assert str(info.value).startswith("http://calendar.test/2026.json?token=***: " + expected)
        assert "hunter2" not in str(info.value) and "s3cret" not in str(info.value)


def test_a_calendar_larger_than_8_mib_is_refused(mocked):
    mocked.add(responses.GET, URL_2026, body=b" " * (8 << 20) + b"[]", status=200)
    with pytest.raises(CalendarLoadError, match=f"^{URL_2026}: calendar larger than 8 MiB$"):
        CalendarSource(URL, None).load(2026)


def test_a_calendar_file_larger_than_8_mib_is_refused(tmp_path):
    path = tmp_path / "calendar.json"
    path.write_bytes(json.dumps(load_calendar("ergast-2026.json")).encode() + b" " * (8 << 20))
    with pytest.raises(CalendarLoadError, match="calendar larger than 8 MiB$"):
        CalendarSource(URL, str(path)).load(2026)


def test_a_calendar_of_just_under_8_mib_loads(mocked):
    raw = json.dumps(load_calendar("ergast-2026.json")).encode()
    mocked.add(responses.GET, URL_2026, body=raw + b" " * ((8 << 20) - len(raw)), status=200)
    assert len(CalendarSource(URL, None).load(2026)[0].rounds) == 23


def test_a_calendar_trickling_its_body_is_cut_off_at_calendar_timeout(serve):
    """A body sent one byte at a time would take hours; the GET ends at CALENDAR_TIMEOUT (2 s here), ±1 s."""
    body = json.dumps(load_calendar("ergast-2026.json")).encode()
    server = serve(lambda conn, stop: (conn.sendall(HEAD % len(body)), trickle(body, 0.25)(conn, stop)))
    source = CalendarSource(server.url("/{season}.json"), None, timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(CalendarLoadError, match=r": timed out: deadline of 2s passed$"):
        source.load(2026)
    assert 1.9 <= time.monotonic() - started <= 3.0


def test_a_loopback_calendar_url_loads_with_an_http_proxy_exported(serve, monkeypatch):
    """The content API on loopback is never asked through HTTP_PROXY (here a port nothing listens on)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    body = json.dumps(load_calendar("ergast-2026.json")).encode()
    server = serve(lambda conn, stop: conn.sendall(HEAD % len(body) + body))

    calendar, _ = CalendarSource(server.url("/seasons/{season}/rounds"), None).load(2026)

    assert len(calendar.rounds) == 23
    assert server.requests[0].startswith(b"GET /seasons/2026/rounds HTTP/1.1\r\n")
