"""Timetable: the pure due-time rules (fixed rate, coalesce, retries, catch-up, mode changes, clock jumps).

Plain code on monotonic seconds, no threads, no locks: the scheduler calls
everything here under its own lock. The retry policy is :func:`retry_delay_s`;
the per-kind rules are the methods of :class:`KindTimetable`; :class:`DueHeap`
orders what is due next, in the spirit of CPython's ``Lib/sched.py``.
:class:`WallClockWatch` (a clock matter, so one might look for it in ``clock.py``) lives here
because its only use is to shift these due times after a wall-clock jump.
See README, What it does, for the rules in prose.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from dataclasses import dataclass, field
from typing import Hashable, Iterator, NamedTuple

from .fetcher import TRANSIENT, Outcome

logger = logging.getLogger(__name__)

#: A wall-clock move relative to the monotonic clock smaller than this, seconds, is noise, not a jump.
CLOCK_JUMP_TOLERANCE_S = 2.0


def next_slot(due_mono: float, interval_s: float, now_mono: float) -> tuple[float, int]:
    """The next due time on a fixed-rate grid; a misfire coalesces into one run.

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
    failed_attempt: int,
    duration_s: float,
    interval_s: float,
    rng: random.Random,
    retry_after_s: float | None = None,
    max_attempts: int = 3,
) -> float | None:
    """The retry policy for a transient failure: backoff with full jitter, paced by the call's own duration.

    The backoff starts at ``max(1 s, duration_s)`` (a slow call is retried
    slowly) and doubles with each attempt; the delay is uniform in
    ``[0, backoff]`` (full jitter) but never shorter than ``duration_s``, so
    retries never come closer together than the calls themselves last. A
    ``Retry-After`` from a 429/503 answer is a floor too. There is no retry
    once ``max_attempts`` attempts were made (``RETRY_MAX_ATTEMPTS``), nor
    once the backoff reaches the kind's interval: the next slot is then as
    close as any retry would be.

    :param failed_attempt: the attempt that just failed, 1-based.
    :param duration_s: how long that attempt took, seconds.
    :param interval_s: the kind's interval, seconds.
    :param rng: the injected random source.
    :param retry_after_s: the answer's ``Retry-After``, seconds, or None.
    :param max_attempts: at most this many attempts per slot.
    :returns: seconds to wait from the end of the failed attempt, or None for no retry.
    """
    if failed_attempt >= max_attempts:
        return None
    backoff_s = max(1.0, duration_s) * 2.0 ** (failed_attempt - 1)
    if backoff_s >= interval_s:
        return None
    delay_s = max(duration_s, rng.uniform(0.0, backoff_s))
    if retry_after_s is not None:
        delay_s = max(delay_s, retry_after_s)
    return delay_s


def stagger_offset_s(index: int, stagger_s: float, interval_s: float) -> float:
    """How far kind number ``index`` starts its grid after the instant it would otherwise start.

    Kinds are numbered seasons 0, rounds 1, results 2, standings 3; each step
    is ``STAGGER`` but at most a quarter of the kind's interval, so kinds
    never reach fetcher_service at the same instant, and a slot never moves
    by more than three quarters of an interval.

    :param index: the kind's number.
    :param stagger_s: ``STAGGER``, seconds (0 turns it off).
    :param interval_s: the kind's interval, seconds.
    :returns: the offset, seconds.
    """
    return index * min(stagger_s, interval_s / 4.0)


class DueKey(NamedTuple):
    """What a :class:`DueHeap` entry is for: ``action`` (e.g. "slot", "retry") and the kind, if any."""

    action: str
    kind: str | None = None


