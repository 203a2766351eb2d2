"""The overlap policy (Flights) and running one attempt (Runner): wait, call, settle, record, log."""

from __future__ import annotations

import logging
import threading

from scheduler_api.fetcher import Outcome, SyncKey
from scheduler_api.runner import Attempt, Flights, Runner, Settled, SyncWork
from scheduler_api.state import ScheduleView, State

from conftest import FakeClock
from harness import wait_for

KEY = SyncKey("rounds", 2026)


class FakeClient:
    """Answers every sync with ``outcome`` (or raises ``error``), after calling ``before_send``."""

    def __init__(self, clock: FakeClock, outcome: Outcome | None = None, error: Exception | None = None) -> None:
        self.clock = clock
        self.outcome = outcome or Outcome("ok", 200, None, 12)
        self.error = error
        self.calls: list[tuple[SyncKey, str | None, float]] = []

    def sync(self, key, session_name=None, before_send=None):
        if before_send is not None:
            before_send()
        self.calls.append((key, session_name, self.clock.monotonic()))
        if self.error is not None:
            raise self.error
        return self.outcome


def build(clock: FakeClock, counts: bool = True, retry_in_s: float | None = None):
    state = State()
    settled: list[tuple[Attempt, Outcome, float, float]] = []

    def settle(attempt, outcome, now_mono, now_ts):
        settled.append((attempt, outcome, now_mono, now_ts))
        return Settled(counts, retry_in_s, ScheduleView())

    return Runner(clock, state, executor=None, client_factory=None, settle=settle), state, settled


def test_flights_allow_one_sync_per_key_and_joiners_share_the_outcome():
    flights = Flights()
    first = flights.start(KEY)
    assert first is not None and flights.start(KEY) is None  # a scheduled slot finding it running: skip
    joined, was_running = flights.join(KEY)
    assert joined is first and was_running
    assert flights.keys() == (KEY,)
    flights.end(KEY)
    assert flights.keys() == ()
    fresh, was_running = flights.join(KEY)
    assert fresh is not first and not was_running
    outcome = Outcome("ok", 200, None, 0)
    got = []
    waiter = threading.Thread(target=lambda: got.append(first.wait()))
    waiter.start()
    first.resolve(outcome)
    waiter.join(5)
    assert got == [outcome] and first.wait() is outcome


def test_attempt_settles_resolves_its_flight_records_and_logs(caplog):
    caplog.set_level(logging.INFO, logger="scheduler_api.runner")
    clock = FakeClock(1_700_000_000)
    runner, state, settled = build(clock)
    flight = Flights().start(KEY)
    attempt = Attempt(KEY, None, "schedule", 1, flight)
    SyncWork(runner, attempt)(FakeClient(clock))
    assert [(a, o.result) for a, o, _, _ in settled] == [(attempt, "ok")]
    assert flight.wait().ok
    snap = state.snapshot()
    (record,) = snap.history
    assert (record.kind, record.season, record.trigger, record.attempt, record.duration_ms) == (
        "rounds", 2026, "schedule", 1, 12)
    assert snap.last_syncs["rounds"] == 1_700_000_000
    assert "sync kind=rounds season=2026 trigger=schedule outcome=ok attempt=1 status=200 duration_ms=12" \
        in caplog.messages


def test_failed_attempt_logs_its_retry_at_warning(caplog):
    clock = FakeClock(1_700_000_000)
    runner, state, _ = build(clock, counts=False, retry_in_s=1.5)
    attempt = Attempt(KEY, None, "schedule", 2, Flights().start(KEY))
    runner.run(FakeClient(clock, Outcome("failed", 500, "HTTP 500", 3)), attempt)
    (message,) = [r for r in caplog.records if r.name == "scheduler_api.runner"]
    assert message.levelno == logging.WARNING
    assert "attempt=2 status=500" in message.getMessage() and "retry_in=" in message.getMessage()
    assert state.snapshot().counters["failed"] == 1


def test_client_exception_becomes_a_failed_outcome_not_a_crash(caplog):
    clock = FakeClock(1_700_000_000)
    runner, state, _ = build(clock, counts=False)
    flight = Flights().start(KEY)
    runner.run(FakeClient(clock, error=KeyError("bug")), Attempt(KEY, None, "schedule", 1, flight))
    outcome = flight.wait()
    assert not outcome.ok and outcome.error == "internal error: KeyError"
    assert "sync internal error" in caplog.text


