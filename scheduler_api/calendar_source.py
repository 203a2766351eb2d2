"""CalendarSource: the race calendar from CALENDAR_FILE or CALENDAR_URL, fetched within its deadline and parsed."""

from __future__ import annotations

import string

import requests

from . import httpcall
from .calendar_fields import decode_json
from .calendar_overrides import Overrides, parse_corrected
from .race_calendar import Calendar
from .redact import redact_url, scrub, secret_values

#: At most this much of a calendar is read, bytes (8 MiB; a real season is about 30 KiB).
MAX_CALENDAR_BYTES = 8 << 20
CONNECT_TIMEOUT_S = 3.0


class CalendarLoadError(Exception):
    """The calendar could not be loaded: network, deadline, HTTP status, size, file, not JSON, not a calendar,
    or no rounds.

    Its message is one line saying why, naming the file or URL (secrets masked) where it helps.
    """


class CalendarSource:
    """Where the race calendar comes from.

    ``CALENDAR_FILE``, when set, replaces ``CALENDAR_URL`` and is re-read at
    every refresh. The URL is a template with ``{season}``; it is fetched
    with ``GET`` within a whole-call deadline, ``CALENDAR_TIMEOUT``
    (connecting, sending, waiting and reading together: a server trickling
    its answer is cut off like one that hangs), and at most 8 MiB of it is
    read, from a file too. Unlike fetcher calls, the session honours proxies
    from the environment (the default is the public Jolpica-F1 API), except
    for a loopback address, which never goes through a proxy. See README,
    Configuration.

    Not thread-safe; the scheduler refreshes the calendar from one worker at
    a time.

    :param url_template: ``CALENDAR_URL``.
    :param file_path: ``CALENDAR_FILE``, or None.
    :param session: a session from :func:`scheduler_api.httpcall.make_session`, or None to build
        one that trusts the environment.
    :param timeout_s: the whole-call deadline of a GET, seconds (``CALENDAR_TIMEOUT``).
    :param overrides: ``CALENDAR_OVERRIDES`` corrections applied at every load (none if None).
    """

    def __init__(
        self,
        url_template: str,
        file_path: str | None,
        session: requests.Session | None = None,
        timeout_s: float = 30.0,
        overrides: Overrides | None = None,
    ) -> None:
        self.url_template = url_template
        self.file_path = file_path
        self.session = session
        self.timeout_s = timeout_s
        self.overrides = overrides if overrides is not None else Overrides()
        self._last: tuple[bytes, object] | None = None
        self._last_parsed: tuple[object, Calendar] | None = None

    def describe(self, season: int) -> str:
        """:returns: the file path, or the URL for ``season`` without its user, password and
        secret query values, for logs, errors and ``/status``."""
        if self.file_path:
            return self.file_path
        return redact_url(self._url(season))

    def _url(self, season: int) -> str:
        """:returns: the URL for ``season`` as it is fetched (secrets included: never log it)."""
        return string.Formatter().vformat(self.url_template, (), {"season": season})

    def load(self, season: int) -> tuple[Calendar, object]:
        """Fetch and parse the calendar, apply the overrides; refuse one without rounds.

        Malformed entries are skipped with a warning by the parser and do not
        fail the load; only a body with no usable round at all does.

        :param season: the season to put in ``{season}``.
        :returns: ``(calendar, body)``: the parsed calendar and its decoded
            JSON body (what is persisted). When the bytes did not change since
            the last successful load, the very same two objects as then, so
            ``calendar is previous`` tells callers there is nothing to save.
        :raises CalendarLoadError: on any failure, with a one-line reason:
            the fetch failed, the body is not JSON, is not a calendar, or has
            no rounds (``<file or URL>: no rounds``).
        """
        body = self.fetch(season)
        if self._last_parsed is not None and self._last_parsed[0] is body:
            return self._last_parsed[1], body
        try:
            calendar = self.parse(body)
        except ValueError as exc:  # CalendarError included
            raise CalendarLoadError(str(exc)) from None
        if not calendar.rounds:
            raise CalendarLoadError(f"{self.describe(season)}: no rounds")
        self._last_parsed = (body, calendar)
        return calendar, body

    def parse(self, body: object) -> Calendar:
        """Parse a decoded body (e.g. the persisted copy) and apply the overrides, as :meth:`load` does.

        :raises ValueError: when ``body`` is not a calendar (:class:`CalendarError` included).
        """
        return parse_corrected(body, self.overrides)

    def fetch(self, season: int) -> object:
        """Read and decode the calendar body.

        :param season: the season to put in ``{season}``.
        :returns: the decoded JSON body (shape detected later by
            :func:`scheduler_api.calendar_parse.parse_calendar`); the very same
            object as last time when the bytes did not change, so callers can
            skip parsing an unchanged calendar.
        :raises CalendarLoadError: on any failure, with a one-line reason.
        """
        if self.file_path:
            try:
                with open(self.file_path, "rb") as handle:
                    raw = handle.read(MAX_CALENDAR_BYTES + 1)
            except OSError as exc:
                raise CalendarLoadError(f"{self.file_path}: {exc}") from None
            return self._decoded(raw, len(raw) > MAX_CALENDAR_BYTES, self.file_path)
        answer = self._get(season)
        if answer.status != 200:
            raise CalendarLoadError(f"{self.describe(season)}: HTTP {answer.status}")
        return self._decoded(answer.body, answer.truncated, self.describe(season))

    def _get(self, season: int) -> httpcall.Answer:
        """GET the calendar for ``season`` within ``CALENDAR_TIMEOUT``, at most 8 MiB and one byte of it.

        :raises CalendarLoadError: no answer, or the deadline passed.
        """
        if self.session is None:
            self.session = httpcall.make_session(trust_env=True)
        where = self.describe(season)
        try:
            prepared = self.session.prepare_request(
                requests.Request("GET", self._url(season), headers={"Accept": "application/json"}))
            return httpcall.exchange(self.session, prepared, connect_timeout_s=CONNECT_TIMEOUT_S,
                                     deadline_s=self.timeout_s, max_bytes=MAX_CALENDAR_BYTES)
        except httpcall.CallTimeout as exc:
            raise CalendarLoadError(f"{where}: timed out: {exc.reason}") from None
        except httpcall.CallError as exc:
            raise CalendarLoadError(f"{where}: {_one_line(exc.reason, self._url(season), where)}") from None
        except (requests.RequestException, ValueError) as exc:
            raise CalendarLoadError(f"{where}: bad URL: {type(exc).__name__}") from None

    def _decoded(self, raw: bytes, truncated: bool, where: str) -> object:
        """:returns: ``raw`` decoded; :raises CalendarLoadError: over 8 MiB, or not UTF-8 JSON."""
        if truncated:
            raise CalendarLoadError(f"{where}: calendar larger than {MAX_CALENDAR_BYTES >> 20} MiB")
        try:
            return self._decode(raw)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            reason = str(exc) if "nested too deeply" in str(exc) else type(exc).__name__
            raise CalendarLoadError(f"{where}: body is not JSON ({reason})") from None

    def _decode(self, raw: bytes) -> object:
        """:raises ValueError: when ``raw`` is not UTF-8 JSON."""
        if self._last is not None and self._last[0] == raw:
            return self._last[1]
        body = decode_json(raw)
        self._last = (raw, body)
        return body


def _one_line(reason: str, url: str, shown: str) -> str:
    """:returns: ``reason`` on one line, with ``url`` shown as ``shown``, its secret values masked
    wherever they are quoted, and every other URL's secrets masked."""
    return scrub(" ".join(reason.replace(url, shown).split()), secret_values(url))
