"""State: recording syncs, frozen snapshots, restoring from a persisted copy and the save signal."""

from __future__ import annotations

import dataclasses

import pytest

from scheduler_api.state import HISTORY_LIMIT, CalendarRecord, Persisted, ScheduleView, State, SyncRecord

from conftest import ts

T0 = ts("2026-11-30T12:00:00Z")


def record(kind: str = "rounds", n: int = 0, outcome: str = "ok", **changes) -> SyncRecord:
    """:returns: a sync record finished ``n`` seconds after T0."""
    fields = dict(
        kind=kind, season=None if kind == "seasons" else 2026, round=23 if kind == "results" else None,
        session="race" if kind == "results" else None, trigger="schedule", outcome=outcome, attempt=1,
        http_status=200 if outcome == "ok" else 500, duration_ms=412, started_at=T0 + n, finished_at=T0 + n,
        error=None if outcome == "ok" else "HTTP 500: Failed to fetch rounds: boom",
    )
    fields.update(changes)
    return SyncRecord(**fields)


# -- recording ---------------------------------------------------------------------


def test_failure_counts_but_does_not_move_last_sync():
    state = State()
    state.record(record("rounds", 0), counts_as_last_sync=True)
    state.record(record("rounds", 30, outcome="failed"), counts_as_last_sync=False)
    state.record(record("rounds", 60, trigger="manual", season=2025), counts_as_last_sync=False)

    snap = state.snapshot()

    assert snap.last_syncs["rounds"] == T0
    assert snap.counters["failed"] == 1


# -- snapshots ---------------------------------------------------------------------------


def test_snapshot_is_a_frozen_copy():
    state = State()
    state.record(record("rounds", 0), counts_as_last_sync=True)
    snap = state.snapshot()

    state.record(record("rounds", 30), counts_as_last_sync=True)
    state.count("skipped")
    state.set_calendar(CalendarRecord({"MRData": {}}, "file", T0))
    state.publish_schedule(ScheduleView(mode="live_session", live_session="race"))

    assert snap.last_syncs["rounds"] == T0
    assert len(snap.history) == 1
    assert isinstance(snap.history, tuple)
    assert snap.counters["skipped"] == 0
    assert snap.calendar is None
    assert snap.schedule.mode == "off_season"
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.last_syncs = {}  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.history[0].outcome = "failed"  # type: ignore[misc]


def test_changing_a_snapshot_dict_does_not_change_the_state():
    state = State()
    state.record(record("rounds", 0), counts_as_last_sync=True)

    snap = state.snapshot()
    snap.last_syncs["rounds"] = 1  # type: ignore[index]
    snap.counters["failed"] = 99  # type: ignore[index]

    again = state.snapshot()
    assert again.last_syncs["rounds"] == T0
    assert again.counters["failed"] == 0


def test_snapshot_without_history_is_empty():
    state = State()
    state.record(record(), counts_as_last_sync=True)

    assert state.snapshot(history=False).history == ()
    assert len(state.snapshot().history) == 1


# -- restoring a persisted copy --------------------------------------------------------


def test_restored_state_takes_known_kinds_and_counters_and_the_newest_history():
    history = tuple(record("rounds", n, outcome="failed" if n == 0 else "ok") for n in range(HISTORY_LIMIT + 1))
    restored = Persisted(
        last_syncs={"rounds": T0, "laps": T0}, calendar=CalendarRecord({"MRData": {}}, "file", T0),
        history=history, counters={"failed": 2, "bogus": 9},
    )

    snap = State(restored).snapshot()

    assert snap.last_syncs == {"seasons": None, "rounds": T0, "results": None, "standings": None}
    assert snap.counters == {"failed": 2, "retried": 0, "coalesced": 0, "skipped": 0, "caught_up": 0}
    assert snap.calendar == CalendarRecord({"MRData": {}}, "file", T0)
    assert snap.history == history[1:]
    assert snap.last_failures["rounds"] == history[0]  # seen while restoring, though no longer kept


def test_revision_moves_with_each_persisted_change_only():
    state = State()
    revisions = [state.to_persist()[0]]
    state.record(record(), counts_as_last_sync=True)
    state.count("skipped")
    state.forget_last_sync("rounds")
    state.set_calendar(CalendarRecord({"MRData": {}}, "file", T0))
    revisions.append(state.to_persist()[0])
    state.publish_schedule(ScheduleView(mode="race_weekend"))  # derived, not persisted

    revision, persisted = state.to_persist()

    assert revisions == [0, 4] and revision == 4
    assert persisted.last_syncs["rounds"] is None
    assert persisted.counters["skipped"] == 1
    assert len(persisted.history) == 1


# -- the save signal -------------------------------------------------------------------


def test_save_soon_is_seen_once_by_the_waiting_saver():
    state = State()

    assert state.wait_for_save(timeout_s=0) is False
    state.save_soon()
    state.save_soon()  # two asks before the saver looks cost one save
    assert state.wait_for_save(timeout_s=0) is True
    assert state.wait_for_save(timeout_s=0) is False
