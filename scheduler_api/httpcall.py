"""The daemon's one HTTP boundary: a request with a whole-call deadline and a capped body read.

``requests`` has no deadline for a whole call: its read timeout applies to
each socket read and restarts with every byte, so a server that trickles its
answer one byte a second holds a call for as long as it likes. Every call the
daemon makes (fetcher syncs, the fetcher health probe, calendar GETs) goes
through :func:`exchange`, which bounds connect, send, wait and body read
together:

- the sessions built by :func:`make_session` create their sockets through
  :class:`DeadlineSocket` (plain HTTP) or :class:`DeadlineSSLSocket` (TLS),
  which, while a deadline is in force in the calling thread, set each
  socket operation's timeout to the time left and fail once it is gone;
- the body is streamed in chunks and never more than ``max_bytes`` of it is
  kept.

Requests to a loopback address (127.0.0.0/8, ::1, ``localhost``) never go
through a proxy from the environment (``HTTP_PROXY`` and friends); other
requests use them only when the session trusts the environment.

Errors come back as exceptions of this module, one tree in the spirit of
requests' own ``exceptions.py``: :class:`CallTimeout`, :class:`NoAnswer`.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

CHUNK_BYTES = 64 * 1024

_calls = threading.local()  # .deadline_mono (float | None), .sent (bool), .hold: the calling thread's call


class CallError(Exception):
    """A call that produced no complete HTTP answer.

    :ivar sent: True when a connection was made and the request sent
        (the server may be working on it), False when it was never reached.
    """

    def __init__(self, reason: str, sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = sent


class CallTimeout(CallError):
    """The whole-call deadline passed (connect, send, wait or body read)."""


class NoAnswer(CallError):
    """No HTTP answer: refused, reset, closed, name not found, bad URL."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer read within the deadline.

    :ivar status: the HTTP status code.
    :ivar reason: the status line's reason phrase (may be empty).
    :ivar headers: the answer's headers (case-insensitive mapping).
    :ivar body: the body, at most ``max_bytes`` of it.
    :ivar truncated: True when the body was longer than ``max_bytes`` and was cut.
    """

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool


def is_loopback(host: str) -> bool:
    """:returns: True for ``localhost`` and any loopback address (127.0.0.0/8, ::1), brackets allowed."""
    host = host.strip("[]")
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _time_left_s() -> float | None:
    deadline_mono = getattr(_calls, "deadline_mono", None)
    return None if deadline_mono is None else deadline_mono - time.monotonic()


def _release_hold() -> None:
    """Before the calling thread's call writes its first byte: wait in its hold, then start its deadline anew."""
    hold = getattr(_calls, "hold", None)
    if hold is None:
        return
    _calls.hold = None
    hold()
    _calls.deadline_mono = time.monotonic() + _calls.deadline_s


def _bounded(timeout_s: float | None) -> float | None:
    """:returns: ``timeout_s`` shortened to the calling thread's time left; raises once none is left."""
    left_s = _time_left_s()
    if left_s is None:
        return timeout_s
    if left_s <= 0:
        raise socket.timeout("deadline passed")
    return left_s if timeout_s is None else min(timeout_s, left_s)


class _DeadlineOps:
    """Socket operations bounded by the calling thread's deadline (mixed into both socket classes)."""

    _base_timeout_s: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._base_timeout_s = value
        super().settimeout(_bounded(value) if _time_left_s() is not None else value)  # type: ignore[misc]

    def _arm(self) -> None:
        if _time_left_s() is not None:
            super().settimeout(_bounded(self._base_timeout_s))  # type: ignore[misc]

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)  # type: ignore[misc]

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)  # type: ignore[misc]

    def sendall(self, *args: Any) -> None:
        _release_hold()
        self._arm()
        super().sendall(*args)  # type: ignore[misc]
        _calls.sent = True

    def send(self, *args: Any) -> int:
        _release_hold()
        self._arm()
        sent = super().send(*args)  # type: ignore[misc]
        _calls.sent = True
        return sent


class DeadlineSocket(_DeadlineOps, socket.socket):
    """A plain TCP socket whose every operation ends by the calling thread's deadline."""

    @classmethod
    def adopt(cls, sock: socket.socket) -> "DeadlineSocket":
        """:returns: a :class:`DeadlineSocket` owning ``sock``'s descriptor (``sock`` is detached)."""
        timeout_s = sock.gettimeout()
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.settimeout(timeout_s)
        return adopted


class DeadlineSSLSocket(_DeadlineOps, ssl.SSLSocket):
    """A TLS socket whose every operation ends by the calling thread's deadline."""

    def read(self, *args: Any) -> Any:
        self._arm()
        return super().read(*args)

    def write(self, *args: Any) -> int:
        _release_hold()
        self._arm()
        written = super().write(*args)
        _calls.sent = True
        return written


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return DeadlineSocket.adopt(super()._new_conn())


