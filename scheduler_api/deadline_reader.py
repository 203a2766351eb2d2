"""A connection's socket as a raw stream whose reads share one deadline, one system call each.

Used by :mod:`scheduler_api.httphandler` so that a whole request head or
body must arrive within ``SCHEDULER_HTTP_TIMEOUT`` (see README, HTTP API,
Limits).
"""

from __future__ import annotations

import io
import math
import socket
import struct
from typing import Any

from .clock import Clock

TIMEOUT_SLACK_S = 0.02  # a read may wait this much past its deadline rather than reset the socket timeout


def set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Set a blocking socket's kernel receive timeout (``SO_RCVTIMEO``) to ``seconds`` (> 0).

    A blocking ``recv`` that waits longer fails with ``BlockingIOError``
    (EAGAIN). Rounded up to a whole microsecond: a timeout of zero would mean none.
    """
    micros = max(1, math.ceil(seconds * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", micros // 1_000_000, micros % 1_000_000))


class DeadlineReader(io.RawIOBase):
    """A connection's socket as a raw stream whose reads share one deadline.

    A socket timeout restarts with every read, so a client trickling a byte
    a second would never be cut off; here each read may wait only for the
    time left until the deadline :meth:`arm` set, so a whole request head
    (or body) must arrive within the budget (give or take
    ``TIMEOUT_SLACK_S``: the wait is only changed, a system call, when it is
    further than that from the time left). Until armed, every read fails.

    The socket stays in blocking mode and the wait is the kernel's receive
    timeout (``SO_RCVTIMEO``), so a read is one ``recv`` system call; a
    Python socket timeout would make it two (CPython polls before each
    ``recv`` of a socket with a timeout), and with them two hand-overs of
    the interpreter lock. Wrap it in ``io.BufferedReader``. Used by one
    connection's thread only.

    :param sock: the connected socket, in blocking mode (no Python timeout);
        it stays open when this is closed.
    :param clock: its monotonic clock measures the budget.
    """

    def __init__(self, sock: socket.socket, clock: Clock) -> None:
        super().__init__()
        self._sock = sock
        self._clock = clock
        self._deadline_mono = -math.inf
        self._received = 0  # bytes read over the connection's life
        self._wait_s = math.inf  # the socket's receive timeout now, seconds (inf: none set)

    def arm(self, budget_s: float) -> None:
        """Start a new budget: reads from now on must finish within ``budget_s`` seconds in all."""
        self._deadline_mono = self._clock.monotonic() + budget_s

    def readable(self) -> bool:
        """:returns: True."""
        return True

    def tell(self) -> int:
        """:returns: bytes received so far; the ``BufferedReader`` over this subtracts what it holds unread."""
        return self._received

    def readinto(self, buffer: Any) -> int:
        """Read what has arrived into ``buffer``, waiting at most until the deadline.

        :returns: bytes read; 0 when the client closed its side.
        :raises TimeoutError: when the deadline has passed or passes while waiting.
        :raises ConnectionError: when the connection was reset.
        """
        left_s = self._deadline_mono - self._clock.monotonic()
        if left_s <= 0:
            raise TimeoutError("the read deadline has passed")
        if abs(self._wait_s - left_s) > TIMEOUT_SLACK_S:
            set_receive_timeout(self._sock, left_s)
            self._wait_s = left_s
        try:
            count = self._sock.recv_into(buffer)
        except BlockingIOError:  # the receive timeout passed (EAGAIN)
            raise TimeoutError("the read deadline has passed") from None
        self._received += count
        return count
