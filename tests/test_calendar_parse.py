"""Tests for scheduler_api.calendar_parse: Ergast/Jolpica and content-API bodies, on real calendars from tests/data/."""

from __future__ import annotations

import copy
import logging

import pytest

from scheduler_api.calendar_parse import CalendarError, parse_calendar
from scheduler_api.race_calendar import Calendar, Session, Windows, mode_at

from calendars import content_body, rnd, sess, ts
from conftest import load_calendar as load

W = Windows()


@pytest.fixture(scope="module")
def cal2026() -> Calendar:
    return parse_calendar(load("ergast-2026.json"))


# --------------------------------------------------------------------------- Ergast / Jolpica


def test_ergast_2026_parses_every_round_sorted_by_first_session(cal2026):
    assert cal2026.season == 2026
    assert [r.round for r in cal2026.rounds] == list(range(1, 24))
    starts = [r.first_start_ts for r in cal2026.rounds]
    assert starts == sorted(starts)
    abu_dhabi = rnd(cal2026, 23)
    assert abu_dhabi.race_name == "Abu Dhabi Grand Prix"
    assert [s.name for s in abu_dhabi.sessions] == [
        "practice_1", "practice_2", "practice_3", "qualifying", "race"]
    assert abu_dhabi.first_start_ts == ts(2026, 12, 4, 9, 30)


def test_timed_session_ends_after_its_expected_duration_race_capped_at_3h(cal2026):
    qatar = rnd(cal2026, 22)
    assert qatar.race == Session(2026, 22, "race", ts(2026, 11, 29, 16), ts(2026, 11, 29, 19), True)
    assert sess(qatar, "practice_1").end_ts == ts(2026, 11, 27, 14, 30)
    assert qatar.end_ts == ts(2026, 11, 29, 19)


def test_time_formats_without_z_and_with_milliseconds_are_utc():
    races = [{"season": "2026", "round": "1", "date": "2026-03-08", "time": "04:00:00",
              "Qualifying": {"date": "2026-03-07", "time": "05:00:00.000Z"}}]
    r = parse_calendar(races).rounds[0]
    assert r.race.start_ts == ts(2026, 3, 8, 4)
    assert sess(r, "qualifying").start_ts == ts(2026, 3, 7, 5)


def test_bare_list_of_race_objects_is_ergast_shape(cal2026):
    races = load("ergast-2026.json")["MRData"]["RaceTable"]["Races"]
    assert parse_calendar(races) == cal2026


def test_empty_races_list_gives_empty_calendar_with_racetable_season():
    body = {"MRData": {"RaceTable": {"season": "2027", "Races": []}}}
    assert parse_calendar(body) == Calendar(season=2027, rounds=())
    assert parse_calendar([]) == Calendar(season=None, rounds=())


@pytest.mark.parametrize("body", [{}, "x", {"MRData": 5}, {"MRData": {"RaceTable": {}}},
                                  {"result": {"rounds": "no"}}, None, 42])
def test_unrecognised_body_raises_calendar_error(body):
    with pytest.raises(CalendarError):
        parse_calendar(body)


def test_malformed_entries_are_skipped_with_warning_naming_round(caplog):
    body = load("ergast-2026.json")
    races = body["MRData"]["RaceTable"]["Races"]
    races[0]["date"] = "2026-13-40"            # round 1: impossible date
    del races[1]["round"]                       # round 2: no round number
    races.insert(5, "not a race")               # not an object
    races[6]["time"] = "25:99"                  # round 6 (Monaco): bad time string
    logger = logging.getLogger("test.race_calendar")
    with caplog.at_level(logging.WARNING, logger="test.race_calendar"):
        calendar = parse_calendar(body, logger)
    assert [r.round for r in calendar.rounds] == [3, 4, 5] + list(range(7, 24))
    messages = [rec.getMessage() for rec in caplog.records]
    assert len(messages) == 4
    assert messages[0].startswith("calendar entry skipped round=1 reason=invalid date/time '2026-13-40'")
    assert messages[1].startswith("calendar entry skipped round=? reason=missing or invalid round")
    assert messages[2] == "calendar entry skipped round=? reason=not an object (str)"
    assert messages[3].startswith("calendar entry skipped round=6 reason=invalid time '25:99'")
    assert all(rec.levelno == logging.WARNING for rec in caplog.records)


def test_malformed_single_session_skips_only_that_session(caplog):
    races = copy.deepcopy(load("ergast-2026.json")["MRData"]["RaceTable"]["Races"][:1])
    races[0]["FirstPractice"]["date"] = "06/03/2026"
    with caplog.at_level(logging.WARNING):
        r = parse_calendar(races).rounds[0]
    assert [s.name for s in r.sessions] == ["practice_2", "practice_3", "qualifying", "race"]
    assert caplog.records[0].getMessage() == (
        "calendar session skipped round=1 session=FirstPractice reason=invalid date '06/03/2026'")
    assert caplog.records[0].name == "scheduler_api.race_calendar"



# --------------------------------------------------------------------------- real-calendar quirks


