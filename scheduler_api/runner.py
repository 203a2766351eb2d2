"""Runner: the overlap policy (one sync per key, joiners share its outcome) and running one attempt.

The overlap policy lives in :class:`Flights`: a second sync of a key already
in flight is never started; a scheduled slot that finds it running is
skipped (the scheduler counts that), a manual trigger joins it and gets its
outcome. :class:`Runner` runs one attempt: it waits for the due time, calls
the fetcher, lets the scheduler settle the timetable, then records and logs
the outcome. The concurrency bound it passes through is
:class:`scheduler_api.call_gate.CallGate`. See README, What it does (Overlap).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable, NamedTuple, Protocol

from .call_gate import CallGate, Ticket
from .clock import Clock
from .durations import format_duration
from .fetcher import Outcome, SyncClient, SyncKey
from .health import FetcherHealth
from .state import ScheduleView, State, SyncRecord

logger = logging.getLogger(__name__)

Work = Callable[[SyncClient], None]


class Executor(Protocol):
    """Runs a piece of work with a worker's :class:`SyncClient`."""

    def submit(self, work: Work) -> None: ...


class FastSwitching:
    """The interpreter's switch interval, short only while a sync waits for its due time.

    A worker waking at a due time must get the interpreter lock within
    about a millisecond even while HTTP handlers are busy; with the default
    5 ms switch interval, each hand-off of the lock under load costs up to
    5 ms. A short interval all the time costs HTTP throughput (more forced
    switches between busy handlers: a quarter fewer ``/health`` requests a
    second under wrk), so it is short only around a due time: while the
    ticker's next wake-up (a hand-over) is near (:meth:`ahead`), and from
    the hand-over of a scheduled attempt until its bytes are written (at
    most the dispatch lead, 50 ms, per sync). Thread-safe.

    :param fast_s: the switch interval while any sync waits, seconds.
    """

    def __init__(self, fast_s: float) -> None:
        self._fast_s = fast_s
        self._normal_s = sys.getswitchinterval()
        self._lock = threading.Lock()
        self._waiting = 0
        self._ticker_near = False

    def ahead(self, near: bool) -> None:
        """The ticker's next wake-up (a hand-over) is near (``near``) or not: switch fast while it is, so
        the ticker's own wake-up is prompt too. Called from the ticker thread only; idempotent."""
        if near != self._ticker_near:
            self._ticker_near = near
            if near:
                self.enter()
            else:
                self.leave()

    def enter(self) -> None:
        """A sync waits for its due time: switch fast (until the matching :meth:`leave`)."""
        with self._lock:
            self._waiting += 1
            if self._waiting == 1:
                self._normal_s = sys.getswitchinterval()
                sys.setswitchinterval(self._fast_s)

    def leave(self) -> None:
        """That sync's bytes are written (or it ended): back to the normal interval once none waits."""
        with self._lock:
            self._waiting -= 1
            if self._waiting == 0:
                sys.setswitchinterval(self._normal_s)


class Flight:
    """One sync under way; whoever joins it waits for its outcome. Thread-safe.

    The outcome is guarded by a plain lock held from creation until
    :meth:`resolve`; waiters take and drop it in turn. (A lock costs a tenth
    of an :class:`threading.Event`, and ``plan`` creates one per sync.)

    :param manual: True for a manual trigger's flight (a scheduled attempt
        finding it running waits for it instead of being skipped).
    """

    def __init__(self, manual: bool = False) -> None:
        self._pending = threading.Lock()
        self._pending.acquire()
        self._outcome: Outcome | None = None
        self.manual = manual

    def resolve(self, outcome: Outcome) -> None:
        """Hand ``outcome`` to everyone waiting; call once."""
        self._outcome = outcome
        self._pending.release()

    @property
    def done(self) -> bool:
        """:returns: True once the outcome is known."""
        return not self._pending.locked()

    def wait(self) -> Outcome:
        """:returns: the sync's outcome, once it is known (blocks until then)."""
        with self._pending:
            pass
        if self._outcome is None:  # pragma: no cover - resolve always sets it first
            return Outcome("failed", None, "internal error", 0)
        return self._outcome


