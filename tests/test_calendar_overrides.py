"""CALENDAR_OVERRIDES: reading the corrections and applying them, on the real 2024 and 2026 calendars."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re

import pytest

from scheduler_api.calendar_overrides import (
    MAX_OVERRIDES,
    Overrides,
    apply,
    load_overrides,
    parse_corrected,
)
from scheduler_api.calendar_parse import parse_calendar
from scheduler_api.calendar_source import CalendarLoadError, CalendarSource
from scheduler_api.race_calendar import MODE_LIVE, MODE_OFF_SEASON, Windows, mode_at

from calendars import rnd, sess, ts
from conftest import DATA, load_calendar as load

README = pathlib.Path(__file__).parents[1] / "README.md"


def readme_overrides() -> list:
    """:returns: the JSON example of the README's "Race calendar overrides" section, as users copy it."""
    section = README.read_text("utf-8").split("## Race calendar overrides", 1)[1]
    return json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))


def write(tmp_path: pathlib.Path, entries: object, name: str = "overrides.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return str(path)


def messages(caplog, level: int = logging.INFO) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.levelno >= level]


# --------------------------------------------------------------------------- acceptance: Las Vegas 2024


def test_readme_las_vegas_override_makes_2024_race_live_at_0700z_and_without_it_off_season(tmp_path):
    at_ts = ts(2024, 11, 24, 7)
    plain, _ = CalendarSource("unused", str(DATA / "ergast-2024.json")).load(2024)
    assert mode_at(plain, at_ts, Windows()).name == MODE_OFF_SEASON
    overrides = load_overrides(write(tmp_path, readme_overrides()))
    corrected, _ = CalendarSource("unused", str(DATA / "ergast-2024.json"), overrides=overrides).load(2024)
    mode = mode_at(corrected, at_ts, Windows())
    assert mode.name == MODE_LIVE
    assert (mode.live.season, mode.live.round, mode.live.name) == (2024, 22, "race")
    assert (mode.live.start_ts, mode.live.end_ts) == (ts(2024, 11, 24, 6), ts(2024, 11, 24, 9))
    assert corrected.overrides_in_force == 5 and len(overrides) == 5


def test_readme_override_moves_every_las_vegas_session_24h_later_and_nothing_else(tmp_path, caplog):
    plain = parse_calendar(load("ergast-2024.json"))
    overrides = load_overrides(write(tmp_path, readme_overrides()))
    with caplog.at_level(logging.INFO):
        corrected = apply(plain, overrides)
    vegas, before = rnd(corrected, 22), rnd(plain, 22)
    assert [s.name for s in vegas.sessions] == [s.name for s in before.sessions]
    assert all(s.start_ts - b.start_ts == 86400 and s.end_ts - b.end_ts == 86400
               for s, b in zip(vegas.sessions, before.sessions))
    assert [r for r in corrected.rounds if r.round != 22] == [r for r in plain.rounds if r.round != 22]
    assert messages(caplog)[-1] == ("calendar override applied entry=5 season=2024 round=22 session=race "
                                    "start=2024-11-24T06:00:00Z was=2024-11-23T06:00:00Z")
    assert len([m for m in messages(caplog) if m.startswith("calendar override applied")]) == 5


def test_applied_overrides_are_logged_at_each_load_that_changes_the_calendar_only(tmp_path, caplog):
    calendar_path = tmp_path / "calendar.json"
    calendar_path.write_text(json.dumps(load("ergast-2024.json")))
    source = CalendarSource("unused", str(calendar_path), overrides=load_overrides(write(tmp_path, readme_overrides())))
    with caplog.at_level(logging.INFO, logger="scheduler_api.calendar_overrides"):
        first, _ = source.load(2024)
        again, _ = source.load(2024)  # identical bytes: nothing parsed, nothing logged
        assert again is first
        assert len([m for m in messages(caplog) if "applied" in m]) == 5
        calendar_path.write_text(json.dumps(load("ergast-2024.json"), indent=1))
        source.load(2024)
    assert len([m for m in messages(caplog) if "applied" in m]) == 10


