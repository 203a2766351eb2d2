"""Tests for scheduler_api.config: intervals, calendar, leads and tails, service settings, shutdown."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from scheduler_api.config import (
    DEFAULT_CALENDAR_URL,
    DEFAULT_FETCH_PATHS,
    KINDS,
    Config,
    ConfigError,
    load,
)

TOKEN = "s3cr3t$HOME$$x"


def write_env(tmp_path: Path, text: str, *, encoding: str = "utf-8") -> str:
    path = tmp_path / "scheduler_api.env"
    path.write_text(text, encoding=encoding)
    return str(path)


def error_for(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(environ)
    return info.value


# -- defaults -------------------------------------------------------------


def test_empty_environment_gives_spec_defaults() -> None:
    config = load({})
    assert config == Config()
    assert (config.host, config.port) == ("127.0.0.1", 8081)
    assert config.fetcher_url == "http://127.0.0.1:8082"
    assert config.fetcher_timeout_s == 300.0
    assert config.fetcher_connect_timeout_s == 3.0
    assert config.fetcher_health_path == "/health"
    assert config.fetcher_health_ttl_s == 10.0
    assert dict(config.fetch_paths) == dict(DEFAULT_FETCH_PATHS)
    assert config.calendar_url == DEFAULT_CALENDAR_URL
    assert config.calendar_file is None
    assert config.calendar_refresh_interval_s == 3600.0
    assert config.seasons_interval_s == 21600.0
    assert config.rounds_interval_race_weekend_s == 30.0
    assert config.rounds_interval_off_season_s == 1800.0
    assert config.results_interval_live_s == 30.0
    assert config.standings_interval_race_weekend_s == 300.0
    assert config.standings_interval_off_season_s == 3600.0
    assert config.race_weekend_lead_s == config.race_weekend_tail_s == 43200.0
    assert (config.live_lead_s, config.live_tail_s) == (300.0, 1800.0)
    assert config.state_file == "./scheduler_api_state.json"
    assert config.log_level == "INFO"
    assert config.token is None
    assert config.shutdown_grace_s == 10.0
    assert config.http_timeout_s == 10.0


def test_default_fetch_paths_match_spec_table() -> None:
    assert dict(DEFAULT_FETCH_PATHS) == {
        "seasons": "/fetch/seasons",
        "rounds": "/fetch/rounds?season={season}",
        "results": "/fetch/results?season={season}&round={round}",
        "standings": "/fetch/standings?season={season}",
    }
    assert tuple(DEFAULT_FETCH_PATHS) == KINDS


def test_module_defaults_and_config_are_immutable() -> None:
    with pytest.raises(TypeError):
        DEFAULT_FETCH_PATHS["seasons"] = "/x"  # type: ignore[index]
    config = Config(fetch_paths={"seasons": "/x"})
    with pytest.raises(TypeError):
        config.fetch_paths["seasons"] = "/y"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    hash(config)


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty_value_means_default(value: str) -> None:
    names = [
        "SCHEDULER_HOST", "SCHEDULER_PORT", "FETCHER_URL", "FETCHER_TIMEOUT",
        "FETCHER_HEALTH_PATH", "FETCHER_HEALTH_TTL", "FETCH_PATH_SEASONS",
        "FETCH_PATH_ROUNDS", "FETCH_PATH_RESULTS", "FETCH_PATH_STANDINGS",
        "CALENDAR_URL", "CALENDAR_FILE", "CALENDAR_REFRESH_INTERVAL",
        "SEASONS_INTERVAL", "ROUNDS_INTERVAL_RACE_WEEKEND", "ROUNDS_INTERVAL_OFF_SEASON",
        "RESULTS_INTERVAL_LIVE", "STANDINGS_INTERVAL_RACE_WEEKEND",
        "STANDINGS_INTERVAL_OFF_SEASON", "RACE_WEEKEND_LEAD", "RACE_WEEKEND_TAIL",
        "LIVE_LEAD", "LIVE_TAIL", "STATE_FILE", "STATE_DIRECTORY", "LOG_LEVEL",
        "SCHEDULER_API_TOKEN", "SHUTDOWN_GRACE", "SCHEDULER_HTTP_TIMEOUT",
    ]
    assert load({name: value for name in names}) == Config()


def test_unknown_variables_are_ignored() -> None:
    assert load({"PATH": "/bin", "SCHEDULER_PORTT": "x", "HTTP_PROXY": "http://p"}) == Config()


# -- each variable --------------------------------------------------------


def test_every_variable_sets_its_field(tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.json"
    calendar.write_text("{}", encoding="utf-8")
    config = load(
        {
            "SCHEDULER_HOST": "0.0.0.0",
            "SCHEDULER_PORT": "0",
            "FETCHER_URL": "https://fetcher.example:8443/api/",
            "FETCHER_TIMEOUT": "2m",
            "FETCHER_HEALTH_PATH": "/docs",
            "FETCHER_HEALTH_TTL": "500ms",
            "FETCH_PATH_RESULTS": "/fetch/rounds?season={season}&round={round}&live={session}",
            "CALENDAR_URL": "http://127.0.0.1:8000/seasons/{season}/rounds",
            "CALENDAR_FILE": str(calendar),
            "CALENDAR_REFRESH_INTERVAL": "2h",
            "SEASONS_INTERVAL": "1d",
            "ROUNDS_INTERVAL_RACE_WEEKEND": "1m",
            "ROUNDS_INTERVAL_OFF_SEASON": "1h",
            "RESULTS_INTERVAL_LIVE": "15",
            "STANDINGS_INTERVAL_RACE_WEEKEND": "10m",
            "STANDINGS_INTERVAL_OFF_SEASON": "2h",
            "RACE_WEEKEND_LEAD": "1d",
            "RACE_WEEKEND_TAIL": "6h",
            "LIVE_LEAD": "10m",
            "LIVE_TAIL": "1h",
            "STATE_FILE": str(tmp_path / "state.json"),
            "LOG_LEVEL": "debug",
            "SCHEDULER_API_TOKEN": TOKEN,
            "SHUTDOWN_GRACE": "30s",
            "SCHEDULER_HTTP_TIMEOUT": "5s",
        }
    )
    assert config.host == "0.0.0.0"
    assert config.port == 0
    assert config.fetcher_url == "https://fetcher.example:8443/api"
    assert config.fetcher_timeout_s == 120.0
    assert config.fetcher_health_path == "/docs"
    assert config.fetcher_health_ttl_s == 0.5
    assert config.fetch_paths["results"] == "/fetch/rounds?season={season}&round={round}&live={session}"
    assert config.fetch_paths["seasons"] == "/fetch/seasons"
    assert config.calendar_url == "http://127.0.0.1:8000/seasons/{season}/rounds"
    assert config.calendar_file == str(calendar)
    assert config.calendar_refresh_interval_s == 7200.0
    assert config.seasons_interval_s == 86400.0
    assert config.rounds_interval_race_weekend_s == 60.0
    assert config.rounds_interval_off_season_s == 3600.0
    assert config.results_interval_live_s == 15.0
    assert config.standings_interval_race_weekend_s == 600.0
    assert config.standings_interval_off_season_s == 7200.0
    assert config.race_weekend_lead_s == 86400.0
    assert config.race_weekend_tail_s == 21600.0
    assert config.live_lead_s == 600.0
    assert config.live_tail_s == 3600.0
    assert config.state_file == str(tmp_path / "state.json")
    assert config.log_level == "DEBUG"
    assert config.token == TOKEN
    assert config.shutdown_grace_s == 30.0
    assert config.http_timeout_s == 5.0


def test_surrounding_whitespace_is_stripped() -> None:
    config = load({"SCHEDULER_PORT": " 9000 ", "LOG_LEVEL": " warning\n"})
    assert (config.port, config.log_level) == (9000, "WARNING")


def test_fetcher_url_trailing_slashes_are_stripped() -> None:
    assert load({"FETCHER_URL": "http://localhost:8082/"}).fetcher_url == "http://localhost:8082"


def test_state_file_defaults_under_state_directory() -> None:
    config = load({"STATE_DIRECTORY": "/var/lib/scheduler_api"})
    assert config.state_file == "/var/lib/scheduler_api/state.json"


def test_state_directory_with_several_paths_uses_the_first() -> None:
    config = load({"STATE_DIRECTORY": "/var/lib/scheduler_api:/var/lib/other"})
    assert config.state_file == "/var/lib/scheduler_api/state.json"


def test_state_file_wins_over_state_directory() -> None:
    config = load({"STATE_DIRECTORY": "/var/lib/scheduler_api", "STATE_FILE": "/tmp/s.json"})
    assert config.state_file == "/tmp/s.json"


def test_calendar_file_must_exist_at_load_time(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    err = error_for({"CALENDAR_FILE": missing})
    assert (err.variable, err.value, err.expected) == ("CALENDAR_FILE", missing, "an existing readable file")
    assert error_for({"CALENDAR_FILE": str(tmp_path)}).variable == "CALENDAR_FILE"


# -- intervals (the README's table) ---------------------------------------


def test_interval_follows_spec_table() -> None:
    config = Config()
    assert config.interval_s("seasons", race_weekend=False, live=False) == 21600.0
    assert config.interval_s("seasons", race_weekend=True, live=True) == 21600.0
    assert config.interval_s("rounds", race_weekend=True, live=False) == 30.0
    assert config.interval_s("rounds", race_weekend=False, live=False) == 1800.0
    assert config.interval_s("standings", race_weekend=True, live=False) == 300.0
    assert config.interval_s("standings", race_weekend=False, live=False) == 3600.0


def test_results_paused_unless_live() -> None:
    config = Config()
    assert config.interval_s("results", race_weekend=True, live=False) is None
    assert config.interval_s("results", race_weekend=False, live=False) is None
    assert config.interval_s("results", race_weekend=True, live=True) == 30.0


def test_interval_of_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown sync kind"):
        Config().interval_s("drivers", race_weekend=False, live=False)


# -- errors ---------------------------------------------------------------


def test_bad_value_names_variable_value_and_expectation() -> None:
    err = error_for({"SCHEDULER_PORT": "80a"})
    assert (err.variable, err.value) == ("SCHEDULER_PORT", "80a")
    assert str(err) == "SCHEDULER_PORT='80a': expected an integer from 0 to 65535"
    err = error_for({"ROUNDS_INTERVAL_OFF_SEASON": "5x"})
    assert str(err) == (
        "ROUNDS_INTERVAL_OFF_SEASON='5x': expected a duration such as 30s, 5m, 1h30m "
        "or a number of seconds"
    )


def test_error_message_is_one_line() -> None:
    err = error_for({"FETCHER_URL": "http://a\nb"})
    assert "\n" not in str(err)
    assert str(err).startswith("FETCHER_URL='http://a\\nb': expected ")


@pytest.mark.parametrize("value", ["-1", "65536", "+80", "8_0", "٨٠", "80.0", "http"])
def test_port_must_be_ascii_integer_in_range(value: str) -> None:
    assert error_for({"SCHEDULER_PORT": value}).variable == "SCHEDULER_PORT"


@pytest.mark.parametrize(
    "variable",
    [
        "FETCHER_TIMEOUT", "FETCHER_HEALTH_TTL", "CALENDAR_REFRESH_INTERVAL",
        "SEASONS_INTERVAL", "ROUNDS_INTERVAL_RACE_WEEKEND", "ROUNDS_INTERVAL_OFF_SEASON",
        "RESULTS_INTERVAL_LIVE", "STANDINGS_INTERVAL_RACE_WEEKEND",
        "STANDINGS_INTERVAL_OFF_SEASON", "RACE_WEEKEND_LEAD", "RACE_WEEKEND_TAIL",
        "LIVE_LEAD", "LIVE_TAIL", "SHUTDOWN_GRACE", "SCHEDULER_HTTP_TIMEOUT",
    ],
)
@pytest.mark.parametrize("value", ["0", "-5s", "1h1h", "nan", "１０s"])
def test_every_duration_variable_is_parsed_as_duration(variable: str, value: str) -> None:
    err = error_for({variable: value})
    assert (err.variable, err.value) == (variable, value)
    assert err.expected.startswith("a duration")


def test_duration_out_of_range_is_rejected() -> None:
    assert error_for({"LIVE_TAIL": "366d"}).expected == "a duration from 1ms to 365d"
    assert error_for({"LIVE_TAIL": "0.0001"}).expected == "a duration from 1ms to 365d"


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:8082",
        "ftp://host",
        "http://",
        "http:///path",
        "http://host:99999",
        "http://host:port",
        "http://host/?x=1",
        "http://ho st",
    ],
)
def test_fetcher_url_must_be_http_with_host(value: str) -> None:
    assert error_for({"FETCHER_URL": value}).variable == "FETCHER_URL"


@pytest.mark.parametrize("value", ["health", "/he alth"])
def test_health_path_must_start_with_slash(value: str) -> None:
    assert error_for({"FETCHER_HEALTH_PATH": value}).variable == "FETCHER_HEALTH_PATH"


@pytest.mark.parametrize(
    "value",
    [
        "fetch/seasons",
        "/fetch/{year}",
        "/fetch/{}",
        "/fetch/{0}",
        "/fetch/{season:04d}",
        "/fetch/{season!r}",
        "/fetch/{season.real}",
        "/fetch/{season[0]}",
        "/fetch/{season",
        "/fetch/season}",
    ],
)
def test_fetch_path_allows_only_known_placeholders(value: str) -> None:
    err = error_for({"FETCH_PATH_ROUNDS": value})
    assert (err.variable, err.value) == ("FETCH_PATH_ROUNDS", value)


def test_fetch_path_accepts_escaped_braces() -> None:
    config = load({"FETCH_PATH_SEASONS": "/fetch/{{literal}}?s={session}"})
    assert config.fetch_paths["seasons"] == "/fetch/{{literal}}?s={session}"


@pytest.mark.parametrize(
    "value",
    ["api.jolpi.ca/ergast/f1/{season}.json", "https://x/{round}.json", "https://x/{}", "file:///tmp/c"],
)
def test_calendar_url_must_be_http_with_only_season_placeholder(value: str) -> None:
    assert error_for({"CALENDAR_URL": value}).variable == "CALENDAR_URL"


def test_log_level_is_case_insensitive_and_checked() -> None:
    assert load({"LOG_LEVEL": "Error"}).log_level == "ERROR"
    err = error_for({"LOG_LEVEL": "verbose"})
    assert err.expected.startswith("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")


def test_state_file_must_not_be_a_directory(tmp_path: Path) -> None:
    assert error_for({"STATE_FILE": str(tmp_path)}).variable == "STATE_FILE"


def test_token_never_in_error_or_repr() -> None:
    config = load({"SCHEDULER_API_TOKEN": TOKEN})
    assert TOKEN not in repr(config)
    assert "token" not in repr(config)
    bad = "Zq9 leaked Zq9"
    err = error_for({"SCHEDULER_API_TOKEN": bad})
    assert err.variable == "SCHEDULER_API_TOKEN"
    assert err.value == "<hidden>"
    assert "Zq9" not in str(err) and "Zq9" not in repr(err) and "Zq9" not in str(err.args)
    assert "<hidden>" in str(err)
    direct = ConfigError("SCHEDULER_API_TOKEN", TOKEN, "anything")
    assert TOKEN not in str(direct)


def test_token_must_be_printable_ascii() -> None:
    assert error_for({"SCHEDULER_API_TOKEN": "tökén"}).variable == "SCHEDULER_API_TOKEN"


# -- .env file ------------------------------------------------------------


def test_env_file_values_are_loaded(tmp_path: Path) -> None:
    path = write_env(tmp_path, "SCHEDULER_PORT=9001\n# comment\nLIVE_LEAD=10m\n")
    config = load({}, env_file=path)
    assert (config.port, config.live_lead_s) == (9001, 600.0)


def test_real_environment_wins_over_env_file(tmp_path: Path) -> None:
    path = write_env(tmp_path, "SCHEDULER_PORT=9001\nLOG_LEVEL=DEBUG\n")
    config = load({"SCHEDULER_PORT": "9002"}, env_file=path)
    assert config.port == 9002
    assert config.log_level == "DEBUG"


def test_empty_real_variable_still_wins_over_env_file(tmp_path: Path) -> None:
    path = write_env(tmp_path, "SCHEDULER_PORT=9001\n")
    assert load({"SCHEDULER_PORT": ""}, env_file=path).port == 8081


def test_env_file_with_bom_export_quotes_and_dollar_loads_literally(tmp_path: Path) -> None:
    path = write_env(
        tmp_path,
        "SCHEDULER_PORT=9003\n"
        "export SCHEDULER_API_TOKEN=abc$HOME$$x\n"
        "FETCHER_URL='http://fetch.example:8082'\n"
        'CALENDAR_URL="https://example.com/${season}/{season}.json"\n'
        "FETCH_PATH_SEASONS='/fetch/seasons?tag=$HOME$$'\n",
        encoding="utf-8-sig",
    )
    assert Path(path).read_bytes().startswith(b"\xef\xbb\xbf")
    config = load({"HOME": "/root"}, env_file=path)
    assert config.port == 9003  # the first key is not "\ufeffSCHEDULER_PORT"
    assert config.token == "abc$HOME$$x"
    assert config.fetcher_url == "http://fetch.example:8082"
    assert config.calendar_url == "https://example.com/${season}/{season}.json"
    assert config.fetch_paths["seasons"] == "/fetch/seasons?tag=$HOME$$"


def test_env_file_ignores_unknown_and_valueless_keys(tmp_path: Path) -> None:
    path = write_env(tmp_path, "OTHER=1\nSCHEDULER_PORT\nLOG_LEVEL=\n")
    assert load({}, env_file=path) == Config()


def test_bad_value_in_env_file_names_variable(tmp_path: Path) -> None:
    path = write_env(tmp_path, "SCHEDULER_PORT=80a\n")
    with pytest.raises(ConfigError, match=r"^SCHEDULER_PORT='80a': expected "):
        load({}, env_file=path)


def test_missing_env_file_raises_config_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.env")
    with pytest.raises(ConfigError) as info:
        load({}, env_file=missing)
    assert str(info.value) == f"--env-file={missing!r}: expected a readable .env file"


def test_unreadable_env_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^--env-file="):
        load({}, env_file=str(tmp_path))  # a directory
    not_utf8 = tmp_path / "latin1.env"
    not_utf8.write_bytes(b"SCHEDULER_API_TOKEN=\xff\xfe\n")
    with pytest.raises(ConfigError, match="^--env-file="):
        load({}, env_file=str(not_utf8))


def test_load_does_not_touch_os_environ(tmp_path: Path) -> None:
    before = dict(os.environ)
    load({}, env_file=write_env(tmp_path, "SCHEDULER_UNUSED_TEST_VARIABLE=1\nLIVE_TAIL=1h\n"))
    assert dict(os.environ) == before


def test_v2_variables_have_their_defaults() -> None:
    config = load({})
    assert (config.max_connections, config.retry_max_attempts, config.fetcher_max_concurrency) == (64, 3, 4)
    assert (config.calendar_timeout_s, config.calendar_min_refresh_interval_s) == (30.0, 300.0)
    assert (config.results_interval_settle_s, config.results_settle_window_s, config.stagger_s) == (600.0, 21600.0, 1.0)
    assert config.calendar_overrides is None


def test_v2_variables_set_their_fields(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.json"
    overrides.write_text("[]")
    config = load({
        "SCHEDULER_MAX_CONNECTIONS": "8", "RETRY_MAX_ATTEMPTS": "1", "FETCHER_MAX_CONCURRENCY": "2",
        "CALENDAR_TIMEOUT": "5s", "CALENDAR_MIN_REFRESH_INTERVAL": "0", "CALENDAR_OVERRIDES": str(overrides),
        "RESULTS_INTERVAL_SETTLE": "5m", "RESULTS_SETTLE_WINDOW": "0", "STAGGER": "250ms",
    })
    assert (config.max_connections, config.retry_max_attempts, config.fetcher_max_concurrency) == (8, 1, 2)
    assert (config.calendar_timeout_s, config.calendar_min_refresh_interval_s) == (5.0, 0.0)
    assert (config.results_interval_settle_s, config.results_settle_window_s, config.stagger_s) == (300.0, 0.0, 0.25)
    assert config.calendar_overrides == str(overrides)


@pytest.mark.parametrize("variable, value", [
    ("SCHEDULER_MAX_CONNECTIONS", "0"), ("SCHEDULER_MAX_CONNECTIONS", "+5"), ("RETRY_MAX_ATTEMPTS", "0"),
    ("RETRY_MAX_ATTEMPTS", "11"), ("FETCHER_MAX_CONCURRENCY", "٣"), ("FETCHER_MAX_CONCURRENCY", "65"),
    ("CALENDAR_TIMEOUT", "0"), ("STAGGER", "-1s"), ("RESULTS_SETTLE_WINDOW", "forever"),
    ("CALENDAR_OVERRIDES", "/nonexistent/overrides.json"), ("RETRY_MAX_ATTEMPTS", "9" * 5000),
])
def test_v2_variables_refuse_bad_values_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({variable: value})
    assert caught.value.variable == variable
    assert "\n" not in str(caught.value)


def test_fetch_path_off_turns_a_kind_off() -> None:
    config = load({"FETCH_PATH_STANDINGS": "off"})
    assert config.is_off("standings") and not config.is_off("seasons")
    assert config.interval_s("standings", race_weekend=True, live=True) is None
    assert config.interval_s("rounds", race_weekend=True, live=False) == 30.0


def test_results_settle_interval_applies_only_while_settling() -> None:
    config = load({})
    assert config.interval_s("results", race_weekend=True, live=False, settling=True) == 600.0
    assert config.interval_s("results", race_weekend=True, live=True, settling=True) == 30.0
    assert config.interval_s("results", race_weekend=True, live=False) is None


def test_sources_say_where_each_setting_came_from(tmp_path: Path) -> None:
    env_file = tmp_path / "scheduler_api.env"
    env_file.write_text("STAGGER=2s\nSCHEDULER_PORT=9000\n")
    config = load({"SCHEDULER_PORT": "9001"}, str(env_file))
    assert dict(config.sources) == {"STAGGER": str(env_file), "SCHEDULER_PORT": "env"}
    assert config.port == 9001 and config.stagger_s == 2.0
