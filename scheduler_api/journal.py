"""Log formatting for journald or a terminal, and the sd_notify datagram protocol."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from typing import Mapping, TextIO

# syslog priorities (RFC 5424), as journald reads them from a "<N>" prefix
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def syslog_priority(levelno: int) -> int:
    """:returns: the syslog priority of a logging level; levels in between round down in severity (25 -> 6)."""
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _PRIORITY[threshold]
    return _PRIORITY[logging.DEBUG]


def under_journal(environ: Mapping[str, str], stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stderr) is systemd's journal stream (systemd.exec(5), ``$JOURNAL_STREAM``).

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of the stream it connects
    to the journal; children inherit the variable even when their stderr goes
    elsewhere (a pipe, a file, a terminal), so the variable alone is not
    enough: the stream's own device and inode must match. A stream without a
    file descriptor (tests pass a ``StringIO``) trusts the variable.

    :returns: True when lines on ``stream`` should carry a ``<priority>`` prefix.
    """
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return True
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class JournalFormatter(logging.Formatter):
    """``<priority>message`` with no timestamp: journald adds its own (see README, Logs).

    The prefix is the syslog priority (``<3>`` error, ``<4>`` warning,
    ``<6>`` info, ``<7>`` debug), so ``journalctl -p warning`` filters failures. A traceback stays in the
    same record, each line carrying the prefix.
    """

    def format(self, record: logging.LogRecord) -> str:
        """:returns: the record, each line prefixed with its syslog priority."""
        priority = syslog_priority(record.levelno)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def setup_logging(level: str, environ: Mapping[str, str], stream: TextIO | None = None) -> None:
    """Send all logging to ``stream`` (default stderr), one line per event.

    Under systemd (``JOURNAL_STREAM`` names ``stream``, see
    :func:`under_journal`) lines carry a syslog priority prefix and no
    timestamp, so ``journalctl -p warning`` shows exactly the warnings and
    errors; otherwise an ISO-like UTC timestamp and the level. The handler
    flushes after every record, so nothing waits in a buffer.

    :param level: ``LOG_LEVEL``, e.g. ``INFO``.
    :param environ: the process environment.
    :param stream: where to write; stderr by default.
    """
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)  # flushes after each record
    if under_journal(environ, stream):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))


class Notifier:
    """Speaks the ``NOTIFY_SOCKET`` datagram protocol of sd_notify(3), stdlib only.

    The daemon sends ``READY=1`` once the port is bound and the ticker runs,
    ``STOPPING=1`` at shutdown and ``WATCHDOG=1`` from the ticker's loop.
    Path sockets and abstract sockets (``@name``) both work. With no
    ``NOTIFY_SOCKET`` every call does nothing. Failures to send are logged
    at debug and never raised. Thread-safe (one datagram per call).

    :param environ: the process environment (reads ``NOTIFY_SOCKET``).
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET") or ""
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None

    @property
    def enabled(self) -> bool:
        """:returns: True when systemd asked for notifications."""
        return self.address is not None

    def notify(self, message: str) -> bool:
        """Send one datagram such as ``READY=1`` or ``STATUS=...``.

        :returns: True when it was sent.
        """
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode("utf-8"))
        except OSError as exc:
            logging.getLogger(__name__).debug("notify failed error=%s", exc)
            return False
        return True


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC``, the interval to send ``WATCHDOG=1`` at (sd_watchdog_enabled(3)).

    ``WATCHDOG_PID``, when set, must be this process.

    :returns: seconds, or None when the watchdog is off.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
