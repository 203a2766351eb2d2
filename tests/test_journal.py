"""journal.py in-process: sd_notify over a socket the test binds, WATCHDOG_USEC, journald line format.

The same behaviour in a real daemon process is tested in ``test_proc_systemd.py``.
"""

from __future__ import annotations

import io
import logging
import os
import re
from typing import Iterator

import pytest

from harness import journal_stream_of, notify_socket  # noqa: F401 - fixtures
from scheduler_api.journal import Notifier, setup_logging, under_journal, watchdog_interval_s

def test_notifier_sends_nothing_without_notify_socket():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.notify("READY=1") is False


def test_notifier_speaks_to_path_and_abstract_sockets(notify_socket):
    assert Notifier({"NOTIFY_SOCKET": notify_socket.address}).notify("STATUS=off_season; next sync rounds")
    notify_socket.wait_for("STATUS=")
    assert notify_socket.messages[-1][1] == "STATUS=off_season; next sync rounds"


def test_notifier_failure_to_send_is_not_raised(tmp_path):
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}).notify("READY=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec():
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}) == 0.1
    assert watchdog_interval_s({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({}) is None



@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_outside_systemd_lines_are_timestamped(root_logging):
    stream = io.StringIO()
    setup_logging("INFO", {}, stream)
    logging.getLogger("scheduler_api.test").warning("sync kind=seasons trigger=manual outcome=failed attempt=1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING sync kind=seasons .*\n", stream.getvalue())


def test_journal_formatter_prefixes_every_line_of_a_traceback(root_logging):
    stream = io.StringIO()
    setup_logging("DEBUG", {"JOURNAL_STREAM": "8:1234"}, stream)
    log = logging.getLogger("scheduler_api.test")
    log.debug("http GET /health")
    log.info("sync kind=seasons outcome=ok")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("ticker error")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<7>http GET /health" and lines[1] == "<6>sync kind=seasons outcome=ok"
    assert lines[2] == "<3>ticker error" and len(lines) > 3
    assert all(line.startswith("<3>") for line in lines[2:])


def test_under_journal_compares_the_stream_device_and_inode(tmp_path):
    path = tmp_path / "stream"
    with open(path, "w") as stream:
        assert under_journal({"JOURNAL_STREAM": journal_stream_of(path)}, stream)
        assert not under_journal({"JOURNAL_STREAM": "1:2"}, stream)
        assert not under_journal({"JOURNAL_STREAM": "garbage"}, stream)
        assert not under_journal({}, stream)
