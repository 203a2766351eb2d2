"""The daemon in-process: the shutdown order, signals through the wake-up pipe, readiness, the watchdog pinger."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
from typing import Any

import pytest

from scheduler_api.config import Config
from scheduler_api.daemon import Daemon, LoopWatch, StartError, build_daemon, status_line
from scheduler_api.persist import StateFile, StateLockedError
from scheduler_api.signals import SIGNALS, SignalPipe
from scheduler_api.standin import FetcherStandIn
from scheduler_api.state import ScheduleView, State

from conftest import DATA, ts


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """The daemon installs handlers for SIGTERM, SIGINT and SIGHUP and ignores them at shutdown."""
    saved = {signum: signal.getsignal(signum) for signum in SIGNALS}
    yield
    signal.set_wakeup_fd(-1)
    for signum, handler in saved.items():
        signal.signal(signum, handler)


class Calls:
    """Fakes that note each method called on them, in one shared list."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def fake(self, name: str, attributes: dict[str, Any] | None = None, **answers: Any) -> Any:
        """:returns: an object whose every method notes ``name.method`` and returns ``answers[method]``."""
        log = self.log

        class Fake:
            def __getattr__(self, method: str) -> Any:
                if attributes and method in attributes:
                    return attributes[method]

                def call(*_args: Any, **_kwargs: Any) -> Any:
                    log.append(f"{name}.{method}")
                    return answers.get(method)

                return call

        return Fake()


class FakeNotifier:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.sent: list[str] = []

    def notify(self, message: str) -> bool:
        self.sent.append(message)
        return self.enabled


def faked_daemon(calls: Calls, signals: Any = None, **parts: Any) -> Daemon:
    built = dict(
        clock=calls.fake("clock", monotonic=0.0), state_file=calls.fake("state_file"),
        persister=calls.fake("persister"), pool=calls.fake("pool", shutdown=[]),
        scheduler=calls.fake("scheduler"), ticker=calls.fake("ticker"),
        ticker_thread=threading.Thread(target=lambda: None), notifier=FakeNotifier(),
        server=calls.fake("server", {"server_address": ("127.0.0.1", 8081)}, wait_idle=True),
        signals=signals or calls.fake("signals"), ready=threading.Event(),
    )
    built.update(parts)
    return Daemon(**built)


def test_shutdown_runs_in_its_documented_order():
    calls = Calls()
    daemon = faked_daemon(calls)
    daemon.start()
    calls.log.clear()

    abandoned = daemon.shutdown(10.0)

    threads_own = {"persister.run", "server.serve"}  # the fakes' thread bodies, called at start
    steps = [step for step in calls.log if not step.startswith("clock.") and step not in threads_own]
    assert steps == [
        "signals.close",
        "server.stop_serving",
        "scheduler.release", "ticker.stop",
        "pool.shutdown", "server.wait_idle",
        "persister.stop", "persister.save",
        "server.server_close",
        "state_file.unlock",
    ]
    assert abandoned == []
    assert daemon._notifier.sent == ["STOPPING=1\nSTATUS=stopping: letting in-flight syncs finish"]


def test_shutdown_reports_what_the_grace_period_abandoned():
    calls = Calls()
    daemon = faked_daemon(calls, pool=calls.fake("pool", shutdown=["sync-2"]),
                          server=calls.fake("server", {"server_address": ("127.0.0.1", 1)}, wait_idle=False))
    daemon.start()

    assert daemon.shutdown(0.0) == ["sync-2", "manual trigger"]


def test_sighup_reloads_the_calendar_and_sigterm_ends_the_wait():
    calls = Calls()
    reloads = []

    class Scheduler:
        def start(self) -> None:
            pass

        def reload_calendar(self) -> None:
            reloads.append(True)
            signal.raise_signal(signal.SIGTERM)  # the next read of the pipe sees it

        def release(self) -> None:
            pass

    daemon = faked_daemon(calls, signals=SignalPipe(), scheduler=Scheduler())
    daemon.start()
    signal.raise_signal(signal.SIGHUP)

    assert daemon.wait_for_signal() == signal.SIGTERM
    assert reloads == [True]
    daemon.shutdown(0.0)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # further signals change nothing


def test_ready_is_sent_once_after_the_tickers_first_loop():
    calls = Calls()
    signals, ready, notifier = SignalPipe(), threading.Event(), FakeNotifier()
    daemon = faked_daemon(calls, signals=signals, ready=ready, notifier=notifier)
    daemon.start()
    ready.set()
    signals.wake()  # as the ticker's first loop does
    for _ in range(3):
        signals.wake()
    signal.raise_signal(signal.SIGINT)

    assert daemon.wait_for_signal() == signal.SIGINT
    assert notifier.sent == ["READY=1"]
    daemon.shutdown(0.0)


