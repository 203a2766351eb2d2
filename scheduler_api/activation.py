"""Socket activation: the listening socket systemd passes (``LISTEN_FDS``/``LISTEN_PID``), standard library only.

With ``scheduler_api.socket`` enabled, systemd owns the listening socket and
hands it to the daemon at start (``sd_listen_fds(3)``: descriptors from 3 on,
``LISTEN_PID`` naming the process they are for). Connections that arrive
while the daemon restarts wait in the kernel's queue instead of being
refused, so ``systemctl restart scheduler_api`` loses no request.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping, MutableMapping

SD_LISTEN_FDS_START = 3


class ActivationError(Exception):
    """systemd passed something the daemon cannot serve on (not a listening TCP socket, or several)."""


def passed_socket(environ: Mapping[str, str], pid: int | None = None) -> socket.socket | None:
    """The listening socket systemd passed to this process, if any.

    Only ``LISTEN_FDS=1`` with ``LISTEN_PID`` equal to this process counts;
    anything else (no variables, another process's) means "bind as usual".
    The variables are left for the caller to drop from the environment of
    any child it starts.

    :param environ: the process environment.
    :param pid: this process's id (default ``os.getpid()``).
    :returns: the socket (descriptor 3), in blocking mode, or None.
    :raises ActivationError: for several descriptors, or one that is not a listening stream socket.
    """
    if environ.get("LISTEN_PID", "") != str(os.getpid() if pid is None else pid):
        return None
    count = environ.get("LISTEN_FDS", "")
    if not count.isascii() or not count.isdigit() or int(count) == 0:
        return None
    if int(count) != 1:
        raise ActivationError(f"LISTEN_FDS={count}: expected one listening socket (scheduler_api.socket has one)")
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as exc:
        raise ActivationError(f"descriptor {SD_LISTEN_FDS_START} from systemd is not a socket: {exc}") from None
    if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError(f"descriptor {SD_LISTEN_FDS_START} from systemd is not a listening stream socket")
    sock.setblocking(True)
    return sock


LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def forget(environ: MutableMapping[str, str]) -> None:
    """Drop ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` (as ``sd_listen_fds(1)`` does).

    Call it once the socket is taken (or found absent), so no process started
    later with this environment takes the socket for its own.
    """
    for name in LISTEN_VARIABLES:
        environ.pop(name, None)
