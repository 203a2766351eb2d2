"""The ticker loop: tick, wait until due or woken, at most max_wait_s; errors never end it."""

from __future__ import annotations

import logging
import threading

from scheduler_api.ticker import NEAR_S, UNHEALTHY_ERRORS, WEDGED_AFTER_S, Ticker, TickerHealth, error_wait_s

from conftest import FakeClock


class Ticks:
    """A tick function that records each call and signals when ``count`` calls happened."""

    def __init__(self, next_mono=None, fail_first: bool = False, fail_until: int = 0) -> None:
        self.calls: list[float] = []
        self.next_mono = next_mono
        self.fail_first = fail_first
        self.fail_until = fail_until  # calls up to this number raise
        self._cond = threading.Condition()

    def __call__(self, now_mono: float):
        with self._cond:
            self.calls.append(now_mono)
            self._cond.notify_all()
        if (self.fail_first and len(self.calls) == 1) or len(self.calls) <= self.fail_until:
            raise RuntimeError("tick bug on purpose")
        return self.next_mono

    def wait_for(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.calls) >= count, timeout=5)


def start(ticker: Ticker, tick: Ticks) -> threading.Thread:
    thread = threading.Thread(target=ticker.run, args=(tick,), name="ticker-test", daemon=True)
    thread.start()
    return thread


def test_wake_makes_the_ticker_tick_again_and_stop_ends_the_loop():
    clock = FakeClock(0)
    ticker = Ticker(clock)  # tick says nothing is due: without wake() the loop would wait 60 s
    tick = Ticks()
    thread = start(ticker, tick)
    assert tick.wait_for(1)
    ticker.wake()
    assert tick.wait_for(2)
    ticker.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert tick.calls[:2] == [clock.mono, clock.mono]  # stop() itself ends the wait with one last tick


def test_wait_is_capped_by_max_wait_and_on_loop_follows_every_tick():
    clock = FakeClock(0)
    loops = []
    ticker = Ticker(clock, on_loop=lambda: loops.append(1), max_wait_s=0.001)
    tick = Ticks(next_mono=clock.mono + 3600)  # due in an hour, but the cap is 1 ms
    thread = start(ticker, tick)
    assert tick.wait_for(3)
    ticker.stop()
    thread.join(5)
    assert len(loops) >= 2


def test_a_due_time_already_passed_ticks_again_at_once():
    clock = FakeClock(0)
    ticker = Ticker(clock)
    tick = Ticks(next_mono=clock.mono - 1)
    thread = start(ticker, tick)
    assert tick.wait_for(3)
    ticker.stop()
    thread.join(5)


def test_tick_error_is_logged_and_the_loop_carries_on(caplog):
    caplog.set_level(logging.ERROR, logger="scheduler_api.ticker")
    ticker = Ticker(FakeClock(0), first_error_wait_s=0.01)
    tick = Ticks(fail_first=True)
    thread = start(ticker, tick)
    assert tick.wait_for(2)  # after the error wait
    ticker.stop()
    thread.join(5)
    assert "ticker error" in caplog.text and "tick bug on purpose" in caplog.text


def test_stop_before_run_returns_after_one_tick():
    ticker = Ticker(FakeClock(0))
    ticker.stop()
    tick = Ticks()
    ticker.run(tick)
    assert len(tick.calls) == 1


def test_ticker_error_backoff_doubles_from_one_second_up_to_sixty():
    assert [error_wait_s(n) for n in (1, 2, 3, 4, 5, 6, 7, 8, 20)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_ticker_health_counts_errors_in_a_row_and_resets_after_a_good_tick():
    clock = FakeClock(0)
    ticker = Ticker(clock, first_error_wait_s=0.001)
    assert ticker.health(clock.mono) == TickerHealth(False, 0, None, 0.0)
    tick = Ticks(fail_until=UNHEALTHY_ERRORS)
    seen = []
    original = tick.__call__

    def noting(now_mono):
        seen.append(ticker.health(now_mono))
        return original(now_mono)

    thread = start(ticker, noting)
    assert tick.wait_for(UNHEALTHY_ERRORS + 1)
    ticker.stop()
    thread.join(5)
    assert [h.consecutive_errors for h in seen[:UNHEALTHY_ERRORS + 1]] == [0, 1, 2, 3]
    assert seen[0].running and seen[0].last_loop_mono == clock.mono
    assert not seen[UNHEALTHY_ERRORS].ok  # three in a row: unhealthy
    assert ticker.health(clock.mono).consecutive_errors == 0 and not ticker.health(clock.mono).running


def test_ticker_that_has_not_come_round_for_150_seconds_is_not_ok():
    assert TickerHealth(True, 0, 100.0, WEDGED_AFTER_S).ok
    assert not TickerHealth(True, 0, 100.0, WEDGED_AFTER_S + 0.5).ok
    assert not TickerHealth(False, 0, 100.0, 0.0).ok


def test_near_says_whether_the_next_wake_up_is_within_near_s_and_wakes_that_early_to_say_so():
    clock = FakeClock(0)
    said: list[bool] = []
    near_said = threading.Event()

    def near(value: bool) -> None:
        said.append(value)
        if value:
            near_said.set()

    ticker = Ticker(clock, near=near)
    # The fake clock stands still, so the next wake-up stays 0.3 s away: the loop first says "not
    # near" and waits 0.3 - NEAR_S = 0.1 s (real time), then ticks again; the test then moves the
    # clock so that the wake-up is 0.1 s away, and the loop says "near".
    tick = Ticks(next_mono=clock.mono + 0.3)
    thread = start(ticker, tick)
    assert tick.wait_for(2)
    clock.advance(0.2)
    assert near_said.wait(5)
    ticker.stop()
    ticker.wake()
    thread.join(5)
    assert said[0] is False and said[-1] is True
    assert NEAR_S == 0.2