def test_a_burst_of_signals_fits_the_pipe_and_is_read_at_once():
    signals = SignalPipe()
    signals.install()
    for _ in range(200):
        signal.raise_signal(signal.SIGHUP)

    received = signals.read()

    assert set(received) == {signal.SIGHUP}
    signals.close()
    signals.wake()  # after close: does nothing, never writes to a reused descriptor


# -- the watchdog pinger ---------------------------------------------------------------------


def test_loop_watch_pings_the_watchdog_at_nine_tenths_of_its_interval(clock):
    notifier, firsts = FakeNotifier(), []
    watch = LoopWatch(notifier, State(), clock, 10.0, lambda: firsts.append(True))

    watch()
    clock.advance(8.9)
    watch()
    clock.advance(0.1)
    watch()

    assert notifier.sent.count("WATCHDOG=1") == 2
    assert firsts == [True]


def test_loop_watch_sends_status_only_when_it_changes(clock):
    notifier, state = FakeNotifier(), State()
    watch = LoopWatch(notifier, state, clock, None)

    watch()
    watch()
    state.publish_schedule(ScheduleView(mode="race_weekend", mode_round=23, next_syncs={"rounds": ts("2026-12-05T12:00:30Z")}))
    watch()

    assert notifier.sent == [
        "STATUS=off_season; no sync scheduled",
        "STATUS=race_weekend round 23; next sync rounds at 2026-12-05T12:00:30Z",
    ]


def test_loop_watch_without_systemd_only_signals_readiness(clock):
    notifier, firsts = FakeNotifier(enabled=False), []
    watch = LoopWatch(notifier, State(), clock, 10.0, lambda: firsts.append(True))

    watch()
    watch()

    assert notifier.sent == [] and firsts == [True]


def test_status_line_names_the_live_session_and_the_next_sync():
    state = State()
    state.publish_schedule(ScheduleView(
        mode="live_session", mode_round=24, live_session="race",
        next_syncs={"seasons": ts("2026-12-06T18:00:00Z"), "results": ts("2026-12-06T13:30:30Z")},
    ))

    assert status_line(state) == "live_session round 24 race live; next sync results at 2026-12-06T13:30:30Z"


# -- the real parts ------------------------------------------------------------------------------


@pytest.fixture
def standin():
    fetcher = FetcherStandIn().start()
    yield fetcher
    fetcher.stop()


def daemon_config(standin: FetcherStandIn, tmp_path, **changes: Any) -> Config:
    fields = dict(host="127.0.0.1", port=0, fetcher_url=standin.url, calendar_file=str(DATA / "ergast-2026.json"),
                  state_file=str(tmp_path / "state.json"), shutdown_grace_s=5.0)
    fields.update(changes)
    return Config(**fields)


def test_built_daemon_serves_saves_and_frees_its_state_file(standin, tmp_path):
    config = daemon_config(standin, tmp_path)
    daemon = build_daemon(config, environ={})
    daemon.start()
    try:
        connection = http.client.HTTPConnection(*daemon.address, timeout=10)
        connection.request("POST", "/trigger/seasons")
        answer = connection.getresponse()
        body = json.loads(answer.read())
        connection.close()
    finally:
        signal.raise_signal(signal.SIGTERM)
        assert daemon.wait_for_signal() == signal.SIGTERM
        abandoned = daemon.shutdown(config.shutdown_grace_s)

    assert answer.status == 200 and body["success"] is True
    assert abandoned == []
    with open(config.state_file, encoding="utf-8") as handle:
        saved = json.load(handle)
    # the trigger ran, or joined the catch-up sync of the same kind: either way its outcome is saved
    assert any(record["kind"] == "seasons" and record["outcome"] == "ok" for record in saved["history"])
    assert saved["last_syncs"]["seasons"] is not None
    again = StateFile(config.state_file, None)
    again.lock()  # released at shutdown
    again.unlock()


def test_state_file_in_use_is_a_start_error(standin, tmp_path):
    config = daemon_config(standin, tmp_path)
    owner = StateFile(config.state_file, None)
    owner.lock()
    try:
        with pytest.raises(StartError) as raised:
            build_daemon(config, environ={})
    finally:
        owner.unlock()

    assert "is in use by another scheduler_api process" in str(raised.value)
    assert isinstance(raised.value.__cause__, StateLockedError)


def test_port_in_use_is_a_start_error_and_frees_the_state_file(standin, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = daemon_config(standin, tmp_path, port=port)
        with pytest.raises(StartError) as raised:
            build_daemon(config, environ={})

    assert str(raised.value).startswith(f"cannot listen on 127.0.0.1:{port}: ")
    again = StateFile(config.state_file, None)
    again.lock()
    again.unlock()
