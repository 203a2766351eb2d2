"""Tests for scheduler_api.race_calendar: race-weekend and live windows and the mode, on real calendars from tests/data/."""

from __future__ import annotations

import pathlib

import pytest

from scheduler_api.calendar_parse import parse_calendar
from scheduler_api.mode_tracker import ModeTracker
from scheduler_api.race_calendar import (
    SESSION_DURATION_S,
    SESSION_NAMES,
    Calendar,
    Mode,
    Round,
    Session,
    Windows,
    latest_round,
    mode_at,
    next_live_window_start,
    next_mode_change,
)

from calendars import content_body, rnd, sess, ts
from conftest import DATA
from conftest import load_calendar as load

W = Windows()




# --------------------------------------------------------------------------- constants


def test_session_names_and_expected_durations_follow_the_readme():  # README, What it does; a race is capped at 3 h
    assert SESSION_NAMES == ("practice_1", "practice_2", "practice_3", "sprint_qualifying",
                             "sprint", "qualifying", "race")
    assert dict(SESSION_DURATION_S) == {"practice_1": 3600, "practice_2": 3600, "practice_3": 3600,
                                        "sprint_qualifying": 3600, "sprint": 3600,
                                        "qualifying": 3600, "race": 10800}


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


def test_las_vegas_saturday_night_race_is_live_at_0430z_sunday(cal2026):
    vegas = rnd(cal2026, 21)
    assert vegas.race.start_ts == ts(2026, 11, 22, 4)  # Saturday 20:00 PST
    mode = mode_at(cal2026, ts(2026, 11, 22, 4, 30), W)
    assert (mode.name, mode.race_round, mode.live) == ("live_session", vegas, vegas.race)
    # weekend spans the UTC date change: FP1 2026-11-20T00:30Z - 12h .. race end + 12h
    assert mode_at(cal2026, ts(2026, 11, 19, 12, 30), W).race_round == vegas
    assert mode_at(cal2026, ts(2026, 11, 22, 18, 59, 59), W).name == "race_weekend"
    assert mode_at(cal2026, ts(2026, 11, 22, 19), W).name == "off_season"


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


def test_content_api_is_live_counts_until_three_hours_after_the_live_window():
    body = content_body()
    body["result"]["rounds"][0]["sessions"][3]["is_live"] = True  # qualifying (14:00Z) running late
    calendar = parse_calendar(body)
    mode = mode_at(calendar, ts(2026, 12, 5, 18, 29), W)  # expected end 15:00 + 30m tail + 3h = 18:30
    assert (mode.name, mode.live.name, mode.race_round.round) == ("live_session", "qualifying", 23)
    assert mode.is_race_weekend
    assert mode_at(calendar, ts(2026, 12, 5, 18, 30), W).live is None
    assert latest_round(calendar, ts(2026, 12, 5, 17), W).round == 23


def test_bounded_is_live_stale_flag_is_ignored_with_one_warning(caplog):
    body = content_body()
    body["result"]["rounds"][0]["sessions"][3]["is_live"] = True  # a flag left behind in the store
    calendar = parse_calendar(body)
    assert mode_at(calendar, ts(2027, 1, 1), W).name == "off_season"  # weeks later: not live
    tracker = ModeTracker(calendar, W, ts(2027, 1, 1))
    for day in range(2, 20):
        tracker.update(ts(2027, 1, day))
    tracker.set_calendar(parse_calendar(body))  # the hourly refresh brings the same flag again
    tracker.update(ts(2027, 1, 21))
    warnings = [r.getMessage() for r in caplog.records if "is_live flag ignored" in r.getMessage()]
    assert warnings == ["calendar is_live flag ignored season=2026 round=23 session=qualifying: "
                        "outside its session's live window + 3h"]


def test_several_live_sessions_pick_the_one_started_last():
    body = content_body()
    for raw in body["result"]["rounds"][0]["sessions"][:2]:
        raw["is_live"] = True
    # FP1 (09:30Z) still flagged, FP2 (13:00Z) live: both count, the later one wins
    assert mode_at(parse_calendar(body), ts(2026, 12, 4, 13, 10), W).live.name == "practice_2"




def _overlapping_calendar() -> Calendar:
    """Two rounds whose windows overlap: a long untimed round enclosing a short one, a flag on each."""
    def session(round_no: int, name: str, start: int, has_time: bool = True, is_live: bool = False) -> Session:
        end = start + (86400 if not has_time else SESSION_DURATION_S[name])
        return Session(2030, round_no, name, start, end, has_time, is_live)
    long_round = Round(2030, 1, "Long", (
        session(1, "practice_1", ts(2030, 3, 1), has_time=False),
        session(1, "qualifying", ts(2030, 3, 2), has_time=False, is_live=True),
        session(1, "race", ts(2030, 3, 4), has_time=False)))
    short_round = Round(2030, 2, "Short", (
        session(2, "qualifying", ts(2030, 3, 2, 12)),
        session(2, "race", ts(2030, 3, 3, 12), is_live=True)))
    return Calendar(2030, (long_round, short_round))


@pytest.mark.parametrize("windows", [W, Windows(settle_window_s=14400), Windows(86400, 3600, 0, 0, 172800)])
@pytest.mark.parametrize("source", ["ergast-2004.json", "ergast-2024.json", "ergast-2026.json", "overlap"])
def test_tracker_looks_at_nearby_rounds_only_and_agrees_with_a_full_scan(source, windows):
    # The tracker evaluates the mode over the rounds whose windows may hold the instant; at every
    # window edge and a second either side, that must be the answer a scan of the whole calendar gives.
    calendar = _overlapping_calendar() if source == "overlap" else parse_calendar(load(source))
    tracker = ModeTracker(calendar, windows, 0)
    instants = []
    edge = next_mode_change(calendar, 0, windows)
    while edge is not None:
        instants.extend((edge - 1, edge, edge + 1))
        edge = next_mode_change(calendar, edge, windows)
    assert len(instants) > 30
    for instant in instants:
        tracker.update(instant)
        assert tracker.mode == mode_at(calendar, instant, windows), instant
