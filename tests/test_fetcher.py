"""FetcherClient: calls, the success rule and failure reasons, no environment proxies.

The answers are the shapes the origin system's fetcher_service (FastAPI)
sends: ``{"success": true, "source", "count", "timestamp"}`` on success and
``{"detail": ...}`` on errors (a string for 400/404/405/500, a list of
validation objects for 422).
"""

from __future__ import annotations

import pytest
import requests

from scheduler_api.config import Config
from scheduler_api.fetcher import FetcherClient, SyncKey, build_path, make_session

from conftest import FETCHER, make_client

ORIGIN_OK = {"success": True, "source": "jolpica", "count": 24, "timestamp": 1732834567}
ORIGIN_500_DETAIL = (
    "Failed to fetch rounds: HTTPSConnectionPool(host='api.jolpi.ca', port=443): "
    "Max retries exceeded with url: /ergast/f1/2025.json"
)
ORIGIN_PATHS = {
    "seasons": "/fetch/seasons",
    "rounds": "/fetch/rounds?season={season}",
    "results": "/fetch/rounds?season={season}&round={round}&live={session}",
    "standings": "/fetch/standings?season={season}",
}


@pytest.fixture
def client(config, clock) -> FetcherClient:
    return make_client(config, clock)


# -- the success rule --------------------------------------------------------


def test_origin_fetcher_success_body_is_ok(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK, status=200)

    outcome = client.sync(SyncKey("seasons"))

    assert outcome.result == "ok"
    assert outcome.ok is True
    assert outcome.http_status == 200
    assert outcome.error is None
    assert outcome.retry_after_s is None
    assert outcome.fetcher_called is True
    assert outcome.duration_ms == 0  # the fake clock did not move


def test_origin_fetcher_500_detail_is_quoted_in_reason(mocked, client):
    mocked.post(f"{FETCHER}/fetch/rounds?season=2025", json={"detail": ORIGIN_500_DETAIL}, status=500)

    outcome = client.sync(SyncKey("rounds", 2025))

    assert outcome.result == "failed"
    assert outcome.http_status == 500
    assert outcome.error == f"HTTP 500: {ORIGIN_500_DETAIL}"
    assert outcome.fetcher_called is True
    assert outcome.retry_after_s is None


def test_origin_fetcher_422_validation_list_is_quoted_in_reason(mocked, client):
    body = {"detail": [{"loc": ["query", "season"], "msg": "field required", "type": "value_error.missing"}]}
    mocked.post(f"{FETCHER}/fetch/rounds?season=2025", json=body, status=422)

    outcome = client.sync(SyncKey("rounds", 2025))

    assert (outcome.result, outcome.http_status) == ("failed", 422)
    assert outcome.error == "HTTP 422: query.season: field required"


def test_origin_fetcher_422_with_several_validation_errors_joins_them(mocked, client):
    body = {"detail": [
        {"loc": ["query", "season"], "msg": "field required", "type": "value_error.missing"},
        {"loc": ["query", "round"], "msg": "value is not a valid integer", "type": "type_error.integer"},
    ]}
    mocked.post(f"{FETCHER}/fetch/rounds?season=2025", json=body, status=422)

    outcome = client.sync(SyncKey("rounds", 2025))

    assert outcome.error == "HTTP 422: query.season: field required; query.round: value is not a valid integer"


@pytest.mark.parametrize(
    ("status", "detail", "reason"),
    [
        (400, "Invalid season", "HTTP 400: Invalid season"),
        (404, "Not Found", "HTTP 404 POST /fetch/results?season=2025&round=5: Not Found"),
        (405, "Method Not Allowed", "HTTP 405 POST /fetch/results?season=2025&round=5: Method Not Allowed"),
    ],
)
def test_origin_fetcher_detail_string_is_quoted_in_reason(mocked, client, status, detail, reason):
    mocked.post(f"{FETCHER}/fetch/results?season=2025&round=5", json={"detail": detail}, status=status)

    outcome = client.sync(SyncKey("results", 2025, 5))

    assert (outcome.result, outcome.http_status) == ("failed", status)
    assert outcome.error == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"message": "upstream said no"}, "HTTP 503: upstream said no"),
        ({"error": "database locked"}, "HTTP 503: database locked"),
        ({"message": "first", "detail": "second", "error": "third"}, "HTTP 503: first"),
    ],
)
def test_failure_reason_quotes_message_detail_or_error(mocked, client, body, reason):
    mocked.post(f"{FETCHER}/fetch/seasons", json=body, status=503)

    assert client.sync(SyncKey("seasons")).error == reason


