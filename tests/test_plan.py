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


# --------------------------------------------------------------------------- phases and the short plan

import dataclasses
import json
import random

import pytest

from scheduler_api.__main__ import main
from scheduler_api.config import KINDS, OFF
from scheduler_api.plan import PER_KIND, render_json
from scheduler_api.scheduler import Scheduler
from scheduler_api.state import CalendarRecord, State
from scheduler_api.workers import InlineExecutor

ABU_DHABI_SATURDAY = "2026-12-05T12:00:00Z"  # race weekend of round 23, before qualifying goes live


def _full_simulation(config, body, at_ts, hours):
    """The reference: one scheduler with every kind, ticked at every due time of the window, nothing skipped."""
    from scheduler_api.plan import _RecordingClient, SimClock

    clock = SimClock(float(at_ts))
    state = State()
    state.set_calendar(CalendarRecord(body, "test", at_ts))
    client = _RecordingClient(clock)
    syncs = []
    client.sync = lambda key, session_name=None, before_send=None: (
        syncs.append((clock.now, key.kind, key.season, key.round)) or _ok())
    scheduler = Scheduler(config, state, clock, InlineExecutor(client), lambda: client, random.Random(0))
    scheduler.start()
    end_ts = at_ts + hours * 3600
    while clock.now <= end_ts:
        next_ts = scheduler.tick(clock.now)
        if next_ts is None or next_ts > end_ts:
            break
        clock.now = max(next_ts, clock.now + 0.001)
    return [(int(s[0]),) + s[1:] for s in sorted(syncs, key=lambda s: (s[0], KINDS.index(s[1])))]


def _ok():
    from scheduler_api.fetcher import Outcome

    return Outcome("ok", 200, None, 0)


@pytest.mark.parametrize("at, hours, config", [
    (ABU_DHABI_SATURDAY, 48, Config()),                                   # race weekend: qualifying, race, tail
    ("2026-03-12T18:00:00Z", 72, Config()),                               # Chinese GP sprint weekend
    ("2026-11-30T12:00:00Z", 48, Config()),                               # off-season
    ("2026-12-06T12:00:00Z", 6, Config(rounds_interval_race_weekend_s=0.5,  # fractional and odd intervals
                                       standings_interval_race_weekend_s=7.0, results_interval_live_s=13.0)),
])
def test_plan_skipping_ahead_lists_and_counts_what_a_full_simulation_does(at, hours, config):
    body = load_calendar("ergast-2026.json")
    full = _full_simulation(config, body, ts(at), hours)
    plan = build_plan(config, body, ts(at), hours, limit=250)
    assert plan["next_syncs_total"] == len(full)
    listed = [(s["due_at"], s["kind"], s["season"], s["round"]) for s in plan["next_syncs"]]
    assert listed == full[:250]
    for kind in KINDS:
        dues = [s[0] for s in full if s[1] == kind]
        assert plan["per_kind"][kind] == {"total": len(dues), "first": dues[:PER_KIND]}


def test_plan_inside_race_weekend_lists_the_first_100_of_5999_syncs_in_time_order():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY))
    assert plan["next_syncs_total"] == 5999
    assert len(plan["next_syncs"]) == 100
    dues = [s["due_at"] for s in plan["next_syncs"]]
    assert dues == sorted(dues) and dues[0] == ts(ABU_DHABI_SATURDAY)
    assert set(plan["next_syncs"][0]) == {"kind", "due_at", "season", "round"}
    assert sum(entry["total"] for entry in plan["per_kind"].values()) == 5999


def test_plan_limit_zero_lists_nothing_and_still_counts():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY), limit=0)
    assert plan["next_syncs"] == [] and plan["next_syncs_total"] == 5999


def test_plan_negative_limit_is_refused():
    with pytest.raises(ValueError, match="limit"):
        build_plan(Config(), None, ts(ABU_DHABI_SATURDAY), limit=-1)


def test_plan_phases_of_the_abu_dhabi_weekend():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY))
    spans = [(p["from"], p["to"], p["mode"], p["round"], p["session"], p["current_intervals"]["results"])
             for p in plan["phases"]]
    assert spans[:2] == [
        (ts(ABU_DHABI_SATURDAY), ts("2026-12-05T13:55:00Z"), "race_weekend", 23, None, "paused"),
        # qualifying 14:00, expected end 15:00: live from 5 min before until 30 min after
        (ts("2026-12-05T13:55:00Z"), ts("2026-12-05T15:30:00Z"), "live_session", 23, "qualifying", "30s"),
    ]
    race = next(p for p in plan["phases"] if p["session"] == "race")
    assert (race["from"], race["to"]) == (ts("2026-12-06T12:55:00Z"), ts("2026-12-06T16:30:00Z"))
    assert race["current_intervals"] == {"seasons": "6h", "rounds": "30s", "results": "30s", "standings": "5m"}
    last = plan["phases"][-1]
    assert last["to"] == ts(ABU_DHABI_SATURDAY) + 48 * 3600 and last["mode"] == "off_season"
    assert all(a["to"] == b["from"] for a, b in zip(plan["phases"], plan["phases"][1:]))
    assert set(plan["phases"][0]) == {"from", "to", "mode", "round", "session", "current_intervals"}


def test_plan_boundary_that_changes_nothing_starts_no_phase():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts("2026-11-30T12:00:00Z"))
    assert [p["mode"] for p in plan["phases"]] == ["off_season"]


