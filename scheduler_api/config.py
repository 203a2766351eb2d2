"""Frozen daemon configuration loaded from the environment and an optional .env file (see README, Configuration)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from dotenv import dotenv_values

from .config_values import (
    OFF,
    TOKEN_VARIABLE,
    ConfigError,
    integer_parser,
    parse_calendar_file,
    parse_calendar_url,
    parse_duration_or_zero_s,
    parse_duration_s,
    parse_fetch_path,
    parse_fetcher_url,
    parse_health_path,
    parse_host,
    parse_log_level,
    parse_overrides_file,
    parse_port,
    parse_state_file,
    parse_token,
)
from .durations import format_duration
from .redact import MASK, redact_url

__all__ = [
    "KINDS",
    "DEFAULT_FETCH_PATHS",
    "DEFAULT_CALENDAR_URL",
    "OFF",
    "ConfigError",
    "Config",
    "load",
]

#: The four sync kinds, in the order they are reported in ``/status``, logs and ``plan``.
KINDS: tuple[str, ...] = ("seasons", "rounds", "results", "standings")

#: Fetcher call per kind, always POSTed to ``FETCHER_URL`` + path; ``FETCH_PATH_<KIND>`` overrides it.
#: Read-only: a :class:`types.MappingProxyType`.
DEFAULT_FETCH_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "seasons": "/fetch/seasons",
        "rounds": "/fetch/rounds?season={season}",
        "results": "/fetch/results?season={season}&round={round}",
        "standings": "/fetch/standings?season={season}",
    }
)

#: The public Ergast-compatible Jolpica-F1 API, the source fetcher_service itself reads.
DEFAULT_CALENDAR_URL = "https://api.jolpi.ca/ergast/f1/{season}.json"

_FETCH_PATH_VARIABLES: tuple[tuple[str, str], ...] = tuple(
    (kind, f"FETCH_PATH_{kind.upper()}") for kind in KINDS
)
_EXPECT_ENV_FILE = "a readable .env file"


@dataclass(frozen=True)
class Config:
    """The daemon's whole configuration, immutable and safe to share between threads.

    Build it with :func:`load` from the environment, or directly in tests
    (no validation then, except that ``fetch_paths`` is copied into a
    read-only mapping). Durations are seconds, float (``*_s``). Each field's
    comment names its variable; the README's Configuration section lists them
    all with their defaults.
    """

    #: ``SCHEDULER_HOST``: address the HTTP API binds to.
    host: str = "127.0.0.1"
    #: ``SCHEDULER_PORT``: 0-65535, 0 binds any free port.
    port: int = 8081
    #: ``FETCHER_URL``: base URL of fetcher_service, without a trailing "/".
    fetcher_url: str = "http://127.0.0.1:8082"
    #: ``FETCHER_TIMEOUT``: deadline of a whole fetcher call (connect, send, wait, read), seconds.
    fetcher_timeout_s: float = 300.0
    #: Connect timeout of a fetcher call, seconds; not configurable.
    fetcher_connect_timeout_s: float = 3.0
    #: ``FETCHER_HEALTH_PATH``: probed with GET; any answer below 500 counts as connected.
    fetcher_health_path: str = "/health"
    #: ``FETCHER_HEALTH_TTL``: minimum seconds between two connectivity probes for ``/health``.
    fetcher_health_ttl_s: float = 10.0
    #: ``FETCH_PATH_<KIND>``: kind -> path template with ``{season}``, ``{round}``, ``{session}``.
    #: Excluded from ``hash()`` because mapping proxies are unhashable.
    fetch_paths: Mapping[str, str] = field(
        default_factory=lambda: DEFAULT_FETCH_PATHS, hash=False
    )
    #: ``CALENDAR_URL``: GET URL template with an optional ``{season}``.
    calendar_url: str = DEFAULT_CALENDAR_URL
    #: ``CALENDAR_FILE``: local calendar used instead of ``calendar_url`` when set.
    calendar_file: str | None = None
    #: ``CALENDAR_REFRESH_INTERVAL``, seconds.
    calendar_refresh_interval_s: float = 3600.0
    #: ``SEASONS_INTERVAL``, seconds, in every mode.
    seasons_interval_s: float = 21600.0
    #: ``ROUNDS_INTERVAL_RACE_WEEKEND``, seconds.
    rounds_interval_race_weekend_s: float = 30.0
    #: ``ROUNDS_INTERVAL_OFF_SEASON``, seconds.
    rounds_interval_off_season_s: float = 1800.0
    #: ``RESULTS_INTERVAL_LIVE``, seconds; results are paused outside live sessions.
    results_interval_live_s: float = 30.0
    #: ``STANDINGS_INTERVAL_RACE_WEEKEND``, seconds.
    standings_interval_race_weekend_s: float = 300.0
    #: ``STANDINGS_INTERVAL_OFF_SEASON``, seconds.
    standings_interval_off_season_s: float = 3600.0
    #: ``RACE_WEEKEND_LEAD``: race weekend starts this long before the first session, seconds.
    race_weekend_lead_s: float = 43200.0
    #: ``RACE_WEEKEND_TAIL``: race weekend ends this long after the race's expected end, seconds.
    race_weekend_tail_s: float = 43200.0
    #: ``LIVE_LEAD``: live window starts this long before a session, seconds.
    live_lead_s: float = 300.0
    #: ``LIVE_TAIL``: live window ends this long after a session's expected end, seconds.
    live_tail_s: float = 1800.0
    #: ``STATE_FILE``; defaults to ``$STATE_DIRECTORY/state.json`` under systemd.
    state_file: str = "./scheduler_api_state.json"
    #: ``LOG_LEVEL``, upper-case.
    log_level: str = "INFO"
    #: ``SCHEDULER_API_TOKEN``: bearer token for triggers, None when triggers are open.
    token: str | None = field(default=None, repr=False)
    #: ``SHUTDOWN_GRACE``: how long in-flight syncs may finish at shutdown, seconds.
    shutdown_grace_s: float = 10.0
    #: ``SCHEDULER_HTTP_TIMEOUT``: per-connection socket timeout of the HTTP API, seconds.
    http_timeout_s: float = 10.0
    #: ``SCHEDULER_MAX_CONNECTIONS``: HTTP connections open at once; one more gets 503.
    max_connections: int = 64
    #: ``RETRY_MAX_ATTEMPTS``: attempts per slot of a transient failure, first one included.
    retry_max_attempts: int = 3
    #: ``FETCHER_MAX_CONCURRENCY``: fetcher calls in flight at once, scheduled and manual together.
    fetcher_max_concurrency: int = 4
    #: ``CALENDAR_TIMEOUT``: whole-request deadline of a calendar GET, seconds.
    calendar_timeout_s: float = 30.0
    #: ``CALENDAR_MIN_REFRESH_INTERVAL``: least time between two calendar refreshes asked
    #: for by rounds syncs, seconds.
    calendar_min_refresh_interval_s: float = 300.0
    #: ``CALENDAR_OVERRIDES``: JSON file of calendar corrections, or None.
    calendar_overrides: str | None = None
    #: ``RESULTS_INTERVAL_SETTLE``: results interval while a session's results settle, seconds.
    results_interval_settle_s: float = 600.0
    #: ``RESULTS_SETTLE_WINDOW``: how long results settle after a session's expected end,
    #: seconds; 0 turns settling off.
    results_settle_window_s: float = 21600.0
    #: ``STAGGER``: grid offset between consecutive kinds, seconds; 0 turns it off.
    stagger_s: float = 1.0
    #: Where each variable that was set came from: variable -> ``"env"`` or the .env file's path.
    sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Keep the instance immutable even when a caller passes a plain dict.
        object.__setattr__(self, "fetch_paths", MappingProxyType(dict(self.fetch_paths)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def is_off(self, kind: str) -> bool:
        """:returns: True when ``FETCH_PATH_<KIND>=off`` turned ``kind`` off: never scheduled, trigger 409."""
        return self.fetch_paths.get(kind) == OFF

    def interval_s(self, kind: str, race_weekend: bool, live: bool, settling: bool = False) -> float | None:
        """The interval in force for ``kind`` in the given mode (the table in README, What it does).

        ``seasons`` always uses ``seasons_interval_s``; ``rounds`` and
        ``standings`` depend on ``race_weekend`` only; ``results`` runs only
        while a session is live and is paused (``None``) otherwise, whatever
        ``race_weekend`` says, except while a session's results settle
        (``settling``), when it runs every ``results_interval_settle_s``. A kind
        turned off (``FETCH_PATH_<KIND>=off``) has no interval (``None``).

        :param kind: one of :data:`KINDS`.
        :param race_weekend: whether a race weekend is in progress (a live session counts as one).
        :param live: whether a session's live window is open.
        :param settling: whether a session's results are settling after its live window.
        :returns: seconds between due times, float, or ``None`` when the kind is paused.
        :raises ValueError: if ``kind`` is not one of :data:`KINDS`.
        """
        if self.is_off(kind):
            return None
        if kind == "seasons":
            return self.seasons_interval_s
        if kind == "rounds":
            return (
                self.rounds_interval_race_weekend_s
                if race_weekend
                else self.rounds_interval_off_season_s
            )
        if kind == "results":
            if live:
                return self.results_interval_live_s
            return self.results_interval_settle_s if settling else None
        if kind == "standings":
            return (
                self.standings_interval_race_weekend_s
                if race_weekend
                else self.standings_interval_off_season_s
            )
        raise ValueError(f"unknown sync kind {kind!r}; expected one of {', '.join(KINDS)}")


# Variable -> (Config field, parser). Order is the order errors are found in.
_SCALAR_VARIABLES: tuple[tuple[str, str, Callable[[str, str], Any]], ...] = (
    ("SCHEDULER_HOST", "host", parse_host),
    ("SCHEDULER_PORT", "port", parse_port),
    ("FETCHER_URL", "fetcher_url", parse_fetcher_url),
    ("FETCHER_TIMEOUT", "fetcher_timeout_s", parse_duration_s),
    ("FETCHER_HEALTH_PATH", "fetcher_health_path", parse_health_path),
    ("FETCHER_HEALTH_TTL", "fetcher_health_ttl_s", parse_duration_s),
    ("CALENDAR_URL", "calendar_url", parse_calendar_url),
    ("CALENDAR_FILE", "calendar_file", parse_calendar_file),
    ("CALENDAR_REFRESH_INTERVAL", "calendar_refresh_interval_s", parse_duration_s),
    ("SEASONS_INTERVAL", "seasons_interval_s", parse_duration_s),
    ("ROUNDS_INTERVAL_RACE_WEEKEND", "rounds_interval_race_weekend_s", parse_duration_s),
    ("ROUNDS_INTERVAL_OFF_SEASON", "rounds_interval_off_season_s", parse_duration_s),
    ("RESULTS_INTERVAL_LIVE", "results_interval_live_s", parse_duration_s),
    ("STANDINGS_INTERVAL_RACE_WEEKEND", "standings_interval_race_weekend_s", parse_duration_s),
    ("STANDINGS_INTERVAL_OFF_SEASON", "standings_interval_off_season_s", parse_duration_s),
    ("RACE_WEEKEND_LEAD", "race_weekend_lead_s", parse_duration_s),
    ("RACE_WEEKEND_TAIL", "race_weekend_tail_s", parse_duration_s),
    ("LIVE_LEAD", "live_lead_s", parse_duration_s),
    ("LIVE_TAIL", "live_tail_s", parse_duration_s),
    ("STATE_FILE", "state_file", parse_state_file),
    ("LOG_LEVEL", "log_level", parse_log_level),
    (TOKEN_VARIABLE, "token", parse_token),
    ("SHUTDOWN_GRACE", "shutdown_grace_s", parse_duration_s),
    ("SCHEDULER_HTTP_TIMEOUT", "http_timeout_s", parse_duration_s),
    ("SCHEDULER_MAX_CONNECTIONS", "max_connections", integer_parser(1, 10_000)),
    ("RETRY_MAX_ATTEMPTS", "retry_max_attempts", integer_parser(1, 10)),
    ("FETCHER_MAX_CONCURRENCY", "fetcher_max_concurrency", integer_parser(1, 64)),
    ("CALENDAR_TIMEOUT", "calendar_timeout_s", parse_duration_s),
    ("CALENDAR_MIN_REFRESH_INTERVAL", "calendar_min_refresh_interval_s", parse_duration_or_zero_s),
    ("CALENDAR_OVERRIDES", "calendar_overrides", parse_overrides_file),
    ("RESULTS_INTERVAL_SETTLE", "results_interval_settle_s", parse_duration_s),
    ("RESULTS_SETTLE_WINDOW", "results_settle_window_s", parse_duration_or_zero_s),
    ("STAGGER", "stagger_s", parse_duration_or_zero_s),
)

#: Every variable :func:`load` reads; everything else is ignored.
_VARIABLES: frozenset[str] = frozenset(
    [name for name, _field, _parser in _SCALAR_VARIABLES]
    + [name for _kind, name in _FETCH_PATH_VARIABLES]
    + ["STATE_DIRECTORY"]
)


def _read_env_file(path: str) -> dict[str, str | None]:
    """Read a .env file literally: BOM dropped, no ``${VAR}`` expansion, so a token containing ``$`` survives."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            text = stream.read()
    except (OSError, UnicodeDecodeError, ValueError):
        raise ConfigError("--env-file", path, _EXPECT_ENV_FILE) from None
    return dotenv_values(stream=io.StringIO(text), interpolate=False)


