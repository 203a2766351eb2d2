"""Configuration value parsers: each turns one variable's text into a field value or raises :class:`ConfigError`.

:mod:`scheduler_api.config` maps variables to these parsers and builds the
frozen ``Config`` from their results (see README, Configuration).
"""

from __future__ import annotations

import os
import string
import urllib.parse
from collections.abc import Callable

from .durations import DurationError, parse_duration

#: ``FETCH_PATH_<KIND>=off`` turns a kind off.
OFF = "off"

TOKEN_VARIABLE = "SCHEDULER_API_TOKEN"
_HIDDEN = "<hidden>"
_FETCH_PATH_PLACEHOLDERS = frozenset({"season", "round", "session"})
_CALENDAR_URL_PLACEHOLDERS = frozenset({"season"})
_LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Configured durations must format to something meaningful in /status (whole
# milliseconds) and stay far below threading.TIMEOUT_MAX and socket limits.
_MIN_DURATION_S = 0.001
_MAX_DURATION_S = 365 * 86_400.0

_EXPECT_DURATION = "a duration such as 30s, 5m, 1h30m or a number of seconds"
_EXPECT_DURATION_RANGE = "a duration from 1ms to 365d"
_EXPECT_PORT = "an integer from 0 to 65535"
_EXPECT_HOST = "a host name or IP address"
_EXPECT_FETCHER_URL = (
    "an http:// or https:// URL with a host and no query, e.g. http://127.0.0.1:8082"
)
_EXPECT_HEALTH_PATH = 'a path starting with "/"'
_EXPECT_FETCH_PATH = (
    'a path starting with "/" using only the placeholders {season}, {round} and {session}'
)
_EXPECT_CALENDAR_URL = "an http:// or https:// URL with a host, optionally containing {season}"
_EXPECT_CALENDAR_FILE = "an existing readable file"
_EXPECT_STATE_FILE = "a file path (not a directory)"
_EXPECT_LOG_LEVEL = "one of " + ", ".join(_LOG_LEVELS) + " (any case)"
_EXPECT_TOKEN = "a token of printable ASCII characters without spaces"
_EXPECT_DURATION_OR_ZERO = "0 or a duration from 1ms to 365d"
_EXPECT_OVERRIDES = "an existing readable JSON file of calendar overrides"


class ConfigError(Exception):
    """An invalid configuration value; start-up stops with exit status 2.

    ``__main__`` prints ``str(err)`` as one line and exits with status 2.
    The value is shown through :func:`repr`, so newlines and control
    characters in it are escaped and the message stays on one line. The value
    of ``SCHEDULER_API_TOKEN`` is never stored or shown: both :attr:`value`
    and the message carry ``"<hidden>"`` instead.

    :param variable: the environment variable (or command-line option) at fault.
    :param value: the value as given.
    :param expected: what would have been accepted, e.g. ``"an integer from 0 to 65535"``.
    """

    def __init__(self, variable: str, value: str, expected: str) -> None:
        if variable == TOKEN_VARIABLE:
            value = _HIDDEN
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"{variable}={value!r}: expected {expected}")


# --------------------------------------------------------------------------
# Each parser takes (variable, stripped non-empty value) and returns the
# field value or raises ConfigError.


def _has_space_or_control(text: str) -> bool:
    return any(ch.isspace() or not ch.isprintable() for ch in text)


def parse_duration_s(variable: str, value: str, out_of_range: str = _EXPECT_DURATION_RANGE) -> float:
    try:
        seconds = parse_duration(value)
    except DurationError:
        raise ConfigError(variable, value, _EXPECT_DURATION) from None
    if not _MIN_DURATION_S <= seconds <= _MAX_DURATION_S:
        raise ConfigError(variable, value, out_of_range)
    return seconds


def parse_duration_or_zero_s(variable: str, value: str) -> float:
    """A duration, or 0 (written ``0``, ``0s`` or ``0ms``) to turn a rule off."""
    if value in ("0", "0s", "0ms"):
        return 0.0
    return parse_duration_s(variable, value, _EXPECT_DURATION_OR_ZERO)


