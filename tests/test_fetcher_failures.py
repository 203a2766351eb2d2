"""FetcherClient failures: their class, whether the request reached the fetcher, the whole-call deadline,
what is read of an answer, and no secret in a reason.

The deadline tests run against real loopback servers that trickle or hang
(the deadline is real time: short ones, about 2 s).
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from scheduler_api.config import Config
from scheduler_api.fetcher import FetcherClient, Outcome, SyncKey, make_session

from conftest import FETCHER, make_client
from test_httpcall import HEAD, serve, trickle  # noqa: F401  (serve is a fixture)


@pytest.fixture
def client(config, clock) -> FetcherClient:
    return make_client(config, clock)


# -- no answer -------------------------------------------------------------------


def _closed_port() -> int:
    """:returns: a loopback port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_failed_without_http_status(clock):
    client = FetcherClient(f"http://127.0.0.1:{_closed_port()}", Config().fetch_paths, 3.0, 300.0,
                           make_session(), clock)

    outcome = client.sync(SyncKey("seasons"))

    assert outcome.result == "failed"
    assert outcome.http_status is None
    assert outcome.fetcher_called is False
    assert outcome.error == "no answer: connection refused"


@pytest.mark.parametrize(("fault", "outcome", "error"), [
    (requests.ReadTimeout("read timed out"), "timeout", "no answer: deadline of 300s passed"),
    (requests.ConnectTimeout("connect timed out"), "timeout", "no answer: connect timeout after 3s"),
    (requests.ConnectionError("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"),
     "failed", "no answer: connection reset"),
    (requests.exceptions.ChunkedEncodingError("broken chunk"), "failed", "no answer: ChunkedEncodingError: broken chunk"),
], ids=["read-timeout", "connect-timeout", "connection-reset", "other-request-error"])
def test_no_answer_is_a_timeout_or_failure_with_its_reason_never_raised(mocked, client, fault, outcome, error):
    mocked.post(f"{FETCHER}/fetch/seasons", body=fault)

    result = client.sync(SyncKey("seasons"))

    assert (result.result, result.http_status, result.error) == (outcome, None, error)
    # A read timeout comes after the request went out (the fetcher may still be working on it).
    assert result.fetcher_called is isinstance(fault, requests.ReadTimeout)


# -- failure classes -------------------------------------------------------------


@pytest.mark.parametrize(("status", "failure"), [
    (500, "transient"), (502, "transient"), (503, "transient"), (504, "transient"),
    (408, "transient"), (425, "transient"), (429, "transient"),
    (501, "permanent"), (400, "permanent"), (401, "permanent"), (403, "permanent"), (404, "permanent"),
    (405, "permanent"), (410, "permanent"), (422, "permanent"), (307, "permanent"),
])
def test_failure_class_follows_the_status(mocked, client, status, failure):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"detail": "x"}, status=status)

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.failure, outcome.fetcher_called) == ("failed", failure, True)


def test_success_false_is_a_transient_failure_and_ok_has_no_class(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", json={"success": False}, status=200)
    mocked.post(f"{FETCHER}/fetch/rounds?season=2026", body=b"fetched", status=200)

    assert client.sync(SyncKey("seasons")).failure == "transient"
    assert client.sync(SyncKey("rounds", 2026)).failure is None  # a 2xx that is not JSON stays ok


def test_no_answer_is_a_transient_failure_never_called(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", body=requests.ConnectionError("Connection refused"))

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.failure, outcome.fetcher_called, outcome.answered) == (
        "failed", "transient", False, False)


def test_a_timeout_before_the_request_went_out_is_transient(mocked, client):
    """Connect timed out: the fetcher never got the call, so nothing of it runs there; retrying is safe."""
    mocked.post(f"{FETCHER}/fetch/seasons", body=requests.ConnectTimeout("connect timed out"))

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.failure, outcome.fetcher_called) == ("timeout", "transient", False)


@pytest.mark.parametrize(("outcome", "status", "failure"), [
    ("failed", None, "transient"), ("failed", 500, "transient"), ("failed", 404, "permanent"),
    ("timeout", None, "timeout"), ("ok", 200, None),
])
def test_an_outcome_built_without_a_class_derives_it(outcome, status, failure):
    built = Outcome(outcome, status, None if outcome == "ok" else "why", 0)
    assert built.failure == failure
    assert built.fetcher_called is (status is not None)


