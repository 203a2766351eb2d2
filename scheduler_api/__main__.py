"""The command line: argument parsing, configuration errors, ``plan``, and exit codes."""

from __future__ import annotations

import sys

if "requests" not in sys.modules:
    # Set aside before anything imports requests, hence here at the very top of the entry point:
    # requests imports a charset detector (charset_normalizer: 2.6 MiB resident) when it is
    # installed, only to guess the encoding of text bodies that declare none. The daemon never
    # reads one: fetcher_service answers JSON (RFC 8259: UTF-8) and calendars are decoded as
    # UTF-8 here, and without a detector requests falls back to UTF-8 itself.
    sys.modules.setdefault("charset_normalizer", None)  # type: ignore[arg-type]
    sys.modules.setdefault("chardet", None)  # type: ignore[arg-type]
    import warnings

    warnings.filterwarnings("ignore", message="Unable to find acceptable character detection dependency")

import argparse  # noqa: E402 - after the detector is set aside
import json
import logging
import os
from importlib import resources
from typing import Any, Sequence

from . import config as config_mod
from .clock import SystemClock
from .config import Config, ConfigError
from .daemon import StartError, build_daemon, is_loopback, setup_process
from .journal import under_journal
from .plan import DEFAULT_HOURS, DEFAULT_LIMIT, build_plan, parse_instant, render_json, render_text

__all__ = ["main", "build_parser", "is_loopback"]  # is_loopback: the tests that start processes import it from here

logger = logging.getLogger("scheduler_api")

EXIT_CONFIG = 2
EXIT_FAILURE = 1


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
    plan.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                      help=f"with --json, list the first N next syncs (default {DEFAULT_LIMIT}; all are counted)")
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
    if args.limit < 0:
        print("scheduler-api: --limit must be 0 or more", file=sys.stderr)
        return EXIT_CONFIG
    try:
        body = _plan_calendar(args.calendar, config)
        plan = build_plan(config, body, at_ts, args.hours, args.limit)
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
    """Run the daemon until SIGTERM or SIGINT, then shut down (see README, Failure behaviour).

    :returns: 0 after a clean shutdown, 1 when it cannot start (state file
        or port in use; logged at error).
    """
    setup_process(config, os.environ)
    try:
        daemon = build_daemon(config, demo=demo)
    except StartError as exc:
        logger.error("scheduler-api: %s", exc)  # an error, so journalctl -p warning shows it
        return EXIT_FAILURE
    daemon.start()
    daemon.wait_for_signal()
    abandoned = daemon.shutdown(config.shutdown_grace_s)
    logging.shutdown()
    if abandoned:
        # A sync still running after the grace period holds a worker thread, and workers are not
        # daemonic (they get the grace period to finish): the interpreter would join it at exit and
        # wait for as long as fetcher_service hangs. State is saved and the log flushed: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
