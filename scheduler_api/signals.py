"""The main thread's wake-up pipe (``signal.set_wakeup_fd``), read until a signal or a wake-up arrives."""

from __future__ import annotations

import os
import signal
from typing import Any

#: The signals the daemon handles: SIGTERM and SIGINT stop it, SIGHUP refreshes the calendar.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class SignalPipe:
    """Signals and wake-ups reach the main thread through one pipe.

    The main thread sleeps reading this pipe. The interpreter's C-level
    signal handler writes each signal's number to it
    (``signal.set_wakeup_fd``), whichever thread the kernel delivered the
    signal to, and takes no lock; :meth:`wake` writes a 0 byte. A Python
    handler that set an Event could deadlock on a second signal, and one
    that only set a flag would go unseen while the main thread sleeps if
    the signal landed on another thread.

    :meth:`install`, :meth:`read` and :meth:`close`: main thread only.
    :meth:`wake`: any thread; never blocks.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)

    def install(self) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP by writing their numbers to the pipe."""
        for signum in SIGNALS:
            signal.signal(signum, _noted_in_wakeup_fd)
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

    def wake(self) -> None:
        """Make :meth:`read` return (a 0 byte); does nothing once closed."""
        if self._write_fd < 0:
            return
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def read(self) -> bytes:
        """Block until a signal or a wake-up arrives.

        :returns: the bytes read: signal numbers, and 0 for a wake-up.
        """
        return os.read(self._read_fd, 512)

    def close(self) -> None:
        """Ignore the three signals from now on, and close the pipe."""
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)  # shutting down already: further signals change nothing
        signal.set_wakeup_fd(-1)
        read_fd, write_fd, self._read_fd, self._write_fd = self._read_fd, self._write_fd, -1, -1
        os.close(read_fd)
        os.close(write_fd)


def _noted_in_wakeup_fd(_signum: int, _frame: Any) -> None:
    """Python-level handler for SIGTERM, SIGINT and SIGHUP: nothing to do.

    The signal is acted on by the main loop, which reads its number from the
    wake-up pipe (``signal.set_wakeup_fd``); this handler only replaces the
    default action (exit, or ``KeyboardInterrupt``).
    """