def test_plan_kind_turned_off_has_no_syncs_and_reads_paused():
    paths = {kind: OFF if kind == "standings" else path for kind, path in Config().fetch_paths.items()}
    config = dataclasses.replace(Config(), fetch_paths=paths)
    plan = build_plan(config, load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY))
    assert plan["per_kind"]["standings"] == {"total": 0, "first": []}
    assert {s["kind"] for s in plan["next_syncs"]} == {"seasons", "rounds"}
    assert all(p["current_intervals"]["standings"] == "paused" for p in plan["phases"])


def test_plan_every_kind_turned_off_still_shows_phases():
    config = dataclasses.replace(Config(), fetch_paths=dict.fromkeys(KINDS, OFF))
    plan = build_plan(config, load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY))
    assert plan["next_syncs_total"] == 0 and plan["next_syncs"] == []
    assert plan["phases"][1]["session"] == "qualifying"


def test_plan_text_inside_race_weekend_is_short_and_shows_first_ten_and_how_many_follow():
    text = render_text(build_plan(Config(), load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY)))
    lines = text.splitlines()
    assert len(lines) < 60
    assert "next syncs: 5999 in the window" in lines
    assert "... and 4806 more" in text  # rounds: 4816 in the window (the grid starts 1 s late: stagger), 10 shown
    assert any(line.startswith("2026-12-06T12:55:00Z .. 2026-12-06T16:30:00Z  live_session") for line in lines)


def test_plan_text_a_whole_year_stays_short():
    text = render_text(build_plan(Config(), load_calendar("ergast-2026.json"), ts("2026-01-01T00:00:00Z"), 24 * 365))
    kinds_part = text.split("next syncs:")[1].splitlines()
    assert len(kinds_part) <= 1 + 4 * 3


def test_plan_json_command_keeps_the_old_keys_and_adds_phases(capsys):
    assert main(["plan", "--at", ABU_DHABI_SATURDAY, "--calendar", "ergast-2026.json", "--json", "--limit", "7"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"at", "is_race_weekend", "live_session", "current_intervals", "next_syncs",
            "phases", "next_syncs_total"} <= set(plan)
    assert len(plan["next_syncs"]) == 7 and plan["next_syncs_total"] == 5999


def test_plan_negative_limit_exits_2_with_one_line(capsys):
    assert main(["plan", "--at", ABU_DHABI_SATURDAY, "--json", "--limit", "-1"]) == 2
    assert capsys.readouterr().err == "scheduler-api: --limit must be 0 or more\n"


@pytest.mark.parametrize("limit", ["x", "1.5", ""])
def test_plan_limit_not_a_whole_number_exits_2(limit, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--at", ABU_DHABI_SATURDAY, "--json", "--limit", limit])
    assert exc.value.code == 2 and "--limit" in capsys.readouterr().err


def test_plan_json_is_one_object():
    plan = build_plan(Config(), None, ts(ABU_DHABI_SATURDAY), 1)
    assert json.loads(render_json(plan))["calendar_loaded"] is False


def test_plan_after_abu_dhabi_race_results_settle_every_10m_until_6h_after_expected_end():
    plan = build_plan(Config(), load_calendar("ergast-2026.json"), ts("2026-12-06T18:00:00Z"))
    assert plan["current_intervals"]["results"] == "10m"
    settle = plan["phases"][0]
    # race 13:00, expected end 16:00; live tail until 16:30; settles until 16:00 + 6 h
    assert settle["to"] == ts("2026-12-06T22:00:00Z")
    assert settle["current_intervals"]["results"] == "10m" and settle["round"] == 23


@pytest.mark.parametrize("at", ["99999999999999", "4133980800", "2101-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
                                "9" * 5000])
def test_plan_instant_outside_1970_to_2100_exits_2_with_one_line(at, capsys):
    assert main(["plan", "--at", at]) == 2
    assert "from 1970 to 2100" in capsys.readouterr().err


def test_plan_instant_at_the_edges_is_read():
    from scheduler_api.plan import parse_instant

    assert parse_instant("0") == 0
    assert parse_instant("2100-12-31T23:59:59Z") == 4133980799


def test_plan_applies_calendar_overrides_and_says_how_many_are_in_force(tmp_path):
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps([{"season": 2026, "round": 23, "cancelled": True}]))
    config = Config(calendar_overrides=str(overrides))
    plan = build_plan(config, load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY))
    assert plan["overrides_in_force"] == 1
    assert plan["mode"] == "off_season" and [p["mode"] for p in plan["phases"]] == ["off_season"]
    assert "overrides in force: 1" in render_text(plan).splitlines()[0]
    assert build_plan(Config(), load_calendar("ergast-2026.json"), ts(ABU_DHABI_SATURDAY))["overrides_in_force"] == 0


def test_plan_with_unusable_overrides_file_warns_and_uses_the_calendar_as_it_is(tmp_path, caplog):
    overrides = tmp_path / "overrides.json"
    overrides.write_text("not json")
    plan = build_plan(Config(calendar_overrides=str(overrides)), load_calendar("ergast-2026.json"),
                      ts(ABU_DHABI_SATURDAY))
    assert plan["overrides_in_force"] == 0 and plan["mode"] == "race_weekend"
    assert "calendar overrides unusable" in caplog.text