# --------------------------------------------------------------------------- applying


def test_cancelled_round_is_removed_and_counted(tmp_path, caplog):
    plain = parse_calendar(load("ergast-2026.json"))
    with caplog.at_level(logging.INFO):
        corrected = apply(plain, load_overrides(write(tmp_path, [{"season": 2026, "round": 4, "cancelled": True}])))
    assert [r.round for r in corrected.rounds] == [1, 2, 3] + list(range(5, 24))
    assert corrected.overrides_in_force == 1 and corrected.season == 2026
    assert "calendar override applied entry=1 season=2026 round=4 cancelled" in messages(caplog)


def test_cancelled_session_is_removed_and_a_round_left_empty_is_removed(tmp_path):
    plain = parse_calendar(load("ergast-2026.json"))
    entries = [{"season": 2026, "round": 2, "session": "sprint", "canceled": True}]
    entries += [{"season": 2026, "round": 3, "session": s.name, "cancelled": True} for s in rnd(plain, 3).sessions]
    corrected = apply(plain, load_overrides(write(tmp_path, entries)))
    assert [s.name for s in rnd(corrected, 2).sessions] == ["practice_1", "sprint_qualifying", "qualifying", "race"]
    assert 3 not in [r.round for r in corrected.rounds]
    assert corrected.overrides_in_force == 6


def test_override_that_matches_nothing_is_warned_about_and_changes_nothing(tmp_path, caplog):
    plain = parse_calendar(load("ergast-2026.json"))
    entries = [{"season": 2026, "round": 1, "session": "sprint", "start": "2026-03-07T02:00:00Z"},
               {"season": 2026, "round": 30, "cancelled": True},
               {"season": 2025, "round": 1, "session": "race", "start": "2025-03-16T04:00:00Z"}]
    with caplog.at_level(logging.WARNING):
        corrected = apply(plain, load_overrides(write(tmp_path, entries)))
    assert corrected.rounds == plain.rounds and corrected.overrides_in_force == 0
    assert messages(caplog, logging.WARNING) == [
        "calendar override matches nothing entry=1 season=2026 round=1 session=sprint",
        "calendar override matches nothing entry=2 season=2026 round=30",
        "calendar override matches nothing entry=3 season=2025 round=1 session=race"]


def test_override_the_calendar_already_agrees_with_is_unneeded_and_not_counted(tmp_path, caplog):
    plain = parse_calendar(load("ergast-2026.json"))
    entries = [{"season": 2026, "round": 23, "session": "race", "start": "2026-12-06T13:00:00Z"}]
    with caplog.at_level(logging.INFO):
        corrected = apply(plain, load_overrides(write(tmp_path, entries)))
    assert corrected.rounds == plain.rounds and corrected.overrides_in_force == 0
    assert messages(caplog)[-1] == ("calendar override unneeded entry=1 season=2026 round=23 session=race "
                                    "start=2026-12-06T13:00:00Z: the calendar already says so")


def test_moved_untimed_session_gets_a_time_and_its_expected_duration(tmp_path):
    plain = parse_calendar(load("ergast-2021.json"))  # 2021 practice has a date and no time
    entries = [{"season": 2021, "round": 1, "session": "practice_1", "start": "2021-03-26T11:30:00Z"}]
    fp1 = sess(rnd(apply(plain, load_overrides(write(tmp_path, entries))), 1), "practice_1")
    assert (fp1.start_ts, fp1.end_ts, fp1.has_time) == (ts(2021, 3, 26, 11, 30), ts(2021, 3, 26, 12, 30), True)


def test_override_that_makes_a_round_implausible_is_warned_about_after_applying(tmp_path, caplog):
    entries = [{"season": 2026, "round": 23, "session": "race", "start": "2026-12-03T13:00:00Z"}]
    with caplog.at_level(logging.WARNING):
        corrected = parse_corrected(load("ergast-2026.json"), load_overrides(write(tmp_path, entries)))
    assert rnd(corrected, 23).race.start_ts == ts(2026, 12, 3, 13)
    assert messages(caplog, logging.WARNING) == [
        "calendar round implausible season=2026 round=23 reason=race starts before "
        "practice_1, practice_2, practice_3, qualifying"]


