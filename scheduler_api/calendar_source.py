"""CalendarSource: reads the race calendar body from CALENDAR_FILE or CALENDAR_URL."""

from __future__ import annotations

import json
import logging
import string

import requests

from .race_calendar import Calendar, parse_calendar

logger = logging.getLogger(__name__)


class CalendarLoadError(Exception):
    """The calendar could not be read (network, HTTP status, file, or not JSON)."""


class CalendarSource:
    """Where the race calendar comes from (SPEC.md §4).

    ``CALENDAR_FILE``, when set, replaces ``CALENDAR_URL`` and is re-read at
    every refresh. The URL is a template with ``{season}``; it is fetched
    with ``GET`` through a session that, unlike fetcher calls, honours
    proxies from the environment (the default is a public API).

    Not thread-safe; the scheduler refreshes the calendar from one worker at
    a time.

    :param url_template: ``CALENDAR_URL``.
    :param file_path: ``CALENDAR_FILE``, or None.
    :param session: a :class:`requests.Session`, or None to build one.
    :param timeout: ``(connect, read)`` seconds.
    """

    def __init__(
        self,
        url_template: str,
        file_path: str | None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.0, 30.0),
    ) -> None:
        self.url_template = url_template
        self.file_path = file_path
        self.session = session
        self.timeout = timeout
        self._last: tuple[bytes, object] | None = None
        self._loaded: tuple[Calendar, object] | None = None

    def describe(self, season: int) -> str:
        """:returns: the file path or the URL for ``season``, for logs and ``/status``."""
        if self.file_path:
            return self.file_path
        return string.Formatter().vformat(self.url_template, (), {"season": season})

    def fetch(self, season: int) -> object:
        """Read and decode the calendar body.

        :param season: the season to put in ``{season}``.
        :returns: the decoded JSON body (shape detected later by
            :func:`scheduler_api.race_calendar.parse_calendar`); the very same
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

    def load(self, season: int) -> tuple[Calendar, object]:
        """Read, decode and parse the calendar.

        :param season: the season to put in ``{season}``.
        :returns: ``(calendar, decoded JSON body)``; the very same two objects as
            last time when the bytes did not change.
        :raises CalendarLoadError: on a read failure, a body that is not JSON or
            not a calendar, or a calendar without rounds.
        """
        body = self.fetch(season)
        if self._loaded is not None and self._loaded[1] is body:
            return self._loaded
        try:
            calendar = parse_calendar(body, logger=logging.getLogger("scheduler_api.race_calendar"))
        except ValueError as exc:
            raise CalendarLoadError(str(exc)) from None
        if not calendar.rounds:
            raise CalendarLoadError(f"{self.describe(season)}: no rounds")
        self._loaded = (calendar, body)
        return self._loaded

    def _decode(self, raw: bytes) -> object:
        """:raises ValueError: when ``raw`` is not UTF-8 JSON."""
        if self._last is not None and self._last[0] == raw:
            return self._last[1]
        body = json.loads(raw.decode("utf-8-sig"))
        self._last = (raw, body)
        return body
