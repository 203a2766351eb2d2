"""Strict query strings: each parameter once, never empty, numbers as plain ASCII digits.

A value such as ``+2025``, `` 2025``, ``２０２５`` or ``2025.0``, a repeated or
empty parameter, or one a route does not take, is refused with 400 before
anything is called (README, HTTP API).
"""

from __future__ import annotations

import urllib.parse
from typing import Mapping

from .httphead import HttpError

MAX_DIGITS = 4


def parse_query(raw: str) -> dict[str, str]:
    """Decode a query string strictly.

    Only ``&`` separates pairs; a pair needs ``=``; percent-escapes must be
    UTF-8; a name may appear once; values may not be empty.

    :param raw: the part after ``?``, undecoded.
    :returns: name -> value.
    :raises HttpError: on anything else.
    """
    if raw == "":
        return {}
    if ";" in raw:
        raise HttpError(400, "query separator ';' is not allowed; use '&'")
    result: dict[str, str] = {}
    for pair in raw.split("&"):
        name_raw, sep, value_raw = pair.partition("=")
        try:
            name = urllib.parse.unquote_plus(name_raw, errors="strict")
            value = urllib.parse.unquote_plus(value_raw, errors="strict")
        except UnicodeDecodeError:
            raise HttpError(400, "query is not valid UTF-8 after percent-decoding") from None
        if not sep or name == "":
            raise HttpError(400, f"malformed query parameter {pair[:40]!r}")
        if name in result:
            raise HttpError(400, f"parameter {name!r} is repeated")
        if value == "":
            raise HttpError(400, f"parameter {name!r} is empty")
        result[name] = value
    return result


def parse_number(name: str, value: str, low: int, high: int) -> int:
    """Read a parameter that must be plain ASCII digits within ``[low, high]``.

    ``+2025``, `` 2025``, fullwidth digits and ``2025.0`` are all refused.

    :raises HttpError: for signs, spaces, other digits, decimals, overlong
        numbers or values out of range.
    """
    if not (value.isascii() and value.isdigit()):
        raise HttpError(400, f"{name} must be plain digits from {low} to {high}, got {value[:20]!r}")
    if len(value) > MAX_DIGITS:
        raise HttpError(400, f"{name} must be from {low} to {high}, at most {MAX_DIGITS} digits, got {value[:20]!r}")
    number = int(value)
    if not low <= number <= high:
        raise HttpError(400, f"{name} must be from {low} to {high}, got {number}")
    return number


def reject_unknown(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    """:raises HttpError: 400 naming the first (alphabetically) query parameter not in ``allowed``."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        listed = f"; allowed: {', '.join(allowed)}" if allowed else "; none allowed"
        raise HttpError(400, f"unknown parameter {unknown[0]!r}{listed}")
