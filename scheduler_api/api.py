"""The JSON API: the route table, parameter checks and the answer of each endpoint.

Routes are pure in the sense that matters for tests: ``(method, target,
authorization)`` in, ``(status, body, headers)`` out, no sockets (the
transport is :mod:`server`). The endpoints and their answers are described
in the README, HTTP API.
"""

from __future__ import annotations

import functools
import hmac
import types
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .clock import Clock, utc_year
from .config import KINDS, Config
from .durations import format_duration
from .fetcher import Outcome, SyncKey
from .health import FetcherHealth
from .httphead import HttpError, RawBody
from .query import parse_number, parse_query, reject_unknown
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Readings
from .metrics import render as render_metrics
from .call_gate import BUSY_RETRY_AFTER_S, Busy
from .scheduler import Scheduler
from .state import Snapshot, State
from .ticker import TickerHealth

HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 500
FIRST_SEASON = 1950  # the first Formula 1 world championship season
MAX_ROUND = 99


@dataclass(frozen=True)
class Trigger:
    """How one ``POST /trigger/<kind>`` reads its parameters and words its answers.

    Every parameter a trigger allows is optional: ``season`` defaults to the
    season the schedule uses (the calendar's, else the UTC year), ``round``
    to the live or most recent round of that season in the calendar (400
    when there is none).

    :ivar params: the query parameters allowed, in the order the 400 message lists them.
    :ivar success: the exact success message; ``{season}`` and ``{round}`` are filled in.
    :ivar name: the kind as the failure message starts, e.g. ``Rounds sync failed: ...``.
    """

    params: tuple[str, ...]
    success: str
    name: str


TRIGGERS: Mapping[str, Trigger] = types.MappingProxyType({
    "seasons": Trigger((), "Season sync triggered", "Season"),
    "rounds": Trigger(("season",), "Rounds sync triggered for season {season}", "Rounds"),
    "results": Trigger(("season", "round"), "Results sync triggered for round {round}", "Results"),
    "standings": Trigger(("season",), "Standings sync triggered", "Standings"),
})


@dataclass(frozen=True)
class Request:
    """What a route sees: the decoded query and the headers it may need.

    :ivar query: parameter name -> value (each name at most once).
    :ivar authorization: the ``Authorization`` header, or None.
    """

    query: Mapping[str, str]
    authorization: str | None = None


Response = tuple[int, dict[str, Any]]


