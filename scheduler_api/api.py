"""The JSON API: route table, parameter validation and the answers of each endpoint (SPEC.md §5)."""

from __future__ import annotations

import hmac
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .clock import Clock, utc_year
from .config import KINDS, Config
from .durations import format_duration
from .fetcher import Outcome, SyncKey
from .health import FetcherHealth
from .scheduler import Scheduler
from .state import State

logger = logging.getLogger(__name__)

HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 500
FIRST_SEASON = 1950  # the first Formula 1 world championship season
MAX_ROUND = 99
MAX_DIGITS = 4


class BadRequest(Exception):
    """A request the API refuses; carries the HTTP status and message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """What a route sees: the decoded query and the headers it may need.

    :ivar query: parameter name -> value (each name at most once).
    :ivar authorization: the ``Authorization`` header, or None.
    """

    query: Mapping[str, str]
    authorization: str | None = None


Response = tuple[int, dict[str, Any]]


def parse_query(raw: str) -> dict[str, str]:
    """Decode a query string strictly (SPEC.md §5).

    Only ``&`` separates pairs; a pair needs ``=``; percent-escapes must be
    UTF-8; a name may appear once; values may not be empty.

    :param raw: the part after ``?``, undecoded.
    :returns: name -> value.
    :raises BadRequest: on anything else.
    """
    if raw == "":
        return {}
    if ";" in raw:
        raise BadRequest("query separator ';' is not allowed; use '&'")
    result: dict[str, str] = {}
    for pair in raw.split("&"):
        name_raw, sep, value_raw = pair.partition("=")
        try:
            name = urllib.parse.unquote_plus(name_raw, errors="strict")
            value = urllib.parse.unquote_plus(value_raw, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("query is not valid UTF-8 after percent-decoding") from None
        if not sep or name == "":
            raise BadRequest(f"malformed query parameter {pair[:40]!r}")
        if name in result:
            raise BadRequest(f"parameter {name!r} is repeated")
        if value == "":
            raise BadRequest(f"parameter {name!r} is empty")
        result[name] = value
    return result


def parse_number(name: str, value: str, low: int, high: int) -> int:
    """Read a parameter that must be plain ASCII digits within ``[low, high]`` (SPEC.md §5).

    :raises BadRequest: for signs, spaces, other digits, decimals, overlong
        numbers or values out of range.
    """
    if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
        raise BadRequest(f"{name} must be plain digits from {low} to {high}, got {value[:20]!r}")
    number = int(value)
    if not low <= number <= high:
        raise BadRequest(f"{name} must be from {low} to {high}, got {number}")
    return number


class App:
    """The application behind the HTTP API; routes are testable without sockets.

    All methods are thread-safe (they read frozen snapshots and call the
    thread-safe scheduler).

    :param config: the configuration (token, intervals).
    :param state: the shared state.
    :param scheduler: runs manual triggers.
    :param health: fetcher connectivity.
    :param clock: for timestamps and uptime.
    :param ticker_alive: returns whether the ticker thread runs.
    """

    def __init__(
        self,
        config: Config,
        state: State,
        scheduler: Scheduler,
        health: FetcherHealth,
        clock: Clock,
        ticker_alive: Callable[[], bool],
    ) -> None:
        self.config = config
        self.state = state
        self.scheduler = scheduler
        self.health = health
        self.clock = clock
        self.ticker_alive = ticker_alive
        self.started_ts = clock.now_ts()
        self.routes: dict[str, dict[str, Callable[[Request], Response]]] = {
            "/trigger/seasons": {"POST": self.trigger_seasons},
            "/trigger/rounds": {"POST": self.trigger_rounds},
            "/trigger/results": {"POST": self.trigger_results},
            "/trigger/standings": {"POST": self.trigger_standings},
            "/status": {"GET": self.status},
            "/health": {"GET": self.health_check},
            "/history": {"GET": self.history},
        }

    def now(self) -> int:
        """:returns: now, UTC unix seconds, int."""
        return int(self.clock.now_ts())

    def error(self, status: int, message: str) -> Response:
        """:returns: the error body every error uses (SPEC.md §5)."""
        return status, {"success": False, "message": message, "timestamp": self.now()}

    def handle(self, method: str, target: str, authorization: str | None = None) -> tuple[int, dict, dict]:
        """Route one request.

        :param method: ``GET``, ``HEAD`` or ``POST`` (``HEAD`` is routed as ``GET``).
        :param target: the request target, path and query.
        :param authorization: the ``Authorization`` header.
        :returns: ``(status, body, extra headers)``.
        """
        path, _, raw_query = target.partition("?")
        methods = self.routes.get(path)
        if methods is None:
            return (*self.error(404, f"no such endpoint: {path[:100]}"), {})
        lookup = "GET" if method == "HEAD" else method
        route = methods.get(lookup)
        if route is None:
            allow = ", ".join(sorted(set(methods) | ({"HEAD"} if "GET" in methods else set())))
            return (*self.error(405, f"method {method} not allowed on {path}; use {allow}"), {"Allow": allow})
        try:
            request = Request(parse_query(raw_query), authorization)
            return (*route(request), {})
        except BadRequest as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            return (*self.error(exc.status, exc.message), headers)

    # -- triggers --------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        token = self.config.token
        if not token:
            return
        supplied = request.authorization or ""
        scheme, _, value = supplied.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8")
        ):
            raise BadRequest("missing or wrong bearer token", 401)

    def _params(self, request: Request, allowed: tuple[str, ...]) -> dict[str, int]:
        unknown = sorted(set(request.query) - set(allowed))
        if unknown:
            raise BadRequest(
                f"unknown parameter {unknown[0]!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "; none allowed")
            )
        values: dict[str, int] = {}
        if "season" in request.query:
            latest = utc_year(self.clock.now_ts()) + 1
            values["season"] = parse_number("season", request.query["season"], FIRST_SEASON, latest)
        if "round" in request.query:
            values["round"] = parse_number("round", request.query["round"], 0, MAX_ROUND)
        return values

    def _run_trigger(self, key: SyncKey, success_message: str, what: str) -> Response:
        outcome, _joined = self.scheduler.trigger(key)
        if outcome.ok:
            return 200, {"success": True, "message": success_message, "fetcher_called": True, "timestamp": self.now()}
        return _failure_status(outcome), {
            "success": False,
            "message": f"{what} sync failed: {outcome.error}",
            "fetcher_called": outcome.fetcher_called,
            "timestamp": self.now(),
        }

    def trigger_seasons(self, request: Request) -> Response:
        """``POST /trigger/seasons``: takes no parameters."""
        self._params(request, ())
        self._authorize(request)
        return self._run_trigger(SyncKey("seasons"), "Season sync triggered", "Season")

    def trigger_rounds(self, request: Request) -> Response:
        """``POST /trigger/rounds[?season=Y]``."""
        params = self._params(request, ("season",))
        self._authorize(request)
        season = params.get("season", self.scheduler.current_season())
        return self._run_trigger(SyncKey("rounds", season), f"Rounds sync triggered for season {season}", "Rounds")

    def trigger_results(self, request: Request) -> Response:
        """``POST /trigger/results[?season=Y][&round=R]``; the round defaults to the live or latest one."""
        params = self._params(request, ("season", "round"))
        self._authorize(request)
        season = params.get("season", self.scheduler.current_season())
        round_ = params.get("round")
        if round_ is None:
            round_ = self.scheduler.default_round(season)
            if round_ is None:
                raise BadRequest(f"round unknown: no live or past round of season {season} in the calendar; pass round=")
        key = SyncKey("results", season, round_)
        return self._run_trigger(key, f"Results sync triggered for round {round_}", "Results")

    def trigger_standings(self, request: Request) -> Response:
        """``POST /trigger/standings[?season=Y]``."""
        params = self._params(request, ("season",))
        self._authorize(request)
        season = params.get("season", self.scheduler.current_season())
        return self._run_trigger(SyncKey("standings", season), "Standings sync triggered", "Standings")

    # -- readers ---------------------------------------------------------

    def status(self, request: Request) -> Response:
        """``GET /status``: the seed's keys, then what explains them (SPEC.md §5)."""
        self._params(request, ())
        snap = self.state.snapshot(history=False)
        view = snap.schedule
        last_failures = {  # the newest failed attempt of each kind, with its reason (SPEC.md §2)
            kind: None if record is None else {
                "at": record.finished_at, "trigger": record.trigger, "outcome": record.outcome,
                "http_status": record.http_status, "error": record.error,
            }
            for kind, record in snap.last_failures.items()
        }
        intervals = {
            kind: ("paused" if view.intervals_s.get(kind) is None else format_duration(view.intervals_s[kind]))
            for kind in ("rounds", "results", "standings")
        }
        mode: dict[str, Any] = {"name": view.mode, "season": view.season, "round": view.mode_round,
                                "session": view.live_session}
        body = {
            "status": "running" if self.ticker_alive() else "stopped",
            "is_race_weekend": view.mode in ("race_weekend", "live_session"),
            "last_syncs": {kind: snap.last_syncs.get(kind) for kind in KINDS},
            "next_syncs": {kind: view.next_syncs.get(kind) for kind in KINDS},
            "current_intervals": intervals,
            "mode": mode,
            "seasons_interval": format_duration(self.config.seasons_interval_s),
            "next_mode_change": view.next_mode_change_ts,
            "calendar": {
                "loaded": view.calendar_loaded,
                "rounds": view.calendar_rounds,
                "source": snap.calendar.source if snap.calendar else None,
                "fetched_at": snap.calendar.fetched_at if snap.calendar else None,
            },
            "in_flight": list(view.in_flight),
            "counters": dict(snap.counters),
            "last_failures": last_failures,
        }
        if not view.calendar_loaded:
            body["note"] = "no race calendar loaded: running in off-season mode"
        return 200, body

    def stale_kinds(self) -> list[str]:
        """:returns: kinds whose last success is older than three current intervals (SPEC.md §5)."""
        snap = self.state.snapshot(history=False)
        now_ts = self.clock.now_ts()
        stale = []
        for kind in KINDS:
            interval_s = snap.schedule.intervals_s.get(kind)
            if interval_s is None:
                continue
            last_ts = snap.last_syncs.get(kind)
            since_ts = self.started_ts if last_ts is None else last_ts  # never synced: count from start-up
            if now_ts - since_ts > 3 * interval_s:
                stale.append(kind)
        return stale

    def health_check(self, request: Request) -> Response:
        """``GET /health``: healthy, degraded (no fetcher answer, or stale data) or unhealthy (ticker dead)."""
        self._params(request, ())
        running = self.ticker_alive()
        connected = self.health.connected()
        stale = self.stale_kinds()
        if not running:
            status, code = "unhealthy", 503
        elif connected is False or stale:
            status, code = "degraded", 200
        else:
            status, code = "healthy", 200
        return code, {
            "status": status,
            "uptime_seconds": max(0, int(self.clock.now_ts() - self.started_ts)),
            "fetcher_service_connected": bool(connected),
            "scheduler_running": running,
            "stale": stale,
        }

    def history(self, request: Request) -> Response:
        """``GET /history[?kind=K][&limit=N]``: newest first (SPEC.md §5)."""
        unknown = sorted(set(request.query) - {"kind", "limit"})
        if unknown:
            raise BadRequest(f"unknown parameter {unknown[0]!r}; allowed: kind, limit")
        kind = request.query.get("kind")
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"kind must be one of {', '.join(KINDS)}")
        limit = HISTORY_DEFAULT_LIMIT
        if "limit" in request.query:
            limit = parse_number("limit", request.query["limit"], 1, HISTORY_MAX_LIMIT)
        records = [r for r in reversed(self.state.snapshot().history) if kind is None or r.kind == kind]
        return 200, {"records": [r.to_dict() for r in records[:limit]], "count": min(limit, len(records))}


def _failure_status(outcome: Outcome) -> int:
    return 504 if outcome.outcome == "timeout" else 502
