"""The HTTP server: the accept loop, the connection limit and the admission queue.

:class:`ApiServer` accepts connections and gives each a
:class:`httphandler.Handler` thread, up to ``SCHEDULER_MAX_CONNECTIONS``
(:class:`ConnectionSlots`); one more is answered 503 by the accept loop
itself, with no thread of its own. Requests take turns for their CPU work
in the admission queue (:class:`Admission`), which lives here rather than in
a module of its own because the server is its only user (see README, Design
and HTTP API, Limits).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import selectors
import socket
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import Any, Callable, TypeVar

from .clock import Clock, SystemClock
from .httphandler import READ_BUFFER, Application, Handler, render_answer

logger = logging.getLogger(__name__)

T = TypeVar("T")

REFUSAL_LOG_INTERVAL_S = 60.0  # at most one warning a minute while connections are refused


class ConnectionSlots:
    """At most ``limit`` connections open at once; thread-safe.

    When all are taken, a new connection takes the slot of the connection
    that has waited longest for its client: for its next request head (an
    idle keep-alive client, or one trickling or holding back its head) or
    for the body its head announced, for it to read an answer, or, while it
    pipelines (its next request came before its previous answer was
    written), through its requests other than triggers. That one is shut
    down. Only when every open connection has a request in progress is the
    new one refused. So a client that opens many silent connections, holds
    back bodies or sends faster than it reads cannot keep others out, and
    at worst it evicts its own.

    Refusals are logged at warning, at most once a minute with how many
    there were since the last such line, so a flood cannot flood the
    journal; those of the last minute of a flood are logged with the next
    connection taken after that minute, or by :meth:`close`.

    :param limit: connections open at once (``SCHEDULER_MAX_CONNECTIONS``).
    :param clock: paces the warnings.
    """

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._open = 0
        self._waiting: dict[socket.socket, None] = {}  # waiting for a head or body, longest-waiting first
        self._evicted: set[socket.socket] = set()  # shut down to make room; their slot already passed on
        self._refused = 0  # since the last warning
        self._warned_mono = -math.inf

    @property
    def open(self) -> int:
        """:returns: connections holding a slot now."""
        with self._lock:
            return self._open

    @property
    def idle(self) -> int:
        """:returns: connections waiting for their client, a head or a body (those a new connection may displace)."""
        with self._lock:
            return len(self._waiting)

    def take(self) -> bool:
        """Take a slot for a new connection, shutting down the longest-waiting idle one if all are taken.

        :returns: False when all ``limit`` have a request in progress: the connection is to be refused.
        """
        evicted = None
        with self._lock:
            taken = self._open < self.limit
            if taken:
                self._open += 1
            elif self._waiting:
                evicted = next(iter(self._waiting))
                del self._waiting[evicted]
                self._evicted.add(evicted)
            else:
                self._refused += 1
            refused = self._refusals_due(self._clock.monotonic()) if self._refused else 0
        if evicted is not None:
            try:
                evicted.shutdown(socket.SHUT_RDWR)  # its thread sees the end at once and closes it
            except OSError:
                pass
        if taken or evicted is not None:
            if refused:  # the last minute of a flood that has ended
                logger.warning("http connections refused at the limit max=%d refused=%d since the last warning",
                               self.limit, refused)
            return True
        if refused:
            logger.warning("http connections at limit max=%d refused=%d: every connection has a request in "
                           "progress; further connections get 503 until one closes", self.limit, refused)
        return False

    def _refusals_due(self, now_mono: float) -> int:
        """:returns: the refusals to log now (caller holds the lock): all of them once a minute has passed
        since the last warning, then counted afresh; else 0."""
        if now_mono - self._warned_mono < REFUSAL_LOG_INTERVAL_S:
            return 0
        refused, self._refused, self._warned_mono = self._refused, 0, now_mono
        return refused

    def close(self) -> None:
        """The server is closing: log the refusals not yet logged, if any."""
        with self._lock:
            refused, self._refused = self._refused, 0
        if refused:
            logger.warning("http connections refused at the limit max=%d refused=%d since the last warning",
                           self.limit, refused)

    def waiting(self, sock: socket.socket) -> None:
        """The connection waits for its client (a request head or body): it may be shut down to make room."""
        with self._lock:
            if sock not in self._evicted:
                self._waiting.pop(sock, None)
                self._waiting[sock] = None

    def working(self, sock: socket.socket) -> None:
        """The connection has a request in progress: it keeps its slot until it is answered."""
        with self._lock:
            self._waiting.pop(sock, None)

    def give_back(self, sock: socket.socket | None = None) -> None:
        """Free the slot of a connection that closed (unless it was passed on when it was shut down)."""
        with self._lock:
            self._waiting.pop(sock, None)
            if sock in self._evicted:
                self._evicted.discard(sock)
                return
            self._open -= 1


COMBINE_MAX = 4  # turns one thread runs for the requests queued behind its own before handing the lead on


class _Turn:
    """One request's turn in the :class:`Admission` queue; its thread sleeps on ``done`` until it has run."""

    __slots__ = ("work", "done", "lead", "result", "error")

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work
        self.done = threading.Lock()
        self.done.acquire()
        self.lead = False  # set when the thread is woken to run the queue itself, its own turn first
        self.result: Any = None
        self.error: BaseException | None = None


