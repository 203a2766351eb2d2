"""CalendarSource: the race calendar from CALENDAR_FILE or CALENDAR_URL, fetched and parsed."""

from __future__ import annotations

import string

import requests

from .calendar_fields import decode_json
from .calendar_overrides import Overrides, parse_corrected
from .race_calendar import Calendar


class CalendarLoadError(Exception):
    """The calendar could not be loaded: network, HTTP status, file, not JSON, not a calendar, or no rounds.

    Its message is one line saying why, naming the file or URL where it helps.
    """


class CalendarSource:
    """Where the race calendar comes from.

    ``CALENDAR_FILE``, when set, replaces ``CALENDAR_URL`` and is re-read at
    every refresh. The URL is a template with ``{season}``; it is fetched
    with ``GET`` through a session that, unlike fetcher calls, honours
    proxies from the environment (the default is the public Jolpica-F1 API).
    See README, Configuration.

    Not thread-safe; the scheduler refreshes the calendar from one worker at
    a time.

    :param url_template: ``CALENDAR_URL``.
    :param file_path: ``CALENDAR_FILE``, or None.
    :param session: a :class:`requests.Session`, or None to build one.
    :param timeout: ``(connect, read)`` seconds.
    :param overrides: ``CALENDAR_OVERRIDES`` corrections applied at every load (none if None).
    """

    def __init__(
        self,
        url_template: str,
        file_path: str | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.0, 30.0),
        overrides: Overrides | None = None,
    ) -> None:
        self.url_template = url_template
        self.file_path = file_path
        self.session = session
        self.timeout = timeout
        self.overrides = overrides if overrides is not None else Overrides()
        self._last: tuple[bytes, object] | None = None
        self._last_parsed: tuple[object, Calendar] | None = None

    def describe(self, season: int) -> str:
        """:returns: the file path or the URL for ``season``, for logs and ``/status``."""
        if self.file_path:
            return self.file_path
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
            calendar = parse_corrected(body, self.overrides)
        except ValueError as exc:  # CalendarError included
            raise CalendarLoadError(str(exc)) from None
        if not calendar.rounds:
            raise CalendarLoadError(f"{self.describe(season)}: no rounds")
        self._last_parsed = (body, calendar)
        return calendar, body

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
                    return self._decode(handle.read())
            except (OSError, ValueError) as exc:
                raise CalendarLoadError(f"{self.file_path}: {exc}") from None
        if self.session is None:
            self.session = requests.Session()
        url = self.describe(season)
        try:
            response = self.session.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
        except requests.Timeout:
            raise CalendarLoadError(f"{url}: timed out") from None
        except requests.RequestException as exc:
            raise CalendarLoadError(f"{url}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise CalendarLoadError(f"{url}: HTTP {response.status_code}")
        try:
            return self._decode(response.content)
        except ValueError:
            raise CalendarLoadError(f"{url}: body is not JSON") from None

    def _decode(self, raw: bytes) -> object:
        """:raises ValueError: when ``raw`` is not UTF-8 JSON."""
        if self._last is not None and self._last[0] == raw:
            return self._last[1]
        body = decode_json(raw)
        self._last = (raw, body)
        return body