def test_no_overrides_leave_the_calendar_itself():
    plain = parse_calendar(load("ergast-2026.json"))
    assert apply(plain, Overrides()) is plain and load_overrides(None) == Overrides()


def test_overrides_cancelling_every_round_fail_the_load_and_keep_the_last_good_calendar(tmp_path):
    entries = [{"season": 2026, "round": n, "cancelled": True} for n in range(1, 24)]
    source = CalendarSource("unused", str(DATA / "ergast-2026.json"), overrides=load_overrides(write(tmp_path, entries)))
    with pytest.raises(CalendarLoadError, match="no rounds"):
        source.load(2026)


# --------------------------------------------------------------------------- bad entries and files

BAD_ENTRIES = [
    ("not_an_object", ["2024", 22], "not an object (list)"),
    ("unknown_key", {"season": 2024, "round": 22, "sesion": "race", "start": "2024-11-24T06:00:00Z"},
     "unknown key 'sesion'"),
    ("season_text", {"season": "x", "round": 22, "cancelled": True}, "invalid season 'x'"),
    ("season_1949", {"season": 1949, "round": 22, "cancelled": True}, "invalid season 1949"),
    ("season_bool", {"season": True, "round": 22, "cancelled": True}, "invalid season True"),
    ("round_100", {"season": 2024, "round": 100, "cancelled": True}, "invalid round number 100"),
    ("session_fp1", {"season": 2024, "round": 22, "session": "FP1", "start": "2024-11-22T02:30:00Z"},
     "unknown session 'FP1'"),
    ("start_without_zone", {"season": 2024, "round": 22, "session": "race", "start": "2024-11-24T06:00:00"},
     "start must be an ISO 8601 instant"),
    ("start_unix_seconds", {"season": 2024, "round": 22, "session": "race", "start": 1732428000},
     "start must be an ISO 8601 instant"),
    ("start_feb_30", {"season": 2024, "round": 22, "session": "race", "start": "2024-02-30T06:00:00Z"},
     "invalid date/time"),
    ("start_2101", {"season": 2024, "round": 22, "session": "race", "start": "2101-11-24T06:00:00Z"},
     "out of range"),
    ("start_year_10_400", {"season": 2024, "round": 22, "session": "race", "start": "1" + "0" * 400 + "-01-01T0Z"},
     "invalid date"),
    ("cancelled_false", {"season": 2024, "round": 22, "cancelled": False}, "cancelled must be true"),
    ("cancelled_text", {"season": 2024, "round": 22, "cancelled": "yes"}, "cancelled must be true"),
    ("start_and_cancelled", {"season": 2024, "round": 22, "session": "race", "start": "2024-11-24T06:00:00Z",
                             "cancelled": True}, "not both"),
    ("neither", {"season": 2024, "round": 22, "session": "race"}, "give session and start"),
    ("start_without_session", {"season": 2024, "round": 22, "start": "2024-11-24T06:00:00Z"},
     "give session and start"),
]


@pytest.mark.parametrize("entry,reason", [b[1:] for b in BAD_ENTRIES], ids=[b[0] for b in BAD_ENTRIES])
def test_bad_entry_is_skipped_with_a_warning_naming_it_and_the_others_apply(entry, reason, tmp_path, caplog):
    good = readme_overrides()
    with caplog.at_level(logging.WARNING):
        overrides = load_overrides(write(tmp_path, good[:2] + [entry] + good[2:]))
    assert [o.entry for o in overrides.entries] == [1, 2, 4, 5, 6]
    (warning,) = messages(caplog, logging.WARNING)
    assert warning.startswith("calendar override skipped entry=3 reason=") and reason in warning
    assert len(warning) < 400
    assert apply(parse_calendar(load("ergast-2024.json")), overrides).overrides_in_force == 5


