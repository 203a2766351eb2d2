"""``scheduler-api plan``, the dry run of the real scheduler, on the real 2026 calendar."""

from __future__ import annotations

from scheduler_api.config import Config
from scheduler_api.plan import build_plan, render_text

from conftest import load_calendar, ts


def test_plan_during_abu_dhabi_race_reports_live_race_and_30s_intervals():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts("2026-12-06T13:30:00Z"), 2)
    assert plan["is_race_weekend"] is True
    assert plan["live_session"] == {"season": 2026, "round": 23, "session": "race",
                                    "starts_at": ts("2026-12-06T13:00:00Z"), "ends_at": ts("2026-12-06T16:00:00Z")}
    assert plan["current_intervals"] == {"rounds": "30s", "results": "30s", "standings": "5m"}
    first = {s["kind"]: s for s in reversed(plan["next_syncs"])}
    # catch-up at start, staggered: results is kind number 2, so it starts 2 x STAGGER (1 s) after the instant
    assert first["results"] == {"kind": "results", "due_at": ts("2026-12-06T13:30:02Z"), "season": 2026, "round": 23}
    dues = [s["due_at"] for s in plan["next_syncs"]]
    assert dues == sorted(dues)
    results = [s["due_at"] for s in plan["next_syncs"] if s["kind"] == "results"]
    assert results[-1] < ts("2026-12-06T16:30:00Z")  # paused after the live tail


def test_plan_off_season_names_abu_dhabi_weekend_as_next_mode_change():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts("2026-11-30T12:00:00Z"))
    assert plan["is_race_weekend"] is False and plan["live_session"] is None
    assert plan["current_intervals"] == {"rounds": "30m", "results": "paused", "standings": "1h"}
    assert plan["next_mode_change"] == ts("2026-12-03T21:30:00Z")
    text = render_text(plan)
    assert "next mode change: 2026-12-03T21:30:00Z" in text
    rounds = [s["due_at"] for s in plan["next_syncs"] if s["kind"] == "rounds"]
    assert rounds[:3] == [ts("2026-11-30T12:00:01Z"), ts("2026-11-30T12:30:01Z"), ts("2026-11-30T13:00:01Z")]  # STAGGER


def test_plan_without_calendar_is_off_season():
    plan = build_plan(Config(), None, ts("2026-06-07T13:30:00Z"), 1)
    assert plan["mode"] == "off_season" and plan["calendar_loaded"] is False