class Flights:
    """The single-flight registry: at most one sync per :class:`SyncKey` at a time.

    All methods are thread-safe; none blocks.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[SyncKey, Flight] = {}

    def start(self, key: SyncKey) -> Flight | None:
        """:returns: a new (scheduled) flight for ``key``, or None if one is already under way."""
        with self._lock:
            if key in self._flights:
                return None
            flight = self._flights[key] = Flight()
            return flight

    def join(self, key: SyncKey) -> tuple[Flight, bool]:
        """:returns: ``(flight, True)`` joining the one under way, else ``(a new manual flight, False)``."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, True
            flight = self._flights[key] = Flight(manual=True)
            return flight, False

    def get(self, key: SyncKey) -> Flight | None:
        """:returns: ``key``'s flight under way, or None."""
        with self._lock:
            return self._flights.get(key)

    def end(self, key: SyncKey) -> None:
        """Forget ``key``'s flight: a new sync of it may start. Its joiners still get the outcome."""
        with self._lock:
            self._flights.pop(key, None)

    def keys(self) -> tuple[SyncKey, ...]:
        """:returns: the keys in flight now."""
        with self._lock:
            return tuple(self._flights)


class Attempt(NamedTuple):
    """One attempt of one sync (an immutable record; a tuple because ``plan`` makes thousands).

    :ivar key: what to sync.
    :ivar session_name: the live session's name, or None.
    :ivar trigger: ``"schedule"`` or ``"manual"``.
    :ivar number: the attempt number, 1-based (retries count up).
    :ivar flight: the flight it resolves.
    :ivar due_mono: when to send it, monotonic seconds, or None for at once.
    """

    key: SyncKey
    session_name: str | None
    trigger: str
    number: int
    flight: Flight
    due_mono: float | None = None


class Settled(NamedTuple):
    """What the scheduler decided once an attempt finished.

    :ivar counts_as_last_sync: the outcome is the kind's last sync (a success with its scheduled key).
    :ivar retry_in_s: the delay before the retry, seconds, or None for no retry.
    :ivar view: the schedule to publish.
    """

    counts_as_last_sync: bool
    retry_in_s: float | None
    view: ScheduleView


#: ``settle(attempt, outcome, now_mono, now_ts)``: the scheduler's bookkeeping after an attempt.
Settle = Callable[[Attempt, Outcome, float, float], Settled]


class SyncWork(NamedTuple):
    """The work item handed to an executor: run ``attempt`` with the worker's client.

    ``fast`` is True when :meth:`Runner.submit` shortened the switch interval for it (ended once its
    bytes are written).
    """

    runner: "Runner"
    attempt: Attempt
    fast: bool = False

    def __call__(self, client: SyncClient) -> None:
        """Run the attempt with ``client``."""
        self.runner.run(client, self.attempt, fast=self.fast)


