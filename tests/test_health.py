"""FetcherHealth: the cached probe of fetcher_service behind ``/health``, on a FakeClock."""

from __future__ import annotations

from scheduler_api.config import Config
from scheduler_api.fetcher import FetcherClient, Outcome, SyncKey, make_session
from scheduler_api.health import FetcherHealth

from test_httpcall import serve  # noqa: F401 - fixture


def test_health_flood_makes_at_most_one_probe_per_ttl(clock):
    submitted = []
    health = FetcherHealth(clock, 10.0, "/health", submitted.append)
    for _ in range(1000):
        assert health.connected() is None
    assert len(submitted) == 1  # one probe in flight, the rest answered from the cache

    class Client:
        def probe(self, path: str) -> bool:
            return True

    submitted.pop()(Client())
    for _ in range(1000):
        assert health.connected() is True
    clock.advance(9.9)
    health.connected()
    assert submitted == []
    clock.advance(0.1)
    for _ in range(1000):
        health.connected()
    assert len(submitted) == 1


def test_a_fetcher_that_takes_the_call_and_hangs_is_not_connected(clock, serve):
    """The request reached it (fetcher_called), but no HTTP answer came: /health says not connected."""
    server = serve(lambda conn, stop: stop.wait(30))
    client = FetcherClient(server.url(""), Config().fetch_paths, 3.0, 0.3, make_session(), clock)
    submitted = []
    health = FetcherHealth(clock, 10.0, "/health", submitted.append)

    outcome = client.sync(SyncKey("seasons"))
    health.record(outcome.answered)

    assert (outcome.result, outcome.fetcher_called, outcome.answered) == ("timeout", True, False)
    assert health.connected() is False
    clock.advance(10.0)
    health.connected()
    submitted.pop()(client)  # the probe of a hanging fetcher ends at its deadline, not connected
    assert health.connected() is False


def test_a_fetcher_answering_500_is_connected(clock):
    health = FetcherHealth(clock, 10.0, "/health", lambda work: None)
    health.record(Outcome("failed", 500, "HTTP 500", 3).answered)
    assert health.connected() is True
