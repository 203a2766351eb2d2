"""Reading a fetcher answer, pure: its JSON body, its human reason, its ``Retry-After``, one-line reasons."""

from __future__ import annotations

import email.utils
import json

from .redact import redact_text

#: A failure reason is one line; longer than this many characters, it keeps its head and tail.
REASON_MAX_CHARS = 300
REASON_HEAD_CHARS = REASON_TAIL_CHARS = 150
REASON_JOIN = " … "
#: The longest ``Retry-After`` taken as given, seconds (one day).
RETRY_AFTER_MAX_S = 86400.0


def cut_reason(text: str) -> str:
    """Make a failure reason safe to log and show.

    Whitespace runs (newlines included) become one space; every URL loses
    its user, password and secret query values (see
    :func:`scheduler_api.redact.redact_text`); a reason longer than
    :data:`REASON_MAX_CHARS` keeps its first 150 and last 150 characters
    joined by ``" … "``, so the cause at the end of a long error survives.

    :returns: one line of at most 303 characters.
    """
    one_line = redact_text(" ".join(str(text).split()))
    if len(one_line) > REASON_MAX_CHARS:
        return one_line[:REASON_HEAD_CHARS] + REASON_JOIN + one_line[-REASON_TAIL_CHARS:]
    return one_line


def body_message(body: object) -> str | None:
    """The human reason in an error body: ``message``, ``detail`` or ``error``.

    FastAPI sends ``detail`` as a string for 400/404/405/500 and as a list of
    validation objects (``{"loc", "msg", "type"}``) for 422, rendered as
    ``query.season: Field required``.

    :param body: the decoded JSON body.
    :returns: the reason as text, or None when there is none.
    """
    if not isinstance(body, dict):
        return None
    for field in ("message", "detail", "error"):
        value = body.get(field)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            return "; ".join(_validation_item(item) for item in value)
        if isinstance(value, str):
            return value
        return _as_json(value)
    return None


def _validation_item(item: object) -> str:
    """:returns: one FastAPI validation object as ``query.season: Field required``, anything else as text."""
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
        return f"{where}: {item['msg']}" if where else str(item["msg"])
    return item if isinstance(item, str) else _as_json(item)


def _as_json(value: object) -> str:
    """:returns: ``value`` as compact JSON, or a placeholder when it cannot be written (nested too deep)."""
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return "(unreadable value)"


def decode_json(raw: bytes) -> object | None:
    """:returns: ``raw`` decoded as JSON (UTF-8/16/32), or None when it is not JSON, is cut
    short, or is nested too deep to decode."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def parse_retry_after(value: str | None, now_ts: float) -> float | None:
    """Parse a ``Retry-After`` header (RFC 9110 §10.2.3): delta seconds or an HTTP date.

    A delay longer than :data:`RETRY_AFTER_MAX_S` (one day) counts as one
    day, so a hostile ``Retry-After: 999…9`` (which would read as infinity)
    never reaches due-time arithmetic.

    :param value: the header value, or None.
    :param now_ts: UTC unix seconds, float, to turn a date into a delay.
    :returns: the delay in seconds, 0 to one day, or None if absent or unreadable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now_ts), RETRY_AFTER_MAX_S)