def test_second_entry_for_the_same_target_is_skipped(tmp_path, caplog):
    entries = readme_overrides() + [{"season": 2024, "round": 22, "session": "race", "start": "2024-11-24T07:00:00Z"}]
    with caplog.at_level(logging.WARNING):
        overrides = load_overrides(write(tmp_path, entries))
    assert len(overrides) == 5 and overrides.entries[-1].start_ts == ts(2024, 11, 24, 6)
    assert messages(caplog, logging.WARNING) == [
        "calendar override skipped entry=6 reason=same target as entry 5 (season=2024 round=22 session=race)"]


def test_more_than_200_entries_use_the_first_200_and_warn_briefly(tmp_path, caplog):
    entries = [{"season": 2026, "round": r, "session": s, "cancelled": True}
               for r in range(100) for s in ("practice_1", "practice_2", "race")]
    with caplog.at_level(logging.WARNING):
        overrides = load_overrides(write(tmp_path, entries))
    assert len(overrides) == MAX_OVERRIDES
    assert messages(caplog, logging.WARNING)[-1] == "calendar warnings not shown count=80"


@pytest.mark.parametrize("make,reason", [
    (lambda d: str(d / "absent.json"), "No such file"),
    (lambda d: _bytes(d, b"\x00\xff garbage"), "codec can't decode"),
    (lambda d: _bytes(d, b"{not json"), "Expecting property name"),
    (lambda d: _bytes(d, b'{"season": 2024}'), "expected a JSON list of overrides, got dict"),
    (lambda d: _bytes(d, b"[" * 100_000), "nested too deeply"),
    (lambda d: _bytes(d, b" " * (1 << 20) + b"[]"), "larger than 1 MiB"),
    (lambda d: str(d), "not a regular file"),
    (lambda d: _fifo(d), "not a regular file"),
], ids=["missing", "not_utf8", "not_json", "not_a_list", "deep_nesting", "over_1_mib", "directory", "fifo"])
def test_unusable_overrides_file_is_one_warning_and_the_calendar_is_used_as_is(make, reason, tmp_path, caplog):
    path = make(tmp_path)
    with caplog.at_level(logging.WARNING):
        overrides = load_overrides(path)
    assert overrides == Overrides(path)
    (warning,) = messages(caplog, logging.WARNING)
    assert warning.startswith(f"calendar overrides unusable path={path} reason=") and reason in warning
    assert warning.endswith("; the calendar is used as it is")
    plain = parse_calendar(load("ergast-2024.json"))
    assert apply(plain, overrides) is plain


def _bytes(directory: pathlib.Path, raw: bytes) -> str:
    path = directory / "overrides.json"
    path.write_bytes(raw)
    return str(path)


def _fifo(directory: pathlib.Path) -> str:
    path = directory / "overrides.fifo"
    os.mkfifo(path)  # nobody writes to it: reading must not wait
    return str(path)


def test_overrides_file_with_bom_and_notes_loads(tmp_path):
    path = tmp_path / "overrides.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(readme_overrides()).encode())
    overrides = load_overrides(str(path))
    assert [o.target() for o in overrides.entries][-1] == "season=2024 round=22 session=race"
    assert overrides.entries[-1].start_ts == ts(2024, 11, 24, 6)


def test_plan_with_readme_override_reports_las_vegas_race_live_and_syncs_its_results(tmp_path):
    from scheduler_api.config import Config
    from scheduler_api.plan import build_plan

    config = Config(calendar_overrides=write(tmp_path, readme_overrides()))
    plan = build_plan(config, load("ergast-2024.json"), ts(2024, 11, 24, 7), 1)
    assert plan["live_session"]["round"] == 22 and plan["live_session"]["session"] == "race"
    assert any(s["kind"] == "results" and s["round"] == 22 for s in plan["next_syncs"])
    assert plan["overrides_in_force"] == 5
    assert build_plan(Config(), load("ergast-2024.json"), ts(2024, 11, 24, 7), 1)["mode"] == "off_season"
