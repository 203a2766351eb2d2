"""Sync calls to fetcher_service: SyncKey, Outcome, the SyncClient protocol and FetcherClient over requests."""

from __future__ import annotations

import email.utils
import json
import logging
import string
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import requests

from .clock import Clock

logger = logging.getLogger(__name__)

REASON_MAX_CHARS = 200  # a failure reason is one line of at most this many characters


@dataclass(frozen=True)
class SyncKey:
    """What one sync fetches: a kind and its parameters (see README, What it does).

    At most one sync per key is in flight at a time.

    :ivar kind: ``seasons``, ``rounds``, ``results`` or ``standings``.
    :ivar season: the season (Ergast ``season``), or None for ``seasons``.
    :ivar round: the round (Ergast ``round``, 0 is pre-season testing), only for ``results``.
    """

    kind: str
    season: int | None = None
    round: int | None = None

    def log_fields(self) -> str:
        """:returns: ``kind=... [season=...] [round=...]`` for log lines."""
        text = f"kind={self.kind}"
        if self.season is not None:
            text += f" season={self.season}"
        if self.round is not None:
            text += f" round={self.round}"
        return text


@dataclass(frozen=True)
class Outcome:
    """The result of one sync attempt.

    :ivar outcome: ``ok``, ``failed`` or ``timeout``, as logged (``outcome=``) and kept in the history.
    :ivar http_status: fetcher_service's HTTP status, or None when it sent no answer.
    :ivar error: why it failed, one line of at most 200 characters, or None.
    :ivar duration_ms: wall duration of the call, milliseconds.
    :ivar retry_after_s: the ``Retry-After`` of a 429/503 answer, seconds, or None.
    """

    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """:returns: True when the sync succeeded."""
        return self.outcome == "ok"

    @property
    def fetcher_called(self) -> bool:
        """:returns: True when fetcher_service sent an HTTP answer, whatever its status
        (what ``/health`` counts as connected)."""
        return self.http_status is not None


def make_session() -> requests.Session:
    """Build the session for one worker thread.

    Proxies and ``.netrc`` from the environment are ignored (``trust_env``
    off): fetcher_service is a sibling service, usually on loopback, so
    calls to it never go through an ``HTTP_PROXY`` set in the environment.

    :returns: a new :class:`requests.Session`, not shared between threads.
    """
    session = requests.Session()
    session.trust_env = False
    return session


def _cut(text: str) -> str:
    """:returns: ``text`` on one line, cut to :data:`REASON_MAX_CHARS`."""
    one_line = " ".join(str(text).split())
    if len(one_line) > REASON_MAX_CHARS:
        return one_line[: REASON_MAX_CHARS - 1] + "…"
    return one_line


def body_message(body: object) -> str | None:
    """The human reason in an error body: ``message``, ``detail`` or ``error``.

    FastAPI sends ``detail`` as a string for 400/404/405/500 and as a list of
    validation objects (``{"loc", "msg", "type"}``) for 422, rendered as
    ``query.season: Field required``.

    :param body: the decoded JSON body.
    :returns: the reason as text, or None when there is none.
    """
    if not isinstance(body, dict):
        return None
    for field in ("message", "detail", "error"):
        value = body.get(field)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            parts = []
            for item in value:
                if isinstance(item, dict) and "msg" in item:
                    loc = item.get("loc")
                    where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
                    parts.append(f"{where}: {item['msg']}" if where else str(item["msg"]))
                else:
                    parts.append(json.dumps(item) if not isinstance(item, str) else item)
            return "; ".join(parts)
        if isinstance(value, str):
            return value
        return json.dumps(value)
    return None


