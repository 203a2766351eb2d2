"""FetcherHealth: whether fetcher_service answers, from the last exchange or a cached probe."""

from __future__ import annotations

import threading
from typing import Callable

from .clock import Clock
from .fetcher import FetcherClient


class FetcherHealth:
    """Tracks fetcher_service connectivity for ``/health`` (see README, HTTP API).

    Connected means fetcher_service sent an HTTP answer, whatever its status
    (:attr:`scheduler_api.fetcher.Outcome.answered`): a fetcher answering 500
    is connected but failing, while one that took the request and then hung
    until the deadline, or closed the connection unanswered, is not
    connected (even though the request reached it). Every sync reports its
    exchange with :meth:`record`; the probe has a whole-call deadline of 5 s
    (or ``FETCHER_TIMEOUT`` when shorter), so a hanging fetcher holds one
    worker for at most that long. When the last
    exchange is older than ``ttl_s``, :meth:`connected` starts one background
    probe (``GET {FETCHER_URL}{FETCHER_HEALTH_PATH}``) through ``submit`` and
    answers at once from the cache: ``/health`` never waits on the fetcher,
    and a flood of ``/health`` requests makes at most one probe per TTL.

    All methods are thread-safe.

    :param clock: monotonic seconds for the TTL.
    :param ttl_s: ``FETCHER_HEALTH_TTL``, seconds.
    :param health_path: ``FETCHER_HEALTH_PATH``.
    :param submit: runs a probe on a worker (gets that worker's client).
    """

    def __init__(
        self,
        clock: Clock,
        ttl_s: float,
        health_path: str,
        submit: Callable[[Callable[[FetcherClient], None]], None],
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._health_path = health_path
        self._submit = submit
        self._lock = threading.Lock()
        self._connected: bool | None = None
        self._checked_mono: float | None = None
        self._probing = False

    def record(self, answered: bool) -> None:
        """Note one exchange with fetcher_service.

        :param answered: True when it sent an HTTP answer (``Outcome.answered``, not ``fetcher_called``).
        """
        with self._lock:
            self._connected = answered
            self._checked_mono = self._clock.monotonic()

    def connected(self) -> bool | None:
        """:returns: the cached connectivity (None before any exchange); may start one probe."""
        with self._lock:
            now_mono = self._clock.monotonic()
            stale = self._checked_mono is None or now_mono - self._checked_mono >= self._ttl_s
            start_probe = stale and not self._probing
            if start_probe:
                self._probing = True
            value = self._connected
        if start_probe:
            self._submit(self._probe)
        return value

    def _probe(self, client: FetcherClient) -> None:
        try:
            answered = client.probe(self._health_path)
        finally:
            with self._lock:
                self._probing = False
        self.record(answered)
