"""``scheduler-api status``, ``trigger`` and ``history``: clients of a running daemon, for people first.

They read the same settings as the daemon (``--env-file``,
``SCHEDULER_HOST``, ``SCHEDULER_PORT``, ``SCHEDULER_API_TOKEN``), print for a
terminal of 80 columns (times in UTC and as "in 4m 10s" / "2h ago"), or the
daemon's own JSON with ``--json``. Exit statuses (README, Command line):
0 done, 1 the sync failed, 2 bad usage, 3 daemon not reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, TextIO

import requests

from .config import KINDS, Config
from .httpcall import CallError, NoAnswer, exchange, make_session

EXIT_OK = 0
EXIT_SYNC_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

CONNECT_TIMEOUT_S = 1.5  # a daemon that does not accept within this is "not reachable"
READ_DEADLINE_S = 10.0  # status and history answer at once
TRIGGER_MARGIN_S = 30.0  # a trigger waits for fetcher_service: FETCHER_TIMEOUT and this margin
MAX_ANSWER_BYTES = 8 * 1024 * 1024
WIDTH = 80

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def add_commands(sub: Any) -> None:
    """Add ``status``, ``trigger`` and ``history`` to the ``scheduler-api`` sub-command parser.

    :param sub: the object returned by ``ArgumentParser.add_subparsers``.
    """
    status = sub.add_parser("status", help="show the running daemon's mode, syncs and failures")
    status.add_argument("--json", action="store_true", help="print the daemon's /status JSON")
    trigger = sub.add_parser("trigger", help="ask the running daemon to sync one kind now and wait for it")
    trigger.add_argument("kind", choices=KINDS)
    trigger.add_argument("--season", help="season (default: the current one)")
    trigger.add_argument("--round", help="round, for results (default: the live or most recent one)")
    trigger.add_argument("--json", action="store_true", help="print the daemon's JSON answer")
    history = sub.add_parser("history", help="show the running daemon's recent sync attempts, newest first")
    history.add_argument("--kind", choices=KINDS)
    history.add_argument("--limit", help="how many records, 1-500 (default 20)")
    history.add_argument("--json", action="store_true", help="print the daemon's /history JSON")
    for parser in (status, trigger, history):
        parser.add_argument("--env-file", dest="client_env_file", metavar="PATH",
                            help="read variables from this .env file (the environment wins)")


def base_url(config: Config) -> str:
    """:returns: the daemon's URL from ``SCHEDULER_HOST``/``SCHEDULER_PORT`` (a wildcard address means loopback)."""
    host = _WILDCARD_HOSTS.get(config.host, config.host)
    return f"http://[{host}]:{config.port}" if ":" in host else f"http://{host}:{config.port}"


