"""Field checks at the parsing edge: real calendars (ergast-2026.json, and a content-API body built from it)
with one entry broken load all the rest, with a warning naming the round; nothing later can raise on them."""

from __future__ import annotations

import copy
import json
import logging
import random

import pytest

from scheduler_api.calendar_fields import END_TS, MIN_TS, decode_json, instant, show, unix_seconds
from scheduler_api.calendar_parse import check_plausibility, parse_calendar
from scheduler_api.calendar_source import CalendarLoadError, CalendarSource
from scheduler_api.config import Config
from scheduler_api.plan import build_plan
from scheduler_api.race_calendar import (
    SESSION_NAMES,
    Calendar,
    Windows,
    latest_round,
    mode_at,
    next_live_window_start,
    next_mode_change,
)

from calendars import rnd, sess, ts
from conftest import load_calendar as load

W = Windows()




# --------------------------------------------------------------------------- damaged real calendars (one entry broken)

NESTED: list = []
_inner = NESTED
for _ in range(100_000):  # deeper than any recursion limit: nothing may recurse into it
    _inner.append([])
    _inner = _inner[0]


def _set(key, value):
    return lambda race: race.__setitem__(key, value)


def _set_in(session_key, key, value):
    return lambda race: race[session_key].__setitem__(key, value)


#: (id, change to round 5, Canada, of ergast-2026.json, how the warning names the round)
ERGAST_DAMAGE = [
    ("season_5000_digit_string", _set("season", "9" * 5000), "round=5 "),
    ("season_5000_digit_int", _set("season", 10 ** 5000), "round=5 "),
    ("season_1949", _set("season", "1949"), "round=5 "),
    ("season_2101", _set("season", 2101), "round=5 "),
    ("season_bool", _set("season", True), "round=5 "),
    ("season_nan", _set("season", float("nan")), "round=5 "),
    ("season_list", _set("season", ["2026"]), "round=5 "),
    ("round_100", _set("round", "100"), "round='100' "),
    ("round_negative", _set("round", -1), "round=-1 "),
    ("round_bool", _set("round", True), "round=True "),
    ("round_float", _set("round", 5.0), "round=5.0 "),
    ("round_5000_digits", _set("round", "5" * 5000), "round='5555"),
    ("date_year_10_400", _set("date", "1" + "0" * 400 + "-05-24"), "round=5 "),
    ("date_feb_30", _set("date", "2026-02-30"), "round=5 "),
    ("date_1949", _set("date", "1949-12-31"), "round=5 "),
    ("date_2101", _set("date", "2101-01-01"), "round=5 "),
    ("date_null", _set("date", None), "round=5 "),
    ("date_int", _set("date", 20260524), "round=5 "),
    ("date_fullwidth_digits", _set("date", "２０２６-05-24"), "round=5 "),
    ("date_huge_nesting", _set("date", NESTED), "round=5 "),
    ("date_dict", _set("date", {"date": "2026-05-24"}), "round=5 "),
    ("time_null", _set("time", None), "round=5 "),
    ("time_empty", _set("time", ""), "round=5 "),
    ("time_24h", _set("time", "24:00:00Z"), "round=5 "),
    ("time_minute_60", _set("time", "20:60:00Z"), "round=5 "),
    ("time_leap_second", _set("time", "23:59:60Z"), "round=5 "),
    ("time_offset_25h", _set("time", "20:00:00+25:00"), "round=5 "),
    ("time_list", _set("time", ["20:00:00Z"]), "round=5 "),
    ("time_nan", _set("time", float("nan")), "round=5 "),
]


@pytest.fixture(scope="module")
def races2026() -> list:
    return load("ergast-2026.json")["MRData"]["RaceTable"]["Races"]


@pytest.mark.parametrize("change,label", [d[1:] for d in ERGAST_DAMAGE], ids=[d[0] for d in ERGAST_DAMAGE])
def test_one_broken_ergast_entry_is_skipped_naming_its_round_and_the_rest_loads(
        change, label, races2026, cal2026, caplog):
    races = copy.deepcopy(races2026[:4]) + [dict(races2026[4])] + copy.deepcopy(races2026[5:])
    change(races[4])
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar({"MRData": {"RaceTable": {"season": "2026", "Races": races}}})
    assert calendar.rounds == tuple(r for r in cal2026.rounds if r.round != 5)
    (warning,) = [rec.getMessage() for rec in caplog.records]
    assert warning.startswith("calendar entry skipped " + label)
    assert len(warning) < 300
    _use_every_way(calendar)


