"""Sync calls to fetcher_service: SyncKey, Outcome, the SyncClient protocol and FetcherClient over requests."""

from __future__ import annotations


import logging
import string
import urllib.parse
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import requests

from . import httpcall
from .answers import body_message, cut_reason, decode_json, parse_retry_after
from .clock import Clock
from .config import OFF
from .redact import redact_url, scrub, secret_values

logger = logging.getLogger(__name__)

#: At most this much of a fetcher answer is read, bytes (1 MiB): enough to judge it.
MAX_ANSWER_BYTES = 1 << 20
#: The health probe's whole-call deadline, seconds (shorter still when ``FETCHER_TIMEOUT`` is).
PROBE_DEADLINE_S = 5.0
PROBE_MAX_BYTES = 64 * 1024

#: Failure classes (:attr:`Outcome.failure`).
TRANSIENT, PERMANENT, TIMEOUT = "transient", "permanent", "timeout"
FAILURE_CLASSES = (TRANSIENT, PERMANENT, TIMEOUT)
#: 4xx statuses that say "try again later" rather than "this call is wrong".
TRANSIENT_4XX = frozenset({408, 425, 429})


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


def failure_class(http_status: int | None) -> str:
    """The failure class of a failed call, from its HTTP status (see README, Failure behaviour).

    - ``transient``: worth retrying soon: no HTTP answer at all (refused,
      reset, closed, host not found), any 5xx but 501, 408, 425, 429, and a
      2xx that failed (``success: false``);
    - ``permanent``: the call itself is wrong and repeating it gets the same
      answer: any other 4xx, 501 (not implemented), and a 3xx (redirects
      are not followed, so the same redirect comes back);
    - ``timeout`` is never derived from a status: only a call whose deadline
      passed after the request went out has it (see :class:`Outcome`).

    A status outside 100–599 counts as transient.

    :param http_status: the answer's status, or None when there was no answer.
    :returns: ``transient`` or ``permanent``.
    """
    if http_status == 501:
        return PERMANENT
    if http_status is None or http_status in TRANSIENT_4XX:
        return TRANSIENT
    if 300 <= http_status < 500:
        return PERMANENT
    return TRANSIENT


@dataclass(frozen=True)
class Outcome:
    """The result of one sync attempt.

    The retry rules read :attr:`failure` (never :attr:`outcome`): a
    ``transient`` failure may be retried with backoff, a ``permanent`` one
    is not retried within its slot (repeating it gets the same answer), nor
    is a ``timeout`` (fetcher_service may still be working on the call, and
    a retry would pile a second one on it).

    :ivar result: ``ok``, ``failed`` or ``timeout``, as logged (``outcome=``) and kept in
        the history; ``timeout`` for any call cut off by its deadline, sent or not.
    :ivar http_status: fetcher_service's HTTP status, or None when it sent no answer.
    :ivar error: why it failed, one line of at most 303 characters (see :func:`cut_reason`), or None.
    :ivar duration_ms: wall duration of the call, milliseconds.
    :ivar retry_after_s: the ``Retry-After`` of a 429/503 answer, seconds, or None.
    :ivar failure: None when ok, else ``transient``, ``permanent`` or ``timeout``
        (see :func:`failure_class`; ``timeout`` only when the deadline passed after
        the request was sent: a call that never got through is ``transient`` even
        when its result is ``timeout``). Left out, it is derived from
        ``result`` and ``http_status``.
    :ivar fetcher_called: True once the request reached fetcher_service (a
        connection was made and the request sent), timeouts included, so a
        timed-out trigger answers 504 with ``fetcher_called: true``; False when
        it was never reached. Left out, it is ``http_status is not None``.
    :raises ValueError: an ok outcome with a failure class, or an unknown class.
    """

    result: str
    http_status: int | None
    error: str | None
    duration_ms: int
    retry_after_s: float | None = None
    failure: str | None = None
    fetcher_called: bool = None  # type: ignore[assignment]  # None: derived in __post_init__

    def __post_init__(self) -> None:
        if self.fetcher_called is None:
            object.__setattr__(self, "fetcher_called", self.http_status is not None)
        if self.result == "ok":
            if self.failure is not None:
                raise ValueError(f"an ok outcome has no failure class, got {self.failure!r}")
            return
        if self.failure is None:
            derived = TIMEOUT if self.result == "timeout" else failure_class(self.http_status)
            object.__setattr__(self, "failure", derived)
        elif self.failure not in FAILURE_CLASSES:
            raise ValueError(f"failure must be one of {', '.join(FAILURE_CLASSES)}, got {self.failure!r}")

    @property
    def ok(self) -> bool:
        """:returns: True when the sync succeeded."""
        return self.result == "ok"

    @property
    def answered(self) -> bool:
        """:returns: True when fetcher_service sent an HTTP answer, whatever its status
        (what ``/health`` counts as connected; a timed-out call was reached but not answered)."""
        return self.http_status is not None


