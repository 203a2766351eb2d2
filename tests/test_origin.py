"""The README's mapping for the origin system's fetcher, tried against a stand-in of that fetcher.

The mapping is read from the README itself (section "The origin system's
fetcher and content API"), so the documented lines are the ones tested.
``tests/origin_fetcher.py`` answers like the origin: 500 with a ``detail``
string, 422 with a ``detail`` list, 404/405 for unknown routes and methods, a
rounds call that hangs for good and goes on after its client gave up.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from scheduler_api import config as config_module
from scheduler_api.config import Config
from scheduler_api.fetcher import FetcherClient, SyncKey, make_session

from conftest import FakeClock, ts
from harness import REPO, daemon, standin, wait_for  # noqa: F401 - fixtures
from origin_fetcher import OriginFetcher

SECTION = "### The origin system's fetcher and content API"


def readme_mapping() -> str:
    """:returns: the ``sh`` block of the README's origin section, as an env file's text."""
    text = (REPO / "README.md").read_text("utf-8")
    section = text[text.index(SECTION):]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    if found is None:
        raise AssertionError("the README's origin section has no sh block")
    return found.group(1)


@pytest.fixture
def origin():
    fetcher = OriginFetcher()
    yield fetcher
    fetcher.stop()


@pytest.fixture
def mapping(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "origin.env"
    path.write_text(readme_mapping(), "utf-8")
    return path


def origin_config(origin: OriginFetcher, mapping: pathlib.Path, **environ: str) -> Config:
    """:returns: the README's mapping with ``FETCHER_URL`` pointed at the stand-in (the real environment wins)."""
    return config_module.load({"FETCHER_URL": origin.url, **environ}, str(mapping))


def client_for(config: Config, timeout_s: float | None = None) -> FetcherClient:
    clock = FakeClock(ts("2026-12-06T13:30:00Z"))
    return FetcherClient(config.fetcher_url, config.fetch_paths, config.fetcher_connect_timeout_s,
                         timeout_s or config.fetcher_timeout_s, make_session(), clock)


def test_the_readme_origin_mapping_sends_each_kind_to_its_origin_route_and_no_standings_call(origin, mapping):
    config = origin_config(origin, mapping)
    client = client_for(config)

    outcomes = [
        client.sync(SyncKey("seasons")),
        client.sync(SyncKey("rounds", 2026)),
        client.sync(SyncKey("results", 2026, 24), "race"),
        client.sync(SyncKey("results", 2026, 23), None),
        client.sync(SyncKey("standings", 2026)),
    ]

    assert [o.result for o in outcomes] == ["ok", "ok", "ok", "ok", "failed"]
    assert origin.paths() == [
        "/fetch/seasons",
        "/fetch/rounds?season=2026",
        "/fetch/rounds?season=2026&round=24&live=race",
        "/fetch/rounds?season=2026&round=23",
    ]
    assert config.is_off("standings")
    standings = outcomes[-1]
    assert (standings.failure, standings.fetcher_called) == ("permanent", False)
    assert standings.error == "standings syncs are turned off (FETCH_PATH_STANDINGS=off)"


def test_the_readme_origin_health_path_is_answered_by_the_origin(origin, mapping):
    config = origin_config(origin, mapping)

    assert config.fetcher_health_path == "/"
    assert client_for(config).probe(config.fetcher_health_path) is True
    assert origin.paths() == ["/"]


def test_a_500_with_a_long_selenium_detail_keeps_its_cause_at_the_end(origin, mapping):
    origin.rounds = "fail"

    outcome = client_for(origin_config(origin, mapping)).sync(SyncKey("rounds", 2026))

    assert (outcome.result, outcome.http_status, outcome.failure) == ("failed", 500, "transient")
    assert len(outcome.error) == 303
    assert outcome.error.startswith("HTTP 500: Message: unknown error: session deleted because of page crash")
    assert outcome.error.endswith(
        "Failed to fetch all rounds: timeout waiting for https://www.formula1.com/en/racing/2026.html")


def test_a_422_detail_list_is_rendered_field_by_field(origin, mapping):
    config = origin_config(origin, mapping, FETCH_PATH_ROUNDS="/fetch/rounds?round={season}x")

    outcome = client_for(config).sync(SyncKey("rounds", 2026))

    assert (outcome.http_status, outcome.failure) == (422, "permanent")
    assert outcome.error == ("HTTP 422: query.season: Field required; "
                             "query.round: Input should be a valid integer, unable to parse string as an integer")


def test_a_400_for_live_without_round_is_permanent(origin, mapping):
    config = origin_config(origin, mapping, FETCH_PATH_RESULTS="/fetch/rounds?season={season}&live={session}")

    outcome = client_for(config).sync(SyncKey("results", 2026, 24), "race")

    assert (outcome.http_status, outcome.failure) == (400, "permanent")
    assert outcome.error == "HTTP 400: live parameter requires round parameter"


def test_a_404_names_the_method_and_path_of_the_wrong_mapping(origin, mapping):
    config = origin_config(origin, mapping, FETCH_PATH_STANDINGS="/fetch/standings?season={season}")

    outcome = client_for(config).sync(SyncKey("standings", 2026))

    assert (outcome.http_status, outcome.failure, outcome.fetcher_called) == (404, "permanent", True)
    assert outcome.error == "HTTP 404 POST /fetch/standings?season=2026: Not Found"


def test_a_405_names_the_method_and_path(origin, mapping):
    config = origin_config(origin, mapping, FETCH_PATH_SEASONS="/status")

    outcome = client_for(config).sync(SyncKey("seasons"))

    assert (outcome.http_status, outcome.failure) == (405, "permanent")
    assert outcome.error == "HTTP 405 POST /status: Method Not Allowed"


def test_a_hanging_rounds_scrape_is_a_timeout_with_fetcher_called_while_the_origin_works_on(origin, mapping):
    origin.rounds = "hang"

    outcome = client_for(origin_config(origin, mapping), timeout_s=0.5).sync(SyncKey("rounds", 2026))

    assert (outcome.result, outcome.failure, outcome.fetcher_called) == ("timeout", "timeout", True)
    assert outcome.error == "no answer: deadline of 0.5s passed"
    assert origin.busy == 1  # the origin still works on the call its client gave up


def test_the_daemon_with_the_readme_mapping_calls_the_origin_routes_only(daemon, origin, mapping):  # noqa: F811
    """A real daemon, configured with the README's lines (the 2023 calendar: off-season, results by trigger)."""
    proc = daemon({"FETCHER_URL": origin.url, "FETCHER_TIMEOUT": "5s"}, args=("--env-file", str(mapping)))
    wait_for(lambda: {"/fetch/seasons", "/fetch/rounds?season=2023"} <= set(origin.paths()),
             what="the catch-up syncs at the origin")

    status, body, _ = proc.request("POST", "/trigger/results?season=2023&round=22")

    assert (status, body["success"], body["fetcher_called"]) == (200, True, True)
    assert "/fetch/rounds?season=2023&round=22" in origin.paths()
    assert all(path == "/fetch/seasons" or path.startswith("/fetch/rounds?season=") for path in origin.paths("/fetch"))
    assert origin.paths("/fetch/standings") == []
    assert "Traceback" not in proc.log()