def test_an_entry_that_is_a_list_is_skipped_and_the_rest_loads(races2026, cal2026, caplog):
    races = races2026[:4] + [["Canadian Grand Prix"]] + races2026[5:]
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(races)
    assert calendar.rounds == tuple(r for r in cal2026.rounds if r.round != 5)
    assert [rec.getMessage() for rec in caplog.records] == [
        "calendar entry skipped round=? reason=not an object (list)"]


@pytest.mark.parametrize("key,value", [
    ("FirstPractice", ["2026-05-22", "16:30:00Z"]), ("Sprint", {"date": "2026-05-23", "time": float("nan")}),
    ("Qualifying", {"date": "1" + "0" * 400 + "-05-23", "time": "20:00:00Z"}),
    ("SprintQualifying", {"date": "2026-05-22", "time": None}), ("Qualifying", {"time": "20:00:00Z"}),
], ids=["session_is_list", "time_nan", "date_year_10_400", "time_null", "no_date"])
def test_one_broken_session_skips_only_that_session_naming_round_and_session(
        key, value, races2026, cal2026, caplog):
    races = list(races2026)
    races[4] = dict(races[4], **{key: value})
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(races)
    name = {"FirstPractice": "practice_1", "Sprint": "sprint", "Qualifying": "qualifying",
            "SprintQualifying": "sprint_qualifying"}[key]
    assert sess(rnd(calendar, 5), "race") == sess(rnd(cal2026, 5), "race")
    assert name not in [s.name for s in rnd(calendar, 5).sessions]
    assert [r for r in calendar.rounds if r.round != 5] == [r for r in cal2026.rounds if r.round != 5]
    (warning,) = [rec.getMessage() for rec in caplog.records]
    assert warning.startswith(f"calendar session skipped round=5 session={key} reason=")


def content_body_2026(calendar: Calendar) -> dict:
    """A content-API body carrying every round and session of a parsed calendar (as tests/calendars.py does)."""
    return {"success": True, "result": {"rounds": [
        {"round_id": r.round, "season": r.season, "race_name": r.race_name, "first_date": r.first_start_ts,
         "end_date": r.race.start_ts,
         "sessions": [{"type": s.name, "date": s.start_ts, "is_live": False, "status": "scheduled"}
                      for s in r.sessions]} for r in calendar.rounds]}}


def _content_set(key, value):
    return lambda entry: entry.__setitem__(key, value)


def _content_race(key, value):
    return lambda entry: next(s for s in entry["sessions"] if s["type"] == "race").__setitem__(key, value)


def _all_dates(value):
    return lambda entry: [s.__setitem__("date", value) for s in entry["sessions"]]


#: (id, change to round 5 of a content-API body built from ergast-2026.json, how the warning names the round)
CONTENT_DAMAGE = [
    ("round_id_5000_digits", _content_set("round_id", "9" * 5000), "round='9999"),
    ("round_id_100", _content_set("round_id", 100), "round=100 "),
    ("round_id_bool", _content_set("round_id", True), "round=True "),
    ("round_id_nan", _content_set("round_id", float("nan")), "round=nan "),
    ("season_10_400", _content_set("season", 10 ** 400), "round=5 "),
    ("season_text", _content_set("season", "twenty"), "round=5 "),
    ("season_null_and_no_default", _content_set("season", None), "round=5 "),
    ("sessions_dict", _content_set("sessions", {"race": 1779652800}), "round=5 "),
    ("sessions_huge_nesting", _content_set("sessions", NESTED), "round=5 "),
    ("every_date_nan", _all_dates(float("nan")), "round=5 "),
    ("every_date_milliseconds", _all_dates(1779652800000), "round=5 "),
    ("every_date_10_400", _all_dates(10 ** 400), "round=5 "),
    ("every_date_bool", _all_dates(True), "round=5 "),
    ("every_date_text", _all_dates("tomorrow"), "round=5 "),
]


@pytest.mark.parametrize("change,label", [d[1:] for d in CONTENT_DAMAGE], ids=[d[0] for d in CONTENT_DAMAGE])
def test_one_broken_content_api_round_is_skipped_naming_its_round_and_the_rest_loads(
        change, label, cal2026, caplog):
    body = content_body_2026(cal2026)
    change(body["result"]["rounds"][4])
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(body)
    assert calendar.season == 2026
    assert calendar.rounds == tuple(r for r in cal2026.rounds if r.round != 5)
    entry = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("calendar entry")]
    assert len(entry) == 1 and entry[0].startswith("calendar entry skipped " + label)
    assert all(len(rec.getMessage()) < 300 for rec in caplog.records)
    _use_every_way(calendar)