def integer_parser(low: int, high: int) -> Callable[[str, str], int]:
    """:returns: a parser of plain ASCII digits from ``low`` to ``high``."""
    expected = f"an integer from {low} to {high}"

    def parse(variable: str, value: str) -> int:
        if not (value.isascii() and value.isdigit()) or len(value) > 6 or not low <= int(value) <= high:
            raise ConfigError(variable, value, expected)
        return int(value)

    return parse


def parse_port(variable: str, value: str) -> int:
    # int() would also take "+80", "8_0" and non-ASCII digits.
    if not (value.isascii() and value.isdigit()) or int(value) > 65535:
        raise ConfigError(variable, value, _EXPECT_PORT)
    return int(value)


def parse_host(variable: str, value: str) -> str:
    allowed = set(string.ascii_letters + string.digits + ".-_:%")
    if not set(value) <= allowed:
        raise ConfigError(variable, value, _EXPECT_HOST)
    return value


def _is_http_url(url: str) -> bool:
    if _has_space_or_control(url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def parse_fetcher_url(variable: str, value: str) -> str:
    parts = urllib.parse.urlsplit(value) if _is_http_url(value) else None
    if parts is None or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigError(variable, value, _EXPECT_FETCHER_URL)
    return value.rstrip("/")


def _placeholders_ok(template: str, allowed: frozenset[str]) -> bool:
    """Whether ``template`` uses only ``{name}`` placeholders from ``allowed``.

    Positional ``{}``, attribute or index access, conversions (``!r``),
    format specs (``:>4``) and unbalanced braces are refused; ``{{`` and
    ``}}`` are literal braces.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:  # unbalanced braces
        return False
    for _literal, name, format_spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or format_spec or conversion is not None:
            return False
    return True


def parse_health_path(variable: str, value: str) -> str:
    if not value.startswith("/") or _has_space_or_control(value):
        raise ConfigError(variable, value, _EXPECT_HEALTH_PATH)
    return value


def parse_fetch_path(variable: str, value: str) -> str:
    if value.lower() == OFF:
        return OFF
    if (
        not value.startswith("/")
        or _has_space_or_control(value)
        or not _placeholders_ok(value, _FETCH_PATH_PLACEHOLDERS)
    ):
        raise ConfigError(variable, value, _EXPECT_FETCH_PATH)
    return value


def parse_calendar_url(variable: str, value: str) -> str:
    if not _placeholders_ok(value, _CALENDAR_URL_PLACEHOLDERS) or not _is_http_url(
        value.format(season=2025)
    ):
        raise ConfigError(variable, value, _EXPECT_CALENDAR_URL)
    return value


def parse_overrides_file(variable: str, value: str) -> str:
    try:
        return parse_calendar_file(variable, value)
    except ConfigError:
        raise ConfigError(variable, value, _EXPECT_OVERRIDES) from None


def parse_calendar_file(variable: str, value: str) -> str:
    # isfile() first: opening a FIFO for reading would block start-up.
    try:
        if not os.path.isfile(value):
            raise OSError
        with open(value, "rb"):
            pass
    except (OSError, ValueError):  # ValueError: embedded NUL
        raise ConfigError(variable, value, _EXPECT_CALENDAR_FILE) from None
    return value


def parse_state_file(variable: str, value: str) -> str:
    if "\0" in value or value.endswith("/") or os.path.isdir(value):
        raise ConfigError(variable, value, _EXPECT_STATE_FILE)
    return value


def parse_log_level(variable: str, value: str) -> str:
    level = value.upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(variable, value, _EXPECT_LOG_LEVEL)
    return level


def parse_token(variable: str, value: str) -> str:
    # The token must be sendable in an Authorization header and comparable
    # with hmac.compare_digest, which refuses non-ASCII str.
    if not all("!" <= ch <= "~" for ch in value):
        raise ConfigError(variable, value, _EXPECT_TOKEN)
    return value
