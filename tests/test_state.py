"""State: frozen snapshots, atomic persistence, corrupt files and the owner lock (SPEC.md §7, §8)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import pytest

import scheduler_api.state as state_module
from scheduler_api.state import (
    HISTORY_LIMIT,
    CalendarRecord,
    ScheduleView,
    State,
    StateLockedError,
    SyncRecord,
)

from conftest import load_calendar, ts

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


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "state.json")


def fresh(path: str, clock) -> State:
    state = State(path, clock)
    state.load()
    return state


# -- persistence -------------------------------------------------------------------


def test_save_round_trips_last_syncs_calendar_history_and_counters(path, clock):
    calendar = load_calendar("ergast-2026.json")
    state = fresh(path, clock)
    state.record(record("seasons", 0), counts_as_last_sync=True)
    state.record(record("results", 5), counts_as_last_sync=True)
    state.record(record("rounds", 10, outcome="failed"), counts_as_last_sync=False)
    state.record(record("standings", 20, trigger="manual"), counts_as_last_sync=False)
    state.set_calendar(CalendarRecord(calendar, "https://api.jolpi.ca/ergast/f1/2026.json", T0 - 60))
    state.count("retried", 2)
    state.count("coalesced")
    state.save()

    loaded = fresh(path, clock).snapshot()
    saved = state.snapshot()

    assert loaded.last_syncs == {"seasons": T0, "rounds": None, "results": T0 + 5, "standings": None}
    assert loaded.calendar == CalendarRecord(calendar, "https://api.jolpi.ca/ergast/f1/2026.json", T0 - 60)
    assert loaded.history == saved.history
    assert [r.kind for r in loaded.history] == ["seasons", "results", "rounds", "standings"]
    assert loaded.history[2].error == "HTTP 500: Failed to fetch rounds: boom"
    assert loaded.history[1].session == "race"
    assert loaded.counters == {"failed": 1, "retried": 2, "coalesced": 1, "skipped": 0}


def test_saved_file_is_json_with_version_and_parameters(path, clock):
    state = fresh(path, clock)
    state.record(record("results", 0), counts_as_last_sync=True)
    state.save()

    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)

    assert data["version"] == 1
    assert data["last_syncs"] == {"seasons": None, "rounds": None, "results": T0, "standings": None}
    assert data["calendar"] is None
    assert data["history"] == [{
        "kind": "results", "parameters": {"season": 2026, "round": 23, "session": "race"},
        "trigger": "schedule", "outcome": "ok", "attempt": 1, "http_status": 200, "duration_ms": 412,
        "started_at": T0, "finished_at": T0, "error": None,
    }]


def test_failure_counts_but_does_not_move_last_sync(clock):
    state = State(None, clock)
    state.record(record("rounds", 0), counts_as_last_sync=True)
    state.record(record("rounds", 30, outcome="failed"), counts_as_last_sync=False)
    state.record(record("rounds", 60, trigger="manual", season=2025), counts_as_last_sync=False)

    snap = state.snapshot()

    assert snap.last_syncs["rounds"] == T0
    assert snap.counters["failed"] == 1


def test_history_is_capped_at_500_newest(path, clock):
    state = fresh(path, clock)
    for n in range(HISTORY_LIMIT + 20):
        state.record(record("rounds", n), counts_as_last_sync=True)
    state.save()

    in_memory = state.snapshot().history
    reloaded = fresh(path, clock).snapshot().history
    with open(path, encoding="utf-8") as handle:
        on_disk = json.load(handle)["history"]

    assert HISTORY_LIMIT == 500
    assert len(in_memory) == len(reloaded) == len(on_disk) == 500
    assert in_memory[0].finished_at == T0 + 20
    assert in_memory[-1].finished_at == T0 + 519
    assert reloaded == in_memory


def test_history_of_an_oversized_file_is_capped_on_load(path, clock):
    rec = record("rounds", 0).to_dict()
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"version": 1, "last_syncs": {}, "history": [dict(rec, attempt=n + 1) for n in range(600)]},
                  handle)

    history = fresh(path, clock).snapshot().history

    assert len(history) == 500
    assert (history[0].attempt, history[-1].attempt) == (101, 600)


def test_saved_file_always_parses_and_leaves_no_temporary_files(path, clock, tmp_path):
    state = fresh(path, clock)
    for n in range(30):
        state.record(record("standings", n), counts_as_last_sync=True)
        state.save()
        with open(path, encoding="utf-8") as handle:
            assert len(json.load(handle)["history"]) == n + 1

    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_save_without_changes_does_not_write(path, clock, monkeypatch):
    state = fresh(path, clock)
    state.record(record(), counts_as_last_sync=True)
    state.save()
    writes = []
    monkeypatch.setattr(state_module, "write_atomically", lambda *args: writes.append(args))

    state.save()
    state.publish_schedule(ScheduleView(mode="race_weekend"))  # derived, not persisted
    state.save()

    assert writes == []


def test_failed_save_keeps_the_old_file_and_is_logged(path, clock, tmp_path, monkeypatch, caplog):
    state = fresh(path, clock)
    state.record(record("rounds", 0), counts_as_last_sync=True)
    state.save()
    with open(path, "rb") as handle:
        before = handle.read()
    state.record(record("rounds", 30), counts_as_last_sync=True)

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_module.os, "fsync", no_space)
    with caplog.at_level(logging.ERROR, logger="scheduler_api.state"):
        state.save()  # never raises: a full disk must not stop syncing
    monkeypatch.undo()

    with open(path, "rb") as handle:
        assert handle.read() == before
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    assert "state save failed" in caplog.text
    assert "No space left on device" in caplog.text
    state.save()  # the change is still pending and is written once the disk recovers
    assert fresh(path, clock).snapshot().last_syncs["rounds"] == T0 + 30


def test_older_concurrent_save_never_overwrites_a_newer_one(path, clock, monkeypatch):
    """Save A serialises version 1; before it writes, save B records more and writes version 2."""
    state = fresh(path, clock)
    state.record(record("rounds", 0), counts_as_last_sync=True)
    real_encode = state._encode
    interleaved = []

    def interleaving_encode(last_syncs, calendar, history, counters):
        payload = real_encode(last_syncs, calendar, history, counters)
        if not interleaved:
            interleaved.append(len(history))
            state.record(record("rounds", 30), counts_as_last_sync=True)
            state.save()  # B: newer, runs to completion in between
        return payload

    monkeypatch.setattr(state, "_encode", interleaving_encode)
    state.save()  # A: older
    monkeypatch.undo()

    assert interleaved == [1]
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    assert len(data["history"]) == 2
    assert data["last_syncs"]["rounds"] == T0 + 30


def test_in_memory_state_never_touches_disk(clock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = State(None, clock)
    state.load()
    state.acquire_lock()
    state.record(record(), counts_as_last_sync=True)
    state.save()
    state.release_lock()

    assert os.listdir(tmp_path) == []


# -- unreadable files ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2, 3]", b'"state"', b"null", b'{"version": 1}', b'{"last_syncs": [1]}',
     b"\xff\xfe\x00garbage", b'{"last_syncs": {"rounds": 1796040000}, "hist'],
    ids=["broken-json", "empty", "list", "string", "null", "no-last-syncs", "last-syncs-not-object",
         "not-utf8", "truncated"],
)
def test_unreadable_state_file_is_moved_aside_and_state_starts_fresh(path, clock, caplog, content):
    with open(path, "wb") as handle:
        handle.write(content)

    with caplog.at_level(logging.WARNING, logger="scheduler_api.state"):
        state = fresh(path, clock)

    aside = f"{path}.corrupt-{T0}"
    assert not os.path.exists(path)
    with open(aside, "rb") as handle:
        assert handle.read() == content
    assert f"moved aside to {aside}" in caplog.text
    assert "starting fresh" in caplog.text
    snap = state.snapshot()
    assert snap.last_syncs == {"seasons": None, "rounds": None, "results": None, "standings": None}
    assert snap.history == ()
    assert snap.calendar is None
    assert state.path == path  # it keeps saving to the usual place


def test_moved_aside_file_is_never_overwritten_by_the_next_save(path, clock):
    with open(path, "wb") as handle:
        handle.write(b"{corrupt")
    state = fresh(path, clock)
    state.record(record(), counts_as_last_sync=True)
    state.save()

    with open(f"{path}.corrupt-{T0}", "rb") as handle:
        assert handle.read() == b"{corrupt"
    assert fresh(path, clock).snapshot().last_syncs["rounds"] == T0


def test_second_corrupt_file_in_the_same_second_keeps_the_first(path, clock):
    for content in (b"first", b"second"):
        with open(path, "wb") as handle:
            handle.write(content)
        fresh(path, clock)

    moved = sorted(name for name in os.listdir(os.path.dirname(path)) if ".corrupt-" in name)
    contents = set()
    for name in moved:
        with open(os.path.join(os.path.dirname(path), name), "rb") as handle:
            contents.add(handle.read())
    assert contents == {b"first", b"second"}
    assert moved == [f"state.json.corrupt-{T0}", f"state.json.corrupt-{T0}.1"]


def test_missing_state_file_starts_fresh_quietly(path, clock, caplog):
    with caplog.at_level(logging.WARNING):
        state = fresh(path, clock)

    assert caplog.records == []
    assert state.snapshot().last_syncs["rounds"] is None
    assert not os.path.exists(path)


def test_invalid_history_records_are_dropped_one_by_one(path, clock, caplog):
    good = record("rounds", 0).to_dict()
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({
            "version": 1,
            "last_syncs": {"seasons": T0, "rounds": "yesterday", "results": True, "standings": 12.5},
            "history": [good, {"kind": "rounds"}, "junk", dict(good, attempt="one"), dict(good, finished_at=T0 + 9)],
            "counters": {"failed": 3, "retried": "x"},
        }, handle)

    with caplog.at_level(logging.WARNING, logger="scheduler_api.state"):
        snap = fresh(path, clock).snapshot()

    assert [r.finished_at for r in snap.history] == [T0, T0 + 9]
    assert snap.last_syncs == {"seasons": T0, "rounds": None, "results": None, "standings": None}
    assert snap.counters == {"failed": 3, "retried": 0, "coalesced": 0, "skipped": 0}
    assert caplog.text.count("state history record dropped") == 3
    assert os.path.exists(path)  # a partly bad file is not corrupt


# -- one owner per state file ---------------------------------------------------------


def test_second_state_on_the_same_path_is_refused_with_a_clear_message(path, clock):
    first = State(path, clock)
    first.acquire_lock()
    second = State(path, clock)

    with pytest.raises(StateLockedError) as raised:
        second.acquire_lock()

    assert str(raised.value) == (
        f"state file {path} is in use by another scheduler_api process "
        f"(lock {path}.lock held); refusing to start"
    )
    first.release_lock()


def test_lock_is_free_again_after_release(path, clock):
    first = State(path, clock)
    first.acquire_lock()
    first.release_lock()
    second = State(path, clock)

    second.acquire_lock()  # does not raise

    with pytest.raises(StateLockedError):
        State(path, clock).acquire_lock()
    second.release_lock()
    assert os.path.exists(path + ".lock")


def test_lock_on_another_path_is_independent(tmp_path, clock):
    first = State(str(tmp_path / "a.json"), clock)
    second = State(str(tmp_path / "b.json"), clock)

    first.acquire_lock()
    second.acquire_lock()

    first.release_lock()
    second.release_lock()


# -- snapshots ---------------------------------------------------------------------------


def test_snapshot_is_a_frozen_copy(clock):
    state = State(None, clock)
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


def test_changing_a_snapshot_dict_does_not_change_the_state(clock):
    state = State(None, clock)
    state.record(record("rounds", 0), counts_as_last_sync=True)

    snap = state.snapshot()
    snap.last_syncs["rounds"] = 1  # type: ignore[index]
    snap.counters["failed"] = 99  # type: ignore[index]

    again = state.snapshot()
    assert again.last_syncs["rounds"] == T0
    assert again.counters["failed"] == 0


def test_snapshot_without_history_is_empty(clock):
    state = State(None, clock)
    state.record(record(), counts_as_last_sync=True)

    assert state.snapshot(history=False).history == ()
    assert len(state.snapshot().history) == 1


def test_persister_thread_writes_changes_asked_for_by_save_soon(tmp_path):
    import threading as _threading

    from scheduler_api.clock import SystemClock

    path = tmp_path / "state.json"
    state = State(str(path), SystemClock())
    thread = _threading.Thread(target=state.run_persister)
    thread.start()
    try:
        state.count("failed")
        state.save_soon()  # returns at once; the persister writes
    finally:
        state.stop_persister()
        thread.join(5)
    assert not thread.is_alive()
    assert json.loads(path.read_text())["counters"]["failed"] == 1


def test_save_soon_without_persister_saves_at_once(tmp_path):
    from scheduler_api.clock import SystemClock

    path = tmp_path / "state.json"
    state = State(str(path), SystemClock())
    state.count("retried")
    state.save_soon()
    assert json.loads(path.read_text())["counters"]["retried"] == 1


def test_last_failure_of_each_kind_is_kept_and_survives_a_restart(path, clock):
    state = fresh(path, clock)
    state.record(record("rounds", 1, "failed"), counts_as_last_sync=True)
    state.record(record("rounds", 2), counts_as_last_sync=True)  # a later success does not clear it
    state.record(record("standings", 3, "timeout", error="no answer: read timeout after 300s"),
                 counts_as_last_sync=True)
    state.save()
    for snap in (state.snapshot(history=False), fresh(path, clock).snapshot(history=False)):
        assert snap.last_failures["rounds"] == record("rounds", 1, "failed")
        assert snap.last_failures["standings"].error == "no answer: read timeout after 300s"
        assert snap.last_failures["seasons"] is None and snap.last_failures["results"] is None