@dataclass
class KindTimetable:
    """When one kind is next due, and why; every rule is a method.

    ``interval_s`` None means the kind is paused (e.g. results outside a live
    window) or turned off, and then ``due_mono`` is None too. ``last_mono``
    is the last successful scheduled sync, monotonic seconds (it may lie
    before the process started: it is derived from the persisted UTC time).
    Wherever a grid starts afresh "now" (catch-up at start, a resume, a
    tightening mode change, a wall-clock jump) it starts at now plus the
    kind's stagger offset (:func:`stagger_offset_s`). Methods that move the
    slot return True; the caller then re-files the kind's slot in its
    :class:`DueHeap`. Not thread-safe.

    :ivar kind: the kind's name.
    :ivar index: the kind's number for the stagger (seasons 0 ... standings 3).
    :ivar stagger_s: ``STAGGER``, seconds (0: off).
    :ivar interval_s: seconds between due times, or None when paused.
    :ivar due_mono: the next slot, monotonic seconds, or None.
    :ivar last_mono: the last successful sync, monotonic seconds, or None.
    :ivar retry_attempt: the attempt number a pending retry will carry (2, 3 ...).
    :ivar held_attempt: the number of a scheduled attempt waiting for a manual
        trigger of the same sync to finish (0 for none): it runs if that fails.
    :ivar slot_key: the heap key of the kind's slot.
    :ivar retry_key: the heap key of the kind's pending retry.
    """

    kind: str
    interval_s: float | None = None
    due_mono: float | None = None
    last_mono: float | None = None
    index: int = 0
    stagger_s: float = 0.0
    retry_attempt: int = 0
    held_attempt: int = 0
    slot_key: DueKey = field(init=False, repr=False)
    retry_key: DueKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.slot_key = DueKey("slot", self.kind)
        self.retry_key = DueKey("retry", self.kind)

    def _start_mono(self, now_mono: float) -> float:
        """:returns: where a grid starting now starts: now plus the kind's stagger offset."""
        if self.interval_s is None or not self.stagger_s:
            return now_mono
        return now_mono + stagger_offset_s(self.index, self.stagger_s, self.interval_s)

    def catch_up(self, interval_s: float | None, now_mono: float) -> bool:
        """Catch-up at start: due now (plus the stagger) if never synced or last synced an interval ago or more.

        :param interval_s: the interval in the current mode, seconds, or None (paused).
        :param now_mono: now, monotonic seconds.
        :returns: True if the kind is due at once (a catch-up run).
        """
        self.interval_s = interval_s
        if interval_s is None:
            return False
        if self.last_mono is None or now_mono - self.last_mono >= interval_s:
            self.due_mono = self._start_mono(now_mono)
            return True
        self.due_mono = max(self._start_mono(now_mono), self.last_mono + interval_s)
        return False

    def change_interval(self, new_s: float | None, now_mono: float) -> bool:
        """A mode change: pause, resume, or tighten at once to ``min(next, last sync + new interval)``.

        A longer interval leaves the pending slot where it is; the grid then
        continues at the new interval from there. A slot that would be due
        at once is due at now plus the kind's stagger offset.

        :param new_s: the interval in the new mode, seconds, or None (pause).
        :param now_mono: now, monotonic seconds.
        :returns: True if the slot moved (or was dropped by a pause).
        """
        old_s, self.interval_s = self.interval_s, new_s
        if new_s is None:
            if old_s is None:
                return False
            self.due_mono = None
            return True
        tightened = now_mono if self.last_mono is None else self.last_mono + new_s
        if old_s is None or self.due_mono is None or (new_s < old_s and tightened < self.due_mono):
            self.due_mono = max(self._start_mono(now_mono), tightened)
            return True
        return False

    def fired(self, due_mono: float, now_mono: float) -> int:
        """The slot at ``due_mono`` fired: move to the next grid slot; a misfire coalesces.

        :param due_mono: the slot that fired, monotonic seconds.
        :param now_mono: now, monotonic seconds.
        :returns: the number of slots coalesced away (0 when on time).
        :raises ValueError: if the kind is paused (a caller bug).
        """
        if self.interval_s is None:
            raise ValueError(f"kind {self.kind} is paused: no slot can fire")
        self.held_attempt = 0
        self.due_mono, missed = next_slot(due_mono, self.interval_s, now_mono)
        return missed

    def succeeded(self, now_mono: float, manual: bool) -> bool:
        """A sync counting as the kind's sync succeeded: last = now; a manual one also sets next = now + interval.

        :param now_mono: now, monotonic seconds.
        :param manual: True for a manual trigger with the scheduled parameters.
        :returns: True if the slot moved.
        """
        self.last_mono = now_mono
        self.held_attempt = 0
        if manual and self.interval_s is not None:
            self.due_mono = now_mono + self.interval_s
            return True
        return False

    def retry_at(
        self, failed_attempt: int, outcome: Outcome, now_mono: float, rng: random.Random, max_attempts: int
    ) -> float | None:
        """When to retry a failed scheduled attempt: transient failures only, never at or past the next slot.

        Permanent failures and timeouts are not retried within the slot (the
        next slot tries again once); transient ones follow
        :func:`retry_delay_s`.

        :param failed_attempt: the attempt that failed, 1-based.
        :param outcome: its outcome (class, duration, ``Retry-After``).
        :param now_mono: now (the end of the failed attempt), monotonic seconds.
        :param rng: the random source for jitter.
        :param max_attempts: ``RETRY_MAX_ATTEMPTS``.
        :returns: the retry's due time, monotonic seconds, or None for no retry;
            when not None, :attr:`retry_attempt` is the retry's attempt number.
        """
        if self.interval_s is None or outcome.failure != TRANSIENT:
            return None
        delay_s = retry_delay_s(failed_attempt, outcome.duration_ms / 1000.0, self.interval_s, rng,
                                outcome.retry_after_s, max_attempts)
        if delay_s is None or self.due_mono is None or now_mono + delay_s >= self.due_mono:
            return None
        self.retry_attempt = failed_attempt + 1
        return now_mono + delay_s

    def shift(self, forward_s: float, now_mono: float) -> bool:
        """The wall clock jumped forward (suspend, or a step): overdue syncs run once, at once (staggered).

        :param forward_s: how far wall time moved ahead of the monotonic clock, seconds.
        :param now_mono: now, monotonic seconds.
        :returns: True if the slot moved.
        """
        if self.last_mono is not None:
            self.last_mono -= forward_s
        if self.due_mono is None:
            return False
        self.due_mono = max(self._start_mono(now_mono), self.due_mono - forward_s)
        return True