@pytest.mark.parametrize("value", [float("inf"), 1779652800.5, "-", [1779652800], -10 ** 12, "1" * 5000],
                         ids=["inf", "fraction", "dash", "list", "before_1950", "5000_digits"])
def test_one_broken_content_api_session_date_skips_that_session(value, cal2026, caplog):
    body = content_body_2026(cal2026)
    _content_race("date", value)(body["result"]["rounds"][4])
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(body)
    assert rnd(calendar, 5).race is None and len(calendar.rounds) == 23
    (warning,) = [rec.getMessage() for rec in caplog.records]
    assert warning.startswith("calendar session skipped round=5 session=race reason=")


def test_an_entry_of_another_season_is_skipped_and_cannot_change_the_calendars_season(cal2026, caplog):
    body = content_body_2026(cal2026)
    body["result"]["rounds"][0]["season"] = 1999  # sorted first: it must not make the calendar season 1999
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(body)
    assert calendar.season == 2026 and [r.round for r in calendar.rounds] == list(range(2, 24))
    assert [rec.getMessage() for rec in caplog.records] == [
        "calendar entry skipped round=1 reason=season 1999 is not the calendar's season 2026"]


def test_a_hostile_body_logs_at_most_twenty_warnings_then_a_count(cal2026, caplog):
    body = content_body_2026(cal2026)
    body["result"]["rounds"].extend({"round_id": "x"} for _ in range(10_000))
    with caplog.at_level(logging.WARNING):
        calendar = parse_calendar(body)
    assert len(calendar.rounds) == 23
    messages = [rec.getMessage() for rec in caplog.records]
    assert len(messages) == 21 and messages[-1] == "calendar warnings not shown count=9980"


def test_race_name_is_made_safe_for_logs_and_answers(races2026):
    races = [dict(races2026[4], raceName="Canadian\nGP\x1b[31m" + "x" * 1000)]
    assert parse_calendar(races).rounds[0].race_name == "CanadianGP[31m" + "x" * 86
    assert parse_calendar([dict(races2026[4], raceName=NESTED)]).rounds[0].race_name == ""


def test_random_damage_never_raises_and_loads_only_valid_values(races2026, cal2026):
    rng = random.Random(10)
    hostile = [None, True, float("nan"), float("inf"), -1, 10 ** 400, "9" * 5000, "", "2026-02-30", "24:00:00Z",
               [], {}, NESTED, "1" + "0" * 400 + "-01-01", 1779652800000, "２０２６-05-24", 2101, "x\n"]
    for _ in range(200):
        races = copy.deepcopy(races2026)
        for _ in range(rng.randint(1, 4)):
            race = rng.choice(races)
            target = race.get(rng.choice(["FirstPractice", "Qualifying", "Sprint"])) if rng.random() < 0.3 else race
            if isinstance(target, dict):
                target[rng.choice(["season", "round", "date", "time", "raceName"])] = rng.choice(hostile)
        body = rng.choice([races, {"MRData": {"RaceTable": {"season": "2026", "Races": races}}},
                           content_body_2026(parse_calendar(races) if rng.random() < 0.5 else cal2026)])
        _use_every_way(parse_calendar(body, logging.getLogger("test.quiet")), step_days=61)


def _use_every_way(calendar: Calendar, step_days: int = 7) -> None:
    """Everything later code does with a calendar, at instants across the season: none of it may raise."""
    assert calendar.season is None or 1950 <= calendar.season <= 2100
    assert len({r.round for r in calendar.rounds}) == len(calendar.rounds)
    for r in calendar.rounds:
        assert r.season == calendar.season and 0 <= r.round <= 99 and r.sessions and isinstance(r.race_name, str)
        for s in r.sessions:
            assert s.name in SESSION_NAMES and MIN_TS <= s.start_ts < s.end_ts <= END_TS + 86400
            assert type(s.start_ts) is int and type(s.end_ts) is int
    check_plausibility(calendar, logging.getLogger("test.quiet"))
    for now_ts in range(ts(2026, 1, 1), ts(2027, 1, 1), 86400 * step_days):
        mode_at(calendar, now_ts, W)
        next_mode_change(calendar, now_ts, W)
        next_live_window_start(calendar, now_ts, W)
        latest_round(calendar, now_ts, W)
    json.dumps([r.race_name for r in calendar.rounds])


