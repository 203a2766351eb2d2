"""Tests for scheduler_api.race_calendar (SPEC.md §4), on real calendars from tests/data/."""

from __future__ import annotations

import copy
import json
import logging
import pathlib
from datetime import datetime, timezone

import pytest

from scheduler_api.race_calendar import (
    SESSION_DURATION_S,
    SESSION_NAMES,
    Calendar,
    CalendarError,
    Mode,
    Round,
    Session,
    Windows,
    latest_round,
    mode_at,
    next_live_window_start,
    next_mode_change,
    parse_calendar,
)

DATA = pathlib.Path(__file__).parent / "data"
W = Windows()


def ts(*args: int) -> int:
    """:returns: UTC unix seconds for a UTC wall time."""
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


def load(name: str) -> object:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cal2026() -> Calendar:
    return parse_calendar(load("ergast-2026.json"))


def rnd(calendar: Calendar, number: int) -> Round:
    return next(r for r in calendar.rounds if r.round == number)


def sess(round_: Round, name: str) -> Session:
    return next(s for s in round_.sessions if s.name == name)


# --------------------------------------------------------------------------- constants and parsing


def test_session_names_and_expected_durations_follow_spec():
    assert SESSION_NAMES == ("practice_1", "practice_2", "practice_3", "sprint_qualifying",
                             "sprint", "qualifying", "race")
    assert dict(SESSION_DURATION_S) == {"practice_1": 3600, "practice_2": 3600, "practice_3": 3600,
                                        "sprint_qualifying": 3600, "sprint": 3600,
                                        "qualifying": 3600, "race": 10800}


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


# --------------------------------------------------------------------------- windows


def test_race_weekend_starts_12h_before_first_session(cal2026):
    start = ts(2026, 12, 3, 21, 30)  # Abu Dhabi FP1 2026-12-04T09:30Z - 12h
    assert mode_at(cal2026, start - 1, W).name == "off_season"
    mode = mode_at(cal2026, start, W)
    assert mode == Mode("race_weekend", rnd(cal2026, 23), None)
    assert mode.is_race_weekend


def test_race_weekend_ends_12h_after_race_expected_end(cal2026):
    end = ts(2026, 11, 30, 7)  # Qatar race 16:00Z + 3h + 12h
    assert mode_at(cal2026, end - 1, W).race_round == rnd(cal2026, 22)
    assert mode_at(cal2026, end, W) == Mode("off_season", None, None)


def test_live_window_opens_5m_before_start_and_closes_30m_after_expected_end(cal2026):
    fp1 = sess(rnd(cal2026, 23), "practice_1")
    assert mode_at(cal2026, fp1.start_ts - 301, W).name == "race_weekend"
    assert mode_at(cal2026, fp1.start_ts - 300, W).live == fp1
    assert mode_at(cal2026, fp1.end_ts + 1799, W).live == fp1
    assert mode_at(cal2026, fp1.end_ts + 1800, W).name == "race_weekend"


def test_qatar_race_live_then_off_season_until_abu_dhabi_weekend(cal2026):
    qatar, abu_dhabi = rnd(cal2026, 22), rnd(cal2026, 23)
    live = mode_at(cal2026, ts(2026, 11, 29, 16, 30), W)
    assert (live.name, live.race_round, live.live) == ("live_session", qatar, qatar.race)
    assert live.is_race_weekend
    assert live.live.start_ts == ts(2026, 11, 29, 16)

    gap = ts(2026, 11, 30, 12)
    assert mode_at(cal2026, gap, W) == Mode("off_season", None, None)
    assert not mode_at(cal2026, gap, W).is_race_weekend
    assert next_mode_change(cal2026, gap, W) == ts(2026, 12, 3, 21, 30)
    assert next_live_window_start(cal2026, gap, W) == ts(2026, 12, 4, 9, 25)
    assert latest_round(cal2026, gap, W) == qatar

    race_live = mode_at(cal2026, ts(2026, 12, 6, 13, 30), W)
    assert (race_live.name, race_live.race_round, race_live.live) == ("live_session", abu_dhabi, abu_dhabi.race)
    assert latest_round(cal2026, ts(2026, 12, 6, 13, 30), W) == abu_dhabi