class App:
    """The application behind the HTTP API; routes are testable without sockets.

    All methods are thread-safe (they read frozen snapshots and call the
    thread-safe scheduler).

    :param config: the configuration (token, intervals).
    :param state: the shared state.
    :param scheduler: runs manual triggers.
    :param health: fetcher connectivity.
    :param clock: for timestamps and uptime (monotonic, so a wall-clock step never changes it).
    :param ticker_alive: returns whether the ticker thread runs.
    :param ticker_health: returns how the ticker fares at a monotonic instant
        (:meth:`scheduler_api.ticker.Ticker.health`), or None to trust ``ticker_alive`` alone.
    :param version: the daemon's version, for ``/metrics``.
    """

    def __init__(
        self,
        config: Config,
        state: State,
        scheduler: Scheduler,
        health: FetcherHealth,
        clock: Clock,
        ticker_alive: Callable[[], bool],
        ticker_health: Callable[[float], TickerHealth] | None = None,
        version: str = "",
    ) -> None:
        self.config = config
        self.state = state
        self.scheduler = scheduler
        self.health = health
        self.clock = clock
        self.ticker_alive = ticker_alive
        self.ticker_health = ticker_health
        self.version = version
        self.started_ts = clock.now_ts()
        self.started_mono = clock.monotonic()
        self.routes: dict[str, dict[str, Callable[[Request], Response]]] = {
            f"/trigger/{kind}": {"POST": functools.partial(self.trigger, kind)} for kind in TRIGGERS
        }
        self.routes.update({
            "/status": {"GET": self.status},
            "/health": {"GET": self.health_check},
            "/history": {"GET": self.history},
            "/metrics": {"GET": self.metrics},
        })

    def now(self) -> int:
        """:returns: now, UTC unix seconds, int."""
        return int(self.clock.now_ts())

    def error(self, status: int, message: str) -> Response:
        """:returns: the body every error answer has: ``success`` false, the ``message`` and a ``timestamp``."""
        return status, {"success": False, "message": message, "timestamp": self.now()}

    def handle(self, method: str, target: str, authorization: str | None = None) -> tuple[int, dict, dict]:
        """Route one request.

        An unknown path is 404 whatever the method; ``OPTIONS`` on a known
        path is 204 with ``Allow``; a known path asked with any other method
        it does not take (``PUT``, ``DELETE``, ``BREW``...) is 405 with
        ``Allow``; a refused request is answered by its :class:`HttpError`
        (401 adds ``WWW-Authenticate``).

        :param method: the method token, case-sensitive (``HEAD`` is routed as ``GET``).
        :param target: the request target, path and query, undecoded.
        :param authorization: the ``Authorization`` header, or None.
        :returns: ``(status, body, extra headers)``.
        """
        path, _, raw_query = target.partition("?")
        methods = self.routes.get(path)
        if methods is None:
            return (*self.error(404, f"no such endpoint: {path[:100]}"), {})
        lookup = "GET" if method == "HEAD" else method
        route = methods.get(lookup)
        if route is None:
            allow = ", ".join([*methods, *(["HEAD"] if "GET" in methods else [])])  # OPTIONS is answered too, as usual unlisted
            if method == "OPTIONS":
                return 204, {}, {"Allow": allow}
            return (*self.error(405, f"method {method} not allowed on {path}; use {allow}"), {"Allow": allow})
        try:
            request = Request(parse_query(raw_query), authorization)
            return (*route(request), {})
        except HttpError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            if exc.status == 429:
                headers = {"Retry-After": str(BUSY_RETRY_AFTER_S)}
            return (*self.error(exc.status, exc.message), headers)

    # -- triggers --------------------------------------------------------

    def trigger(self, kind: str, request: Request) -> Response:
        """``POST /trigger/<kind>``: run one manual sync and wait for its outcome.

        Parameters are checked first (400), then the token (401), then the
        defaults are found (see :class:`Trigger`); nothing is called on any
        of these errors. A failed sync is 502, or 504 when fetcher_service
        did not answer in time, with the reason in the message.

        :param kind: a key of :data:`TRIGGERS`.
        :param request: the decoded query and the ``Authorization`` header.
        :raises HttpError: 400 for a bad or unknown parameter or an unknown
            default round, 401 for a missing or wrong token.
        """
        route = TRIGGERS[kind]
        params = self._trigger_params(request, route.params)
        self._authorize(request)
        if self.config.is_off(kind):
            return self.error(409, f"{kind} syncs are turned off (FETCH_PATH_{kind.upper()}=off)")
        key = self._sync_key(kind, route.params, params)
        try:
            outcome, _joined = self.scheduler.trigger(key)
        except Busy as exc:
            raise HttpError(429, f"fetcher_service is busy: try again in {exc.retry_after_s}s") from None
        if outcome.ok:
            message = route.success.format(season=key.season, round=key.round)
            return 200, {"success": True, "message": message, "fetcher_called": True, "timestamp": self.now()}
        return _failure_status(outcome), {
            "success": False,
            "message": f"{route.name} sync failed: {outcome.error}",
            "fetcher_called": outcome.fetcher_called,
            "timestamp": self.now(),
        }

    def _authorize(self, request: Request) -> None:
        """:raises HttpError: 401 unless a token is unset or ``Bearer <token>`` matches (in constant time)."""
        token = self.config.token
        if not token:
            return
        supplied = request.authorization or ""
        scheme, _, value = supplied.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8")
        ):
            raise HttpError(401, "missing or wrong bearer token")

    def _trigger_params(self, request: Request, allowed: tuple[str, ...]) -> dict[str, int]:
        """:returns: the ``season`` (1950 to next UTC year) and ``round`` (0 to 99) given.

        :raises HttpError: 400 for a parameter not in ``allowed`` or a value out of range.
        """
        reject_unknown(request.query, allowed)
        values: dict[str, int] = {}
        if "season" in request.query:
            latest = utc_year(self.clock.now_ts()) + 1
            values["season"] = parse_number("season", request.query["season"], FIRST_SEASON, latest)
        if "round" in request.query:
            values["round"] = parse_number("round", request.query["round"], 0, MAX_ROUND)
        return values

    def _sync_key(self, kind: str, allowed: tuple[str, ...], params: Mapping[str, int]) -> SyncKey:
        """:returns: the key to sync, each allowed parameter not given filled with its default.

        :raises HttpError: 400 when ``round`` is needed and the calendar has
            no live or past round of the season.
        """
        if "season" not in allowed:
            return SyncKey(kind)
        season = params.get("season", self.scheduler.current_season())
        if "round" not in allowed:
            return SyncKey(kind, season)
        round_ = params.get("round")
        if round_ is None:
            round_ = self.scheduler.default_round(season)
            if round_ is None:
                raise HttpError(
                    400, f"round unknown: no live or past round of season {season} in the calendar; pass round="
                )
        return SyncKey(kind, season, round_)

    # -- readers ---------------------------------------------------------

    def status(self, request: Request) -> Response:
        """``GET /status``: the seed's keys, then what explains them (see README, HTTP API).

        The seed's keys (``status``, ``is_race_weekend``, ``last_syncs``,
        ``next_syncs``, ``current_intervals``) keep their names and types;
        the others are added after them. Takes no parameters.
        """
        reject_unknown(request.query, ())
        snap = self.state.snapshot(history=False)
        view = self.scheduler.view()  # against the clock now: right at once after a wall-clock step
        last_failures = {  # the newest failed attempt of each kind, with its reason
            kind: None if record is None else {
                "at": record.finished_at, "trigger": record.trigger, "outcome": record.outcome,
                "http_status": record.http_status, "error": record.error,
            }
            for kind, record in snap.last_failures.items()
        }
        intervals = {
            kind: ("off" if self.config.is_off(kind) else "paused" if view.intervals_s.get(kind) is None
                   else format_duration(view.intervals_s[kind]))
            for kind in ("rounds", "results", "standings")
        }
        mode: dict[str, Any] = {"name": view.mode, "season": view.season, "round": view.mode_round,
                                "session": view.live_session or view.settling_session}
        body = {
            "status": "running" if self.ticker_alive() else "stopped",
            "is_race_weekend": view.mode in ("race_weekend", "live_session") or view.mode_round is not None,
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
                "overrides_in_force": view.overrides_in_force,
            },
            "in_flight": list(view.in_flight),
            "counters": dict(snap.counters),
            "last_failures": last_failures,
        }
        if not view.calendar_loaded:
            body["note"] = "no race calendar loaded: running in off-season mode"
        return 200, body

    def stale_kinds(self, snap: Snapshot) -> list[str]:
        """:param snap: the state now (its last syncs and schedule).
        :returns: kinds whose last success (or, never synced, the start-up) is older than three current intervals.

        A paused kind is never stale.
        """
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
        """``GET /health``: healthy, degraded (no fetcher answer, or stale data) or unhealthy (ticker dead, 503).

        A fetcher that answers, even with 500, counts as connected. Takes no parameters.
        """
        reject_unknown(request.query, ())
        now_mono = self.clock.monotonic()
        running = self.ticker_alive() and (self.ticker_health is None or self.ticker_health(now_mono).ok)
        connected = self.health.connected()
        snap = self.state.snapshot(history=False)  # one copy for both answers
        stale = self.stale_kinds(snap)
        failing = list(snap.failing)
        if not running:
            status, code = "unhealthy", 503
        elif connected is False or stale or failing:
            status, code = "degraded", 200
        else:
            status, code = "healthy", 200
        return code, {
            "status": status,
            "uptime_seconds": max(0, int(now_mono - self.started_mono)),
            "fetcher_service_connected": bool(connected),
            "scheduler_running": running,
            "stale": stale,
            "failing": failing,
        }

    def metrics(self, request: Request) -> tuple[int, RawBody]:
        """``GET /metrics``: the Prometheus text exposition (README, Metrics). Takes no parameters."""
        reject_unknown(request.query, ())
        snap = self.state.snapshot(history=False)
        view = self.scheduler.view()
        readings = Readings(
            kinds=KINDS, last_syncs=snap.last_syncs, next_syncs=view.next_syncs, intervals_s=view.intervals_s,
            mode=view.mode, fetcher_up=self.health.connected(), calendar_rounds=view.calendar_rounds,
            version=self.version,
        )
        return 200, RawBody(METRICS_CONTENT_TYPE, render_metrics(readings, self.state.metrics).encode("utf-8"))

    def history(self, request: Request) -> Response:
        """``GET /history[?kind=K][&limit=N]``: the latest sync records, newest first.

        ``kind`` is one of the four kinds; ``limit`` is 1 to 500, default 50.
        """
        reject_unknown(request.query, ("kind", "limit"))
        kind = request.query.get("kind")
        if kind is not None and kind not in KINDS:
            raise HttpError(400, f"kind must be one of {', '.join(KINDS)}")
        limit = HISTORY_DEFAULT_LIMIT
        if "limit" in request.query:
            limit = parse_number("limit", request.query["limit"], 1, HISTORY_MAX_LIMIT)
        records = [r for r in reversed(self.state.snapshot().history) if kind is None or r.kind == kind]
        return 200, {"records": [r.to_dict() for r in records[:limit]], "count": min(limit, len(records))}


def _failure_status(outcome: Outcome) -> int:
    """:returns: 504 when fetcher_service did not answer in time, else 502."""
    return 504 if outcome.result == "timeout" else 502
