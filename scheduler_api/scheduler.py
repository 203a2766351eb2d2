"""Scheduler: the policy deciding which sync runs when (start, tick, trigger, calendar reload).

The rules for due times are in :mod:`scheduler_api.timetable`, the overlap
policy and the running of one attempt in :mod:`scheduler_api.runner`, the
live-window and results-settle rules in :mod:`scheduler_api.race_calendar`, and the loop that
calls :meth:`Scheduler.tick` in :mod:`scheduler_api.ticker`. This module
ties them together under one lock.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Callable

from .calendar_refresh import CalendarRefresh
from .calendar_source import CalendarSource
from .clock import Clock, utc_year
from .config import KINDS, Config
from .fetcher import TIMEOUT, Outcome, SyncClient, SyncKey
from .health import FetcherHealth
from .mode_tracker import ModeTracker
from .race_calendar import Mode, Windows, latest_round
from .call_gate import Busy, CallGate
from .runner import Attempt, Executor, FastSwitching, Flights, Runner, Settled
from .schedule_view import schedule_view
from .state import ScheduleView, State
from .handover import HandOver
from .timetable import CLOCK_JUMP_TOLERANCE_S, DueHeap, DueKey, KindTimetable, WallClockWatch

logger = logging.getLogger(__name__)

_CALENDAR = DueKey("calendar refresh")  # heap key of the next calendar refresh


class Scheduler:
    """Decides when each kind syncs; all due-time rules come from :mod:`scheduler_api.timetable`.

    :meth:`tick` runs everything due and returns the next wake-up, so tests
    drive the schedule without a thread; :class:`scheduler_api.ticker.Ticker`
    calls it in a loop. Every change that moves a due time calls ``wake``,
    so the ticker re-runs :meth:`tick` and never polls.

    Rules (see README, What it does): fixed rate without drift; a misfire
    coalesces into one run; a mode change tightens at once to
    ``min(next, last sync + new interval)``; catch-up at start; retries with
    backoff and full jitter that never run past the next slot; a scheduled
    slot finding its sync still running is skipped (overlap policy *skip*),
    a manual trigger joins it. A wall clock jumping forward (suspend, a step)
    makes overdue syncs run once; a step backward moves nothing.

    All public methods are thread-safe. One plain lock guards the
    timetable; it is never held while calling the fetcher, the calendar
    source, ``wake`` or the executor.

    :param config: the configuration.
    :param state: the shared state (last syncs, calendar, history).
    :param clock: monotonic and UTC wall clocks.
    :param executor: runs scheduled syncs and calendar refreshes.
    :param client_factory: builds a client for a manual trigger's own thread.
    :param rng: the random source for jitter.
    :param calendar_source: where to refresh the calendar from, or None to keep what ``state`` holds.
    :param health: fetcher connectivity, told of every exchange, or None.
    :param wake: called when the next wake-up may have moved (the ticker's ``wake``), or None.
    :param dispatch_lead_s: how early a due sync is handed to a worker, seconds
        (see :class:`~scheduler_api.handover.HandOver`).
    :param switching: shortens the interpreter's switch interval while a sync waits for its due time, or None.
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
        wake: Callable[[], None] | None = None,
        dispatch_lead_s: float = 0.0,
        switching: FastSwitching | None = None,
    ) -> None:
        # 14 attributes: five collaborators the timetable needs, the lock, and one each for the hand-over,
        # the heap, the kinds, the flights, the runner, the modes, the clock watch and the calendar refresh.
        self._config = config
        self._state = state
        self._clock = clock
        self._rng = rng
        self._wake = wake if wake is not None else _nothing
        self._handover = HandOver(dispatch_lead_s)
        self._lock = threading.Lock()
        self._heap = DueHeap()
        self._kinds = {kind: KindTimetable(kind, index=i, stagger_s=config.stagger_s) for i, kind in enumerate(KINDS)}
        self._flights = Flights()
        gate = CallGate(config.fetcher_max_concurrency)
        self._runner = Runner(clock, state, executor, client_factory, self._settle, health, gate, switching)
        windows = Windows(
            config.race_weekend_lead_s, config.race_weekend_tail_s, config.live_lead_s, config.live_tail_s,
            config.results_settle_window_s,
        )
        self._modes = ModeTracker(None, windows, clock.now_ts())
        self._wall = WallClockWatch()
        self._refresh = CalendarRefresh(calendar_source, state, config.calendar_min_refresh_interval_s,
                                        config.calendar_refresh_interval_s)

    @property
    def windows(self) -> Windows:
        """:returns: the window margins from the configuration."""
        return self._modes.windows

    # -- start-up --------------------------------------------------------

    def start(self) -> None:
        """Load the calendar and last syncs from ``state`` and set the first due times.

        Catch-up at start: a kind never synced, or whose last sync is older
        than its interval, is due now (kind number *i* at now + *i* ×
        ``STAGGER``) and counted in ``counters.caught_up``; a persisted last
        sync in the future is ignored; a kind turned off gets no slot. A calendar refresh is due now if a source is set; a
        ``CALENDAR_FILE`` is read at once, before the first due times are
        set, so the catch-up syncs already use the calendar's season.
        """
        source = self._refresh.source
        local_file = source is not None and bool(source.file_path)
        if local_file:
            self._refresh_calendar()
        now_mono, now_ts = self._clock.monotonic(), self._clock.now_ts()
        snap = self._state.snapshot(history=False)
        with self._lock:
            if snap.calendar is not None and self._modes.calendar is None:
                persisted = self._refresh.persisted(snap.calendar.body)
                if persisted is not None:
                    self._modes.set_calendar(persisted)
            for kind, kt in self._kinds.items():
                last_ts = snap.last_syncs.get(kind)
                if last_ts is not None and last_ts > now_ts + CLOCK_JUMP_TOLERANCE_S:
                    logger.warning("state last sync of kind=%s lies in the future (%d); ignored", kind, last_ts)
                    self._state.forget_last_sync(kind)
                    last_ts = None
                if last_ts is not None:
                    kt.last_mono = now_mono - (now_ts - last_ts)
            self._wall.reset(now_mono, now_ts)
            self._modes.update(now_ts)
            mode = self._modes.mode
            caught_up = 0
            for kind, kt in self._kinds.items():
                caught_up += kt.catch_up(self._interval_for(kind, mode), now_mono)
                self._file_slot(kt)
            if source is not None and not local_file:
                self._file_refresh(now_mono)
            loaded = self._modes.calendar is not None
            view = self._view(now_mono, now_ts)
        logger.info(
            "scheduler started mode=%s calendar=%s season=%s",
            mode.name, "loaded" if loaded else ("pending" if source else "none"), view.season,
        )
        if caught_up:
            self._state.count("caught_up", caught_up)
        self._state.publish_schedule(view)

    # -- the ticker ------------------------------------------------------

    def tick(self, now_mono: float) -> float | None:
        """Run every sync and refresh that is due at ``now_mono``.

        Re-reads UTC wall time first: a wall clock that jumped forward
        relative to the monotonic clock (suspend, or a step) makes overdue
        syncs run once; a step backward moves nothing. The mode is then
        re-evaluated. Due syncs go to the executor outside the lock; the
        schedule is published once they are in flight.

        :param now_mono: now, monotonic seconds.
        :returns: the next wake-up, monotonic seconds, or None if nothing is scheduled.
        """
        now_ts = self._clock.now_ts()
        with self._lock:
            self._follow_wall_clock(now_mono, now_ts)
            self._apply_mode(now_mono, now_ts)
            attempts, refresh = self._pop_due(now_mono, now_ts)
            view = None if attempts else self._view(now_mono, now_ts)
        if view is not None:
            self._state.publish_schedule(view)
        if refresh:
            self._runner.submit_work(self._refresh_calendar)
        for attempt in attempts:
            self._runner.submit(attempt)
        with self._lock:
            view = None
            if attempts and not all(attempt.flight.done for attempt in attempts):
                # Shows the syncs just handed over as in flight. When all of them finished
                # already (an inline executor), each published a newer view itself.
                view = self._view(now_mono, now_ts)
            self._handover.handed((attempt.due_mono for attempt in attempts), now_mono)
            next_due = self._heap.next_due_mono()
            candidates = [] if next_due is None else [self._handover.wake_at(next_due - self._lead_s(), now_mono)]
            change_ts = self._modes.next_change_ts(now_ts)
            if change_ts is not None:
                candidates.append(now_mono + (change_ts - now_ts))
        if view is not None:
            self._state.publish_schedule(view)
        return min(candidates) if candidates else None

    def _pop_due(self, now_mono: float, now_ts: float) -> tuple[list[Attempt], bool]:
        """Pop what is due (caller holds the lock).

        :returns: the attempts to hand to the executor, and whether to refresh the calendar.
        """
        attempts: list[Attempt] = []
        refresh = False
        for entry in self._heap.pop_due(now_mono + self._handover.horizon_s(self._lead_s())):
            if entry.key == _CALENDAR:
                refresh = self._refresh.begin() or refresh
                continue
            kt = self._kinds[entry.key.kind]
            if kt.interval_s is None:
                continue
            if entry.key == kt.slot_key:
                self._heap.cancel(kt.retry_key)  # a pending retry never runs past the next slot
                missed = kt.fired(entry.due_mono, now_mono)
                if missed:
                    self._state.count("coalesced", missed, kind=kt.kind)
                    logger.info("misfire kind=%s missed_slots=%d coalesced=1", kt.kind, missed)
                self._file_slot(kt)
                self._collect(kt.kind, 1, now_ts, entry.due_mono, attempts)
            else:
                if kt.retry_attempt > 1:  # not a slot's first attempt held behind a manual trigger
                    self._state.count("retried", kind=kt.kind)
                self._collect(kt.kind, kt.retry_attempt, now_ts, entry.due_mono, attempts)
        return attempts, refresh

    def release(self) -> None:
        """Shutting down: syncs waiting for their due time are sent at once from now on, and no
        calendar refresh starts (one already running ends quietly: nothing is logged after the
        shutdown line)."""
        with self._lock:
            self._refresh.stopped = True
        self._runner.release()

    def reload_calendar(self) -> None:
        """Refresh the calendar now (SIGHUP)."""
        with self._lock:
            self._file_refresh(self._clock.monotonic())
        self._wake()

    # -- manual triggers -------------------------------------------------

    def trigger(self, key: SyncKey) -> tuple[Outcome, bool]:
        """Run a manual sync now in the calling thread and wait for its outcome.

        If the same key is already in flight the call joins it and returns
        its outcome: no second fetcher call. Otherwise it waits, in arrival
        order, for a place under the concurrency bound
        (``FETCHER_MAX_CONCURRENCY``). A success with the scheduled
        parameters counts as the kind's sync: last = now, next = now +
        interval. A failure never ends or delays the kind's scheduled
        retries.

        :param key: what to sync.
        :returns: ``(outcome, joined)``.
        :raises Busy: when every place is taken and 32 triggers wait already; nothing was called.
        """
        with self._lock:
            flight, joined = self._flights.join(key)
            ticket = None
            if not joined:
                try:
                    ticket = self._runner.ticket()
                except Busy:
                    self._flights.end(key)  # nobody saw it: joining happens under this lock
                    raise
            session_name = self._session_for(key)
            view = None if joined else self._view(self._clock.monotonic(), self._clock.now_ts())
        if view is not None:
            self._state.publish_schedule(view)
            self._runner.run_here(Attempt(key, session_name, "manual", 1, flight), ticket)
        return flight.wait(), joined

    def view(self) -> ScheduleView:
        """The schedule as of now, for a reader that must not wait for the next tick (``/status``).

        A wall clock that jumped forward is followed at once, as the next tick
        would (overdue syncs become due now, and the ticker is woken), so
        next due times are right straight after a step. Cheap: no calendar
        scan, no I/O.

        :returns: the schedule, next due times in UTC unix seconds against the clock now.
        """
        with self._lock:
            now_mono, now_ts = self._clock.monotonic(), self._clock.now_ts()
            moved = self._follow_wall_clock(now_mono, now_ts)
            view = self._view(now_mono, now_ts)
        if moved:
            self._wake()
        return view

    def call_counts(self) -> tuple[int, int]:
        """:returns: ``(fetcher calls in flight, syncs and triggers waiting for a place)`` under the bound."""
        return self._runner.call_counts()

    def current_season(self) -> int:
        """:returns: the season scheduled syncs use: the calendar's, else the UTC year of now."""
        with self._lock:
            return self._season(self._clock.now_ts())

    def default_round(self, season: int) -> int | None:
        """:returns: the live or most recent round of ``season`` from the calendar, or None
        (the default round of a results trigger; see README, HTTP API)."""
        with self._lock:
            calendar = self._modes.calendar
            if calendar is None or calendar.season != season:
                return None
            found = latest_round(calendar, self._clock.now_ts(), self._modes.windows)
            return None if found is None else found.round

    # -- internals (caller holds the lock) -------------------------------

    def _season(self, now_ts: float) -> int:
        calendar = self._modes.calendar
        if calendar is not None and calendar.season is not None:
            return calendar.season
        return utc_year(now_ts)

    def _interval_for(self, kind: str, mode: Mode) -> float | None:
        return self._config.interval_s(kind, mode.is_race_weekend, mode.live is not None, mode.settling is not None)

    def _scheduled_key(self, kind: str, now_ts: float) -> SyncKey | None:
        if kind == "seasons":
            return SyncKey("seasons")
        if kind == "results":  # the live session's round, else the round whose results settle
            mode = self._modes.mode
            session = mode.live or mode.settling
            return None if session is None else SyncKey("results", session.season, session.round)
        return SyncKey(kind, self._season(now_ts))

    def _session_for(self, key: SyncKey) -> str | None:
        live = self._modes.mode.live
        if live is not None and key.season == live.season and (key.round is None or key.round == live.round):
            return live.name
        return None

    def _lead_s(self) -> float:
        """:returns: how early a due sync is handed to a worker, seconds (see :class:`HandOver`)."""
        return self._handover.lead(kt.interval_s for kt in self._kinds.values() if kt.interval_s)

    def _collect(self, kind: str, number: int, now_ts: float, due_mono: float, attempts: list[Attempt]) -> None:
        key = self._scheduled_key(kind, now_ts)
        if key is None:
            return
        flight = self._flights.start(key)
        if flight is None:
            running = self._flights.get(key)
            if running is not None and running.manual:
                # A manual trigger of this very sync runs: this attempt waits for its outcome and
                # runs after it if it failed, so a failed trigger never ends the scheduled chain.
                self._kinds[kind].held_attempt = number
                logger.info("hold %s trigger=schedule attempt=%d reason=manual_trigger_running",
                            key.log_fields(), number)
                return
            self._state.count("skipped", kind=kind)
            logger.info("skip %s trigger=schedule reason=still_running", key.log_fields())
            return
        attempts.append(Attempt(key, self._session_for(key), "schedule", number, flight, due_mono))

    def _file_refresh(self, due_mono: float) -> None:
        """File the next calendar refresh at ``due_mono`` (monotonic seconds)."""
        self._refresh.filed_mono = due_mono
        self._heap.schedule(_CALENDAR, due_mono)

    def _follow_wall_clock(self, now_mono: float, now_ts: float) -> bool:
        """A wall clock that jumped forward makes overdue syncs due now. :returns: True if slots moved."""
        forward_s = self._wall.forward_s(now_mono, now_ts)
        if not forward_s:
            return False
        for kt in self._kinds.values():
            if kt.shift(forward_s, now_mono):
                self._file_slot(kt)
        return True

    def _file_slot(self, kt: KindTimetable) -> None:
        """Re-file ``kt``'s slot in the heap, or drop it when the kind is paused."""
        if kt.due_mono is None:
            self._heap.cancel(kt.slot_key)
        else:
            self._heap.schedule(kt.slot_key, kt.due_mono)

    def _apply_mode(self, now_mono: float, now_ts: float) -> None:
        old = self._modes.update(now_ts)
        if old is None:
            return
        mode = self._modes.mode
        round_ = mode.race_round
        logger.info(
            "mode change from=%s to=%s%s%s", old.name, mode.name,
            f" season={round_.season} round={round_.round}" if round_ else "",
            f" session={mode.live.name}" if mode.live else "",
            f" settling={mode.settling.name} settling_round={mode.settling.round}" if mode.settling else "",
        )
        for kind, kt in self._kinds.items():
            if kt.change_interval(self._interval_for(kind, mode), now_mono):
                if kt.interval_s is None:
                    self._heap.cancel(kt.retry_key)
                self._file_slot(kt)

    def _view(self, now_mono: float, now_ts: float) -> ScheduleView:
        """:returns: the schedule for readers (see :func:`scheduler_api.schedule_view.schedule_view`)."""
        return schedule_view(self._kinds, self._modes, self._flights.keys(), self._season(now_ts),
                             self._config.is_off, now_mono, now_ts)

    # -- after an attempt (runs on a worker, or on the manual trigger's thread) --

    def _settle(self, attempt: Attempt, outcome: Outcome, now_mono: float, now_ts: float) -> Settled:
        """The timetable's bookkeeping once ``attempt`` finished; the runner then records it.

        A scheduled failure may file a retry (transient failures only, see
        :meth:`KindTimetable.retry_at`); a failed manual trigger leaves any
        pending retry alone, and a scheduled attempt held behind it runs now
        (unless it timed out: fetcher_service is likely still at work on it).
        """
        key = attempt.key
        retry_in_s = None
        with self._lock:
            self._flights.end(key)
            kt = self._kinds[key.kind]
            # A scheduled sync counts even if the calendar changed the scheduled key while it ran
            # (the first calendar load at start-up does): otherwise a success would go unrecorded.
            scheduled = (attempt.trigger == "schedule" or key == self._scheduled_key(key.kind, now_ts)) \
                and kt.interval_s is not None
            if outcome.ok and scheduled:
                self._heap.cancel(kt.retry_key)
                if kt.succeeded(now_mono, manual=attempt.trigger == "manual"):
                    self._file_slot(kt)
                if key.kind == "rounds" and self._refresh.source is not None:
                    refresh_mono = self._refresh.after_rounds(now_mono)
                    if refresh_mono is not None:
                        self._file_refresh(refresh_mono)
            elif scheduled and attempt.trigger == "schedule":
                retry_mono = kt.retry_at(attempt.number, outcome, now_mono, self._rng,
                                         self._config.retry_max_attempts)
                if retry_mono is not None:
                    self._heap.schedule(kt.retry_key, retry_mono)
                    retry_in_s = retry_mono - now_mono
            elif scheduled and kt.held_attempt:
                kt.retry_attempt, kt.held_attempt = kt.held_attempt, 0
                if outcome.failure != TIMEOUT:
                    self._heap.schedule(kt.retry_key, now_mono)
            view = self._view(now_mono, now_ts)
        self._wake()
        return Settled(outcome.ok and scheduled, retry_in_s, view)

    # -- calendar refresh (runs on a worker; at start-up on the caller's thread) --

    def _refresh_calendar(self, _client: SyncClient | None = None) -> None:
        """Load the calendar; on failure keep the last good one. Then file the next refresh.

        :param _client: the worker's client, unused (the calendar source has its own session).
        """
        now_ts = self._clock.now_ts()
        season = utc_year(now_ts)
        refresh = self._refresh
        with self._lock:
            refresh.started_mono = self._clock.monotonic()
            current = self._modes.calendar
            if refresh.stopped:
                refresh.end()
                return
        calendar = body = None
        try:
            calendar, body = refresh.load(season, self._refresh_stopped)
        finally:
            now_mono = self._clock.monotonic()
            with self._lock:
                if calendar is not None and calendar is not self._modes.calendar:
                    self._modes.set_calendar(calendar)
                again = refresh.end()
                if refresh.source is not None:
                    self._file_refresh(refresh.next_mono(now_mono, again, self._modes.calendar is not None))
            self._wake()
        if calendar is not None:
            refresh.took(calendar, body, calendar is not current, season, now_ts, self._refresh_stopped())

    def _refresh_stopped(self) -> bool:
        """:returns: whether shutdown began, so a refresh still running logs quietly (takes the lock)."""
        with self._lock:
            return self._refresh.stopped


def _nothing() -> None:
    """The default ``wake``: nothing to wake (tests and ``plan`` call :meth:`Scheduler.tick` themselves)."""