def test_next_mode_change_is_the_next_boundary_strictly_after_now(cal2026):
    abu_race = rnd(cal2026, 23).race
    during_race = ts(2026, 12, 6, 13, 30)
    assert next_mode_change(cal2026, during_race, W) == ts(2026, 12, 6, 16, 30)
    assert next_mode_change(cal2026, ts(2026, 12, 6, 16, 30), W) == ts(2026, 12, 7, 4)
    assert next_mode_change(cal2026, ts(2026, 12, 7, 4), W) is None
    assert next_live_window_start(cal2026, abu_race.start_ts - 300, W) is None
    assert next_mode_change(cal2026, ts(2026, 12, 3, 21, 29, 59) + 0.5, W) == ts(2026, 12, 3, 21, 30)


def test_latest_round_is_most_recent_started_round_or_none(cal2026):
    assert latest_round(cal2026, ts(2026, 1, 1), W) is None
    # inside round 23's weekend lead, before its first session: still round 22
    assert latest_round(cal2026, ts(2026, 12, 4, 0), W) == rnd(cal2026, 22)
    assert latest_round(cal2026, ts(2026, 12, 4, 9, 30), W) == rnd(cal2026, 23)


def test_no_calendar_means_off_season_and_no_boundaries():
    assert mode_at(None, 0, W) == Mode("off_season", None, None)
    assert next_mode_change(None, 0, W) is None
    assert next_live_window_start(None, 0, W) is None
    assert latest_round(None, 0, W) is None


def test_windows_are_configurable():
    calendar = parse_calendar(load("ergast-2026.json"))
    windows = Windows(race_weekend_lead_s=3600, race_weekend_tail_s=0, live_lead_s=0, live_tail_s=0)
    assert mode_at(calendar, ts(2026, 12, 4, 8, 29, 59), windows).name == "off_season"
    assert mode_at(calendar, ts(2026, 12, 4, 8, 30), windows).name == "race_weekend"
    assert mode_at(calendar, ts(2026, 12, 4, 9, 29, 59), windows).live is None
    assert mode_at(calendar, ts(2026, 12, 6, 16), windows).name == "off_season"
    with pytest.raises(ValueError):
        Windows(live_lead_s=-1)


# --------------------------------------------------------------------------- real-calendar quirks


def test_sprint_weekend_has_sprint_qualifying_and_sprint_live(cal2026):
    china = rnd(cal2026, 2)  # 2026 sprint rounds: 2, 4, 5, 9, 12, 17
    assert [(s.name, s.start_ts) for s in china.sessions] == [
        ("practice_1", ts(2026, 3, 13, 3, 30)), ("sprint_qualifying", ts(2026, 3, 13, 7, 30)),
        ("sprint", ts(2026, 3, 14, 3)), ("qualifying", ts(2026, 3, 14, 7)), ("race", ts(2026, 3, 15, 7))]
    assert mode_at(cal2026, ts(2026, 3, 13, 8), W).live == sess(china, "sprint_qualifying")
    assert mode_at(cal2026, ts(2026, 3, 14, 3, 30), W).live == sess(china, "sprint")


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


def test_las_vegas_saturday_night_race_is_live_at_0430z_sunday(cal2026):
    vegas = rnd(cal2026, 21)
    assert vegas.race.start_ts == ts(2026, 11, 22, 4)  # Saturday 20:00 PST
    mode = mode_at(cal2026, ts(2026, 11, 22, 4, 30), W)
    assert (mode.name, mode.race_round, mode.live) == ("live_session", vegas, vegas.race)
    # weekend spans the UTC date change: FP1 2026-11-20T00:30Z - 12h .. race end + 12h
    assert mode_at(cal2026, ts(2026, 11, 19, 12, 30), W).race_round == vegas
    assert mode_at(cal2026, ts(2026, 11, 22, 18, 59, 59), W).name == "race_weekend"
    assert mode_at(cal2026, ts(2026, 11, 22, 19), W).name == "off_season"


