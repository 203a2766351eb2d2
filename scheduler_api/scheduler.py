"""Scheduler: due-time arithmetic and the ticker that dispatches syncs from a heap of due times."""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from .calendar_parse import parse_calendar
from .clock import Clock, utc_year
from .config import KINDS, Config
from .durations import format_duration
from .fetcher import Outcome, SyncClient, SyncKey
from .health import FetcherHealth
from .race_calendar import (
    Calendar,
    Mode,
    Windows,
    latest_round,
    mode_at,
    next_live_window_start,
    next_mode_change,
)
from .state import CalendarRecord, ScheduleView, State, SyncRecord
from .calendar_source import CalendarLoadError, CalendarSource

logger = logging.getLogger(__name__)

MAX_WAIT_S = 60.0  # SPEC.md §3: waits are capped so wall time is re-read at least once a minute
CLOCK_JUMP_TOLERANCE_S = 2.0
NO_CALENDAR_RETRY_S = 300.0


class Executor(Protocol):
    """Runs a piece of work with a worker's :class:`SyncClient`."""

    def submit(self, work: Callable[[SyncClient], None]) -> None: ...


def next_slot(due_mono: float, interval_s: float, now_mono: float) -> tuple[float, int]:
    """The next due time on a fixed-rate grid (SPEC.md §3: fixed rate, coalesce).

    The next due time is the previous due time plus the interval, never the
    finish time plus the interval, so there is no drift. A run late by more
    than one interval (a misfire) is not repeated for each missed slot: the
    next due time is the first grid slot after ``now_mono``.

    :param due_mono: the due time that just fired, monotonic seconds.
    :param interval_s: the interval, seconds (> 0).
    :param now_mono: now, monotonic seconds.
    :returns: ``(next due time, number of slots coalesced away)``.
    """
    next_due = due_mono + interval_s
    if next_due > now_mono:
        return next_due, 0
    missed = int((now_mono - due_mono) // interval_s)
    next_due = due_mono + (missed + 1) * interval_s
    while next_due <= now_mono:  # float rounding
        next_due += interval_s
        missed += 1
    return next_due, missed


def retry_delay_s(
    failed_attempt: int, interval_s: float, rng: random.Random, retry_after_s: float | None = None
) -> float | None:
    """Backoff with full jitter before the next attempt (SPEC.md §3: retries).

    The backoff doubles from 1 s (1, 2, 4 ...) and the delay is uniform in
    ``[0, backoff]`` (full jitter). Once the backoff reaches the kind's
    interval the chain stops: the next slot is as close as any retry would
    be. A ``Retry-After`` from a 429/503 answer is a floor on the delay.

    :param failed_attempt: the attempt that just failed, 1-based.
    :param interval_s: the kind's interval, seconds.
    :param rng: the injected random source.
    :param retry_after_s: the answer's ``Retry-After``, seconds, or None.
    :returns: seconds to wait, or None for no retry.
    """
    backoff_s = 2.0 ** (failed_attempt - 1)
    if backoff_s >= interval_s:
        return None
    delay_s = rng.uniform(0.0, backoff_s)
    if retry_after_s is not None:
        delay_s = max(delay_s, retry_after_s)
    return delay_s


@dataclass
class _KindSchedule:
    """Ticker-side schedule of one kind; guarded by the scheduler's condition."""

    interval_s: float | None = None
    due_mono: float | None = None
    last_mono: float | None = None
    gen: int = 0
    retry_attempt: int = 0
    retry_gen: int = 0


class _Flight:
    """A sync under way; manual triggers for the same key wait on ``done`` (join)."""

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self.done = threading.Event()
        self.outcome: Outcome | None = None


class Scheduler:
    """Decides when each kind syncs and runs the syncs (SPEC.md §1, §3, §4).

    Keeps a ``heapq`` of ``(due_mono, seq, entry)``; entries are validated
    by a per-kind generation when popped, never removed from the middle.
    :meth:`tick` runs everything due and returns the next wake-up, so tests
    drive the schedule without a thread; :meth:`run` is the ticker loop,
    which sleeps on a condition until the next due time or a wake-up
    (trigger, calendar change, shutdown) and never polls.

    Rules, all from SPEC.md §3: fixed rate without drift; a misfire
    coalesces into one run; a mode change tightens at once to
    ``min(next, last sync + new interval)``; catch-up at start; retries with
    backoff and full jitter that never run past the next slot; a scheduled
    slot finding its sync still running is skipped (overlap policy *skip*),
    a manual trigger joins it.

    All public methods are thread-safe.

    :param config: the configuration.
    :param state: the shared state (last syncs, calendar, history).
    :param clock: monotonic and UTC wall clocks.
    :param executor: runs scheduled syncs and calendar refreshes.
    :param client_factory: builds a client for a manual trigger's own thread.
    :param rng: the random source for jitter.
    :param calendar_source: where to refresh the calendar from, or None to keep what ``state`` holds.
    :param health: fetcher connectivity, told of every exchange, or None.
    """

    def __init__(
        self,
        config: Config,
        state: State,
        clock: Clock,
        executor: Executor,
        client_factory: Callable[[], SyncClient],
        rng: random.Random,
        calendar_source: CalendarSource | None = None,
        health: FetcherHealth | None = None,
        dispatch_lead_s: float = 0.0,
    ) -> None:
        self.config = config
        self.state = state
        self.clock = clock
        self.executor = executor
        self.client_factory = client_factory
        self.rng = rng
        self.calendar_source = calendar_source
        self.health = health
        self.windows = Windows(
            config.race_weekend_lead_s, config.race_weekend_tail_s, config.live_lead_s, config.live_tail_s
        )
        self._cond = threading.Condition(threading.RLock())
        self._heap: list[tuple[float, int, tuple]] = []
        self._seq = itertools.count()
        self._kinds = {kind: _KindSchedule() for kind in KINDS}
        self._flights: dict[SyncKey, _Flight] = {}
        self._calendar: Calendar | None = None
        self._calendar_body: object = None
        self._mode: Mode = mode_at(None, clock.now_ts(), self.windows)
        self._mode_ident: tuple | None = None
        self._mode_change_mono: float | None = None
        self._calendar_gen = 0
        self._calendar_busy = False
        self._calendar_again = False
        self._offset_s: float | None = None
        self._wall_debt_s = 0.0
        self._woken = False
        self._stopping = False
        self.on_loop: Callable[[], None] | None = None
        self.loop_timeout_cap_s = MAX_WAIT_S
        self.dispatch_lead_s = dispatch_lead_s
        self._release = threading.Event()

    # -- start-up --------------------------------------------------------

    def start(self) -> None:
        """Load the calendar and last syncs from ``state`` and set the first due times.

        Catch-up at start (SPEC.md §3): a kind never synced, or whose last
        sync is older than its interval, is due now; a persisted last sync in
        the future is ignored. A calendar refresh is due now if a source is set;
        a ``CALENDAR_FILE`` is read at once, before the first due times are
        set, so the catch-up syncs already use the calendar's season.
        """
        local_file = self.calendar_source is not None and bool(self.calendar_source.file_path)
        if local_file:
            self._refresh_calendar()
        now_mono, now_ts = self.clock.monotonic(), self.clock.now_ts()
        snap = self.state.snapshot(history=False)
        with self._cond:
            if snap.calendar is not None:
                try:
                    self._calendar = parse_calendar(snap.calendar.body)
                except ValueError as exc:
                    logger.warning("calendar persisted copy unusable: %s", exc)
            for kind in KINDS:
                last_ts = snap.last_syncs.get(kind)
                if last_ts is not None and last_ts > now_ts + CLOCK_JUMP_TOLERANCE_S:
                    logger.warning("state last sync of kind=%s lies in the future (%d); ignored", kind, last_ts)
                    self.state.forget_last_sync(kind)
                    last_ts = None
                if last_ts is not None:
                    self._kinds[kind].last_mono = now_mono - (now_ts - last_ts)
            self._offset_s = now_ts - now_mono
            self._mode = mode_at(self._calendar, now_ts, self.windows)
            self._mode_ident = _mode_ident(self._mode)
            for kind, ks in self._kinds.items():
                ks.interval_s = self._interval_for(kind, self._mode)
                if ks.interval_s is None:
                    continue
                if ks.last_mono is None or now_mono - ks.last_mono >= ks.interval_s:
                    ks.due_mono = now_mono
                else:
                    ks.due_mono = ks.last_mono + ks.interval_s
                self._push_slot(kind)
            if self.calendar_source is not None and not local_file:
                self._push_calendar(now_mono)
            self._update_mode_change(now_mono, now_ts)
            view = self._view(now_mono, now_ts)
        logger.info(
            "scheduler started mode=%s calendar=%s season=%s",
            self._mode.name, "loaded" if self._calendar else ("pending" if self.calendar_source else "none"),
            view.season,
        )
        self.state.publish_schedule(view)

    # -- the ticker ------------------------------------------------------

    def tick(self, now_mono: float) -> float | None:
        """Run every sync and refresh that is due at ``now_mono``.

        Re-reads UTC wall time first: a wall clock that jumped forward
        relative to the monotonic clock (suspend, or a step) makes overdue
        syncs run once; a step backward moves nothing. The mode is then
        re-evaluated.

        :param now_mono: now, monotonic seconds.
        :returns: the next wake-up, monotonic seconds, or None if nothing is scheduled.
        """
        now_ts = self.clock.now_ts()
        work: list[tuple[SyncKey, str | None, int, _Flight, float]] = []
        refresh_calendar = False
        with self._cond:
            self._check_clock(now_mono, now_ts)
            self._apply_mode(now_mono, now_ts)
            lead_s = self._lead_s()
            while self._heap and self._heap[0][0] <= now_mono + lead_s:
                due_mono, _, entry = heapq.heappop(self._heap)
                if entry[0] == "calendar":
                    if entry[1] == self._calendar_gen and self._calendar_busy:
                        self._calendar_again = True  # asked for while one runs: once more when it ends
                    elif entry[1] == self._calendar_gen:
                        self._calendar_busy = True
                        refresh_calendar = True
                    continue
                tag, kind, gen = entry
                ks = self._kinds[kind]
                if tag == "slot" and gen == ks.gen and ks.interval_s is not None:
                    ks.retry_gen += 1  # a pending retry never runs past the next slot
                    ks.due_mono, missed = next_slot(due_mono, ks.interval_s, now_mono)
                    if missed:
                        self.state.count("coalesced", missed)
                        logger.info("misfire kind=%s missed_slots=%d coalesced=1", kind, missed)
                    self._push_slot(kind)
                    self._collect(kind, 1, work, now_ts, due_mono)
                elif tag == "retry" and gen == ks.retry_gen and ks.interval_s is not None:
                    self.state.count("retried")
                    self._collect(kind, ks.retry_attempt, work, now_ts, due_mono)
            view = self._view(now_mono, now_ts)
        self.state.publish_schedule(view)
        if refresh_calendar:
            self.executor.submit(lambda client: self._refresh_calendar())
        for key, session_name, attempt, flight, due_mono in work:
            self.executor.submit(
                lambda client, k=key, s=session_name, a=attempt, f=flight, d=due_mono:
                self._run(client, k, s, "schedule", a, f, d)
            )
        with self._cond:
            candidates = [self._heap[0][0] - self._lead_s()] if self._heap else []
            if self._mode_change_mono is not None:
                candidates.append(self._mode_change_mono)
            return min(candidates) if candidates else None

    def run(self) -> None:
        """The ticker loop (ticker thread only); returns after :meth:`stop`.

        Waits on the condition for ``min(next due - now, 60 s)``; exceptions
        are logged and the loop carries on.
        """
        while True:
            try:
                next_mono = self.tick(self.clock.monotonic())
                if self.on_loop is not None:
                    self.on_loop()
                with self._cond:
                    if self._stopping:
                        return
                    if self._woken:
                        self._woken = False
                        continue
                    timeout_s = self.loop_timeout_cap_s
                    if next_mono is not None:
                        timeout_s = min(timeout_s, max(0.0, next_mono - self.clock.monotonic()))
                    self._cond.wait(timeout_s)
                    self._woken = False
            except Exception:
                logger.exception("ticker error")
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(1.0)

    def wake(self) -> None:
        """Make the ticker re-run :meth:`tick` now."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Make :meth:`run` return; syncs waiting for their due time are sent at once."""
        self._release.set()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def reload_calendar(self) -> None:
        """Refresh the calendar now (SIGHUP)."""
        with self._cond:
            self._push_calendar(self.clock.monotonic())
            self._woken = True
            self._cond.notify_all()

    # -- manual triggers -------------------------------------------------

    def trigger(self, key: SyncKey) -> tuple[Outcome, bool]:
        """Run a manual sync now in the calling thread and wait for its outcome.

        If the same key is already in flight the call joins it and returns
        its outcome: no second fetcher call (SPEC.md §2). A success with the
        scheduled parameters counts as the kind's sync: last = now, next =
        now + interval (SPEC.md §3).

        :param key: what to sync.
        :returns: ``(outcome, joined)``.
        """
        with self._cond:
            flight = self._flights.get(key)
            joined = flight is not None
            if flight is None:
                flight = self._flights[key] = _Flight("manual")
                self.state.publish_schedule(self._view(self.clock.monotonic(), self.clock.now_ts()))
            session_name = self._session_for(key)
        if not joined:
            client = self.client_factory()
            try:
                self._run(client, key, session_name, "manual", 1, flight)
            finally:
                client.close()
        flight.done.wait()
        if flight.outcome is None:  # pragma: no cover - _run always sets it
            return Outcome("failed", None, "internal error", 0), joined
        return flight.outcome, joined

    def current_season(self) -> int:
        """:returns: the season scheduled syncs use: the calendar's, else the UTC year (SPEC.md §2)."""
        with self._cond:
            return self._season(self.clock.now_ts())

    def default_round(self, season: int) -> int | None:
        """:returns: the live or most recent round of ``season`` from the calendar, or None (SPEC.md §5)."""
        with self._cond:
            if self._calendar is None or self._calendar.season != season:
                return None
            found = latest_round(self._calendar, self.clock.now_ts(), self.windows)
            return None if found is None else found.round

    # -- internals (caller holds the condition) --------------------------

    def _season(self, now_ts: float) -> int:
        if self._calendar is not None and self._calendar.season is not None:
            return self._calendar.season
        return utc_year(now_ts)

    def _interval_for(self, kind: str, mode: Mode) -> float | None:
        return self.config.interval_s(kind, mode.is_race_weekend, mode.live is not None)

    def _scheduled_key(self, kind: str, now_ts: float) -> SyncKey | None:
        if kind == "seasons":
            return SyncKey("seasons")
        if kind == "results":
            live = self._mode.live
            return None if live is None else SyncKey("results", live.season, live.round)
        return SyncKey(kind, self._season(now_ts))

    def _session_for(self, key: SyncKey) -> str | None:
        live = self._mode.live
        if live is not None and key.season == live.season and (key.round is None or key.round == live.round):
            return live.name
        return None

    def _lead_s(self) -> float:
        """How early a due sync is handed to a worker, which then waits for the exact due time.

        The worker prepares the request meanwhile, so the wake-up and hand-off
        of the ticker are off the path between due time and send. At most a
        quarter of the shortest interval, so the overlap check stays meaningful.

        :returns: the lead, seconds (0.0 when ``dispatch_lead_s`` is 0, as in tests and ``plan``).
        """
        if not self.dispatch_lead_s:
            return 0.0
        intervals = [ks.interval_s for ks in self._kinds.values() if ks.interval_s]
        return min([self.dispatch_lead_s] + [interval_s / 4 for interval_s in intervals])

    def _collect(self, kind: str, attempt: int, work: list, now_ts: float, due_mono: float) -> None:
        key = self._scheduled_key(kind, now_ts)
        if key is None:
            return
        if key in self._flights:
            self.state.count("skipped")
            logger.info("skip %s trigger=schedule reason=still_running", key.log_fields())
            return
        flight = self._flights[key] = _Flight("schedule")
        work.append((key, self._session_for(key), attempt, flight, due_mono))

    def _push_slot(self, kind: str) -> None:
        ks = self._kinds[kind]
        ks.gen += 1
        if ks.due_mono is not None:
            heapq.heappush(self._heap, (ks.due_mono, next(self._seq), ("slot", kind, ks.gen)))

    def _push_calendar(self, due_mono: float) -> None:
        self._calendar_gen += 1
        heapq.heappush(self._heap, (due_mono, next(self._seq), ("calendar", self._calendar_gen)))

    def _check_clock(self, now_mono: float, now_ts: float) -> None:
        offset_s = now_ts - now_mono
        if self._offset_s is None:
            self._offset_s = offset_s
            return
        delta_s = offset_s - self._offset_s
        self._offset_s = offset_s
        if delta_s < -CLOCK_JUMP_TOLERANCE_S:
            self._wall_debt_s += -delta_s
            logger.warning("clock wall time stepped back by %.0fs; schedule kept on the monotonic clock", -delta_s)
        elif delta_s > CLOCK_JUMP_TOLERANCE_S:
            forward_s = max(0.0, delta_s - self._wall_debt_s)
            self._wall_debt_s = max(0.0, self._wall_debt_s - delta_s)
            if forward_s <= CLOCK_JUMP_TOLERANCE_S:
                return
            logger.warning(
                "clock wall time jumped forward by %.0fs (suspend or step); overdue syncs run once", forward_s
            )
            for kind, ks in self._kinds.items():
                if ks.last_mono is not None:
                    ks.last_mono -= forward_s
                if ks.due_mono is not None:
                    ks.due_mono = max(now_mono, ks.due_mono - forward_s)
                    self._push_slot(kind)

    def _apply_mode(self, now_mono: float, now_ts: float) -> None:
        mode = mode_at(self._calendar, now_ts, self.windows)
        ident = _mode_ident(mode)
        if ident != self._mode_ident:
            old = self._mode
            self._mode, self._mode_ident = mode, ident
            logger.info(
                "mode change from=%s to=%s%s%s", old.name, mode.name,
                f" season={mode.round.season} round={mode.round.round}" if mode.round else "",
                f" session={mode.live.name}" if mode.live else "",
            )
            for kind, ks in self._kinds.items():
                new_s = self._interval_for(kind, mode)
                old_s, ks.interval_s = ks.interval_s, new_s
                if new_s is None:
                    if old_s is not None:
                        ks.due_mono = None
                        ks.retry_gen += 1
                        self._push_slot(kind)
                    continue
                tightened = now_mono if ks.last_mono is None else ks.last_mono + new_s
                if old_s is None or ks.due_mono is None:
                    ks.due_mono = max(now_mono, tightened)
                    self._push_slot(kind)
                elif new_s < old_s and tightened < ks.due_mono:
                    ks.due_mono = max(now_mono, tightened)
                    self._push_slot(kind)
        self._update_mode_change(now_mono, now_ts)

    def _update_mode_change(self, now_mono: float, now_ts: float) -> None:
        change_ts = next_mode_change(self._calendar, now_ts, self.windows)
        self._mode_change_mono = None if change_ts is None else now_mono + (change_ts - now_ts)

    def _view(self, now_mono: float, now_ts: float) -> ScheduleView:
        next_syncs: dict[str, int | None] = {}
        for kind, ks in self._kinds.items():
            if ks.due_mono is not None:
                next_syncs[kind] = int(round(now_ts + (ks.due_mono - now_mono)))
            elif kind == "results":
                next_syncs[kind] = next_live_window_start(self._calendar, now_ts, self.windows)
            else:
                next_syncs[kind] = None
        change_ts = next_mode_change(self._calendar, now_ts, self.windows)
        return ScheduleView(
            next_syncs=next_syncs,
            intervals_s={kind: ks.interval_s for kind, ks in self._kinds.items()},
            mode=self._mode.name,
            mode_round=self._mode.round.round if self._mode.round else None,
            live_session=self._mode.live.name if self._mode.live else None,
            next_mode_change_ts=change_ts,
            season=self._season(now_ts),
            in_flight=tuple(sorted(_flight_label(k) for k in self._flights)),
            calendar_loaded=self._calendar is not None,
            calendar_rounds=len(self._calendar.rounds) if self._calendar else 0,
        )

    # -- work (runs on a worker, or on the manual trigger's thread) ------

    def _run(
        self, client: SyncClient, key: SyncKey, session_name: str | None, trigger: str, attempt: int,
        flight: _Flight, due_mono: float | None = None,
    ) -> None:
        started_ts = [self.clock.now_ts()]

        def wait_for_due_time() -> None:
            if due_mono is not None:
                delay_s = due_mono - self.clock.monotonic()
                if delay_s > 0:
                    self._release.wait(delay_s)  # set at shutdown: send at once rather than wait
            started_ts[0] = self.clock.now_ts()

        try:
            outcome = client.sync(key, session_name, wait_for_due_time)
        except Exception as exc:
            logger.exception("sync internal error %s", key.log_fields())
            outcome = Outcome("failed", None, f"internal error: {type(exc).__name__}", 0)
        self._finish(key, session_name, trigger, attempt, outcome, started_ts[0], flight)

    def _finish(
        self, key: SyncKey, session_name: str | None, trigger: str, attempt: int, outcome: Outcome,
        started_ts: float, flight: _Flight,
    ) -> None:
        now_mono, now_ts = self.clock.monotonic(), self.clock.now_ts()
        retry_in_s = None
        with self._cond:
            self._flights.pop(key, None)
            flight.outcome = outcome
            ks = self._kinds[key.kind]
            # A scheduled sync counts even if the calendar changed the scheduled key while it ran
            # (the first calendar load at start-up does): otherwise a success would go unrecorded.
            scheduled = (trigger == "schedule" or key == self._scheduled_key(key.kind, now_ts)) \
                and ks.interval_s is not None
            if outcome.ok and scheduled:
                ks.last_mono = now_mono
                ks.retry_gen += 1
                if trigger == "manual":
                    ks.due_mono = now_mono + ks.interval_s
                    self._push_slot(key.kind)
            elif not outcome.ok and scheduled and trigger == "schedule":
                retry_in_s = retry_delay_s(attempt, ks.interval_s, self.rng, outcome.retry_after_s)
                if retry_in_s is not None and ks.due_mono is not None and now_mono + retry_in_s < ks.due_mono:
                    ks.retry_gen += 1
                    ks.retry_attempt = attempt + 1
                    heapq.heappush(
                        self._heap, (now_mono + retry_in_s, next(self._seq), ("retry", key.kind, ks.retry_gen))
                    )
                else:
                    retry_in_s = None
            if outcome.ok and scheduled and key.kind == "rounds" and self.calendar_source is not None:
                self._push_calendar(now_mono)
            view = self._view(now_mono, now_ts)
            self._woken = True
            self._cond.notify_all()
        flight.done.set()
        if self.health is not None:
            self.health.record(outcome.answered)
        record = SyncRecord(
            kind=key.kind, season=key.season, round=key.round, session=session_name, trigger=trigger,
            outcome=outcome.outcome, attempt=attempt, http_status=outcome.http_status,
            duration_ms=outcome.duration_ms, started_at=int(started_ts), finished_at=int(now_ts),
            error=outcome.error,
        )
        self.state.record(record, counts_as_last_sync=outcome.ok and scheduled)
        self.state.publish_schedule(view)
        _log_sync(record, retry_in_s)
        self.state.save_soon()

    def _refresh_calendar(self) -> None:
        now_ts = self.clock.now_ts()
        source = self.calendar_source
        calendar = unchanged = None
        season = utc_year(now_ts)
        try:
            if source is None:
                return
            body = source.fetch(season)
            if body is self._calendar_body and self._calendar is not None:
                calendar = unchanged = self._calendar  # same bytes as the calendar in use: nothing to parse or save
            else:
                calendar = parse_calendar(body, logger=logging.getLogger("scheduler_api.race_calendar"))
            if not calendar.rounds:
                raise CalendarLoadError(f"{source.describe(season)}: no rounds")
        except (CalendarLoadError, ValueError) as exc:
            calendar = None
            logger.warning("calendar refresh failed reason=%s; keeping the last good calendar", exc)
        finally:
            now_mono = self.clock.monotonic()
            with self._cond:
                self._calendar_busy = False
                if calendar is not None:
                    self._calendar, self._calendar_body = calendar, body
                loaded = self._calendar is not None
                refresh_s = self.config.calendar_refresh_interval_s
                if not loaded:
                    refresh_s = min(refresh_s, NO_CALENDAR_RETRY_S)
                self._push_calendar(now_mono if self._calendar_again else now_mono + refresh_s)
                self._calendar_again = False
                self._woken = True
                self._cond.notify_all()
        if calendar is not None and source is not None:
            logger.info(
                "calendar refreshed season=%s rounds=%d source=%s changed=%s", calendar.season,
                len(calendar.rounds), source.describe(season), "no" if calendar is unchanged else "yes",
            )
            if calendar is not unchanged:
                self.state.set_calendar(CalendarRecord(body, source.describe(season), int(now_ts)))
                self.state.save_soon()


def _mode_ident(mode: Mode) -> tuple:
    return (
        mode.name,
        (mode.round.season, mode.round.round) if mode.round else None,
        (mode.live.name, mode.live.start_ts) if mode.live else None,
    )


def _flight_label(key: SyncKey) -> str:
    return ":".join(str(p) for p in (key.kind, key.season, key.round) if p is not None)


def _log_sync(record: SyncRecord, retry_in_s: float | None) -> None:
    """One line per attempt outcome (SPEC.md §7); failures at warning."""
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
    logger.log(logging.INFO if record.outcome == "ok" else logging.WARNING, " ".join(parts))
