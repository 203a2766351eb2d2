"""Finding the listening socket systemd passes (LISTEN_FDS/LISTEN_PID)."""

from __future__ import annotations

import os
import socket

import pytest

from scheduler_api import activation
from scheduler_api.activation import ActivationError, passed_socket


def test_no_variables_means_bind_as_usual():
    assert passed_socket({}) is None


def test_variables_for_another_process_are_ignored():
    assert passed_socket({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid() + 1)}) is None


@pytest.fixture
def on_fd3():
    """Put a socket on descriptor 3, as systemd passes it; descriptor 3 is restored afterwards."""
    saved = os.dup(3) if _is_open(3) else None
    kept: list[socket.socket] = []

    def put(sock: socket.socket) -> socket.socket:
        kept.append(sock)
        os.dup2(sock.fileno(), 3)
        return sock

    yield put
    for sock in kept:
        sock.close()
    if saved is None:
        os.close(3)
    else:
        os.dup2(saved, 3)
        os.close(saved)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def listening() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener


def test_the_passed_listening_socket_is_used(on_fd3):
    listener = on_fd3(listening())
    sock = passed_socket({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())})
    assert sock is not None
    assert sock.getsockname() == listener.getsockname()
    sock.detach()


def test_several_descriptors_are_refused(on_fd3):
    on_fd3(listening())
    with pytest.raises(ActivationError, match="LISTEN_FDS=2"):
        passed_socket({"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())})


def test_a_socket_that_is_not_listening_is_refused(on_fd3):
    on_fd3(socket.socket())
    with pytest.raises(ActivationError, match="not a listening"):
        passed_socket({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid())})


def test_listen_variables_are_forgotten_once_read():
    environ = {"LISTEN_PID": "42", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "scheduler_api.socket", "PATH": "/bin"}

    activation.forget(environ)

    assert environ == {"PATH": "/bin"}
