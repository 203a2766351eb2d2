"""Tests for scheduler_api.calendar_parse: Ergast/Jolpica and content-API bodies, on real calendars from tests/data/."""

from __future__ import annotations

import copy
import json
import logging

import pytest

from scheduler_api.calendar_parse import (
    LIVE_FLAG_IGNORED,
    CalendarError,
    credible_live_flag,
    parse_calendar,
)
from scheduler_api.calendar_source import CalendarSource
from scheduler_api.race_calendar import Calendar, Session, Windows, mode_at

from calendars import content_body, rnd, sess, ts
from conftest import load_calendar as load

W = Windows()




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



# --------------------------------------------------------------------------- plausibility


@pytest.fixture(scope="module")
def races2026() -> list:
    return load("ergast-2026.json")["MRData"]["RaceTable"]["Races"]


@pytest.mark.parametrize("name", ["ergast-2004.json", "ergast-2021.json", "ergast-2023.json", "ergast-2024.json",
                                  "ergast-2026.json"])
def test_real_calendars_load_without_any_warning(name, caplog):
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(load(name))
    assert calendar.rounds and caplog.records == []


def test_race_dated_33_days_before_its_practice_loads_but_is_warned_about(races2026, caplog):
    races = copy.deepcopy(races2026)
    races[4]["date"] = "2026-04-19"  # Canada's race, 33 days before its FP1 of 2026-05-22
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(races)
    assert rnd(calendar, 5).race.start_ts == ts(2026, 4, 19, 20)
    assert [rec.getMessage() for rec in caplog.records] == [
        "calendar round implausible season=2026 round=5 reason=sessions span 34.0 days (more than 5)",
        "calendar round implausible season=2026 round=5 reason=race starts before "
        "practice_1, sprint_qualifying, sprint, qualifying",
        "calendar round implausible season=2026 round=4 reason=overlaps round 5",  # Miami lies inside it
    ]


def test_round_spanning_more_than_five_days_is_warned_about(races2026, caplog):
    races = copy.deepcopy(races2026)
    races[4]["FirstPractice"]["date"] = "2026-05-19"  # Tuesday 16:30Z: 5 d 6.5 h to the race's 23:00Z end
    with caplog.at_level(logging.WARNING):
        parse_calendar(races)
    assert [rec.getMessage() for rec in caplog.records] == [
        "calendar round implausible season=2026 round=5 reason=sessions span 5.3 days (more than 5)"]


def test_round_overlapping_another_is_warned_about_naming_both(races2026, caplog):
    races = copy.deepcopy(races2026)
    for key in ("date", "time"):  # Monaco (round 6) given Canada's race day: overlaps round 5
        races[5][key] = races[4][key]
    for key in ("FirstPractice", "SecondPractice", "ThirdPractice", "Qualifying"):
        races[5][key] = dict(races[4]["Sprint"])
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(races)
    assert len(calendar.rounds) == 23
    assert [rec.getMessage() for rec in caplog.records] == [
        "calendar round implausible season=2026 round=6 reason=overlaps round 5"]


def test_plausibility_is_warned_once_per_change_not_at_identical_refreshes(races2026, tmp_path, caplog):
    races = copy.deepcopy(races2026)
    races[4]["date"] = "2026-04-19"
    path = tmp_path / "calendar.json"
    path.write_text(json.dumps(races))
    source = CalendarSource("unused", str(path))
    with caplog.at_level(logging.WARNING):
        source.load(2026)
        source.load(2026)
        assert len(caplog.records) == 3
        races[4]["date"] = "2026-04-20"
        path.write_text(json.dumps(races))
        source.load(2026)
    assert len(caplog.records) == 6


# --------------------------------------------------------------------------- is_live bounded


def _flagged_race() -> Session:
    body = content_body()
    next(s for s in body["result"]["rounds"][0]["sessions"] if s["type"] == "race")["is_live"] = True
    return parse_calendar(body).rounds[0].race


def test_is_live_flag_counts_from_start_minus_lead_to_expected_end_plus_tail_plus_3h():
    race = _flagged_race()  # Abu Dhabi 2026: 13:00Z, expected end 16:00Z
    assert race.is_live is True
    lead_s, tail_s = 300, 1800
    assert not credible_live_flag(race, ts(2026, 12, 6, 12, 55) - 1, lead_s, tail_s)
    assert credible_live_flag(race, ts(2026, 12, 6, 12, 55), lead_s, tail_s)
    assert credible_live_flag(race, ts(2026, 12, 6, 19, 30) - 1, lead_s, tail_s)
    assert not credible_live_flag(race, ts(2026, 12, 6, 19, 30), lead_s, tail_s)


def test_is_live_flag_left_set_for_weeks_is_ignored_and_an_unflagged_session_never_counts():
    race = _flagged_race()
    assert not credible_live_flag(race, ts(2026, 12, 27, 13), 300, 1800)
    unflagged = parse_calendar(content_body()).rounds[0].race
    assert not credible_live_flag(unflagged, ts(2026, 12, 6, 13, 30), 300, 1800)


def test_ignored_live_flag_warning_names_round_and_session():
    race = _flagged_race()
    assert LIVE_FLAG_IGNORED % (race.season, race.round, race.name) == (
        "calendar live flag ignored season=2026 round=23 session=race "
        "reason=outside start - LIVE_LEAD to expected end + LIVE_TAIL + 3h")