@pytest.mark.parametrize("fields", [
    {"outcome": "ok", "failure": "transient"}, {"outcome": "failed", "failure": "fatal"},
])
def test_an_outcome_with_a_wrong_class_is_refused(fields):
    with pytest.raises(ValueError):
        Outcome(fields["outcome"], 500, None, 0, failure=fields["failure"])


# -- what is read, and secrets ------------------------------------------------------


def test_a_failed_answer_over_1_mib_is_judged_by_its_status(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", body=b"<" * (3 << 20), status=500, content_type="text/html")

    outcome = client.sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status, outcome.failure) == ("failed", 500, "transient")
    assert outcome.error == "HTTP 500 Internal Server Error (answer over 1 MiB, not read to its end)"


def test_a_2xx_json_cut_at_1_mib_is_judged_as_a_2xx_without_a_readable_body(mocked, client):
    body = b'{"success": false, "rows": [' + b"1," * (1 << 20) + b"1]}"
    mocked.post(f"{FETCHER}/fetch/seasons", body=body, status=200)

    assert client.sync(SyncKey("seasons")).ok


def test_a_json_error_nested_too_deep_is_a_failure_with_its_status(mocked, client):
    mocked.post(f"{FETCHER}/fetch/seasons", body=b'{"detail": ' + b"[" * 200_000, status=500)

    assert client.sync(SyncKey("seasons")).error == "HTTP 500 Internal Server Error"


def test_no_reason_shows_a_secret_of_the_fetcher_url_or_path(mocked, clock):
    paths = {**Config().fetch_paths, "seasons": "/fetch/seasons?api_key=s3cret", "rounds": "/fetch/rounds?token=t0k"}
    client = FetcherClient("http://bob:hunter2@fetcher.test", paths, 3.0, 300.0, make_session(), clock)
    mocked.post("http://bob:hunter2@fetcher.test/fetch/seasons?api_key=s3cret", json={"detail": "Not Found"}, status=404)
    leak = "http://bob:hunter2@fetcher.test/fetch/rounds?token=t0k: Max retries exceeded with url: /fetch/rounds?token=t0k"
    mocked.post("http://bob:hunter2@fetcher.test/fetch/rounds?token=t0k", body=requests.ConnectionError(leak))

    not_found = client.sync(SyncKey("seasons")).error
    refused = client.sync(SyncKey("rounds", 2026)).error

    assert not_found == "HTTP 404 POST /fetch/seasons?api_key=***: Not Found"
    for reason in (not_found, refused):
        assert "s3cret" not in reason and "hunter2" not in reason and "t0k" not in reason, reason
    assert refused == ("no answer: connection error: http://fetcher.test/fetch/rounds?token=***: "
                       "Max retries exceeded with url: /fetch/rounds?token=***")


# -- the whole-call deadline, against loopback servers --------------------------------


def _loopback_client(url: str, clock, timeout_s: float) -> FetcherClient:
    return FetcherClient(url, Config().fetch_paths, 3.0, timeout_s, make_session(), clock)


def test_a_fetcher_trickling_its_body_is_cut_off_at_fetcher_timeout(serve, clock):
    """100,000 bytes, one every 2 s, would take 55 h; the call ends at FETCHER_TIMEOUT (3 s here), ±1 s."""
    body = b"x" * 100_000
    server = serve(lambda conn, stop: (conn.sendall(HEAD % len(body)), trickle(body, 2.0)(conn, stop)))
    started = time.monotonic()

    outcome = _loopback_client(server.url(""), clock, 3.0).sync(SyncKey("seasons"))

    elapsed_s = time.monotonic() - started
    assert 2.0 <= elapsed_s <= 4.0, elapsed_s
    assert (outcome.result, outcome.failure, outcome.http_status) == ("timeout", "timeout", None)
    assert outcome.fetcher_called is True and outcome.answered is False
    assert outcome.error == "no answer: deadline of 3s passed"


def test_a_trickled_head_is_cut_off_at_fetcher_timeout_too(serve, clock):
    server = serve(trickle(HEAD % 2 + b"{}", 0.2))
    started = time.monotonic()

    outcome = _loopback_client(server.url(""), clock, 1.0).sync(SyncKey("seasons"))

    assert 0.9 <= time.monotonic() - started <= 2.0
    assert (outcome.result, outcome.failure, outcome.fetcher_called) == ("timeout", "timeout", True)