def test_success_false_with_message_is_a_failure(mocked, client):
    body = {"success": False, "message": "Season 1949 is not available"}
    mocked.post(f"{FETCHER}/fetch/seasons", json=body, status=200)

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status) == ("failed", 200)
    assert outcome.error == "HTTP 200 success=false: Season 1949 is not available"
    assert outcome.fetcher_called is True


def test_success_false_without_message_is_a_failure(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"success": False}, status=200)

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.error) == ("failed", "HTTP 200 success=false")


@pytest.mark.parametrize(
    "body",
    [{"success": "false"}, {"success": 0}, {"status": "done"}, [1, 2, 3], "queued"],
    ids=["string-success", "int-success", "no-success", "json-list", "json-string"],
)
def test_2xx_without_boolean_success_is_ok(mocked, client, body):
    mocked.post(f"{FETCHER}/fetch/seasons", json=body, status=200)

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status, outcome.error) == ("ok", 200, None)


@pytest.mark.parametrize("status", [201, 202, 204])
def test_any_2xx_status_is_ok(mocked, client, status):
    mocked.post(f"{FETCHER}/fetch/seasons", body=b"", status=status)

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status) == ("ok", status)


def test_non_json_2xx_is_ok(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", body="fetched 24 rounds", status=200, content_type="text/plain")

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status, outcome.error) == ("ok", 200, None)


def test_non_json_5xx_is_a_failure_with_the_status(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", body="<html>Bad Gateway</html>", status=502,
                content_type="text/html")

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status) == ("failed", 502)
    assert outcome.error == "HTTP 502 Bad Gateway"


def test_3xx_is_a_failure_and_redirects_are_not_followed(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", status=307, headers={"Location": f"{FETCHER}/elsewhere"})

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status) == ("failed", 307)
    assert outcome.error == "HTTP 307 Temporary Redirect"
    assert len(mocked.calls) == 1


def test_a_long_reason_keeps_its_first_150_and_last_150_characters(mocked, client):
    detail = "head " + "x" * 1000 + " the cause"
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": detail}, status=500)

    error = client.sync(SyncKey("seasons")).error

    assert len(error) == 150 + len(" … ") + 150 == 303
    assert error == ("HTTP 500: head " + "x" * 1000 + " the cause")[:150] + " … " + ("x" * 140 + " the cause")


def test_failure_reason_is_one_line(mocked, client):
    detail = "Traceback (most recent call last):\n  File \"main.py\", line 1\n\tValueError: boom"
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": detail}, status=500)

    error = client.sync(SyncKey("seasons")).error

    assert error == 'HTTP 500: Traceback (most recent call last): File "main.py", line 1 ValueError: boom'


def test_failure_reason_of_exactly_300_characters_is_not_cut(mocked, client):
    detail = "y" * (300 - len("HTTP 500: "))
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": detail}, status=500)

    assert client.sync(SyncKey("seasons")).error == "HTTP 500: " + detail


# -- Retry-After ---------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_read_on_429_and_503(mocked, client, status):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": "slow down"}, status=status,
                headers={"Retry-After": "120"})

    outcome = client.sync(SyncKey("seasons"))

    assert outcome.retry_after_s == 120.0
    assert outcome.error == f"HTTP {status}: slow down"


def test_retry_after_http_date_is_a_delay_from_now(mocked, client, clock):
    # The clock stands at 2026-11-30T12:00:00Z.
    mocked.post(f"{FETCHER}/fetch/seasons", status=503, headers={"Retry-After": "Mon, 30 Nov 2026 12:01:30 GMT"})

    assert client.sync(SyncKey("seasons")).retry_after_s == 90.0


def test_retry_after_is_ignored_on_other_statuses(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", status=500, headers={"Retry-After": "120"})

    assert client.sync(SyncKey("seasons")).retry_after_s is None


# -- the calls -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "url"),
    [
        (SyncKey("seasons"), f"{FETCHER}/fetch/seasons"),
        (SyncKey("rounds", 2025), f"{FETCHER}/fetch/rounds?season=2025"),
        (SyncKey("results", 2025, 5), f"{FETCHER}/fetch/results?season=2025&round=5"),
        (SyncKey("results", 2025, 0), f"{FETCHER}/fetch/results?season=2025&round=0"),
        (SyncKey("standings", 2025), f"{FETCHER}/fetch/standings?season=2025"),
    ],
)
def test_default_path_templates_per_kind(mocked, client, key, url):
    mocked.post(url, json=ORIGIN_OK)

    assert client.sync(key).ok

    assert mocked.calls[0].request.url == url
    assert mocked.calls[0].request.method == "POST"