def _default_state_file(state_directory: str) -> str:
    """``$STATE_DIRECTORY/state.json``; systemd may list several ':'-separated directories."""
    first = state_directory.split(":", 1)[0].strip()
    if not first:
        return Config.state_file
    return os.path.join(first, "state.json")


def load(environ: Mapping[str, str], env_file: str | None = None) -> Config:
    """Build a :class:`Config` from environment variables; the real environment wins over the .env file.

    Values come from ``environ`` and, when ``env_file`` is given, from that
    .env file, read as UTF-8 with an optional byte-order mark and taken
    literally (``export`` prefixes and quotes are understood, ``$`` is never
    expanded). A variable present in ``environ`` wins over the file even when
    its value is empty, as with python-dotenv's ``load_dotenv``. An empty or
    whitespace-only value means the default; other values have surrounding
    whitespace stripped. Only the variables documented on :class:`Config`
    (plus ``STATE_DIRECTORY``) are read. Durations go through
    :func:`~scheduler_api.durations.parse_duration` and must lie between 1ms
    and 365d. ``CALENDAR_FILE`` is checked to be a readable file now; when set
    it replaces ``CALENDAR_URL``. Neither ``environ`` nor
    ``os.environ`` is modified.

    :param environ: the process environment, e.g. ``os.environ``.
    :param env_file: path of a .env file (``--env-file``), or None.
    :returns: the validated configuration.
    :raises ConfigError: for the first invalid value, naming the variable,
        the value (never the token's) and what is expected; for an
        ``env_file`` that is missing, unreadable or not UTF-8, with variable
        ``"--env-file"``.
    """
    file_values = _read_env_file(env_file) if env_file is not None else {}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in _VARIABLES:
        raw = environ[name] if name in environ else file_values.get(name)
        if raw is not None and raw.strip():
            values[name] = raw.strip()
            sources[name] = "env" if name in environ else str(env_file)

    fields: dict[str, Any] = {}
    for name, field_name, parser in _SCALAR_VARIABLES:
        if name in values:
            fields[field_name] = parser(name, values[name])
    if "state_file" not in fields and "STATE_DIRECTORY" in values:
        fields["state_file"] = _default_state_file(values["STATE_DIRECTORY"])

    fetch_paths = dict(DEFAULT_FETCH_PATHS)
    for kind, name in _FETCH_PATH_VARIABLES:
        if name in values:
            fetch_paths[kind] = parse_fetch_path(name, values[name])
    fields["fetch_paths"] = MappingProxyType(fetch_paths)
    fields["sources"] = sources
    return Config(**fields)


