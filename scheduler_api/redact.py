"""The one redaction rule for URLs shown in logs and answers: no user, no password, no secret query value."""

from __future__ import annotations

import base64
import re
import urllib.parse

#: Query parameter names whose values are secrets (compared case-insensitively, ``-`` read as ``_``).
SECRET_PARAMETERS = frozenset({"token", "key", "api_key", "apikey", "password", "secret", "auth"})
MASK = "***"

_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def is_secret_parameter(name: str) -> bool:
    """:returns: True when a query parameter named ``name`` carries a secret (``api_key``, ``Token`` ...)."""
    return name.strip().lower().replace("-", "_") in SECRET_PARAMETERS


def redact_url(url: str) -> str:
    """Show a URL without its secrets.

    The user and password (``https://user:pass@host/``) are dropped and the
    value of every query parameter named like a secret (see
    :data:`SECRET_PARAMETERS`) is shown as ``***``; everything else, the
    ``{season}`` placeholder included, is kept as written. Text that does not
    parse as a URL is returned with the same two rules applied as far as they
    can be.

    :param url: a URL or URL template, e.g. ``CALENDAR_URL``.
    :returns: the URL safe to log and to show in ``/status``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            name, sep, value = pair.partition("=")
            readable = urllib.parse.unquote_plus(name)
            pairs.append(f"{name}{sep}{MASK}" if sep and value and is_secret_parameter(readable) else pair)
        query = "&".join(pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """:returns: ``text`` with every URL in it passed through :func:`redact_url` (for error reasons)."""
    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        kept = url.rstrip(":,.;)")  # punctuation after a URL belongs to the sentence
        return redact_url(kept) + url[len(kept):]

    return _URL_IN_TEXT.sub(one, text)


def secret_values(url: str) -> tuple[str, ...]:
    """The secrets a configured URL or path template carries, to scrub them from text that quotes them.

    A server's error message may repeat what it received (FastAPI's 422
    repeats a rejected value, a proxy may echo the ``Authorization`` it got),
    so masking the URL is not enough: these values are looked for in every
    reason. They are the password, ``user:password`` and its Basic-auth
    base64 form, and the values of query parameters named like secrets;
    placeholders such as ``{season}`` are not secrets.

    :param url: e.g. ``FETCHER_URL``, a ``FETCH_PATH_*`` template or ``CALENDAR_URL``.
    :returns: the secret strings, longest first (at least 3 characters each).
    """
    found: set[str] = set()
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return ()
    if parts.password:
        found.add(parts.password)
        found.add(urllib.parse.unquote(parts.password))
    if parts.username and parts.password is not None:
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password)}"
        found.update((pair, base64.b64encode(pair.encode("utf-8")).decode("ascii")))
    for pair in parts.query.split("&") if parts.query else ():
        name, sep, value = pair.partition("=")
        if sep and value and "{" not in value and is_secret_parameter(urllib.parse.unquote_plus(name)):
            found.update((value, urllib.parse.unquote_plus(value)))
    return tuple(sorted((s for s in found if len(s) >= 3), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """:returns: ``text`` with every URL redacted and every one of ``secrets`` shown as ``***``."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return redact_text(text)