def run(args: argparse.Namespace, config: Config, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
        now_ts: Callable[[], float] = time.time) -> int:
    """Run one client command against the daemon that ``config`` points to.

    :param args: the parsed command line (``args.command`` is ``status``, ``trigger`` or ``history``).
    :param config: the loaded configuration.
    :param out: where answers go.
    :param err: where errors go (one line).
    :param now_ts: UTC unix seconds, for "in 4m" and "2h ago".
    :returns: the exit status: 0 done, 1 the sync failed, 2 bad usage, 3 daemon not reachable.
    """
    url = base_url(config)
    try:
        if args.command == "status":
            status, body = _call(url, "GET", "/status", config)
            health = None if args.json else _call(url, "GET", "/health", config)[1]
            if status != 200:
                return _refused(status, body, err, url)
            out.write(json.dumps(body) + "\n" if args.json else render_status(body, health, url, now_ts()))
            return EXIT_OK
        if args.command == "history":
            query = [("kind", args.kind), ("limit", args.limit if args.limit is not None else "20")]
            status, body = _call(url, "GET", "/history" + _query(query), config)
            if status != 200:
                return _refused(status, body, err, url)
            out.write(json.dumps(body) + "\n" if args.json else render_history(body, now_ts()))
            return EXIT_OK
        query = [("season", args.season), ("round", args.round if args.kind == "results" else None)]
        if args.round is not None and args.kind != "results":
            err.write("scheduler-api: --round applies to results only\n")
            return EXIT_USAGE
        status, body = _call(url, "POST", f"/trigger/{args.kind}" + _query(query), config,
                             deadline_s=config.fetcher_timeout_s + TRIGGER_MARGIN_S)
    except NoAnswer as exc:
        err.write(f"scheduler-api: no daemon answering at {url} ({exc.reason})\n")
        return EXIT_UNREACHABLE
    except CallError as exc:
        err.write(f"scheduler-api: the daemon at {url} did not answer in time ({exc.reason})\n")
        return EXIT_UNREACHABLE
    if args.json:
        out.write(json.dumps(body) + "\n")
    message = body.get("message", "") if isinstance(body, dict) else ""
    if status == 200:
        if not args.json:
            out.write(message + "\n")
        return EXIT_OK
    if not args.json:
        err.write(f"scheduler-api: {message or 'HTTP %d' % status}\n")
    return EXIT_SYNC_FAILED if status in (429, 502, 503, 504) else EXIT_USAGE


def _refused(status: int, body: Any, err: TextIO, url: str = "") -> int:
    """A GET the daemon refused: 2 for a refusal in its own words; 3 when what answered is not the daemon."""
    message = body.get("message") if isinstance(body, dict) else None
    if message is None:  # every refusal of the daemon is a JSON body with a message
        err.write(f"scheduler-api: no daemon answering at {url} (something else answered HTTP {status})\n")
        return EXIT_UNREACHABLE
    err.write(f"scheduler-api: HTTP {status}: {message}\n")
    return EXIT_USAGE


def _query(pairs: list[tuple[str, str | None]]) -> str:
    kept = [(name, value) for name, value in pairs if value is not None]
    return "?" + "&".join(f"{name}={requests.utils.quote(value, safe='')}" for name, value in kept) if kept else ""


def _call(url: str, method: str, path: str, config: Config, deadline_s: float = READ_DEADLINE_S) -> tuple[int, Any]:
    """:returns: ``(HTTP status, decoded JSON body or None)``; raises :class:`CallError` when there is no answer."""
    session = make_session(trust_env=False)
    try:
        headers = {"Accept": "application/json"}
        if config.token and method == "POST":
            headers["Authorization"] = f"Bearer {config.token}"
        prepared = session.prepare_request(requests.Request(method, url + path, headers=headers))
        answer = exchange(session, prepared, connect_timeout_s=CONNECT_TIMEOUT_S, deadline_s=deadline_s,
                          max_bytes=MAX_ANSWER_BYTES)
    finally:
        session.close()
    try:
        return answer.status, json.loads(answer.body)
    except ValueError:
        return answer.status, None


# -- rendering ------------------------------------------------------------


def relative(seconds: float) -> str:
    """:returns: a duration for people, two units at most: ``"4m 10s"``, ``"2h"``, ``"3d 4h"``."""
    seconds = int(round(abs(seconds)))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            amount, seconds = divmod(seconds, size)
            parts.append(f"{amount}{unit}")
        elif parts:
            break
    return " ".join(parts[:2])


