"""FetcherHealth: the cached probe of fetcher_service behind ``/health``, on a FakeClock."""

from __future__ import annotations

from scheduler_api.health import FetcherHealth


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