def non_default_settings(config: Config) -> list[tuple[str, str, str]]:
    """The settings of ``config`` that differ from their defaults, as the start-up log line shows them.

    Secrets are masked: the token is shown as ``***``, URLs and fetch paths
    through :func:`scheduler_api.redact.redact_url` (no user, password or
    secret query value). Durations are shown in their shortest form.

    :returns: ``(variable, shown value, source)`` in the order of the README's
        table; ``source`` is ``env``, the .env file's path, what else set it
        (``--host``, ``STATE_DIRECTORY``), or ``?`` when the value was built
        in code (tests, ``--demo``).
    """
    default = Config()
    shown: list[tuple[str, str, str]] = []
    for name, field_name, _parser in _SCALAR_VARIABLES:
        value = getattr(config, field_name)
        if value == getattr(default, field_name):
            continue
        if name == TOKEN_VARIABLE:
            text = MASK
        elif field_name.endswith("_s") and isinstance(value, float):
            text = format_duration(value)
        elif field_name in ("fetcher_url", "calendar_url"):
            text = redact_url(value)
        else:
            text = str(value)
        source = config.sources.get(name)
        if source is None and name == "STATE_FILE" and "STATE_DIRECTORY" in config.sources:
            source = f"STATE_DIRECTORY, {config.sources['STATE_DIRECTORY']}"
        shown.append((name, text, source or "?"))
    for kind, name in _FETCH_PATH_VARIABLES:
        if config.fetch_paths.get(kind) != DEFAULT_FETCH_PATHS[kind]:
            shown.append((name, redact_url(config.fetch_paths[kind]), config.sources.get(name, "?")))
    return shown
