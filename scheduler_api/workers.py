"""WorkerPool: the small pool of named threads that run syncs, each with its own SyncClient."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from .fetcher import SyncClient

logger = logging.getLogger(__name__)

Work = Callable[[SyncClient], None]


class WorkerPool:
    """A fixed pool of sync workers.

    Each worker builds its own :class:`SyncClient` (and so its own
    ``requests.Session``) with ``client_factory`` when it starts. Workers are
    not daemonic: :meth:`shutdown` gives them a grace period to finish.
    The pool is sized so that every scheduled kind plus a calendar refresh
    and a health probe can run at once: a hanging sync of one kind never
    queues another behind it.

    All methods are thread-safe.

    :param size: number of worker threads.
    :param client_factory: builds one worker's client.
    :param name: thread name prefix.
    """

    def __init__(self, size: int, client_factory: Callable[[], SyncClient], name: str = "sync") -> None:
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._client_factory = client_factory
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i + 1}", daemon=False) for i in range(size)
        ]

    def start(self) -> None:
        """Start the worker threads."""
        for thread in self._threads:
            thread.start()

    def submit(self, work: Work) -> None:
        """Queue ``work``; a free worker calls it with its client. Never blocks."""
        self._queue.put(work)

    def _loop(self) -> None:
        client = self._client_factory()
        try:
            while True:
                work = self._queue.get()
                if work is None:
                    return
                try:
                    work(client)
                except Exception:
                    logger.exception("worker error")
        finally:
            client.close()

    def shutdown(self, grace_s: float, monotonic: Callable[[], float]) -> list[str]:
        """Ask workers to stop once idle and wait up to ``grace_s`` for them.

        :param grace_s: seconds to wait in all (``SHUTDOWN_GRACE``).
        :param monotonic: the clock to measure the grace period with.
        :returns: names of workers still running (a hanging sync) after the grace period.
        """
        for _ in self._threads:
            self._queue.put(None)
        deadline = monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - monotonic()))
        return [t.name for t in self._threads if t.is_alive()]


class InlineExecutor:
    """Runs work at once in the calling thread; for tests and ``plan``.

    :param client: the client passed to every piece of work.
    """

    def __init__(self, client: SyncClient) -> None:
        self.client = client

    def submit(self, work: Callable[[SyncClient], None]) -> None:
        """Run ``work(client)`` now."""
        work(self.client)