def test_a_hanging_fetcher_is_a_timeout_with_fetcher_called(serve, clock):
    server = serve(lambda conn, stop: stop.wait(30))

    outcome = _loopback_client(server.url(""), clock, 0.5).sync(SyncKey("rounds", 2026))

    assert (outcome.result, outcome.failure, outcome.fetcher_called) == ("timeout", "timeout", True)
    assert server.requests[0].startswith(b"POST /fetch/rounds?season=2026 HTTP/1.1\r\n")


def test_a_fetcher_closing_the_call_unanswered_was_called_but_did_not_answer(serve, clock):
    server = serve(lambda conn, stop: None)

    outcome = _loopback_client(server.url(""), clock, 2.0).sync(SyncKey("seasons"))

    assert (outcome.result, outcome.failure) == ("failed", "transient")
    assert outcome.fetcher_called is True and outcome.answered is False
    assert outcome.error.startswith("no answer: ")


def test_a_refused_call_never_reached_the_fetcher(clock):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    outcome = _loopback_client(f"http://127.0.0.1:{port}", clock, 2.0).sync(SyncKey("seasons"))

    assert (outcome.result, outcome.failure, outcome.fetcher_called) == ("failed", "transient", False)


def test_a_huge_answer_is_read_to_1_mib_only(serve, clock):
    body = b"<" * (8 << 20)
    server = serve(lambda conn, stop: conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n"
                                                   % len(body) + body))

    outcome = _loopback_client(server.url(""), clock, 5.0).sync(SyncKey("seasons"))

    assert (outcome.result, outcome.http_status, outcome.failure) == ("failed", 500, "transient")
    assert outcome.error.endswith("(answer over 1 MiB, not read to its end)")


def test_the_health_probe_of_a_hanging_fetcher_ends_at_its_deadline(serve, clock):
    server = serve(lambda conn, stop: stop.wait(30))
    started = time.monotonic()

    assert _loopback_client(server.url(""), clock, 0.5).probe("/health") is False
    assert time.monotonic() - started < 1.5


def test_a_reason_that_echoes_what_the_fetcher_received_shows_no_secret(mocked, clock):
    import base64

    from scheduler_api.fetcher import FetcherClient, make_session

    echoed = base64.b64encode(b"fuser:FPWSECRET").decode()
    mocked.post("http://fuser:FPWSECRET@127.0.0.1:8082/fetch/rounds?season=2026&api_key=PATHSECRET", status=500,
                json={"detail": f"boom at /fetch/rounds?season=2026&api_key=PATHSECRET auth=Basic {echoed} "
                                "pw=FPWSECRET"})
    client = FetcherClient("http://fuser:FPWSECRET@127.0.0.1:8082",
                           {"rounds": "/fetch/rounds?season={season}&api_key=PATHSECRET"}, 3.0, 300.0,
                           make_session(), clock)
    outcome = client.sync(SyncKey("rounds", 2026))
    assert outcome.http_status == 500
    assert "PATHSECRET" not in outcome.error and "FPWSECRET" not in outcome.error and echoed not in outcome.error
    assert outcome.error == "HTTP 500: boom at /fetch/rounds?season=2026&api_key=*** auth=Basic *** pw=***"


def test_a_secret_where_a_long_reason_is_cut_is_masked_whole(mocked, clock):
    path = "/fetch/rounds?season=2026&api_key=PATHSECRET"
    mocked.post("http://127.0.0.1:8082" + path, status=500,
                json={"detail": "x" * 132 + "PATHSECRET" + "y" * 400})  # the secret spans the head's end
    client = FetcherClient("http://127.0.0.1:8082", {"rounds": "/fetch/rounds?season={season}&api_key=PATHSECRET"},
                           3.0, 300.0, make_session(), clock)
    error = client.sync(SyncKey("rounds", 2026)).error
    assert "PATHS" not in error and "SECRET" not in error and "***" in error


def test_the_duration_starts_when_the_request_is_written_not_while_it_waits_for_its_due_time(serve, clock):
    server = serve(lambda conn, stop: conn.sendall(HEAD % 16 + b'{"success":true}'))
    client = FetcherClient(f"http://127.0.0.1:{server.port}", Config().fetch_paths, 3.0, 30.0, make_session(), clock)
    outcome = client.sync(SyncKey("seasons"), before_send=lambda: clock.advance(40.0))  # waited 40 s for its slot
    assert outcome.ok and outcome.duration_ms < 40_000