class Runner:
    """Runs attempts: waits for the due time and a place, calls the fetcher, settles, records and logs.

    Every attempt passes the :class:`CallGate` (the concurrency bound). A
    scheduled attempt takes its place when it reaches its worker (up to the
    dispatch lead before its due time, while the client prepares the
    request), and if every place is taken it waits on its worker, ahead of
    waiting manual triggers: it is never skipped because of the bound (the pool has a
    worker for each kind, so waiting costs no other kind its worker). A
    manual trigger takes its ticket before it runs (:meth:`ticket`), so a
    full queue refuses it before anything is called.

    An exception from the client (a bug) becomes a failed outcome and is
    logged with its traceback; it never escapes. All methods are
    thread-safe; :meth:`run` blocks for the sync.

    :param clock: monotonic and UTC wall clocks.
    :param state: where outcomes are recorded.
    :param executor: runs scheduled attempts (and other work) on its workers.
    :param client_factory: builds a client for an attempt run on the caller's thread.
    :param settle: the scheduler's bookkeeping, called once per attempt before it is recorded.
    :param health: fetcher connectivity, told of every exchange, or None.
    :param gate: the concurrency bound, or None for no bound.
    :param switching: shortens the switch interval while a scheduled attempt waits for its due time, or None.
    """

    def __init__(
        self, clock: Clock, state: State, executor: Executor, client_factory: Callable[[], SyncClient],
        settle: Settle, health: FetcherHealth | None = None, gate: CallGate | None = None,
        switching: FastSwitching | None = None,
    ) -> None:
        self._clock = clock
        self._switching = switching
        self._state = state
        self._executor = executor
        self._client_factory = client_factory
        self._settle = settle
        self._health = health
        self._gate = gate
        self._release = threading.Event()

    def release(self) -> None:
        """From now on, attempts waiting for their due time are sent at once (shutdown)."""
        self._release.set()

    def submit(self, attempt: Attempt) -> None:
        """Hand ``attempt`` to the executor; never blocks (with the real worker pool).

        An attempt with a due time switches fast from here until its bytes are written.
        """
        fast = self._switching is not None and attempt.due_mono is not None
        if fast:
            self._switching.enter()
        self._executor.submit(SyncWork(self, attempt, fast))

    def submit_work(self, work: Work) -> None:
        """Hand other work (a calendar refresh) to the executor."""
        self._executor.submit(work)

    def ticket(self) -> Ticket | None:
        """A manual trigger's place at the gate, taken in arrival order; never blocks.

        :returns: the ticket to pass to :meth:`run_here`, or None without a gate.
        :raises Busy: when every place is taken and the queue of triggers is full.
        """
        return None if self._gate is None else self._gate.ticket(manual=True)

    def call_counts(self) -> tuple[int, int]:
        """:returns: ``(fetcher calls in flight, waiting)`` under the gate; ``(0, 0)`` without one."""
        return (0, 0) if self._gate is None else self._gate.counts()

    def run_here(self, attempt: Attempt, ticket: Ticket | None = None) -> None:
        """Run ``attempt`` in the calling thread with a client of its own, closed afterwards.

        :param ticket: the place taken with :meth:`ticket` (waited for here), or None.
        """
        try:
            if ticket is not None:
                ticket.wait()
            client = self._client_factory()
        except BaseException:
            if ticket is not None:
                self._gate.release()
            raise
        try:
            self.run(client, attempt, ticket)
        finally:
            client.close()

    def run(self, client: SyncClient, attempt: Attempt, ticket: Ticket | None = None, fast: bool = False) -> None:
        """Run ``attempt`` with ``client`` in the calling thread, then resolve its flight.

        :param client: the worker's (or the manual trigger's) client.
        :param attempt: what to run.
        :param ticket: a place at the gate granted already (manual triggers);
            None to take one here, before the client prepares the call (scheduled attempts).
        :param fast: :meth:`submit` shortened the switch interval for this attempt: restore it once the
            bytes are written.
        """
        started_ts = [self._clock.now_ts()]
        placed = [ticket is not None]
        switching: list[FastSwitching | None] = [self._switching if fast else None]

        def fast_until_written() -> None:
            if switching[0] is not None:
                switching[0].leave()
                switching[0] = None

        def wait_for_due_time() -> None:
            if attempt.due_mono is not None:
                delay_s = attempt.due_mono - self._clock.monotonic()
                if delay_s > 0:
                    self._release.wait(delay_s)  # set at shutdown: send at once rather than wait
            started_ts[0] = self._clock.now_ts()
            fast_until_written()  # the bytes go out as this returns

        try:
            if self._gate is not None and not placed[0]:  # before the client prepares, so it never waits
                self._gate.ticket(manual=False).wait()    # on the gate holding a connection ready to write
                placed[0] = True
            outcome = client.sync(attempt.key, attempt.session_name, wait_for_due_time)
        except Exception as exc:
            logger.exception("sync internal error %s", attempt.key.log_fields())
            outcome = Outcome("failed", None, f"internal error: {type(exc).__name__}", 0)
        finally:
            fast_until_written()  # an attempt that ended without writing
            if self._gate is not None and placed[0]:
                self._gate.release()
        self._finish(attempt, outcome, started_ts[0])

    def _finish(self, attempt: Attempt, outcome: Outcome, started_ts: float) -> None:
        """Settle, resolve the flight, record and log one finished attempt."""
        now_mono, now_ts = self._clock.monotonic(), self._clock.now_ts()
        settled = self._settle(attempt, outcome, now_mono, now_ts)
        attempt.flight.resolve(outcome)
        if self._health is not None:
            self._health.record(outcome.answered)
        key = attempt.key
        record = SyncRecord(
            kind=key.kind, season=key.season, round=key.round, session=attempt.session_name,
            trigger=attempt.trigger, outcome=outcome.result, attempt=attempt.number,
            http_status=outcome.http_status, duration_ms=outcome.duration_ms,
            started_at=int(started_ts), finished_at=int(now_ts), error=outcome.error,
        )
        self._state.record(record, counts_as_last_sync=settled.counts_as_last_sync)
        self._state.publish_schedule(settled.view)
        log_sync(record, settled.retry_in_s)
        self._state.save_soon()


def log_sync(record: SyncRecord, retry_in_s: float | None) -> None:
    """One line per attempt outcome, at info for ok and warning for failures (see README, Logs)."""
    level = logging.INFO if record.outcome == "ok" else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    parts = [f"sync kind={record.kind}"]
    if record.season is not None:
        parts.append(f"season={record.season}")
    if record.round is not None:
        parts.append(f"round={record.round}")
    if record.session is not None:
        parts.append(f"session={record.session}")
    parts.append(f"trigger={record.trigger} outcome={record.outcome} attempt={record.attempt}")
    parts.append(f"status={record.http_status if record.http_status is not None else '-'}")
    parts.append(f"duration_ms={record.duration_ms}")
    if retry_in_s is not None:
        parts.append(f"retry_in={format_duration(retry_in_s)}")
    if record.error:
        parts.append(f"error={record.error!r}")
    logger.log(level, " ".join(parts))
