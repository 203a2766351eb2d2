"""Pure HTTP/1.1 request-head parsing and the HttpError every refused request carries.

Nothing here touches a socket or a thread: the handler in :mod:`server`
reads the bytes and hands them over, and each function either returns a
frozen value or raises :class:`HttpError` with the status and message to
answer. The checks and their messages follow ``http.server``'s own
``parse_request`` (400, 414, 431, 505), so a client sees the answers the
standard library would give, as JSON (see README, HTTP API). The parsed
values are named tuples rather than frozen dataclasses: as immutable, and
cheaper to build on a path every request takes in its admission turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import NamedTuple

MAX_LINE = 65536  # as http.server: longer request lines get 414, longer header lines 431
MAX_HEADERS = 100  # as http.client
MAX_HEADER_BYTES = 64 * 1024  # all header lines together; more is refused with 431
MAX_BODY_BYTES = 64 * 1024  # no endpoint takes a body; a longer one is refused with 413
FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
METHOD_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2 token


@dataclass(frozen=True)
class RawBody:
    """An answer body that is not JSON (``GET /metrics``): sent as is with its content type.

    :ivar content_type: the ``Content-Type`` header value.
    :ivar payload: the body's bytes.
    """

    content_type: str
    payload: bytes


class HttpError(Exception):
    """A request refused with an HTTP status; answered as the JSON error body.

    :param status: the HTTP status, e.g. 400, 401, 411, 413.
    :param message: why, in words a client can act on; sent as ``message``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