def test_released_runner_sends_at_once_instead_of_waiting_for_the_due_time():
    clock = FakeClock(1_700_000_000)
    runner, _, _ = build(clock)
    runner.release()  # as at shutdown
    client = FakeClient(clock)
    runner.run(client, Attempt(KEY, None, "schedule", 1, Flights().start(KEY), due_mono=clock.mono + 3600))
    assert [at for _, _, at in client.calls] == [clock.mono]


# -- the concurrency bound ----------------------------------------------------------

def test_call_gate_hands_places_to_scheduled_syncs_first_then_manual_triggers_in_arrival_order():
    from scheduler_api.call_gate import Busy, CallGate

    gate = CallGate(limit=2, max_waiting=2)
    first, second = gate.ticket(manual=True), gate.ticket(manual=False)
    manual_a, manual_b = gate.ticket(manual=True), gate.ticket(manual=True)
    try:
        gate.ticket(manual=True)
        raise AssertionError("a third waiting trigger must be refused")
    except Busy as exc:
        assert exc.retry_after_s > 0
    scheduled = gate.ticket(manual=False)  # never refused, and served before waiting triggers
    assert gate.counts() == (2, 3)
    gate.release()
    assert not scheduled._granted.locked() and manual_a._granted.locked()
    gate.release()
    assert not manual_a._granted.locked() and manual_b._granted.locked()
    gate.release()
    assert not manual_b._granted.locked()
    for _ in range(2):
        gate.release()
    assert gate.counts() == (0, 0)
    first.wait(), second.wait()


def test_a_scheduled_attempt_takes_its_place_before_its_client_prepares_the_call():
    # The client builds the request and readies the connection before the due time, then waits in
    # before_send; the place at the gate must be taken before that, so the client never sits on a
    # connection ready to write while it waits for a place (a fetcher's keep-alive may close it).
    from scheduler_api.call_gate import CallGate

    clock = FakeClock(1_700_000_000)
    gate = CallGate(limit=1, max_waiting=1)
    state = State()
    runner = Runner(clock, state, None, None, lambda a, o, m, t: Settled(True, None, ScheduleView()), gate=gate)
    held = gate.ticket(manual=True)  # the only place, taken by a trigger in flight
    held.wait()
    prepared = threading.Event()

    class PreparingClient(FakeClient):
        def sync(self, key, session_name=None, before_send=None):
            prepared.set()
            return super().sync(key, session_name, before_send)

    worker = threading.Thread(target=runner.run, args=(PreparingClient(clock), Attempt(
        KEY, None, "schedule", 1, Flights().start(KEY), due_mono=clock.mono)))
    worker.start()
    wait_for(lambda: gate.counts() == (1, 1), what="the attempt waiting for its place")
    assert not prepared.is_set()  # waiting for its place, nothing prepared
    gate.release()
    worker.join(5)
    assert prepared.is_set() and gate.counts() == (0, 0)


def test_switch_interval_is_short_only_while_a_scheduled_sync_waits_for_its_due_time():
    # A worker waking at its due time must get the interpreter lock within about a millisecond, but a
    # short interval all the time costs HTTP throughput: it is short from the attempt's hand-over
    # until its bytes are written (and while the ticker's next hand-over is near), else normal.
    import sys

    from scheduler_api.runner import FastSwitching

    normal_s = sys.getswitchinterval()
    clock = FakeClock(1_700_000_000)
    switching = FastSwitching(0.001)
    runner = Runner(clock, State(), None, None, lambda a, o, m, t: Settled(True, None, ScheduleView()),
                    switching=switching)
    seen = []

    class WatchingClient(FakeClient):
        def sync(self, key, session_name=None, before_send=None):
            seen.append(("prepared", sys.getswitchinterval()))
            before_send()
            seen.append(("written", sys.getswitchinterval()))
            return self.outcome

    try:
        runner._executor = type("Inline", (), {"submit": staticmethod(lambda work: work(WatchingClient(clock)))})()
        runner.submit(Attempt(KEY, None, "schedule", 1, Flights().start(KEY), due_mono=clock.mono))  # handed over
        runner.run(WatchingClient(clock), Attempt(KEY, None, "manual", 1, Flights().start(KEY)))  # no due time
    finally:
        sys.setswitchinterval(normal_s)
    assert seen == [("prepared", 0.001), ("written", normal_s), ("prepared", normal_s), ("written", normal_s)]
    switching.enter()
    switching.ahead(True)  # a sync waits and the ticker's next hand-over is near
    switching.ahead(True)
    switching.leave()
    assert sys.getswitchinterval() == 0.001  # the hand-over is still near
    switching.ahead(False)
    assert sys.getswitchinterval() == normal_s