def make_session() -> requests.Session:
    """Build the session for one worker thread.

    Proxies and ``.netrc`` from the environment are ignored (``trust_env``
    off): fetcher_service is a sibling service, usually on loopback, so
    calls to it never go through an ``HTTP_PROXY`` set in the environment.
    Its calls can be bounded by a whole-call deadline (see
    :func:`scheduler_api.httpcall.exchange`).

    :returns: a new :class:`requests.Session`, not shared between threads.
    """
    return httpcall.make_session(trust_env=False)


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

    Every call has a whole-call deadline, ``FETCHER_TIMEOUT``: connecting,
    sending, waiting and reading the answer together, so a fetcher that
    trickles its answer a byte at a time is cut off like one that hangs. At
    most 1 MiB of an answer is read (see README, Failure behaviour).

    Not thread-safe: each worker builds its own with its own session
    (requests does not document ``Session`` as thread-safe).

    :param base_url: ``FETCHER_URL`` without a trailing slash.
    :param fetch_paths: kind -> path template (``FETCH_PATH_*``, see README, Configuration).
    :param connect_timeout_s: connect timeout, seconds (cut to the deadline when that is shorter).
    :param timeout_s: the whole-call deadline, seconds (``FETCHER_TIMEOUT``).
    :param session: the worker's session, from :func:`make_session`.
    :param clock: for durations and ``Retry-After`` dates.
    """

    def __init__(
        self,
        base_url: str,
        fetch_paths: Mapping[str, str],
        connect_timeout_s: float,
        timeout_s: float,
        session: requests.Session,
        clock: Clock,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.fetch_paths = fetch_paths
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.session = session
        self.clock = clock

    def sync(
        self, key: SyncKey, session_name: str | None = None, before_send: Callable[[], None] | None = None
    ) -> Outcome:
        """POST one sync to fetcher_service and judge the answer (see :func:`judge`).

        Never raises for fetcher faults: refused, reset, timed out, 5xx,
        ``success: false`` and cut-off answers all come back as a failed or
        timed-out :class:`Outcome` with its failure class and whether the
        request reached fetcher_service. No reason carries a secret of
        ``FETCHER_URL`` or of the path. A kind turned off
        (``FETCH_PATH_<KIND>=off``) calls nothing and fails as permanent
        (the scheduler is expected never to ask for one).

        :param key: what to fetch.
        :param session_name: the live session type for ``{session}``, or None.
        :param before_send: called once, when the connection is ready and
            the request's bytes are built, just before they are written (the
            scheduler waits there for the exact due time, so that at the due
            time only the bytes are written); called before a failure is
            returned when the call fails before writing anything. The
            duration and the whole-call deadline start when it returns.
        :returns: the :class:`Outcome`.
        """
        template = self.fetch_paths[key.kind]
        if template == OFF:
            reason = f"{key.kind} syncs are turned off (FETCH_PATH_{key.kind.upper()}=off)"
            return Outcome("failed", None, reason, 0, failure=PERMANENT, fetcher_called=False)
        url = self.base_url + build_path(template, key, session_name)
        # Every reason is scrubbed of these: an error, ours or the fetcher's own words, may quote
        # what was sent (the path's key, the URL's password, the Basic-auth header it became).
        secrets = secret_values(self.base_url) + secret_values(template)
        try:
            prepared = self.session.prepare_request(requests.Request("POST", url))
        except (requests.RequestException, ValueError) as exc:
            reason = cut_reason(scrub(f"bad request: {type(exc).__name__}: {exc}", secrets))
            return Outcome("failed", None, reason, 0, failure=PERMANENT, fetcher_called=False)
        call = "POST " + redact_url(prepared.path_url)
        started_mono = self.clock.monotonic()

        def at_send() -> None:  # the connection is ready and the bytes built: wait, then they are written
            nonlocal started_mono
            if before_send is not None:
                before_send()
            started_mono = self.clock.monotonic()

        try:
            answer = httpcall.exchange(self.session, prepared, connect_timeout_s=self.connect_timeout_s,
                                       deadline_s=self.timeout_s, max_bytes=MAX_ANSWER_BYTES, hold=at_send)
        except httpcall.CallError as exc:
            duration_ms = max(0, round((self.clock.monotonic() - started_mono) * 1000))
            timed_out = isinstance(exc, httpcall.CallTimeout)
            return Outcome(
                "timeout" if timed_out else "failed", None, cut_reason(scrub(f"no answer: {exc.reason}", secrets)),
                duration_ms,
                failure=TIMEOUT if timed_out and exc.sent else TRANSIENT, fetcher_called=exc.sent,
            )
        duration_ms = max(0, round((self.clock.monotonic() - started_mono) * 1000))
        return judge(answer, duration_ms, self.clock.now_ts(), call, secrets)

    def probe(self, health_path: str) -> bool:
        """GET ``{FETCHER_URL}{FETCHER_HEALTH_PATH}``, for ``/health`` when no sync spoke to it lately.

        The probe's deadline is 5 s, or ``FETCHER_TIMEOUT`` when that is shorter.

        :returns: True when fetcher_service answered with a status below 500.
        """
        try:
            prepared = self.session.prepare_request(requests.Request("GET", self.base_url + health_path))
            answer = httpcall.exchange(self.session, prepared, connect_timeout_s=self.connect_timeout_s,
                                       deadline_s=min(self.timeout_s, PROBE_DEADLINE_S), max_bytes=PROBE_MAX_BYTES)
        except (httpcall.CallError, requests.RequestException, ValueError):
            return False
        return answer.status < 500

    def close(self) -> None:
        """Close the session and its pooled connections; the client is not used afterwards."""
        self.session.close()


def judge(
    answer: httpcall.Answer, duration_ms: int, now_ts: float, call: str = "", secrets: tuple[str, ...] = ()
) -> Outcome:
    """Turn fetcher_service's HTTP answer into an :class:`Outcome`.

    Success is a 2xx answer whose body, if it is a JSON object with a boolean
    ``success``, has it true; a 2xx whose body is not JSON (or was cut at
    1 MiB and cannot be decoded) is a success too. Anything else fails, with
    a reason quoting the status and the body's ``message``/``detail``/``error``
    when there is one; a 404 or 405 reason names the call
    (``HTTP 404 POST /fetch/standings?season=2026: Not Found``), so a wrong
    path mapping shows at once. The failure class follows the status (see
    :func:`failure_class`).

    :param answer: the answer, at most 1 MiB of its body.
    :param duration_ms: how long the call took, milliseconds.
    :param now_ts: UTC unix seconds, for ``Retry-After`` dates.
    :param call: method and path as sent, secrets masked (``POST /fetch/seasons``), for 404/405 reasons.
    :param secrets: strings never to show (:func:`scheduler_api.redact.secret_values` of the URL
        and path): the body's words may quote what the fetcher received. Masked before the reason is cut,
        so no cut leaves half a secret.
    :returns: ``ok``, or ``failed`` with its reason, class and ``Retry-After`` (429/503).
    """
    status = answer.status
    body = decode_json(answer.body)
    message = body_message(body)
    if 200 <= status < 300:
        if isinstance(body, dict) and isinstance(body.get("success"), bool) and not body["success"]:
            reason = f"HTTP {status} success=false" + (f": {message}" if message else "")
            return Outcome("failed", status, cut_reason(scrub(reason, secrets)), duration_ms, failure=TRANSIENT,
                           fetcher_called=True)
        return Outcome("ok", status, None, duration_ms, fetcher_called=True)
    retry_after_s = None
    if status in (429, 503):
        retry_after_s = parse_retry_after(answer.headers.get("Retry-After"), now_ts)
    if status in (404, 405) and call:
        reason = f"HTTP {status} {call}: {message or answer.reason or 'no reason given'}"
    else:
        reason = f"HTTP {status}" + (f": {message}" if message else f" {answer.reason}".rstrip())
    if answer.truncated and message is None:
        reason += f" (answer over {MAX_ANSWER_BYTES >> 20} MiB, not read to its end)"
    return Outcome("failed", status, cut_reason(scrub(reason, secrets)), duration_ms, retry_after_s,
                   failure=failure_class(status), fetcher_called=True)