class Admission:
    """Runs the requests' CPU work one turn at a time, in arrival order, by flat combining.

    A thread that finds no turn running runs its own, then the turns queued
    behind it (up to ``COMBINE_MAX``), then wakes the next waiter to lead.
    A thread that finds the queue busy sleeps on a lock of its own, never on
    the interpreter lock, until its turn has run on the leading thread. So
    turns follow each other without waiting for the kernel to wake a thread
    between two of them, and the threads that wait are asleep rather than
    competing for the interpreter lock with the ticker, the sync workers and
    each other. A turn must not block: no socket read, and a send only with
    ``MSG_DONTWAIT``. Thread-safe.
    """

    def __init__(self) -> None:
        self._meta = threading.Lock()
        self._busy = False
        self._queue: collections.deque[_Turn] = collections.deque()

    def run(self, work: Callable[[], T]) -> T:
        """Run ``work`` in its turn, on this thread or on the leading one, and wait until it has run.

        :returns: what ``work`` returned.
        :raises: what ``work`` raised, in the calling thread.
        """
        with self._meta:
            turn = None
            if self._busy:
                turn = _Turn(work)
                self._queue.append(turn)
            else:
                self._busy = True
        if turn is not None:
            turn.done.acquire()  # released once the turn ran, or to hand this thread the lead
            if not turn.lead:
                if turn.error is not None:
                    raise turn.error
                return turn.result
        try:
            return work()
        finally:
            self._run_queued()

    def _run_queued(self) -> None:
        """Run the turns queued behind the lead's own, then hand the lead to the next waiter or end it."""
        for _ in range(COMBINE_MAX):
            turn = self._next()
            if turn is None:
                return
            try:
                turn.result = turn.work()
            except BaseException as exc:  # noqa: BLE001 - it belongs to the waiting thread, raised there
                turn.error = exc
            turn.done.release()
        turn = self._next()
        if turn is not None:
            turn.lead = True  # the queue stays busy: the lead passes on
            turn.done.release()

    def _next(self) -> _Turn | None:
        """:returns: the next queued turn, or None after marking the queue free."""
        with self._meta:
            if self._queue:
                return self._queue.popleft()
            self._busy = False
            return None