def when(ts: float | None, now_ts: float) -> str:
    """:returns: ``"13:30:10Z (in 10s)"``, with the date when it is not today (UTC), or ``"-"``."""
    if ts is None:
        return "-"
    day = time.strftime("%Y-%m-%d", time.gmtime(ts))
    clock = time.strftime("%H:%M:%SZ", time.gmtime(ts))
    shown = clock if day == time.strftime("%Y-%m-%d", time.gmtime(now_ts)) else f"{day[5:]} {clock}"
    delta = ts - now_ts
    if abs(delta) < 1:
        return f"{shown} (now)"
    return f"{shown} (in {relative(delta)})" if delta > 0 else f"{shown} ({relative(delta)} ago)"


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_status(body: dict[str, Any], health: Any, url: str, now_ts: float) -> str:
    """:returns: ``/status`` (and ``/health``) as lines for an 80-column terminal."""
    mode = body.get("mode") or {}
    health_word = health.get("status", "?") if isinstance(health, dict) else "?"
    lines = [f"scheduler_api at {url}: {body.get('status', '?')}, {health_word}"]
    if isinstance(health, dict):
        notes = [f"{key} {', '.join(health[key])}" for key in ("failing", "stale") if health.get(key)]
        if health.get("fetcher_service_connected") is False:
            notes.insert(0, "fetcher_service not reachable")
        if notes:
            lines.append("  Health:   " + _cut("; ".join(notes), WIDTH - 12))
    where = ", ".join(f"{key} {mode[key]}" for key in ("season", "round", "session") if mode.get(key) is not None)
    lines.append(f"  Mode:     {mode.get('name', '?')}" + (f" ({where})" if where else ""))
    if body.get("next_mode_change"):
        lines.append(f"  Changes:  {when(body['next_mode_change'], now_ts)}")
    calendar = body.get("calendar") or {}
    if calendar.get("loaded"):
        fetched = calendar.get("fetched_at")
        lines.append(f"  Calendar: {calendar.get('rounds')} rounds" + (f", read {when(fetched, now_ts)}" if fetched else ""))
    else:
        lines.append("  Calendar: none loaded (off-season mode)")
    if body.get("in_flight"):
        lines.append("  Running:  " + _cut(", ".join(body["in_flight"]), WIDTH - 12))
    lines.append(f"  Now:      {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(now_ts))} (times are UTC)")
    lines.append("")
    lines.append(f"  {'KIND':<11}{'INTERVAL':<10}{'LAST SYNC':<28}NEXT SYNC")
    intervals = dict(body.get("current_intervals") or {})
    intervals.setdefault("seasons", body.get("seasons_interval", "?"))
    failures = body.get("last_failures") or {}
    for kind in KINDS:
        last = (body.get("last_syncs") or {}).get(kind)
        nxt = (body.get("next_syncs") or {}).get(kind)
        lines.append(f"  {kind:<11}{str(intervals.get(kind, '?')):<10}{(when(last, now_ts) if last else 'never'):<28}"
                     f"{when(nxt, now_ts)}")
    for kind in KINDS:
        failure = failures.get(kind)
        if failure:
            head = f"  ! {kind} failed {when(failure.get('at'), now_ts)}: "
            lines.append(head + _cut(failure.get("error") or failure.get("outcome", ""), WIDTH - len(head)))
    return "\n".join(lines) + "\n"


def render_history(body: dict[str, Any], now_ts: float) -> str:
    """:returns: ``/history`` records as lines for an 80-column terminal, newest first."""
    records = body.get("records") or []
    if not records:
        return "no sync attempts recorded yet\n"
    lines = [f"{'FINISHED (UTC)':<22}{'SYNC':<22}{'TRIGGER':<9}{'OUTCOME':<9}{'HTTP':<5}{'TOOK':>7}"]
    for record in records:
        parameters = record.get("parameters") or {}
        sync = ":".join(str(part) for part in (record.get("kind"), parameters.get("season"), parameters.get("round"))
                        if part is not None)
        took = f"{record.get('duration_ms', 0) / 1000:.1f}s"
        status = record.get("http_status")
        lines.append(f"{time.strftime('%m-%d %H:%M:%S', time.gmtime(record.get('finished_at', 0))):<22}"
                     f"{_cut(sync, 21):<22}{record.get('trigger', ''):<9}{record.get('outcome', ''):<9}"
                     f"{'-' if status is None else status!s:<5}{took:>7}")
        if record.get("error"):
            lines.append("    " + _cut(record["error"], WIDTH - 4))
    return "\n".join(lines) + "\n"