def test_ergast_2023_sprint_shootout_under_second_practice_is_sprint_qualifying():
    calendar = parse_calendar(load("ergast-2023.json"))
    baku = rnd(calendar, 4)
    assert [(s.name, s.start_ts) for s in baku.sessions] == [
        ("practice_1", ts(2023, 4, 28, 9, 30)), ("qualifying", ts(2023, 4, 28, 13)),
        ("sprint_qualifying", ts(2023, 4, 29, 9, 30)), ("sprint", ts(2023, 4, 29, 13, 30)),
        ("race", ts(2023, 4, 30, 11))]
    bahrain = rnd(calendar, 1)  # conventional weekend keeps its FP2
    assert sess(bahrain, "practice_2").start_ts == ts(2023, 3, 3, 15)
    sprint_rounds = [r.round for r in calendar.rounds if r.race is not None
                     and any(s.name == "sprint_qualifying" for s in r.sessions)]
    assert sprint_rounds == [4, 9, 12, 17, 18, 20]


def test_jolpica_sprint_shootout_key_is_sprint_qualifying():
    races = [{"season": "2023", "round": "4", "date": "2023-04-30", "time": "11:00:00Z",
              "FirstPractice": {"date": "2023-04-28", "time": "09:30:00Z"},
              "Qualifying": {"date": "2023-04-28", "time": "13:00:00Z"},
              "SprintShootout": {"date": "2023-04-29", "time": "09:30:00Z"},
              "Sprint": {"date": "2023-04-29", "time": "13:30:00Z"}}]
    baku = parse_calendar(races).rounds[0]
    assert sess(baku, "sprint_qualifying").start_ts == ts(2023, 4, 29, 9, 30)


def test_2021_saturday_second_practice_stays_practice_2():
    # 2021-22 sprint weekends: FP1+Q Friday, FP2+Sprint Saturday -- same keys as the 2023 quirk
    silverstone = rnd(parse_calendar(load("ergast-2021.json")), 10)
    assert [s.name for s in silverstone.sessions] == [
        "practice_1", "qualifying", "practice_2", "sprint", "race"]


def test_session_without_time_lasts_whole_utc_day():
    bahrain = rnd(parse_calendar(load("ergast-2021.json")), 1)
    fp1 = sess(bahrain, "practice_1")
    assert (fp1.start_ts, fp1.end_ts, fp1.has_time) == (ts(2021, 3, 26), ts(2021, 3, 27), False)
    assert bahrain.race == Session(2021, 1, "race", ts(2021, 3, 28, 15), ts(2021, 3, 28, 18), True)



# --------------------------------------------------------------------------- content API


def test_content_api_shape_parses_rounds_and_sessions(cal2026):
    calendar = parse_calendar(content_body())
    assert calendar.season == 2026
    (abu_dhabi,) = calendar.rounds
    expected = rnd(cal2026, 23)
    assert (abu_dhabi.season, abu_dhabi.round) == (2026, 23)
    assert abu_dhabi.sessions == expected.sessions
    assert mode_at(calendar, ts(2026, 12, 6, 13, 30), W).live == expected.race


def test_content_api_accepts_bare_rounds_and_numeric_string_dates():
    body = content_body()["result"]
    for raw in body["rounds"][0]["sessions"]:
        raw["date"] = str(raw["date"])
    body["rounds"][0]["round_id"] = "23"
    r = parse_calendar(body).rounds[0]
    assert r.round == 23 and r.race.start_ts == ts(2026, 12, 6, 13)


def test_content_api_cancelled_session_is_skipped(caplog):
    body = content_body()
    raw_sessions = body["result"]["rounds"][0]["sessions"]
    raw_sessions[2]["status"] = "Cancelled"
    raw_sessions[1]["status"] = "CANCELED"
    with caplog.at_level(logging.WARNING):
        r = parse_calendar(body).rounds[0]
    assert [s.name for s in r.sessions] == ["practice_1", "qualifying", "race"]
    assert caplog.records == []


def test_content_api_unknown_session_type_is_skipped_with_warning(caplog):
    body = content_body()
    body["result"]["rounds"][0]["sessions"].append({"type": "FP4", "date": 0, "is_live": False})
    body["result"]["rounds"].append({"season": 2026, "sessions": []})
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(body)
    assert [r.round for r in calendar.rounds] == [23]
    messages = [rec.getMessage() for rec in caplog.records]
    assert messages == ["calendar session skipped round=23 session=FP4 reason=unknown session type 'FP4'",
                        "calendar entry skipped round=? reason=missing or invalid round number None (expected 0-99)"]


def test_content_api_wholly_cancelled_round_is_dropped_without_warning(caplog):
    body = content_body()
    cancelled = copy.deepcopy(body["result"]["rounds"][0])
    cancelled["round_id"] = 22
    for raw in cancelled["sessions"]:
        raw["status"] = "cancelled"
    body["result"]["rounds"].insert(0, cancelled)
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(body)
    assert [r.round for r in calendar.rounds] == [23]
    assert caplog.records == []