class ApiServer(ThreadingHTTPServer):
    """The HTTP server: accepts connections and gives each a :class:`Handler` thread.

    It is the handler's :class:`HandlerHost`: ``app``, ``admission``,
    ``http_timeout_s``, ``clock``, ``stopping``, ``request_started`` and
    ``request_finished``. A large listen backlog (1024, not the standard
    library's 5) absorbs bursts; handler threads are daemonic. A connection
    beyond ``max_connections`` gets no thread: the accept loop answers it 503
    with one non-blocking send and closes it. Thread-safe: :meth:`stop_serving`
    and :meth:`wait_idle` may be called from any thread while :meth:`serve`
    runs in another.

    :param address: ``(host, port)``; port 0 picks a free one, an IPv6 host listens on IPv6.
    :param app: answers the requests, e.g. :class:`api.App`.
    :param http_timeout_s: seconds a request head may take to arrive in all
        (idle time on a kept-alive connection included), and likewise a body
        or the writing of an answer; then the connection is closed.
    :param max_connections: connections open at once; one more is refused with 503.
    :param clock: bounds the reads; the system clock by default.
    :param sock: a socket that is already bound and listening (socket
        activation: systemd passes it) to serve on instead of binding
        ``address``; the server owns it from then on and closes it.
    """

    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], app: Application, http_timeout_s: float,
                 max_connections: int = 64, clock: Clock | None = None, sock: socket.socket | None = None) -> None:
        self.app = app
        self.http_timeout_s = http_timeout_s
        self.clock = clock or SystemClock()
        self.slots = ConnectionSlots(max_connections, self.clock)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._active = 0
        self._idle = threading.Condition()
        # Requests do their CPU work (parse, route, encode, a send that never
        # waits) one turn at a time; the others sleep until theirs has run, so
        # a burst of clients never outnumbers the ticker and the sync workers
        # when they need to run. Reads, blocking writes and triggers stay outside.
        self.admission = Admission()
        if sock is None:
            super().__init__(address, Handler)
            return
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def serve(self) -> None:
        """Accept connections until :meth:`stop_serving`; blocks without polling.

        Unlike ``serve_forever``, which wakes twice a second to check for a
        shutdown request, this waits on the listening socket and a wake-up
        pipe only, so an idle daemon stays asleep.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _events in selector.select():
                    if key.fileobj == self._wake_r:
                        return
                    self._handle_request_noblock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start the connection's handler thread if a slot is free, else refuse it at once."""
        if not self.slots.take():
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.give_back()  # no thread started: the base class closes the socket
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Handle one connection on its own thread and free its slot when it closes."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.give_back(request)

    def _refuse(self, request: socket.socket) -> None:
        """Answer a connection over the limit 503 from the accept loop, never blocking, and close it.

        What the client already sent is read first (without waiting), so the
        close is a plain FIN that lets the client read the answer.
        """
        status, body = self.app.error(503, f"too many connections: at most {self.slots.limit} at once; retry later")
        answer = render_answer(status, body, {"Retry-After": "1"}, close=True)
        try:
            request.setblocking(False)
            try:
                request.recv(READ_BUFFER)
            except BlockingIOError:
                pass
            request.send(answer)
        except OSError:
            pass
        self.shutdown_request(request)

    def stop_serving(self) -> None:
        """Make :meth:`serve` return; safe from any thread.

        Requests that arrive afterwards on open connections are still answered
        (with ``Connection: close``) except triggers, which get 503; requests
        already being handled carry on.
        """
        self._stopping = True
        os.write(self._wake_w, b"x")

    @property
    def stopping(self) -> bool:
        """:returns: True once :meth:`stop_serving` was called."""
        return self._stopping

    def request_started(self) -> None:
        """Count a request being handled (a manual trigger may take minutes), for :meth:`wait_idle`."""
        with self._idle:
            self._active += 1

    def request_finished(self) -> None:
        """Count a request answered."""
        with self._idle:
            self._active -= 1
            if not self._active:  # what wait_idle waits for
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is being handled, so in-flight triggers get their answer at shutdown.

        :param timeout_s: seconds to wait at most.
        :returns: True when idle, False after the timeout.
        """
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, max(0.0, timeout_s))

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pipe; log refusals not yet logged."""
        super().server_close()
        self.slots.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a handler failure through ``logging``; a vanished client is not an error."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("http client %s went away: %s", client_address[0] if client_address else "?", exc)
            return
        logger.exception("http handler error")