def test_origin_mapping_results_carry_the_live_session(mocked, clock):
    config = Config(fetcher_url=FETCHER, fetch_paths=ORIGIN_PATHS)
    url = f"{FETCHER}/fetch/rounds?season=2026&round=23&live=race"
    mocked.post(url, json=ORIGIN_OK)

    outcome = make_client(config, clock).sync(SyncKey("results", 2026, 23), "race")

    assert outcome.ok
    assert mocked.calls[0].request.url == url


def test_origin_mapping_results_without_live_session_leave_out_live(mocked, clock):
    config = Config(fetcher_url=FETCHER, fetch_paths=ORIGIN_PATHS)
    url = f"{FETCHER}/fetch/rounds?season=2026&round=23"
    mocked.post(url, json=ORIGIN_OK)

    assert make_client(config, clock).sync(SyncKey("results", 2026, 23), None).ok

    assert mocked.calls[0].request.url == url


@pytest.mark.parametrize(
    ("template", "key", "session", "path"),
    [
        ("/fetch/rounds?season={season}&round={round}&live={session}", SyncKey("results", 2026, 6),
         "sprint_qualifying", "/fetch/rounds?season=2026&round=6&live=sprint_qualifying"),
        ("/fetch/rounds?live={session}&season={season}", SyncKey("rounds", 2026), None,
         "/fetch/rounds?season=2026"),
        ("/fetch/{season}/{round}", SyncKey("results", 2026, 3), None, "/fetch/2026/3"),
        ("/fetch/rounds?season={season}&force=1", SyncKey("rounds", 2026), None,
         "/fetch/rounds?season=2026&force=1"),
        ("/fetch/seasons", SyncKey("seasons"), "race", "/fetch/seasons"),
    ],
)
def test_path_template_placeholders(template, key, session, path):
    assert build_path(template, key, session) == path


def test_fetcher_url_trailing_slash_is_not_doubled(mocked, clock):
    client = FetcherClient(FETCHER + "/", Config().fetch_paths, 3.0, 300.0, make_session(), clock)
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)

    assert client.sync(SyncKey("seasons")).ok
    assert mocked.calls[0].request.url == f"{FETCHER}/fetch/seasons"


def test_every_call_passes_an_explicit_connect_and_read_timeout(mocked, client):
    mocked.post(f"{FETCHER}/fetch/standings?season=2026", json=ORIGIN_OK)

    client.sync(SyncKey("standings", 2026))

    assert mocked.calls[0].request.req_kwargs["timeout"] == (3.0, 300.0)


def test_configured_read_timeout_is_passed(mocked, clock):
    config = Config(fetcher_url=FETCHER, fetcher_timeout_s=45.0)
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)

    make_client(config, clock).sync(SyncKey("seasons"))

    assert mocked.calls[0].request.req_kwargs["timeout"] == (3.0, 45.0)


def test_sync_calls_are_always_post(mocked, client):
    for url in (f"{FETCHER}/fetch/seasons", f"{FETCHER}/fetch/rounds?season=2026",
                f"{FETCHER}/fetch/results?season=2026&round=1", f"{FETCHER}/fetch/standings?season=2026"):
        mocked.post(url, json=ORIGIN_OK)

    for key in (SyncKey("seasons"), SyncKey("rounds", 2026), SyncKey("results", 2026, 1),
                SyncKey("standings", 2026)):
        client.sync(key)

    assert [call.request.method for call in mocked.calls] == ["POST"] * 4


def test_make_session_ignores_environment_proxies(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")

    session = make_session()

    assert isinstance(session, requests.Session)
    assert session.trust_env is False
    assert session.proxies == {}
    assert make_session() is not session  # one per worker, never shared


# -- health probe -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "connected"), [(200, True), (404, True), (499, True), (500, False), (503, False)])
def test_probe_counts_any_answer_below_500_as_connected(mocked, client, status, connected):
    mocked.get(f"{FETCHER}/health", status=status)

    assert client.probe("/health") is connected
    assert mocked.calls[0].request.method == "GET"
    assert mocked.calls[0].request.req_kwargs["timeout"] == (3.0, 5.0)


def test_probe_without_answer_is_not_connected(mocked, client):
    mocked.get(f"{FETCHER}/health", body=requests.ConnectionError("Connection refused"))

    assert client.probe("/health") is False


# -- closing -----------------------------------------------------------------


def test_close_closes_the_session_and_its_pooled_connections(config, clock):
    closed = []

    class Session(requests.Session):
        def close(self) -> None:
            closed.append(True)
            super().close()

    client = FetcherClient(config.fetcher_url, config.fetch_paths, 3.0, 300.0, Session(), clock)
    client.close()
    assert closed == [True]
