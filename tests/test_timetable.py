"""The pure due-time rules: fixed rate, coalesce, backoff, the per-kind timetable, DueHeap, clock jumps."""

from __future__ import annotations

import random

import pytest

from scheduler_api.fetcher import Outcome
from scheduler_api.handover import HANDOVER_GUARD_S, HandOver
from scheduler_api.timetable import (
    DueHeap,
    DueKey,
    KindTimetable,
    WallClockWatch,
    next_slot,
    retry_delay_s,
)

def test_fixed_rate_next_due_is_previous_due_plus_interval():
    assert next_slot(100.0, 30.0, 101.5) == (130.0, 0)


def test_misfire_next_due_is_next_slot_of_original_grid():
    assert next_slot(100.0, 30.0, 195.0) == (220.0, 3)


def test_backoff_doubles_with_full_jitter_from_injected_random():
    rng, replay = random.Random(7), random.Random(7)
    delays = [retry_delay_s(attempt, 0.0, 3600.0, rng, max_attempts=5) for attempt in (1, 2, 3, 4)]
    assert delays == [replay.uniform(0, 1), replay.uniform(0, 2), replay.uniform(0, 4), replay.uniform(0, 8)]


def test_backoff_chain_stops_when_backoff_reaches_interval():
    rng = random.Random(1)
    assert retry_delay_s(3, 0.0, 5.0, rng, max_attempts=5) is not None  # backoff 4 s < 5 s
    assert retry_delay_s(4, 0.0, 5.0, rng, max_attempts=5) is None  # backoff 8 s >= 5 s: the next slot comes first


def test_retry_after_is_a_floor_on_the_delay():
    assert retry_delay_s(1, 0.0, 3600.0, random.Random(1), retry_after_s=120.0) == 120.0


# -- the per-kind timetable ----------------------------------------------------

def test_catch_up_is_due_now_when_never_synced_or_overdue():
    never = KindTimetable("rounds")
    assert never.catch_up(1800.0, 100.0) and never.due_mono == 100.0
    recent = KindTimetable("rounds", last_mono=0.0)
    assert not recent.catch_up(1800.0, 100.0) and recent.due_mono == 1800.0  # not a catch-up run
    paused = KindTimetable("results")
    assert not paused.catch_up(None, 100.0) and paused.due_mono is None


def test_mode_change_tightens_to_last_sync_plus_new_interval_and_pauses():
    kt = KindTimetable("standings", interval_s=3600.0, due_mono=3600.0, last_mono=0.0)
    assert kt.change_interval(300.0, 100.0) and kt.due_mono == 300.0
    longer = KindTimetable("standings", interval_s=300.0, due_mono=300.0, last_mono=0.0)
    assert not longer.change_interval(3600.0, 100.0) and longer.due_mono == 300.0
    assert kt.change_interval(None, 200.0) and kt.due_mono is None and kt.interval_s is None
    assert kt.change_interval(30.0, 400.0) and kt.due_mono == 400.0  # resumed: last sync + 30 s passed


def test_fired_slot_moves_on_the_grid_and_succeeded_sets_last():
    kt = KindTimetable("rounds", interval_s=30.0, due_mono=100.0)
    assert kt.fired(100.0, 195.0) == 3 and kt.due_mono == 220.0
    assert not kt.succeeded(196.0, manual=False) and kt.last_mono == 196.0 and kt.due_mono == 220.0
    assert kt.succeeded(200.0, manual=True) and kt.due_mono == 230.0


def test_retry_never_lands_at_or_past_the_next_slot():
    kt = KindTimetable("rounds", interval_s=3600.0, due_mono=110.0)
    busy = Outcome("failed", 503, "HTTP 503", 0, retry_after_s=5.0)
    assert kt.retry_at(1, busy, 100.0, random.Random(1), 3) == 105.0 and kt.retry_attempt == 2
    later = Outcome("failed", 503, "HTTP 503", 0, retry_after_s=10.0)
    assert kt.retry_at(1, later, 100.0, random.Random(1), 3) is None


def test_shift_after_a_forward_jump_runs_overdue_slots_now():
    kt = KindTimetable("rounds", interval_s=1800.0, due_mono=1000.0, last_mono=0.0)
    assert kt.shift(3600.0, 500.0) and kt.due_mono == 500.0 and kt.last_mono == -3600.0


# -- DueHeap and the wall clock watch --------------------------------------------

def test_due_heap_pops_in_order_and_skips_superseded_and_cancelled_entries():
    heap = DueHeap()
    slot, retry, cal = DueKey("slot", "rounds"), DueKey("retry", "rounds"), DueKey("calendar")
    heap.schedule(slot, 10.0)
    heap.schedule(retry, 5.0)
    heap.schedule(cal, 5.0)  # a tie: seq decides, keys are never compared
    heap.schedule(slot, 20.0)  # supersedes the entry at 10
    heap.cancel(retry)
    assert heap.next_due_mono() == 5.0
    assert [(e.due_mono, e.key) for e in heap.pop_due(15.0)] == [(5.0, cal)]
    assert heap.next_due_mono() == 20.0
    assert [e.key for e in heap.pop_due(20.0)] == [slot]
    assert heap.next_due_mono() is None


def test_wall_clock_watch_reports_net_forward_jumps_only():
    watch = WallClockWatch()
    watch.reset(0.0, 1000.0)
    assert watch.forward_s(10.0, 1011.0) == 0.0  # 1 s: noise
    assert watch.forward_s(20.0, 921.0) == 0.0  # stepped back 100 s: debt
    assert watch.forward_s(30.0, 1031.0) == 0.0  # forward 100 s repays the debt
    assert watch.forward_s(40.0, 4641.0) == 3600.0


def test_hand_over_moves_before_a_pending_due_time_it_would_fall_on():
    handover = HandOver(0.05)
    assert handover.lead([30.0, 0.1]) == pytest.approx(0.025)  # at most a quarter of the shortest interval
    assert handover.horizon_s(0.025) == pytest.approx(0.025 + 2 * HANDOVER_GUARD_S)
    handover.handed([100.0, 100.003, None], now_mono=99.98)  # two syncs waiting for 100.000 and 100.003
    assert handover.wake_at(99.99, 99.98) == 99.99  # clear of both
    assert handover.wake_at(100.0005, 99.98) == pytest.approx(100.0 - HANDOVER_GUARD_S)
    # moved before 100.003, it would land on 100.000: moved before that one too
    assert handover.wake_at(100.003, 99.98) == pytest.approx(100.0 - HANDOVER_GUARD_S)
    assert handover.wake_at(100.0005, 100.0002) == 100.0005  # 100.000 is sent: no longer in the way
    assert HandOver(0.0).lead([0.1]) == 0.0 and HandOver(0.0).horizon_s(0.0) == 0.0
