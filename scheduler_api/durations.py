"""Duration strings such as "1h30m" <-> seconds, for the configuration and ``/status``; pure, stdlib only."""

from __future__ import annotations

import math
import re

__all__ = ["DurationError", "parse_duration", "format_duration"]

# Units in strictly decreasing order; a duration uses each at most once.
_UNITS_MS: tuple[tuple[str, int], ...] = (
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
)

# [0-9] rather than \d: \d also matches non-ASCII digits such as "１".
# "m(?!s)" keeps "5ms" from being read as five minutes followed by "s".
_COMPOUND_RE = re.compile(
    r"(?:(?P<d>[0-9]+)d)?"
    r"(?:(?P<h>[0-9]+)h)?"
    r"(?:(?P<m>[0-9]+)m(?!s))?"
    r"(?:(?P<s>[0-9]+)s)?"
    r"(?:(?P<ms>[0-9]+)ms)?"
)
_BARE_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")

# Longer inputs are never meaningful; the cap also keeps int() below its
# 4300-digit limit and float() far from overflow.
_MAX_TEXT_LEN = 64


class DurationError(ValueError):
    """A duration string that :func:`parse_duration` cannot accept.

    The message says what was wrong; ``str(err)`` is one line.
    """


def parse_duration(text: str) -> float:
    """Parse a duration as written in the configuration (``500ms``, ``30s``, ``1h30m``, a bare number of seconds).

    Accepted forms, surrounding whitespace ignored:

    * units ``d``, ``h``, ``m``, ``s``, ``ms`` with integer amounts, combined
      in strictly decreasing order, each at most once: ``"500ms"``, ``"30s"``,
      ``"5m"``, ``"6h"``, ``"1d"``, ``"1h30m"``, ``"2d12h"``;
    * a bare number, meaning seconds, which may have a fractional part:
      ``"30"``, ``"1.5"``.

    Only ASCII digits are accepted (not ``"１０s"``); signs, exponents,
    ``nan``, ``inf``, spaces inside the text and upper-case units are
    rejected.

    :param text: the duration string.
    :returns: the duration in seconds, float, always finite and > 0.
    :raises DurationError: if ``text`` is not a valid duration or is zero.
    """
    if not isinstance(text, str):
        raise DurationError(f"duration must be a string, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise DurationError("empty duration")
    if len(stripped) > _MAX_TEXT_LEN:
        raise DurationError(f"duration longer than {_MAX_TEXT_LEN} characters")

    if _BARE_RE.fullmatch(stripped):
        seconds = float(stripped)
    else:
        match = _COMPOUND_RE.fullmatch(stripped)
        if match is None:
            raise DurationError(
                f"invalid duration {stripped!r}: use units d, h, m, s, ms in that "
                "order, each at most once, with whole numbers (e.g. 1h30m), "
                "or a bare number of seconds"
            )
        total_ms = sum(
            int(amount) * unit_ms
            for (unit, unit_ms) in _UNITS_MS
            if (amount := match.group(unit)) is not None
        )
        seconds = total_ms / 1000

    if not math.isfinite(seconds):
        raise DurationError(f"duration {stripped!r} is too large")
    if seconds <= 0:
        raise DurationError(f"duration {stripped!r} must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds in the shortest unit form, as ``/status`` and ``plan`` show intervals.

    The value is rounded to whole milliseconds first, then written with the
    largest units that fit and zero parts left out: 30 -> ``"30s"``,
    300 -> ``"5m"``, 5400 -> ``"1h30m"``, 90000 -> ``"1d1h"``,
    0.5 -> ``"500ms"``, 1.5 -> ``"1s500ms"``. Zero, and anything below half a
    millisecond, is ``"0s"``. The result is accepted by :func:`parse_duration`
    whenever it is not ``"0s"``.

    :param seconds: a duration in seconds, float or int, finite and >= 0.
    :returns: the formatted duration.
    :raises DurationError: if ``seconds`` is negative, NaN or infinite.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationError(f"cannot format {seconds!r} as a duration: expected a finite number >= 0")
    remaining_ms = round(seconds * 1000)
    if remaining_ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, unit_ms in _UNITS_MS:
        amount, remaining_ms = divmod(remaining_ms, unit_ms)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)
