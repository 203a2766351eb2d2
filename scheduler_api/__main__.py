"""Command line, wiring, signals and exit codes: the only place that owns threads (SPEC.md §8, §9)."""

from __future__ import annotations

import sys

if "requests" not in sys.modules:
    # requests imports a charset detector (charset_normalizer: 2.6 MiB resident) when it is
    # installed, only to guess the encoding of text bodies that declare none. The daemon never
    # reads one: fetcher_service answers JSON (RFC 8259: UTF-8) and calendars are decoded as
    # UTF-8 here, and without a detector requests falls back to UTF-8 itself.
    sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
    sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
    import warnings

    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")

import argparse  # noqa: E402 - after the detector is set aside
import ipaddress
import dataclasses
import json
import logging
import os
import random
import signal
import tempfile
import threading
from importlib import resources
from typing import Any, Callable, Sequence

from . import config as config_mod
from .api import App
from .calendar_source import CalendarSource
from .clock import SystemClock
from .config import Config, ConfigError
from .fetcher import FetcherClient, make_session
from .health import FetcherHealth
from .journal import Notifier, setup_logging, under_journal, watchdog_interval_s
from .plan import DEFAULT_HOURS, build_plan, parse_instant, render_json, render_text
from .scheduler import Scheduler
from .ticker import MAX_WAIT_S, Ticker
from .server import ApiServer
from .state import State, StateLockedError
from .workers import WorkerPool

logger = logging.getLogger("scheduler_api")

EXIT_CONFIG = 2
EXIT_FAILURE = 1
# A worker waking at a due time must get the interpreter lock quickly even while HTTP handlers are
# busy: with the default 5 ms switch interval every hand-off under load costs up to 5 ms (see README, Benchmark).
SWITCH_INTERVAL_S = 0.001
DISPATCH_LEAD_S = 0.05  # due syncs reach a worker this early and are sent at the due time (see Scheduler._lead_s)
WORKERS = 6  # four kinds, a calendar refresh and a health probe: nothing queues behind a hanging sync