def test_a_damaged_calendar_plans_like_the_daemon_runs(races2026):
    """The real scheduler, fed a body with broken entries, plans a race weekend without raising."""
    races = copy.deepcopy(races2026)
    races[21]["season"] = "9" * 5000
    races[22]["Qualifying"]["time"] = None
    plan = build_plan(Config(), {"MRData": {"RaceTable": {"season": "2026", "Races": races}}},
                      ts(2026, 12, 6, 13, 30), 2)
    assert plan["live_session"]["round"] == 23 and plan["live_session"]["session"] == "race"


# --------------------------------------------------------------------------- decoding and single fields


def test_deeply_nested_or_huge_numbered_calendar_file_is_a_load_error_or_a_skipped_entry(races2026, tmp_path):
    path = tmp_path / "calendar.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(CalendarLoadError, match="nested too deeply"):
        CalendarSource("unused", str(path)).load(2026)
    text = json.dumps(races2026).replace('"season": "2026", "round": "5"', '"season": ' + "9" * 5000 + ', "round": "5"')
    path.write_text(text)
    calendar, body = CalendarSource("unused", str(path)).load(2026)
    assert [r.round for r in calendar.rounds] == [1, 2, 3, 4] + list(range(6, 24))
    assert json.loads(json.dumps(body))[4]["season"] == float("inf")  # the body stays persistable


def test_decode_json_turns_integers_over_50_digits_into_floats_and_refuses_deep_nesting():
    assert decode_json(b'\xef\xbb\xbf{"season": ' + b"9" * 5000 + b', "round": 5}') == {
        "season": float("inf"), "round": 5}
    assert decode_json(b"[" + b"1" * 50 + b"]") == [int("1" * 50)]
    with pytest.raises(ValueError, match="nested too deeply"):
        decode_json(b'{"a":' * 100_000)
    with pytest.raises(ValueError):
        decode_json(b"\xff\xfe")


@pytest.mark.parametrize("date_s,time_s,expected", [
    ("2024-11-24", "06:00:00Z", ts(2024, 11, 24, 6)),
    ("2024-11-24", "06:00:00", ts(2024, 11, 24, 6)),
    ("2024-11-24", "06:00:00.000Z", ts(2024, 11, 24, 6)),
    ("2024-11-23", "22:00:00-08:00", ts(2024, 11, 24, 6)),
    ("2024-11-24", "06:00:00+00:00", ts(2024, 11, 24, 6)),
    ("1950-01-01", "00:00:00Z", ts(1950, 1, 1)),
    ("2100-12-31", "23:59:59Z", ts(2100, 12, 31, 23, 59, 59)),
])
def test_real_dates_and_times_with_or_without_zone_are_utc_seconds(date_s, time_s, expected):
    assert instant(date_s, time_s) == expected


@pytest.mark.parametrize("date_s,time_s", [
    ("1949-12-31", "23:59:59Z"), ("2101-01-01", "00:00:00Z"), ("1950-01-01", "00:30:00+01:00"),
    ("2024-02-30", "06:00:00Z"), ("2024-11-24", "06:00"), ("2024-11-24", "06:00:00+24:00"),
    ("2024-11-24 ", "06:00:00Z"), ("2024-11-24", "06:00:00Z\n"), ("0000-01-01", "00:00:00Z"),
])
def test_unreal_or_out_of_range_instants_are_field_errors(date_s, time_s):
    with pytest.raises(ValueError):
        instant(date_s, time_s)


@pytest.mark.parametrize("value", [True, float("nan"), 1.5, "1e9", 10 ** 400, "9" * 5000, -631152001, 4133980800,
                                   1733497200000, None, [1733497200]])
def test_content_api_unix_seconds_outside_1950_2100_or_not_numbers_are_field_errors(value):
    with pytest.raises(ValueError):
        unix_seconds(value)


def test_content_api_unix_seconds_accept_ints_integral_floats_and_digit_strings():
    assert unix_seconds(1733497200) == unix_seconds(1733497200.0) == unix_seconds(" 1733497200") == 1733497200


def test_show_is_short_and_never_raises_on_hostile_values():
    assert show(10 ** 5000) == "<integer of 16610 bits>"
    assert show("x" * 5000) == repr("x" * 40) + "... (5000 characters)"
    assert show(NESTED) == "<list>" and show({"a": 1}) == "<dict>"
    assert show("a\nb") == "'a\\nb'" and show(None) == "None" and show(float("nan")) == "nan"
