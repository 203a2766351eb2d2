"""The daemon: build the real parts, start their threads, wait for a signal, shut down in order.

This is the only module that builds real collaborators (sessions, worker
pool, server, state file) and the only one that names, starts and joins
threads; everything else takes its collaborators as constructor arguments.
The shutdown order lives in one place, :meth:`Daemon.shutdown`.

The watchdog pinger (:class:`LoopWatch`), which one might look for in
``journal.py``, is here: it is wiring between the ticker's loop, the state
and sd_notify, not journal formatting, and only the daemon builds it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import socket
import threading
from typing import TYPE_CHECKING, Callable, Mapping

from .api import App
from .calendar_overrides import load_overrides
from .calendar_source import CalendarSource
from .clock import Clock, SystemClock
from .config import Config
from .fetcher import FetcherClient, make_session
from .health import FetcherHealth
from .httpcall import is_loopback
from .journal import Notifier, setup_logging, watchdog_interval_s
from .persist import Persister, StateFile, StateFileError, StateLockedError
from .plan import iso
from .runner import FastSwitching
from .scheduler import Scheduler
from .server import ApiServer
from .signals import SignalPipe
from .state import State
from .ticker import Ticker
from .workers import WorkerPool

if TYPE_CHECKING:
    from .standin import FetcherStandIn

logger = logging.getLogger("scheduler_api")

# A worker waking at a due time must get the interpreter lock quickly even while HTTP handlers are
# busy: with the default 5 ms switch interval every hand-off under load costs up to 5 ms. The interval
# is this short only while a sync waits for its due time (runner.FastSwitching; see README, Design).
SWITCH_INTERVAL_S = 0.001
DISPATCH_LEAD_S = 0.05  # due syncs reach a worker this early and are sent at the due time
WORKERS = 6  # four kinds, a calendar refresh and a health probe: nothing queues behind a hanging sync
MAX_WAIT_S = 60.0  # the ticker re-reads wall time at least once a minute
HTTP_JOIN_S = 5.0  # the accept loop returns at once when told; this only bounds a bug
TICKER_JOIN_S = 5.0
PERSISTER_JOIN_S = 10.0  # one write of the state file, fsyncs included


class StartError(Exception):
    """The daemon cannot start: its state file is owned by another process or unusable, or its port is taken.

    :ivar exit_status: 1 when a restart may help (the file or the port is
        in use), 2 when it cannot (the state file is not a regular file, or
        its directory cannot be written): systemd does not restart on 2.
    """

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def setup_process(config: Config, environ: Mapping[str, str]) -> None:
    """Process-wide settings for a daemon: logging, logging of thread crashes.

    Kept apart from :func:`build_daemon` so that tests can build a daemon
    without changing their own process's logging. (The switch interval is
    shortened only while a sync waits for its due time: :class:`FastSwitching`.)
    """
    setup_logging(config.log_level, environ)
    threading.excepthook = _log_thread_crash  # else a traceback reaches the journal unprefixed, at info


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    """Log an exception that ends a thread at error, so ``journalctl -p warning`` shows it."""
    if args.exc_type is SystemExit:
        return
    logger.error("thread crashed name=%s", args.thread.name if args.thread is not None else "-",
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


class LoopWatch:
    """Called from the ticker's own loop: readiness, ``WATCHDOG=1`` and the ``STATUS=`` line.

    ``WATCHDOG=1`` goes out only from there, at about half of
    ``WATCHDOG_USEC`` (the daemon caps the ticker's wait to that), so a
    ticker that is wedged or dead stops it and systemd restarts the service;
    a busy HTTP server or worker pool cannot keep a dead ticker looking
    alive. ``STATUS=`` is sent whenever the one-line summary changes.

    Ticker thread only.

    :param notifier: sd_notify; with it disabled only ``on_first_loop`` runs.
    :param state: read for the status line.
    :param clock: monotonic seconds between pings.
    :param interval_s: seconds between ``WATCHDOG=1`` pings, or None when the watchdog is off.
    :param on_first_loop: called once, after the ticker's first loop (readiness).
    """

    def __init__(
        self, notifier: Notifier, state: State, clock: Clock, interval_s: float | None,
        on_first_loop: Callable[[], None] | None = None,
    ) -> None:
        self._notifier = notifier
        self._state = state
        self._clock = clock
        self._interval_s = interval_s
        self._on_first_loop = on_first_loop
        self._pinged_mono: float | None = None
        self._status: str | None = None

    def __call__(self) -> None:
        """One pass, after one of the ticker's loops."""
        first, self._on_first_loop = self._on_first_loop, None
        if first is not None:
            first()
        if not self._notifier.enabled:
            return
        now_mono = self._clock.monotonic()
        if self._interval_s is not None and (
            self._pinged_mono is None or now_mono - self._pinged_mono >= self._interval_s * 0.9
        ):
            self._notifier.notify("WATCHDOG=1")
            self._pinged_mono = now_mono
        status = status_line(self._state)
        if status != self._status:
            self._notifier.notify("STATUS=" + status)
            self._status = status


def status_line(state: State) -> str:
    """:returns: the one-line ``STATUS=`` summary: mode and the next sync."""
    view = state.snapshot(history=False).schedule
    upcoming = [(ts, kind) for kind, ts in view.next_syncs.items() if ts is not None]
    mode = view.mode + (f" round {view.mode_round}" if view.mode_round is not None else "")
    if view.live_session:
        mode += f" {view.live_session} live"
    if not upcoming:
        return f"{mode}; no sync scheduled"
    ts, kind = min(upcoming)
    return f"{mode}; next sync {kind} at {iso(ts)}"


class Daemon:
    """The built daemon: its parts, its threads, and the one shutdown order.

    Call :meth:`start`, then :meth:`wait_for_signal`, then :meth:`shutdown`,
    all from the main thread (signal handlers can only be installed there).

    :param clock: measures the shutdown grace period.
    :param state_file: the locked state file, unlocked last.
    :param persister: saves the state; its thread is started and joined here.
    :param pool: the sync workers.
    :param scheduler: the policy; started here, released at shutdown.
    :param ticker: the loop calling ``scheduler.tick``.
    :param ticker_thread: the thread that will run ``ticker`` (built earlier: ``/status`` asks whether it is alive).
    :param server: the bound HTTP server.
    :param notifier: sd_notify.
    :param signals: the wake-up pipe of the main thread.
    :param ready: set after the ticker's first loop.
    :param standin: the demo's stand-in fetcher, stopped at shutdown, or None.
    """

    def __init__(
        self, *, clock: Clock, state_file: StateFile, persister: Persister, pool: WorkerPool,
        scheduler: Scheduler, ticker: Ticker, ticker_thread: threading.Thread, server: ApiServer,
        notifier: Notifier, signals: SignalPipe, ready: threading.Event, standin: FetcherStandIn | None = None,
    ) -> None:
        self._clock = clock
        self._state_file = state_file
        self._persister = persister
        self._pool = pool
        self._scheduler = scheduler
        self._ticker = ticker
        self._server = server
        self._notifier = notifier
        self._signals = signals
        self._ready = ready
        self._standin = standin
        self._threads = {
            "persister": threading.Thread(target=persister.run, name="persister", daemon=True),
            "ticker": ticker_thread,
            "http": threading.Thread(target=server.serve, name="http", daemon=True),
        }

    @property
    def address(self) -> tuple[str, int]:
        """:returns: ``(host, port)`` the server is bound to (port 0 in the config picks one)."""
        host, port = self._server.server_address[:2]
        return host, port

    def start(self) -> None:
        """Install the signal handlers, start the scheduler, the workers and the threads; log ``listening``."""
        self._signals.install()
        self._scheduler.start()
        self._pool.start()
        for thread in self._threads.values():
            thread.start()
        host, port = self.address
        logger.info("listening url=http://%s:%s", host if ":" not in host else f"[{host}]", port)

    def wait_for_signal(self) -> int:
        """Serve until SIGTERM or SIGINT (main thread only).

        Sends ``READY=1`` once, as soon as the port is bound and served and
        the ticker has run a first loop. SIGHUP refreshes the calendar and
        the wait goes on; a burst of them coalesces into one or a few reloads.

        :returns: the signal number that ended the wait.
        """
        ready = False
        while True:
            if not ready and self._ready.is_set():
                ready = True
                self._notifier.notify("READY=1")
            received = self._signals.read()
            for signum in (signal.SIGTERM, signal.SIGINT):
                if signum in received:
                    return signum
            if signal.SIGHUP in received:
                logger.info("reload requested (SIGHUP): refreshing the calendar")
                self._scheduler.reload_calendar()

    def shutdown(self, grace_s: float) -> list[str]:
        """Stop in order, letting syncs under way finish for up to ``grace_s`` (main thread only).

        The order, and why:

        1. Ignore further signals and close the wake-up pipe: a second
           SIGTERM during shutdown changes nothing.
        2. Tell systemd ``STOPPING=1``.
        3. Stop accepting connections and join the accept loop: no new
           manual trigger can start (requests on open connections get 503).
        4. Release the scheduler and stop the ticker: no new scheduled sync
           starts, and syncs waiting for their due time are sent at once
           rather than held back for the whole grace period.
        5. Let the workers finish within ``grace_s``, then wait for manual
           triggers (they run on request threads) until the same deadline,
           so each gets its answer.
        6. Stop the persister and save once more: every outcome recorded by
           now is on disk.
        7. Close the listening socket, stop the demo stand-in, release the
           state file's lock last, so no second daemon starts on it before
           the final save.

        :param grace_s: seconds syncs under way may take in all (``SHUTDOWN_GRACE``).
        :returns: what was still running after the grace period and was
            abandoned (worker names, ``"manual trigger"``); empty after a clean stop.
        """
        self._signals.close()
        logger.info("shutdown requested; letting in-flight syncs finish (up to %gs)", grace_s)
        self._notifier.notify("STOPPING=1\nSTATUS=stopping: letting in-flight syncs finish")
        self._server.stop_serving()
        self._threads["http"].join(HTTP_JOIN_S)
        self._scheduler.release()
        self._ticker.stop()
        self._threads["ticker"].join(TICKER_JOIN_S)
        grace_end_mono = self._clock.monotonic() + grace_s
        abandoned = self._pool.shutdown(grace_s, self._clock.monotonic)
        if not self._server.wait_idle(grace_end_mono - self._clock.monotonic()):
            abandoned.append("manual trigger")
        self._persister.stop()
        self._threads["persister"].join(PERSISTER_JOIN_S)
        self._persister.save()
        self._server.server_close()
        if self._standin is not None:
            self._standin.stop()
        self._state_file.unlock()
        if abandoned:
            logger.warning("shutdown: %d sync(s) still running after the grace period were abandoned", len(abandoned))
        logger.info("stopped")
        return abandoned


def build_daemon(config: Config, *, demo: bool = False, environ: Mapping[str, str] | None = None,
                 listen_socket: socket.socket | None = None) -> Daemon:
    """Build the real parts and wire them; nothing runs until :meth:`Daemon.start`.

    Locks and loads the state file and binds the port, so both errors show
    before anything starts. Warns when listening beyond loopback without a token.

    :param config: the configuration.
    :param demo: run against a built-in stand-in for fetcher_service serving
        the bundled 2026 calendar (the state file is ``config.state_file``:
        the command line points it at a temporary directory).
    :param environ: the process environment (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``);
        None for ``os.environ``.
    :param listen_socket: a listening socket to serve on instead of binding
        ``SCHEDULER_HOST``/``SCHEDULER_PORT`` (socket activation), or None.
    :raises StartError: when the state file is in use or cannot be locked, or the port cannot be bound.
    """
    environ = os.environ if environ is None else environ
    standin = None
    if demo:
        config, standin = _demo(config)
    try:
        return _build(config, environ, standin, listen_socket)
    except StartError:
        if standin is not None:
            standin.stop()
        raise


def _build(config: Config, environ: Mapping[str, str], standin: FetcherStandIn | None,
           listen_socket: socket.socket | None) -> Daemon:
    """:func:`build_daemon` once the configuration is final."""
    clock = SystemClock()
    state_file = StateFile(config.state_file, clock)
    try:
        state_file.lock()
        state = State(state_file.load())
    except StateFileError as exc:
        state_file.unlock()
        raise StartError(str(exc), exit_status=2) from exc
    except (StateLockedError, OSError) as exc:
        raise StartError(str(exc)) from exc

    def client_factory() -> FetcherClient:
        return FetcherClient(config.fetcher_url, config.fetch_paths, config.fetcher_connect_timeout_s,
                             config.fetcher_timeout_s, make_session(), clock)

    notifier, signals, ready = Notifier(environ), SignalPipe(), threading.Event()
    watchdog_s = watchdog_interval_s(environ)

    def on_first_loop() -> None:
        ready.set()
        signals.wake()

    watch = LoopWatch(notifier, state, clock, watchdog_s, on_first_loop)
    # The ticker pings the watchdog, so it must loop at least once per ping interval.
    switching = FastSwitching(SWITCH_INTERVAL_S)
    ticker = Ticker(clock, on_loop=watch, max_wait_s=MAX_WAIT_S if watchdog_s is None else min(MAX_WAIT_S, watchdog_s),
                    near=switching.ahead)
    pool = WorkerPool(WORKERS, client_factory)
    health = FetcherHealth(clock, config.fetcher_health_ttl_s, config.fetcher_health_path, pool.submit)
    scheduler = Scheduler(
        config, state, clock, pool, client_factory, random.SystemRandom(),
        calendar_source=CalendarSource(config.calendar_url, config.calendar_file, timeout_s=config.calendar_timeout_s,
                                       overrides=load_overrides(config.calendar_overrides)),
        health=health, wake=ticker.wake, dispatch_lead_s=DISPATCH_LEAD_S,
        switching=switching,
    )
    ticker_thread = threading.Thread(target=ticker.run, args=(scheduler.tick,), name="ticker", daemon=True)
    from . import __version__  # noqa: PLC0415 - a metadata lookup: the daemon only

    app = App(config, state, scheduler, health, clock, ticker_thread.is_alive, ticker.health, __version__)
    try:
        server = ApiServer((config.host, config.port), app, config.http_timeout_s, config.max_connections, clock,
                           sock=listen_socket)
    except OSError as exc:
        state_file.unlock()
        raise StartError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc
    if not is_loopback(config.host) and not config.token:
        logger.warning("listening on %s without SCHEDULER_API_TOKEN: anyone who can reach it can trigger syncs",
                       config.host)
    return Daemon(
        clock=clock, state_file=state_file, persister=Persister(state, state_file), pool=pool,
        scheduler=scheduler, ticker=ticker, ticker_thread=ticker_thread, server=server, notifier=notifier,
        signals=signals, ready=ready, standin=standin,
    )


def _demo(config: Config) -> tuple[Config, FetcherStandIn]:
    """Start the demo's stand-in fetcher and point the configuration at it."""
    from .standin import FetcherStandIn  # only the demo needs it: the daemon stays smaller without

    standin = FetcherStandIn().start()
    config = dataclasses.replace(
        config, fetcher_url=standin.url, calendar_url=standin.url + "/calendar/{season}.json", calendar_file=None,
    )
    logger.info("demo fetcher stand-in url=%s serving the bundled 2026 calendar", standin.url)
    return config, standin