def is_loopback(host: str) -> bool:
    """:returns: True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """:returns: the argument parser for ``scheduler-api`` and ``python -m scheduler_api``."""
    parser = argparse.ArgumentParser(
        prog="scheduler-api",
        description="Keeps a Formula 1 data store fresh: asks fetcher_service to sync on a race-calendar-aware schedule.",
    )
    parser.add_argument("--env-file", metavar="PATH", help="read variables from this .env file (the environment wins)")
    parser.add_argument("--host", help="address to listen on (overrides SCHEDULER_HOST)")
    parser.add_argument("--port", help="port to listen on (overrides SCHEDULER_PORT)")
    parser.add_argument("--demo", action="store_true",
                        help="run against a built-in stand-in for fetcher_service serving the bundled 2026 calendar")
    sub = parser.add_subparsers(dest="command")
    plan = sub.add_parser("plan", help="print the mode, intervals and next due times at an instant; calls nothing")
    plan.add_argument("--at", help="instant, e.g. 2026-12-06T12:30:00Z (default: now)")
    plan.add_argument("--calendar", metavar="FILE",
                      help="calendar file (Ergast or content-API JSON), or a bundled one by name: ergast-2026.json")
    plan.add_argument("--hours", type=float, default=DEFAULT_HOURS, help="window length in hours (default 48)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.add_argument("--env-file", dest="plan_env_file", metavar="PATH", help="read variables from this .env file")
    return parser


def load_config(args: argparse.Namespace, env_file: str | None) -> Config:
    """Load the configuration, applying ``--host`` and ``--port``.

    :raises ConfigError: on any invalid value.
    """
    environ = dict(os.environ)
    if args.host is not None:
        environ["SCHEDULER_HOST"] = args.host
    if args.port is not None:
        environ["SCHEDULER_PORT"] = args.port
    return config_mod.load(environ, env_file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scheduler-api``.

    :returns: the exit status: 0, 1 (cannot start: port or state file in
        use) or 2 (bad configuration, one line on stderr).
    """
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args, getattr(args, "plan_env_file", None) or args.env_file)
    except ConfigError as exc:
        priority = "<3>" if under_journal(os.environ) else ""  # logging is not set up yet
        print(f"{priority}scheduler-api: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "plan":
        return run_plan(args, config)
    return run_daemon(config, demo=args.demo)


def run_plan(args: argparse.Namespace, config: Config) -> int:
    """``scheduler-api plan``: print the plan; exit 2 on a bad argument or unreadable calendar."""
    try:
        at_ts = parse_instant(args.at) if args.at else int(SystemClock().now_ts())
    except ValueError as exc:
        print(f"scheduler-api: --at {args.at!r}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not 0 < args.hours <= 24 * 366:
        print("scheduler-api: --hours must be from 0 to 8784", file=sys.stderr)
        return EXIT_CONFIG
    try:
        body = _plan_calendar(args.calendar, config)
        plan = build_plan(config, body, at_ts, args.hours)
    except (OSError, ValueError) as exc:
        print(f"scheduler-api: calendar: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(render_json(plan) if args.json else render_text(plan))
    return 0


def _plan_calendar(name: str | None, config: Config) -> Any:
    """The calendar for ``plan``: ``--calendar``, else ``CALENDAR_FILE``, else the persisted one, else none."""
    path = name or config.calendar_file
    if path:
        if not os.path.exists(path) and os.sep not in path:
            bundled = resources.files("scheduler_api").joinpath("data", path)
            if bundled.is_file():
                return json.loads(bundled.read_text("utf-8"))
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8-sig"))
    try:
        with open(config.state_file, "rb") as handle:
            calendar = json.loads(handle.read()).get("calendar")
        return calendar["body"] if calendar else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def run_daemon(config: Config, demo: bool = False) -> int:
    """Run the daemon until SIGTERM or SIGINT (SPEC.md §8).

    :returns: 0 after a clean shutdown, 1 when it cannot start.
    """
    clock = SystemClock()
    environ = os.environ
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    setup_logging(config.log_level, environ)
    threading.excepthook = _log_thread_crash  # else a traceback reaches the journal unprefixed, at info
    standin = None
    if demo:
        from .standin import FetcherStandIn  # only the demo needs it: the daemon stays smaller without

        standin = FetcherStandIn().start()
        state_file = config.state_file
        if not environ.get("STATE_FILE"):
            state_file = os.path.join(tempfile.mkdtemp(prefix="scheduler_api_demo_"), "state.json")
        config = dataclasses.replace(
            config, fetcher_url=standin.url, calendar_url=standin.url + "/calendar/{season}.json",
            calendar_file=None, state_file=state_file,
        )
        logger.info("demo fetcher stand-in url=%s serving the bundled 2026 calendar", standin.url)

    state = State(config.state_file, clock)
    try:
        state.acquire_lock()
    except (StateLockedError, OSError) as exc:
        logger.error("scheduler-api: %s", exc)  # an error, so journalctl -p warning shows it
        return EXIT_FAILURE
    state.load()

    def client_factory() -> FetcherClient:
        return FetcherClient(config.fetcher_url, config.fetch_paths, config.fetcher_connect_timeout_s,
                             config.fetcher_timeout_s, make_session(), clock)

    pool = WorkerPool(WORKERS, client_factory)
    health = FetcherHealth(clock, config.fetcher_health_ttl_s, config.fetcher_health_path, pool.submit)
    notifier = Notifier(environ)
    ticker_running = threading.Event()

    def on_first_loop() -> None:
        ticker_running.set()
        wake()  # the wake-up pipe's writer, defined below before the ticker starts

    on_loop, max_wait_s = _watchdog(state, notifier, environ, clock, on_first_loop)
    ticker = Ticker(clock, on_loop=on_loop, max_wait_s=max_wait_s)
    scheduler = Scheduler(
        config, state, clock, pool, client_factory, random.SystemRandom(),
        CalendarSource(config.calendar_url, config.calendar_file), health, ticker.wake, DISPATCH_LEAD_S,
    )
    ticker_thread = threading.Thread(target=ticker.run, args=(scheduler.tick,), name="ticker", daemon=True)
    app = App(config, state, scheduler, health, clock, ticker_thread.is_alive)
    try:
        server = ApiServer((config.host, config.port), app, config.http_timeout_s)
    except OSError as exc:
        logger.error("scheduler-api: cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
        state.release_lock()
        return EXIT_FAILURE
    if not is_loopback(config.host) and not config.token:
        logger.warning("listening on %s without SCHEDULER_API_TOKEN: anyone who can reach it can trigger syncs",
                       config.host)

    # The main thread sleeps reading this pipe. The interpreter's C-level signal handler writes
    # each signal's number to it (signal.set_wakeup_fd), whichever thread the kernel delivered
    # the signal to, and takes no lock; the ticker writes a 0 byte after its first loop. A Python
    # handler that set an Event could deadlock on a second signal, and one that only set a flag
    # would go unseen while the main thread sleeps if the signal landed on another thread.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def wake() -> None:
        try:
            os.write(wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _noted_in_wakeup_fd)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    scheduler.start()
    pool.start()
    persister = threading.Thread(target=state.run_persister, name="persister", daemon=True)
    persister.start()
    ticker_thread.start()
    http = threading.Thread(target=server.serve, name="http", daemon=True)
    http.start()
    host, port = server.server_address[:2]
    logger.info("listening url=http://%s:%s", host if ":" not in host else f"[{host}]", port)

    ready = False
    while True:
        if not ready and ticker_running.is_set():
            ready = True  # the port is bound and served, and the ticker has run a first loop
            notifier.notify("READY=1")
        received = os.read(wake_r, 512)
        if signal.SIGTERM in received or signal.SIGINT in received:
            break
        if signal.SIGHUP in received:
            logger.info("reload requested (SIGHUP): refreshing the calendar")
            scheduler.reload_calendar()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # shutting down already: further signals change nothing
    signal.set_wakeup_fd(-1)
    os.close(wake_r)
    os.close(wake_w)
    logger.info("shutdown requested; letting in-flight syncs finish (up to %gs)", config.shutdown_grace_s)
    notifier.notify("STOPPING=1\nSTATUS=stopping: letting in-flight syncs finish")
    server.stop_serving()
    http.join(5)
    scheduler.release()
    ticker.stop()
    ticker_thread.join(5)
    grace_end_mono = clock.monotonic() + config.shutdown_grace_s
    stuck = pool.shutdown(config.shutdown_grace_s, clock.monotonic)
    if not server.wait_idle(grace_end_mono - clock.monotonic()):  # manual triggers run on handler threads
        stuck.append("manual trigger")
    state.stop_persister()
    persister.join(10)
    state.save()
    server.server_close()
    if standin is not None:
        standin.stop()
    state.release_lock()
    if stuck:
        logger.warning("shutdown: %d sync(s) still running after the grace period were abandoned", len(stuck))
    logger.info("stopped")
    logging.shutdown()
    if stuck:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _noted_in_wakeup_fd(_signum: int, _frame: Any) -> None:
    """Python-level handler for SIGTERM, SIGINT and SIGHUP: nothing to do.

    The signal is acted on by the main loop, which reads its number from the
    wake-up pipe (``signal.set_wakeup_fd``); this handler only replaces the
    default action (exit, or ``KeyboardInterrupt``).
    """


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    """Log an exception that ends a thread at error, so ``journalctl -p warning`` shows it."""
    if args.exc_type is SystemExit:
        return
    logger.error("thread crashed name=%s", args.thread.name if args.thread is not None else "-",
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _watchdog(
    state: State, notifier: Notifier, environ: Any, clock: SystemClock,
    on_first_loop: Callable[[], None] | None = None,
) -> tuple[Callable[[], None], float]:
    """Send ``WATCHDOG=1`` and a ``STATUS=`` line from the ticker's own loop (SPEC.md §8).

    ``WATCHDOG=1`` goes out only from there, at about half of
    ``WATCHDOG_USEC`` (the loop's wait is capped to that), so a ticker that
    is wedged or dead stops it and systemd restarts the service; a busy HTTP
    server or worker pool cannot keep a dead ticker looking alive.
    ``STATUS=`` is sent whenever the one-line summary changes.

    :param on_first_loop: called once, from the ticker thread, after its first loop (readiness).
    :returns: the ticker's ``on_loop`` and its longest wait, seconds.
    """
    interval_s = watchdog_interval_s(environ)
    max_wait_s = MAX_WAIT_S if interval_s is None else min(MAX_WAIT_S, interval_s)
    last = {"watchdog_mono": None, "status": None, "first": on_first_loop}

    def on_loop() -> None:
        first, last["first"] = last["first"], None
        if first is not None:
            first()
        if not notifier.enabled:
            return
        now_mono = clock.monotonic()
        if interval_s is not None and (last["watchdog_mono"] is None or now_mono - last["watchdog_mono"] >= interval_s * 0.9):
            notifier.notify("WATCHDOG=1")
            last["watchdog_mono"] = now_mono
        status = status_line(state)
        if status != last["status"]:
            notifier.notify("STATUS=" + status)
            last["status"] = status

    return on_loop, max_wait_s


def status_line(state: State) -> str:
    """:returns: the one-line ``STATUS=`` summary: mode and the next sync."""
    from .plan import iso

    view = state.snapshot(history=False).schedule
    upcoming = [(ts, kind) for kind, ts in view.next_syncs.items() if ts is not None]
    mode = view.mode + (f" round {view.mode_round}" if view.mode_round is not None else "")
    if view.live_session:
        mode += f" {view.live_session} live"
    if not upcoming:
        return f"{mode}; no sync scheduled"
    ts, kind = min(upcoming)
    return f"{mode}; next sync {kind} at {iso(ts)}"


if __name__ == "__main__":
    sys.exit(main())