def test_session_without_time_lasts_whole_utc_day():
    bahrain = rnd(parse_calendar(load("ergast-2021.json")), 1)
    fp1 = sess(bahrain, "practice_1")
    assert (fp1.start_ts, fp1.end_ts, fp1.has_time) == (ts(2021, 3, 26), ts(2021, 3, 27), False)
    assert bahrain.race == Session(2021, 1, "race", ts(2021, 3, 28, 15), ts(2021, 3, 28, 18), True)


def test_untimed_sessions_give_whole_day_live_and_weekend_windows():
    calendar = parse_calendar(load("ergast-2021.json"))
    bahrain = rnd(calendar, 1)
    assert mode_at(calendar, ts(2021, 3, 25, 11, 59, 59), W).name == "off_season"
    assert mode_at(calendar, ts(2021, 3, 25, 12), W).name == "race_weekend"
    assert mode_at(calendar, ts(2021, 3, 25, 23, 54, 59), W).live is None
    # FP1 and FP2 both fill Friday (same start): the one later in the weekend order wins
    assert mode_at(calendar, ts(2021, 3, 25, 23, 55), W).live == sess(bahrain, "practice_2")
    assert mode_at(calendar, ts(2021, 3, 26, 12), W).live == sess(bahrain, "practice_2")
    assert mode_at(calendar, ts(2021, 3, 26, 23, 54, 59), W).live == sess(bahrain, "practice_2")
    # Saturday's whole-day sessions open their live window at 23:55Z Friday
    assert mode_at(calendar, ts(2021, 3, 26, 23, 55), W).live == sess(bahrain, "qualifying")


def test_2004_race_without_time_lasts_whole_utc_day():
    calendar = parse_calendar(load("ergast-2004.json"))
    assert calendar.season == 2004 and len(calendar.rounds) == 18
    melbourne = calendar.rounds[0]
    assert melbourne.sessions == (Session(2004, 1, "race", ts(2004, 3, 7), ts(2004, 3, 8), False),)
    assert mode_at(calendar, ts(2004, 3, 6, 11, 59, 59), W).name == "off_season"
    assert mode_at(calendar, ts(2004, 3, 6, 12), W).name == "race_weekend"
    assert mode_at(calendar, ts(2004, 3, 7, 23), W).live == melbourne.race
    assert mode_at(calendar, ts(2004, 3, 8, 12), W).name == "off_season"


def test_bundled_demo_calendar_matches_test_copy():
    import scheduler_api
    bundled = pathlib.Path(scheduler_api.__file__).parent / "data" / "ergast-2026.json"
    assert bundled.read_bytes() == (DATA / "ergast-2026.json").read_bytes()


# --------------------------------------------------------------------------- content API


def content_body() -> dict:
    """A content-API body for 2026 Abu Dhabi (round 23), real session times."""
    sessions = [("practice_1", ts(2026, 12, 4, 9, 30)), ("practice_2", ts(2026, 12, 4, 13)),
                ("practice_3", ts(2026, 12, 5, 10, 30)), ("qualifying", ts(2026, 12, 5, 14)),
                ("race", ts(2026, 12, 6, 13))]
    return {"success": True, "result": {"rounds": [{
        "round_id": 23, "season": 2026, "first_date": ts(2026, 12, 4, 9, 30), "end_date": ts(2026, 12, 6, 13),
        "sessions": [{"type": name, "date": start, "is_live": False, "status": "scheduled"}
                     for name, start in sessions]}]}}


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


def test_content_api_is_live_overrides_the_clock():
    body = content_body()
    body["result"]["rounds"][0]["sessions"][3]["is_live"] = True  # qualifying running late
    calendar = parse_calendar(body)
    mode = mode_at(calendar, ts(2027, 1, 1), W)
    assert (mode.name, mode.live.name, mode.race_round.round) == ("live_session", "qualifying", 23)
    assert mode.is_race_weekend
    assert latest_round(calendar, ts(2026, 1, 1), W).round == 23


def test_several_live_sessions_pick_the_one_started_last():
    body = content_body()
    for raw in body["result"]["rounds"][0]["sessions"][:2]:
        raw["is_live"] = True
    assert mode_at(parse_calendar(body), ts(2026, 12, 4, 9, 45), W).live.name == "practice_2"


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
                        "calendar entry skipped round=? reason=missing or invalid round number None"]


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
