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
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import stat
import tempfile
from importlib import resources
from typing import Any, Iterator, Sequence, TextIO

from . import activation, client
from . import config as config_mod
from .clock import SystemClock
from .config import Config, ConfigError, non_default_settings
from .daemon import StartError, build_daemon, setup_process
from .httpcall import is_loopback
from .journal import under_journal
from .plan import DEFAULT_HOURS, DEFAULT_LIMIT, build_plan, parse_instant, render_json, render_text

__all__ = ["main", "build_parser", "is_loopback"]  # is_loopback: the tests that start processes import it from here

logger = logging.getLogger("scheduler_api")

EXIT_CONFIG = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C
CLIENT_COMMANDS = ("status", "trigger", "history")


class PipeSafe:
    """A text stream whose reader may go away: ``scheduler-api plan --json | head -c 100``.

    The first write that finds the pipe closed points the process's standard
    output at ``/dev/null`` (so the interpreter's own flush at exit stays
    quiet too) and every later write is dropped: the command still ends with
    its own exit status, and no ``BrokenPipeError`` traceback is printed.
    Main thread only.

    :param stream: the stream to write to, normally ``sys.stdout``.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        """Write and flush ``text``; after a broken pipe, do nothing. :returns: ``len(text)``."""
        if not self.broken:
            try:
                self._stream.write(text)
                self._stream.flush()
            except BrokenPipeError:
                self.broken = True
                _silence(self._stream)
        return len(text)

    def flush(self) -> None:
        """Writes flush themselves; here for the stream protocol."""


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at ``/dev/null``, so the data still buffered in it goes nowhere quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


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
    parser.add_argument("--version", action="store_true", help="print the version and exit")
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
    client.add_commands(sub)
    return parser


def load_config(args: argparse.Namespace, env_file: str | None) -> Config:
    """Load the configuration, applying ``--host`` and ``--port`` (their source shows as the option).

    :raises ConfigError: on any invalid value.
    """
    environ = dict(os.environ)
    overridden = {}
    for option, name in (("host", "SCHEDULER_HOST"), ("port", "SCHEDULER_PORT")):
        if getattr(args, option, None) is not None:
            environ[name] = getattr(args, option)
            overridden[name] = f"--{option}"
    config = config_mod.load(environ, env_file)
    return dataclasses.replace(config, sources={**config.sources, **overridden}) if overridden else config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scheduler-api``.

    :returns: the exit status: 0; 1 (the daemon cannot start: port or state
        file in use; or a triggered sync failed); 2 (bad configuration or
        usage, one line on stderr); 3 (``status``, ``trigger``, ``history``:
        no daemon answering); 130 after Ctrl-C in a client command.
    """
    args = build_parser().parse_args(argv)
    if args.version:
        from . import __version__  # noqa: PLC0415 - looked up only when asked for

        PipeSafe(sys.stdout).write(f"scheduler-api {__version__}\n")
        return 0
    env_file = getattr(args, "plan_env_file", None) or getattr(args, "client_env_file", None) or args.env_file
    try:
        config = load_config(args, env_file)
    except ConfigError as exc:
        priority = "<3>" if under_journal(os.environ) else ""  # logging is not set up yet
        print(f"{priority}scheduler-api: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "plan":
        return run_plan(args, config, PipeSafe(sys.stdout))
    if args.command in CLIENT_COMMANDS:
        try:
            return client.run(args, config, out=PipeSafe(sys.stdout))  # type: ignore[arg-type]
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return run_daemon(config, demo=args.demo)


def run_plan(args: argparse.Namespace, config: Config, out: TextIO | PipeSafe) -> int:
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
    out.write((render_json(plan) if args.json else render_text(plan)) + "\n")
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
    try:  # read only, never moved aside; opened without blocking, so a FIFO there cannot hang plan
        with os.fdopen(os.open(config.state_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            calendar = json.loads(handle.read()).get("calendar")
        return calendar["body"] if calendar else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def run_daemon(config: Config, demo: bool = False) -> int:
    """Run the daemon until SIGTERM or SIGINT, then shut down (see README, Failure behaviour).

    Logs one ``start`` line first: the version and every setting that
    differs from its default, with where it came from, secrets masked. When
    systemd passes a listening socket (socket activation), the daemon serves
    on it instead of binding, and the ``LISTEN_*`` variables are dropped
    from the environment so no child process takes the socket for its own.

    :returns: 0 after a clean shutdown; 1 when it cannot start (state file
        or port in use); 2 when a restart cannot help (the state file is not
        a regular file or its directory cannot be written, or the socket
        systemd passed is not one to serve on); each logged at error.
    """
    setup_process(config, os.environ)
    from . import __version__  # noqa: PLC0415 - the metadata lookup is for the daemon only

    changed = ", ".join(f"{name}={value} ({source})" for name, value, source in non_default_settings(config))
    logger.info("start version=%s non_default: %s", __version__, changed or "none")
    try:
        listen_socket = activation.passed_socket(os.environ)
    except activation.ActivationError as exc:
        logger.error("scheduler-api: socket activation: %s", exc)
        return EXIT_CONFIG
    finally:
        activation.forget(os.environ)
    if listen_socket is not None:
        host, port = listen_socket.getsockname()[:2]
        logger.info("socket activation: serving on the socket systemd passed address=%s port=%s", host, port)
    with _demo_state_dir(config, demo) as config:
        return _serve(config, demo, listen_socket)


@contextlib.contextmanager
def _demo_state_dir(config: Config, demo: bool) -> Iterator[Config]:
    """For ``--demo`` without a ``STATE_FILE`` setting: state in a temporary directory, removed at exit.

    Every demo run then shows the start-up syncs, and leaves nothing behind.
    """
    if not demo or "STATE_FILE" in config.sources:
        yield config
        return
    directory = tempfile.mkdtemp(prefix="scheduler_api_demo_")
    try:
        yield dataclasses.replace(config, state_file=os.path.join(directory, "state.json"))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _serve(config: Config, demo: bool, listen_socket: Any) -> int:
    """Build, start, wait for a signal and shut down; :returns: the exit status."""
    try:
        daemon = build_daemon(config, demo=demo, listen_socket=listen_socket)
    except StartError as exc:
        logger.error("scheduler-api: %s", exc)  # an error, so journalctl -p warning shows it
        return exc.exit_status
    daemon.start()
    daemon.wait_for_signal()
    abandoned = daemon.shutdown(config.shutdown_grace_s)
    if abandoned:
        # A sync still running after the grace period holds a worker thread, and workers are not
        # daemonic (they get the grace period to finish): the interpreter would join it at exit and
        # wait for as long as fetcher_service hangs. State is saved: flush the log and leave now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        if demo and "STATE_FILE" not in config.sources:
            shutil.rmtree(os.path.dirname(config.state_file), ignore_errors=True)
        os._exit(0)
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