class DueEntry(NamedTuple):
    """One filed due time; ``seq`` breaks ties so keys are never compared."""

    due_mono: float
    seq: int
    key: Hashable


class DueHeap:
    """A heap of named due times, one live entry per key (``Lib/sched.py`` style).

    Re-filing a key supersedes its previous entry, and :meth:`cancel` drops
    it, without searching the heap: each key's live entry is known by its
    ``seq`` (a per-key generation), and superseded entries are skipped when
    they reach the top. Not thread-safe.
    """

    def __init__(self) -> None:
        self._heap: list[DueEntry] = []
        self._seq = itertools.count()
        self._live: dict[Hashable, int] = {}

    def schedule(self, key: Hashable, due_mono: float) -> None:
        """File ``key`` at ``due_mono`` (monotonic seconds), superseding its previous entry."""
        entry = DueEntry(due_mono, next(self._seq), key)
        self._live[key] = entry.seq
        heapq.heappush(self._heap, entry)

    def cancel(self, key: Hashable) -> None:
        """Drop ``key``'s entry, if any."""
        self._live.pop(key, None)

    def pop_due(self, until_mono: float) -> Iterator[DueEntry]:
        """Pop live entries due at or before ``until_mono`` (monotonic seconds), earliest first.

        Entries filed while iterating are considered too.
        """
        while self._heap and self._heap[0].due_mono <= until_mono:
            entry = heapq.heappop(self._heap)
            if self._live.get(entry.key) == entry.seq:
                del self._live[entry.key]
                yield entry

    def next_due_mono(self) -> float | None:
        """:returns: the earliest live due time, monotonic seconds, or None if nothing is filed."""
        while self._heap and self._live.get(self._heap[0].key) != self._heap[0].seq:
            heapq.heappop(self._heap)
        return self._heap[0].due_mono if self._heap else None


class WallClockWatch:
    """Notices the wall clock moving against the monotonic clock (a step, or a suspend).

    A step backward is remembered as debt, so stepping back and then forward
    again (an NTP correction) shifts nothing; only the net forward move,
    beyond :data:`CLOCK_JUMP_TOLERANCE_S`, is reported. Not thread-safe.
    """

    def __init__(self) -> None:
        self._offset_s: float | None = None
        self._debt_s = 0.0

    def reset(self, now_mono: float, now_ts: float) -> None:
        """Take ``now_ts - now_mono`` as the reference offset (at start)."""
        self._offset_s = now_ts - now_mono

    def forward_s(self, now_mono: float, now_ts: float) -> float:
        """Compare the clocks now with the last call; logs a warning on a jump.

        :param now_mono: now, monotonic seconds.
        :param now_ts: now, UTC unix seconds.
        :returns: seconds the wall clock jumped forward, net of earlier steps back; 0.0 for none.
        """
        offset_s = now_ts - now_mono
        if self._offset_s is None:
            self._offset_s = offset_s
            return 0.0
        delta_s = offset_s - self._offset_s
        self._offset_s = offset_s
        if delta_s < -CLOCK_JUMP_TOLERANCE_S:
            self._debt_s += -delta_s
            logger.warning("clock wall time stepped back by %.0fs; schedule kept on the monotonic clock", -delta_s)
            return 0.0
        if delta_s <= CLOCK_JUMP_TOLERANCE_S:
            return 0.0
        forward_s = max(0.0, delta_s - self._debt_s)
        self._debt_s = max(0.0, self._debt_s - delta_s)
        if forward_s <= CLOCK_JUMP_TOLERANCE_S:
            return 0.0
        logger.warning("clock wall time jumped forward by %.0fs (suspend or step); overdue syncs run once", forward_s)
        return forward_s