class _TlsConnection(HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("ssl_context") is None:
            context = create_urllib3_context()
            context.sslsocket_class = DeadlineSSLSocket
            kwargs["ssl_context"] = context
        super().__init__(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class _DeadlineAdapter(HTTPAdapter):
    """An adapter whose connection pools build deadline-aware sockets (direct and proxied)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}
        return manager


def make_session(*, trust_env: bool) -> requests.Session:
    """Build a session whose calls :func:`exchange` can bound by a deadline.

    Not thread-safe (requests does not document ``Session`` as such): build
    one per thread.

    :param trust_env: whether proxies, ``.netrc`` and CA settings from the
        environment apply (False for fetcher_service, a sibling service;
        True for a public calendar). Loopback addresses never use a proxy.
    :returns: a new :class:`requests.Session`.
    """
    session = requests.Session()
    session.trust_env = trust_env
    adapter = _DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def exchange(
    session: requests.Session,
    prepared: requests.PreparedRequest,
    *,
    connect_timeout_s: float,
    deadline_s: float,
    max_bytes: int,
    hold: Callable[[], None] | None = None,
) -> Answer:
    """Send ``prepared`` and read its answer, all within ``deadline_s``.

    The deadline covers connecting, sending, waiting for the head and
    reading the body; ``connect_timeout_s`` bounds the connect alone (and is
    itself cut to the deadline). Redirects are not followed. At most
    ``max_bytes`` of the body are kept; the rest is not read (the connection
    is closed).

    With a ``hold``, all the work before the first byte is written (the
    connection taken from the pool or made, the request's bytes built by
    requests and urllib3) is done first; then ``hold`` is called, and when
    it returns only the bytes are written: a caller that waits there for a
    due time sends on it with nothing left to do. The deadline starts again
    when ``hold`` returns. A call that fails before writing anything still
    calls ``hold`` before it raises, so no answer comes back before it.

    :param session: a session from :func:`make_session`.
    :param prepared: the request, e.g. ``session.prepare_request(requests.Request("POST", url))``.
    :param connect_timeout_s: connect timeout, seconds.
    :param deadline_s: the whole call's deadline, seconds from now (> 0).
    :param max_bytes: how much of the body to keep, bytes.
    :param hold: called once, just before the request's first byte is written; or None.
    :returns: the :class:`Answer`.
    :raises CallTimeout: the deadline passed; ``sent`` says whether the request went out.
    :raises NoAnswer: no HTTP answer at all (refused, reset, closed, bad URL).
    """
    _calls.deadline_mono, _calls.deadline_s, _calls.sent = time.monotonic() + deadline_s, deadline_s, False
    _calls.hold = hold
    try:
        return _exchange(session, prepared, connect_timeout_s, deadline_s, max_bytes)
    finally:
        _release_hold()  # a call that never wrote a byte: its hold still comes first
        _calls.deadline_mono = None


def _exchange(
    session: requests.Session, prepared: requests.PreparedRequest, connect_timeout_s: float,
    deadline_s: float, max_bytes: int,
) -> Answer:
    def expired() -> bool:  # the deadline in force (it starts again after the hold)
        return time.monotonic() >= _calls.deadline_mono - 0.001

    def timed_out() -> CallTimeout:
        return CallTimeout(f"deadline of {deadline_s:g}s passed", bool(getattr(_calls, "sent", False)))

    settings = _environment_settings(session, prepared.url or "")
    try:
        response = session.send(
            prepared, stream=True, allow_redirects=False,
            timeout=(min(connect_timeout_s, deadline_s), deadline_s), **settings,
        )
    except requests.ConnectTimeout:
        raise CallTimeout(f"connect timeout after {min(connect_timeout_s, deadline_s):g}s", False) from None
    except requests.Timeout:  # a read timeout: the request went out and no answer came in time
        raise CallTimeout(f"deadline of {deadline_s:g}s passed", True) from None
    except (requests.RequestException, ValueError) as exc:
        if expired():
            raise timed_out() from None
        raise NoAnswer(_no_answer_reason(exc), bool(getattr(_calls, "sent", False))) from None
    try:
        body, truncated = _read_body(response, max_bytes)
    except (requests.RequestException, OSError) as exc:
        if expired() or isinstance(exc, (requests.Timeout, socket.timeout)):
            raise timed_out() from None
        raise NoAnswer(f"answer cut off: {_no_answer_reason(exc)}", True) from None
    finally:
        response.close()
    return Answer(response.status_code, response.reason or "", response.headers, body, truncated)


def _read_body(response: requests.Response, max_bytes: int) -> tuple[bytes, bool]:
    """:returns: ``(at most max_bytes of the body, whether there was more)``."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False


def _environment_settings(session: requests.Session, url: str) -> dict[str, Any]:
    """Proxies, CA bundle and client certificate for ``url``, as ``Session.request`` merges them.

    ``Session.send`` alone ignores the environment; this applies it when the
    session trusts it, except that a loopback host never uses a proxy.
    """
    settings = session.merge_environment_settings(url, {}, True, None, None)
    settings.pop("stream", None)
    host = urllib.parse.urlsplit(url).hostname or ""
    if not session.trust_env or is_loopback(host):
        settings["proxies"] = {}
    return settings


_CONNECTION_REASONS: tuple[tuple[str, str], ...] = (
    ("Connection refused", "connection refused"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "connection closed without answer"),
    ("Name or service not known", "host not found"),
    ("nodename nor servname", "host not found"),
    ("No route to host", "no route to host"),
)


def _no_answer_reason(exc: BaseException) -> str:
    """:returns: a short reason for a call that got no answer (refused, reset ...)."""
    text = str(exc)
    for needle, reason in _CONNECTION_REASONS:
        if needle in text:
            return reason
    if isinstance(exc, requests.ConnectionError):
        return f"connection error: {text}"
    return f"{type(exc).__name__}: {text}"

