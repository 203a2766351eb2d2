"""Tests for scheduler_api.calendar_source: fetch and parse a calendar from a file or a URL."""

from __future__ import annotations

import json

import pytest
import requests
import responses

from scheduler_api.calendar_parse import parse_calendar
from scheduler_api.calendar_source import CalendarLoadError, CalendarSource

from conftest import load_calendar

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
    ({"body": requests.ConnectionError("refused")}, f"{URL_2026}: ConnectionError"),
    ({"body": requests.ReadTimeout("slow")}, f"{URL_2026}: timed out"),
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