def parse_retry_after(value: str | None, now_ts: float) -> float | None:
    """Parse a ``Retry-After`` header (RFC 9110 §10.2.3): delta seconds or an HTTP date.

    :param value: the header value, or None.
    :param now_ts: UTC unix seconds, float, to turn a date into a delay.
    :returns: the delay in seconds (never negative), or None if absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_ts)


def build_path(template: str, key: SyncKey, session_name: str | None) -> str:
    """Fill a ``FETCH_PATH_*`` template (see README, Configuration).

    Placeholders are ``{season}``, ``{round}`` and ``{session}``. A query
    parameter whose value is a placeholder with nothing to put in it (no live
    session, say) is left out rather than sent empty.

    :param template: e.g. ``/fetch/rounds?season={season}&round={round}&live={session}``.
    :param key: the sync's kind and parameters.
    :param session_name: the live session's type (``race``...), or None.
    :returns: the path with its query, values percent-encoded.
    """
    values = {
        "season": "" if key.season is None else str(key.season),
        "round": "" if key.round is None else str(key.round),
        "session": session_name or "",
    }
    path, _, query = template.partition("?")
    path = string.Formatter().vformat(path, (), values)
    pairs = []
    for part in query.split("&") if query else []:
        name, sep, raw = part.partition("=")
        filled = string.Formatter().vformat(raw, (), values)
        if raw and not filled and "{" in raw:
            continue
        pairs.append(f"{name}{sep}{urllib.parse.quote(filled, safe='')}" if sep else name)
    return path + ("?" + "&".join(pairs) if pairs else "")


class SyncClient(Protocol):
    """What a worker calls to run syncs: :class:`FetcherClient`, or a stand-in such as ``plan``'s recorder.

    One client per worker thread; an implementation need not be thread-safe.
    """

    def sync(
        self, key: SyncKey, session_name: str | None = None, before_send: Callable[[], None] | None = None
    ) -> Outcome:
        """Run one sync and judge it; never raises for fetcher faults (see :meth:`FetcherClient.sync`).

        :param key: what to fetch.
        :param session_name: the live session type for ``{session}``, or None.
        :param before_send: called once, just before the call goes out.
        :returns: the :class:`Outcome`.
        """
        ...

    def close(self) -> None:
        """Release what the client holds (its HTTP connections); the client is not used afterwards."""
        ...


class FetcherClient:
    """Calls fetcher_service for one worker thread; a :class:`SyncClient`.

    Not thread-safe: each worker builds its own with its own session
    (requests does not document ``Session`` as thread-safe).

    :param base_url: ``FETCHER_URL`` without a trailing slash.
    :param fetch_paths: kind -> path template (``FETCH_PATH_*``, see README, Configuration).
    :param connect_timeout_s: connect timeout, seconds.
    :param read_timeout_s: read timeout, seconds (``FETCHER_TIMEOUT``).
    :param session: the worker's :class:`requests.Session`.
    :param clock: for durations and ``Retry-After`` dates.
    """

    def __init__(
        self,
        base_url: str,
        fetch_paths: Mapping[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
        session: requests.Session,
        clock: Clock,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.fetch_paths = fetch_paths
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.session = session
        self.clock = clock

    def sync(
        self, key: SyncKey, session_name: str | None = None, before_send: Callable[[], None] | None = None
    ) -> Outcome:
        """POST one sync to fetcher_service and judge the answer.

        Success is a 2xx answer whose body, if it is a JSON object with a
        boolean ``success``, has it true. Never raises for fetcher faults:
        refused, reset, timed out, 5xx, ``success: false`` and non-JSON
        answers all come back as a failed or timed-out :class:`Outcome`.

        :param key: what to fetch.
        :param session_name: the live session type for ``{session}``, or None.
        :param before_send: called once the request is prepared, just before
            it is sent (the scheduler waits there for the exact due time).
        :returns: the :class:`Outcome`.
        """
        url = self.base_url + build_path(self.fetch_paths[key.kind], key, session_name)
        try:
            prepared = self.session.prepare_request(requests.Request("POST", url))
        except (requests.RequestException, ValueError) as exc:
            return Outcome("failed", None, _cut(f"bad request: {type(exc).__name__}: {exc}"), 0)
        if before_send is not None:
            before_send()
        started_mono = self.clock.monotonic()

        def elapsed_ms() -> int:
            return max(0, round((self.clock.monotonic() - started_mono) * 1000))

        try:
            response = self.session.send(prepared, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout as exc:
            which = "connect" if isinstance(exc, requests.ConnectTimeout) else "read"
            limit = self.timeout[0] if which == "connect" else self.timeout[1]
            return Outcome("timeout", None, f"no answer: {which} timeout after {limit:g}s", elapsed_ms())
        except requests.ConnectionError as exc:
            return Outcome("failed", None, _cut(f"no answer: {_connection_reason(exc)}"), elapsed_ms())
        except requests.RequestException as exc:
            return Outcome("failed", None, _cut(f"no answer: {type(exc).__name__}: {exc}"), elapsed_ms())
        duration_ms = elapsed_ms()
        return judge(response, duration_ms, self.clock.now_ts())

    def probe(self, health_path: str) -> bool:
        """GET ``{FETCHER_URL}{FETCHER_HEALTH_PATH}``, for ``/health`` when no sync spoke to it lately.

        :returns: True when fetcher_service answered with a status below 500.
        """
        try:
            response = self.session.get(
                self.base_url + health_path, timeout=(self.timeout[0], min(self.timeout[1], 5.0))
            )
        except requests.RequestException:
            return False
        response.close()
        return response.status_code < 500

    def close(self) -> None:
        """Close the session and its pooled connections; the client is not used afterwards."""
        self.session.close()


def judge(response: requests.Response, duration_ms: int, now_ts: float) -> Outcome:
    """Turn fetcher_service's HTTP answer into an :class:`Outcome`.

    Success is a 2xx answer whose body, if it is a JSON object with a boolean
    ``success``, has it true; anything else fails, with a reason quoting the
    status and the body's ``message``/``detail``/``error`` when there is one.

    :param response: the answer.
    :param duration_ms: how long the call took, milliseconds.
    :param now_ts: UTC unix seconds, for ``Retry-After`` dates.
    :returns: ``ok`` or ``failed`` with a reason quoting the status and the
        body's ``message``/``detail``/``error``.
    """
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body_message(body)
    if 200 <= status < 300:
        if isinstance(body, dict) and isinstance(body.get("success"), bool) and not body["success"]:
            reason = f"HTTP {status} success=false" + (f": {message}" if message else "")
            return Outcome("failed", status, _cut(reason), duration_ms)
        return Outcome("ok", status, None, duration_ms)
    retry_after_s = None
    if status in (429, 503):
        retry_after_s = parse_retry_after(response.headers.get("Retry-After"), now_ts)
    reason = f"HTTP {status}" + (f": {message}" if message else f" {response.reason or ''}".rstrip())
    return Outcome("failed", status, _cut(reason), duration_ms, retry_after_s)


def _connection_reason(exc: requests.ConnectionError) -> str:
    """:returns: a short reason for a connection fault (refused, reset...)."""
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed without answer"),
        ("Name or service not known", "host not found"),
        ("No route to host", "no route to host"),
    ):
        if needle in text:
            return reason
    return f"connection error: {text}"
