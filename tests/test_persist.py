"""The state file and the persister: atomic writes, corrupt files, the owner lock, the save thread."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading

import pytest

import scheduler_api.persist as persist_module
from scheduler_api.persist import Persister, StateFile, StateFileError, StateLockedError
from scheduler_api.state import HISTORY_LIMIT, CalendarRecord, ScheduleView, State

from conftest import load_calendar
from test_state import T0, record


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "state.json")


def fresh(path: str, clock) -> tuple[State, Persister]:
    """:returns: the state a daemon starts with from ``path``, and a persister saving it there."""
    state_file = StateFile(path, clock)
    state = State(state_file.load())
    return state, Persister(state, state_file)


# -- persistence -------------------------------------------------------------------


def test_save_round_trips_last_syncs_calendar_history_and_counters(path, clock):
    calendar = load_calendar("ergast-2026.json")
    state, persister = fresh(path, clock)
    state.record(record("seasons", 0), counts_as_last_sync=True)
    state.record(record("results", 5), counts_as_last_sync=True)
    state.record(record("rounds", 10, outcome="failed"), counts_as_last_sync=False)
    state.record(record("standings", 20, trigger="manual"), counts_as_last_sync=False)
    state.set_calendar(CalendarRecord(calendar, "https://api.jolpi.ca/ergast/f1/2026.json", T0 - 60))
    state.count("retried", 2)
    state.count("coalesced")
    persister.save()

    loaded = fresh(path, clock)[0].snapshot()
    saved = state.snapshot()

    assert loaded.last_syncs == {"seasons": T0, "rounds": None, "results": T0 + 5, "standings": None}
    assert loaded.calendar == CalendarRecord(calendar, "https://api.jolpi.ca/ergast/f1/2026.json", T0 - 60)
    assert loaded.history == saved.history
    assert [r.kind for r in loaded.history] == ["seasons", "results", "rounds", "standings"]
    assert loaded.history[2].error == "HTTP 500: Failed to fetch rounds: boom"
    assert loaded.history[1].session == "race"
    assert loaded.counters == {"failed": 1, "retried": 2, "coalesced": 1, "skipped": 0, "caught_up": 0}


def test_saved_file_is_json_with_version_and_parameters(path, clock):
    state, persister = fresh(path, clock)
    state.record(record("results", 0), counts_as_last_sync=True)
    persister.save()

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


def test_history_is_capped_at_500_newest(path, clock):
    state, persister = fresh(path, clock)
    for n in range(HISTORY_LIMIT + 20):
        state.record(record("rounds", n), counts_as_last_sync=True)
    persister.save()

    in_memory = state.snapshot().history
    reloaded = fresh(path, clock)[0].snapshot().history
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

    history = fresh(path, clock)[0].snapshot().history

    assert len(history) == 500
    assert (history[0].attempt, history[-1].attempt) == (101, 600)


def test_saved_file_always_parses_and_leaves_no_temporary_files(path, clock, tmp_path):
    state, persister = fresh(path, clock)
    for n in range(30):
        state.record(record("standings", n), counts_as_last_sync=True)
        persister.save()
        with open(path, encoding="utf-8") as handle:
            assert len(json.load(handle)["history"]) == n + 1

    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_save_without_changes_does_not_write(path, clock, monkeypatch):
    state, persister = fresh(path, clock)
    state.record(record(), counts_as_last_sync=True)
    persister.save()
    writes = []
    monkeypatch.setattr(persist_module, "write_atomically", lambda *args: writes.append(args))

    persister.save()
    state.publish_schedule(ScheduleView(mode="race_weekend"))  # derived, not persisted
    persister.save()

    assert writes == []


def test_failed_save_keeps_the_old_file_and_is_logged(path, clock, tmp_path, monkeypatch, caplog):
    state, persister = fresh(path, clock)
    state.record(record("rounds", 0), counts_as_last_sync=True)
    persister.save()
    with open(path, "rb") as handle:
        before = handle.read()
    state.record(record("rounds", 30), counts_as_last_sync=True)

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persist_module.os, "fsync", no_space)
    with caplog.at_level(logging.ERROR, logger="scheduler_api.persist"):
        persister.save()  # never raises: a full disk must not stop syncing
    monkeypatch.undo()

    with open(path, "rb") as handle:
        assert handle.read() == before
    assert sorted(os.listdir(tmp_path)) == ["state.json"]
    assert "state save failed" in caplog.text
    assert "No space left on device" in caplog.text
    persister.save()  # the change is still pending and is written once the disk recovers
    assert fresh(path, clock)[0].snapshot().last_syncs["rounds"] == T0 + 30


def test_older_concurrent_save_never_overwrites_a_newer_one(path, clock, monkeypatch):
    """Save A serialises version 1; before it writes, save B records more and writes version 2."""
    state, persister = fresh(path, clock)
    state.record(record("rounds", 0), counts_as_last_sync=True)
    real_encode = persist_module.encode
    interleaved = []

    def interleaving_encode(persisted):
        payload = real_encode(persisted)
        if not interleaved:
            interleaved.append(len(persisted.history))
            state.record(record("rounds", 30), counts_as_last_sync=True)
            persister.save()  # B: newer, runs to completion in between
        return payload

    monkeypatch.setattr(persist_module, "encode", interleaving_encode)
    persister.save()  # A: older
    monkeypatch.undo()

    assert interleaved == [1]
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    assert len(data["history"]) == 2
    assert data["last_syncs"]["rounds"] == T0 + 30


def test_in_memory_state_never_touches_disk(clock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state_file = StateFile(None, clock)
    state = State(state_file.load())
    state_file.lock()
    state.record(record(), counts_as_last_sync=True)
    Persister(state, state_file).save()
    state_file.unlock()

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

    state_file = StateFile(path, clock)
    with caplog.at_level(logging.WARNING, logger="scheduler_api.persist"):
        state = State(state_file.load())

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
    assert state_file.path == path  # it keeps saving to the usual place


def test_moved_aside_file_is_never_overwritten_by_the_next_save(path, clock):
    with open(path, "wb") as handle:
        handle.write(b"{corrupt")
    state, persister = fresh(path, clock)
    state.record(record(), counts_as_last_sync=True)
    persister.save()

    with open(f"{path}.corrupt-{T0}", "rb") as handle:
        assert handle.read() == b"{corrupt"
    assert fresh(path, clock)[0].snapshot().last_syncs["rounds"] == T0


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
        state, _persister = fresh(path, clock)

    assert caplog.records == []
    assert state.snapshot().last_syncs["rounds"] is None
    assert not os.path.exists(path)


GOOD = record("rounds", 0).to_dict()
CALENDAR = load_calendar("ergast-2026.json")


def state_object(**changes) -> dict:
    """:returns: a valid state object as the daemon writes it, with ``changes`` applied at the top level."""
    data = {"version": 1, "last_syncs": {"seasons": T0, "rounds": T0, "results": None, "standings": None},
            "calendar": {"body": CALENDAR, "source": "https://api.jolpi.ca/ergast/f1/2026.json", "fetched_at": T0},
            "history": [GOOD], "counters": {"failed": 0, "retried": 1, "coalesced": 0, "skipped": 0}}
    data.update(changes)
    return data


def with_record(**changes) -> dict:
    """:returns: a state object whose one history record has ``changes`` (``parameters`` merged)."""
    item = dict(GOOD, **{k: v for k, v in changes.items() if k != "parameters"})
    if "parameters" in changes:
        item["parameters"] = changes["parameters"]
    return state_object(history=[GOOD, item])


DAMAGED_SHAPES = {
    "history-is-a-number": state_object(history=5),
    "history-is-an-object": state_object(history={"0": GOOD}),
    "version-missing": {k: v for k, v in state_object().items() if k != "version"},
    "version-2": state_object(version=2),
    "last-sync-a-string": state_object(last_syncs={"rounds": "2026-11-30T12:00:00Z"}),
    "last-sync-a-boolean": state_object(last_syncs={"rounds": True}),
    "last-sync-a-float": state_object(last_syncs={"rounds": 1796040000.5}),
    "last-sync-negative": state_object(last_syncs={"rounds": -1}),
    "last-sync-in-year-10e400": state_object(last_syncs={"rounds": 10**400}),
    "last-sync-after-2100": state_object(last_syncs={"rounds": 4102444801}),
    "counters-a-list": state_object(counters=[1, 2]),
    "counter-a-string": state_object(counters={"failed": "3"}),
    "counter-negative": state_object(counters={"retried": -4}),
    "calendar-a-string": state_object(calendar="ergast-2026.json"),
    "calendar-without-body": state_object(calendar={"source": "x", "fetched_at": T0}),
    "calendar-body-not-a-calendar": state_object(calendar={"body": {"history": 5}, "source": "x", "fetched_at": T0}),
    "calendar-body-a-number": state_object(calendar={"body": 42, "source": "x", "fetched_at": T0}),
    "calendar-without-rounds": state_object(
        calendar={"body": {"MRData": {"RaceTable": {"season": "2026", "Races": []}}}, "source": "x", "fetched_at": T0}),
    "calendar-fetched-at-a-string": state_object(calendar={"body": CALENDAR, "source": "x", "fetched_at": "today"}),
    "calendar-source-a-number": state_object(calendar={"body": CALENDAR, "source": 5, "fetched_at": T0}),
    "record-a-string": state_object(history=[GOOD, "junk"]),
    "record-without-kind": with_record(kind=None),
    "record-unknown-kind": with_record(kind="drivers"),
    "record-attempt-a-string": with_record(attempt="one"),
    "record-attempt-zero": with_record(attempt=0),
    "record-season-5000-digits-long": with_record(parameters={"season": 10**400}),
    "record-round-100": with_record(parameters={"season": 2026, "round": 100}),
    "record-unknown-session": with_record(parameters={"season": 2026, "round": 3, "session": "warm_up"}),
    "record-parameters-a-list": with_record(parameters=[2026]),
    "record-http-status-999": with_record(http_status=999),
    "record-unknown-outcome": with_record(outcome="maybe"),
    "record-unknown-trigger": with_record(trigger="cron"),
    "record-finished-in-year-10e400": with_record(finished_at=10**400),
    "record-duration-negative": with_record(duration_ms=-5),
    "record-error-a-list": with_record(error=["boom"]),
}

DAMAGED_BYTES = {
    "nested-100000-deep": b"[" * 100_000 + b"]" * 100_000,
    "integer-of-5000-digits": b'{"version": 1, "last_syncs": {"rounds": ' + b"9" * 5000 + b"}}",
    "nan-timestamp": b'{"version": 1, "last_syncs": {"rounds": NaN}}',
    "infinite-timestamp": b'{"version": 1, "last_syncs": {"rounds": 1e400}}',
    "nul-bytes": b"\0" * 64,
    "utf-16": json.dumps(state_object()).encode("utf-16"),
}


@pytest.mark.parametrize("content", [json.dumps(v).encode() for v in DAMAGED_SHAPES.values()]
                         + list(DAMAGED_BYTES.values()), ids=list(DAMAGED_SHAPES) + list(DAMAGED_BYTES))
def test_state_file_of_the_wrong_shape_is_moved_aside_and_state_starts_fresh(path, clock, caplog, content):
    with open(path, "wb") as handle:
        handle.write(content)

    with caplog.at_level(logging.WARNING, logger="scheduler_api.persist"):
        state, persister = fresh(path, clock)

    assert not os.path.exists(path)
    with open(f"{path}.corrupt-{T0}", "rb") as handle:
        assert handle.read() == content
    assert len(caplog.records) == 1 and caplog.records[0].levelname == "WARNING"
    assert f"moved aside to {path}.corrupt-{T0}, starting fresh" in caplog.text
    assert len(caplog.text) < 1000  # a 5000-digit number or a deep nesting is named, not printed
    snap = state.snapshot()
    assert snap.last_syncs == dict.fromkeys(("seasons", "rounds", "results", "standings"))
    assert snap.history == () and snap.calendar is None
    state.record(record("rounds", 1), counts_as_last_sync=True)
    persister.save()  # and it saves again where it always did
    assert fresh(path, clock)[0].snapshot().last_syncs["rounds"] == T0 + 1


def test_there_are_at_least_twenty_damaged_state_file_variants():
    assert len(DAMAGED_SHAPES) + len(DAMAGED_BYTES) >= 20


def test_wrong_shape_warning_names_the_field_and_the_value(path, clock, caplog):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(with_record(attempt="one"), handle)

    with caplog.at_level(logging.WARNING, logger="scheduler_api.persist"):
        fresh(path, clock)

    assert "wrong shape: history[1].attempt: expected an integer from 1 to 1000, got 'one'" in caplog.text


def test_last_sync_in_year_10e400_is_named_by_its_size(path, clock, caplog):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(state_object(last_syncs={"rounds": 10**400}), handle)

    with caplog.at_level(logging.WARNING, logger="scheduler_api.persist"):
        fresh(path, clock)

    assert "last_syncs.rounds: expected an integer from 0 to 4102444800, got an integer of about 401 digits" \
        in caplog.text


def test_valid_file_with_every_field_loads_and_unknown_keys_are_ignored(path, clock, caplog):
    data = state_object(future_key={"anything": 1})
    data["counters"]["a_future_counter"] = 7  # a counter this version does not know
    data["last_syncs"]["drivers"] = "not a kind"
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)

    with caplog.at_level(logging.WARNING):
        snap = fresh(path, clock)[0].snapshot()

    assert caplog.records == []
    assert snap.last_syncs["rounds"] == T0 and snap.calendar.body == CALENDAR
    assert snap.history == (record("rounds", 0),) and snap.counters["retried"] == 1


# -- one owner per state file ---------------------------------------------------------


def test_second_state_on_the_same_path_is_refused_with_a_clear_message(path, clock):
    first = StateFile(path, clock)
    first.lock()
    second = StateFile(path, clock)

    with pytest.raises(StateLockedError) as raised:
        second.lock()

    assert str(raised.value) == (
        f"state file {path} is in use by another scheduler_api process "
        f"(lock {path}.lock held); refusing to start"
    )
    first.unlock()


def test_lock_is_free_again_after_release(path, clock):
    first = StateFile(path, clock)
    first.lock()
    first.unlock()
    second = StateFile(path, clock)

    second.lock()  # does not raise

    with pytest.raises(StateLockedError):
        StateFile(path, clock).lock()
    second.unlock()
    assert os.path.exists(path + ".lock")


def test_lock_on_another_path_is_independent(tmp_path, clock):
    first = StateFile(str(tmp_path / "a.json"), clock)
    second = StateFile(str(tmp_path / "b.json"), clock)

    first.lock()
    second.lock()

    first.unlock()
    second.unlock()


# -- what STATE_FILE may be ----------------------------------------------------------


def test_fifo_as_state_file_stops_start_up_with_one_line_and_never_blocks(path, clock):
    os.mkfifo(path)
    state_file = StateFile(path, clock)

    with pytest.raises(StateFileError) as raised:
        state_file.lock()
    with pytest.raises(StateFileError):
        state_file.load()  # opened without blocking: no writer ever comes

    assert str(raised.value) == (
        f"STATE_FILE {path} is a FIFO, not a regular file; point STATE_FILE at a file (it is created when absent)"
    )
    assert os.path.exists(path) and not os.path.exists(path + ".lock")


def test_device_and_directory_as_state_file_stop_start_up(tmp_path, clock):
    (tmp_path / "dir").mkdir()
    os.symlink("/dev/null", tmp_path / "null")
    for name, what in (("null", "a character device"), ("dir", "a directory")):
        with pytest.raises(StateFileError) as raised:
            StateFile(str(tmp_path / name), clock).lock()
        assert f" is {what}, not a regular file" in str(raised.value)


def test_symlinked_state_file_is_followed_for_the_lock_and_every_save(tmp_path, clock):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "state.json"
    link = tmp_path / "link.json"
    os.symlink(target, link)
    state_file = StateFile(str(link), clock)
    state_file.lock()
    state = State(state_file.load())
    persister = Persister(state, state_file)

    for n in range(3):
        state.record(record("rounds", n), counts_as_last_sync=True)
        persister.save()

    assert os.path.islink(link) and os.readlink(link) == str(target)  # still a link after three saves
    assert json.loads(target.read_text())["last_syncs"]["rounds"] == T0 + 2
    assert os.path.exists(str(target) + ".lock") and not os.path.exists(str(link) + ".lock")
    state_file.unlock()


def test_two_daemons_on_one_file_through_two_paths_the_second_refuses(tmp_path, clock):
    target = tmp_path / "state.json"
    target.write_text(json.dumps(state_object()))
    os.symlink(target, tmp_path / "other-name.json")
    (tmp_path / "sub").mkdir()
    first = StateFile(str(target), clock)
    first.lock()

    for second in (str(tmp_path / "other-name.json"), str(tmp_path / "sub" / ".." / "state.json")):
        with pytest.raises(StateLockedError) as raised:
            StateFile(second, clock).lock()
        assert str(target) + ".lock held" in str(raised.value)
    first.unlock()


def test_damaged_file_behind_a_symlink_is_moved_aside_beside_its_target(tmp_path, clock):
    target = tmp_path / "state.json"
    target.write_text('{"history": 5}')
    os.symlink(target, tmp_path / "link.json")

    state_file = StateFile(str(tmp_path / "link.json"), clock)
    assert state_file.load() is None

    assert (tmp_path / f"state.json.corrupt-{T0}").read_text() == '{"history": 5}'
    assert os.path.islink(tmp_path / "link.json") and not target.exists()


def test_missing_state_directory_stops_start_up_naming_it(tmp_path, clock):
    with pytest.raises(StateFileError) as raised:
        StateFile(str(tmp_path / "absent" / "state.json"), clock).lock()

    assert str(raised.value).startswith(f"state directory {tmp_path / 'absent'} cannot be written (")


def test_read_only_state_directory_stops_start_up_naming_it(tmp_path, clock):
    """The tests run as root, for whom permissions do not stop writes: the directory is made immutable."""
    directory = tmp_path / "ro"
    directory.mkdir()
    (directory / "state.json").write_text(json.dumps(state_object()))
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (the process test covers a non-root user)")
    try:
        state_file = StateFile(str(directory / "state.json"), clock)
        with pytest.raises(StateFileError) as raised:
            state_file.lock()
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)

    assert str(raised.value) == (
        f"state directory {directory} cannot be written (Operation not permitted); "
        "STATE_FILE must lie in a writable directory"
    )
    assert sorted(os.listdir(directory)) == ["state.json"]


# -- the persister thread -------------------------------------------------------------


def test_persister_thread_writes_changes_asked_for_by_save_soon(tmp_path, clock):
    path = tmp_path / "state.json"
    state, persister = fresh(str(path), clock)
    thread = threading.Thread(target=persister.run)
    thread.start()
    try:
        state.count("failed")
        state.save_soon()  # returns at once; the persister writes
    finally:
        persister.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert json.loads(path.read_text())["counters"]["failed"] == 1


def test_save_soon_without_a_persister_thread_is_written_by_the_next_save(tmp_path, clock):
    path = tmp_path / "state.json"
    state, persister = fresh(str(path), clock)
    state.count("retried")
    state.save_soon()  # only asks: no thread runs to answer
    assert not path.exists()
    persister.save()  # as the daemon's shutdown does, once the thread has stopped
    assert json.loads(path.read_text())["counters"]["retried"] == 1


def test_last_failure_of_each_kind_is_kept_and_survives_a_restart(path, clock):
    state, persister = fresh(path, clock)
    state.record(record("rounds", 1, "failed"), counts_as_last_sync=True)
    state.record(record("rounds", 2), counts_as_last_sync=True)  # a later success does not clear it
    state.record(record("standings", 3, "timeout", error="no answer: read timeout after 300s"),
                 counts_as_last_sync=True)
    persister.save()
    for snap in (state.snapshot(history=False), fresh(path, clock)[0].snapshot(history=False)):
        assert snap.last_failures["rounds"] == record("rounds", 1, "failed")
        assert snap.last_failures["standings"].error == "no answer: read timeout after 300s"
        assert snap.last_failures["seasons"] is None and snap.last_failures["results"] is None


def test_saves_asked_within_the_gap_of_a_write_are_written_together_and_a_stop_writes_at_once(path, clock):
    # A daemon syncing many times a second asks for a save after each sync; the persister writes
    # at most once per gap, so its file writes stay out of the way of the due times.
    state_file = StateFile(path, clock)
    state = State(state_file.load())
    writes: list[bytes] = []
    written = threading.Event()
    real_write = state_file.write

    def write(payload: bytes) -> None:
        real_write(payload)
        writes.append(payload)
        written.set()

    state_file.write = write
    persister = Persister(state, state_file, min_gap_s=3600)
    thread = threading.Thread(target=persister.run)
    thread.start()
    state.record(record("rounds", 0), counts_as_last_sync=True)
    state.save_soon()
    assert written.wait(5)
    written.clear()
    for n in (1, 2, 3):  # three syncs within the gap
        state.record(record("rounds", n), counts_as_last_sync=True)
        state.save_soon()
    assert not written.wait(0.2)  # not written while the gap lasts
    persister.stop()
    thread.join(5)
    assert not thread.is_alive() and len(writes) == 2
    assert json.loads(writes[-1])["last_syncs"]["rounds"] == T0 + 3