class Headers:
    """Request headers: names case-insensitive, repeated names kept in order (RFC 9110 §5.3).

    Read-only once built; safe to share between threads.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        """:returns: the first value of ``name``, or ``default``."""
        name = name.lower()
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str] | None:
        """:returns: every value of ``name`` in order, or None if absent."""
        name = name.lower()
        values = [value for key, value in self._items if key == name]
        return values or None


class RequestLine(NamedTuple):
    """The first line of a request, checked.

    :ivar method: the method token as sent, e.g. ``GET`` or ``BREW`` (a valid token; routing decides the rest).
    :ivar target: the request target, path and query, undecoded.
    :ivar version: ``HTTP/x.y`` as sent, or ``HTTP/0.9`` for a two-word line.
    :ivar keep_alive: whether the version alone keeps the connection open (HTTP/1.1 and later).
    """

    method: str
    target: str
    version: str
    keep_alive: bool


class RequestHead(NamedTuple):
    """A request head that passed every check; the body, if any, is still unread.

    :ivar method: the method token as sent (case-sensitive, any valid token).
    :ivar target: the request target, path and query, undecoded.
    :ivar version: ``HTTP/x.y`` as sent, or ``HTTP/0.9``.
    :ivar headers: the header fields.
    :ivar keep_alive: whether the connection stays open after the answer
        (the version's default, overridden by ``Connection: close`` or
        ``Connection: keep-alive``).
    :ivar body_length: the body ``Content-Length`` announces, bytes (0 without one), at most ``MAX_BODY_BYTES``.
    """

    method: str
    target: str
    version: str
    headers: Headers
    keep_alive: bool
    body_length: int


def headers_follow(raw_line: bytes) -> bool:
    """Whether header lines follow this raw request line and should be read.

    Not after an overlong line (answered 414 at once, without waiting for
    more) nor after an HTTP/0.9 line of fewer than three words.

    :param raw_line: the request line as read, with its line ending.
    """
    return len(raw_line) <= MAX_LINE and len(raw_line.split()) >= 3


def http_version(version: str) -> tuple[int, int] | None:
    """:returns: ``(major, minor)`` of ``HTTP/x.y``, or None when malformed (as http.server checks)."""
    if not version.startswith("HTTP/"):
        return None
    parts = version[5:].split(".")
    if len(parts) != 2 or not all(p.isdigit() and p.isascii() and len(p) <= 10 for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def parse_request_line(raw_line: bytes) -> RequestLine | None:
    """Check a request line as ``BaseHTTPRequestHandler.parse_request`` does.

    :param raw_line: the line as read, with its line ending; at most
        ``MAX_LINE + 1`` bytes (more means it was cut off).
    :returns: the request line, or None for a blank line (the connection is
        then closed without an answer).
    :raises HttpError: 414 for a line over ``MAX_LINE`` bytes; 505 for a
        well-formed version other than HTTP/1.x (``HTTP/2.0``, ``HTTP/0.9``
        written out); 400 for a malformed version (``HTTP/1.x``), a wrong
        number of words, a method that is not a token (RFC 9110: letters,
        digits and ``!#$%&'*+-.^_`|~``), an HTTP/0.9 request other than ``GET``,
        or a target with bytes outside ASCII (RFC 3986 allows only ASCII;
        anything else must be percent-encoded, and echoing such bytes back
        in a message would garble them).
    """
    if len(raw_line) > MAX_LINE:
        raise HttpError(414, HTTPStatus.REQUEST_URI_TOO_LONG.phrase)
    text = str(raw_line, "iso-8859-1").rstrip("\r\n")
    words = text.split()
    if not words:
        return None
    if len(words) == 2:  # no version: an HTTP/0.9 simple request, which has no headers nor status line
        raise HttpError(505, "HTTP/0.9 requests are not supported; send HTTP/1.1")
    if len(words) == 3 and text != " ".join(words):  # RFC 9112 §3: single spaces, nothing around
        raise HttpError(400, f"Bad request syntax ({text[:80]!r}): words must be separated by single spaces")
    version, keep_alive = "HTTP/0.9", False
    if len(words) >= 3:
        version = words[-1]
        number = http_version(version)
        if number is None:
            raise HttpError(400, f"Bad request version ({version!r})")
        if number[0] != 1:
            raise HttpError(505, f"Invalid HTTP version ({version[5:]})")
        keep_alive = number >= (1, 1)
    if not 2 <= len(words) <= 3:
        raise HttpError(400, f"Bad request syntax ({text!r})")
    method, target = words[:2]
    if not METHOD_TOKEN.fullmatch(method):
        raise HttpError(400, f"method is not a valid token ({method[:40]!r})")
    if len(words) == 2 and method != "GET":
        raise HttpError(400, f"Bad HTTP/0.9 request type ({method!r})")
    if not target.isascii():
        raise HttpError(400, "request target has bytes outside ASCII; percent-encode them (RFC 3986)")
    return RequestLine(method, target, version, keep_alive)


def parse_header_lines(lines: list[bytes]) -> Headers:
    """Parse raw header lines (without the request line or the blank line) (RFC 9112 §5).

    :param lines: the lines as read, each with its line ending; reading
        stops after the first line over ``MAX_LINE`` bytes, after
        ``MAX_HEADERS + 1`` lines or once the lines pass ``MAX_HEADER_BYTES``
        together, and such a last line is refused here.
    :raises HttpError: 431 for a line over ``MAX_LINE`` bytes, more than
        ``MAX_HEADERS`` lines or more than ``MAX_HEADER_BYTES`` in all; 400 for a line without a colon, white space
        before the colon, or obsolete line folding.
    """
    if lines and len(lines[-1]) > MAX_LINE:
        raise HttpError(431, "Line too long")
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, "Too many headers")
    if header_bytes(lines) > MAX_HEADER_BYTES:
        raise HttpError(431, f"Request header fields too large (limit {MAX_HEADER_BYTES} bytes)")
    items: list[tuple[str, str]] = []
    for raw in lines:
        text = raw.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):
            raise HttpError(400, "obsolete header line folding is not accepted")
        name, colon, value = text.partition(":")
        if not colon or not METHOD_TOKEN.fullmatch(name):  # a field name is a token (RFC 9110 §5.1)
            raise HttpError(400, f"malformed header line {text[:40]!r}")
        if FORBIDDEN_IN_VALUE.search(value):  # NUL, a lone CR and other controls but HTAB (RFC 9110 §5.5)
            raise HttpError(400, f"control character in the value of header {name[:40]!r}")
        items.append((name.lower(), value.strip(" \t")))
    return Headers(items)


def header_bytes(lines: list[bytes]) -> int:
    """:returns: the size of raw header lines together, bytes, line endings included."""
    return sum(map(len, lines))


def parse_head(line: RequestLine, header_lines: list[bytes]) -> RequestHead:
    """Check the header lines of a parsed request line and the body it announces.

    Any method token passes: which methods a path allows is the routes'
    business (404, 405 or 204 for ``OPTIONS``).

    :param line: from :func:`parse_request_line`.
    :param header_lines: as for :func:`parse_header_lines`.
    :returns: the head, with ``keep_alive`` and ``body_length`` decided.
    :raises HttpError: as :func:`parse_header_lines`, then as :func:`body_length`.
    """
    headers = parse_header_lines(header_lines)
    keep_alive = line.keep_alive
    connection = (headers.get("Connection") or "").lower()
    if connection == "close":
        keep_alive = False
    elif connection == "keep-alive":
        keep_alive = True
    return RequestHead(line.method, line.target, line.version, headers, keep_alive, body_length(headers))


def body_length(headers: Headers) -> int:
    """The length of the body the request announces, checked against the limit.

    :returns: the ``Content-Length``, bytes; 0 without one.
    :raises HttpError: 411 for ``Transfer-Encoding`` (only ``Content-Length``
        is accepted); 400 for a repeated ``Content-Length`` or one that is
        not plain digits (at most 18); 413 for one over ``MAX_BODY_BYTES``.
    """
    if headers.get("Transfer-Encoding"):
        raise HttpError(411, "Transfer-Encoding is not supported; send Content-Length")
    values = headers.get_all("Content-Length") or []
    if not values:
        return 0
    if len(values) > 1:
        raise HttpError(400, "Content-Length is repeated")
    value = values[0].strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise HttpError(400, "Content-Length is not a number")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, f"body too large: {length} bytes, limit {MAX_BODY_BYTES}")
    return length


def expects_continue(headers: Headers) -> bool:
    """:returns: True when the client waits for ``100 Continue`` before sending its body."""
    return (headers.get("Expect") or "").lower() == "100-continue"
