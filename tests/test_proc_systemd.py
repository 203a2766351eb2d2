"""Life under systemd, against a real daemon process: sd_notify, the watchdog, journald lines; and the unit.

The daemon runs as a real ``python -m scheduler_api`` process against a
:class:`FetcherStandIn`, started by the ``daemon`` fixture of ``harness.py``
with an allow-list environment; the tests play systemd's part by binding the
``NOTIFY_SOCKET`` datagram socket themselves. Every wait polls with a
deadline; every process started here is stopped at teardown. The unit file
and the example environment file are checked here too, with
``systemd-analyze`` where it is installed, since they exist for systemd.
The in-process parts of ``journal.py`` are tested in ``test_journal.py``.
"""

from __future__ import annotations

import configparser
import os
import socket
import fnmatch
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import pytest

from harness import (  # noqa: F401 - daemon, notify_socket and standin are fixtures
    NotifySocket, daemon, journal_stream_of, notify_path, notify_socket, standin, wait_for,
)
from scheduler_api import config as config_mod
from scheduler_api.config import Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT = ROOT / "scheduler_api.service"
ENV_EXAMPLE = ROOT / "scheduler_api" / "data" / "scheduler_api.env"
DAEMON_CALENDAR = "ergast-2026.json"  # the calendar the harness's daemons read
WATCHDOG_USEC = 200_000  # the ticker then pings every 0.1 s
# Runs the real daemon with one test-only hook: SIGUSR1 wedges the ticker for good inside tick(),
# as a deadlock or an endless loop would. Nothing in the package knows about it.
WEDGEABLE_DAEMON = textwrap.dedent(
    """
    import signal, sys, threading
    from scheduler_api import __main__ as daemon
    from scheduler_api.scheduler import Scheduler

    wedged = threading.Event()
    original_tick = Scheduler.tick

    def tick(self, now_mono):
        if wedged.is_set():
            threading.Event().wait()  # never returns: the ticker's loop stops here
        return original_tick(self, now_mono)

    Scheduler.tick = tick
    signal.signal(signal.SIGUSR1, lambda signum, frame: wedged.set())
    sys.exit(daemon.main([]))
    """
)

# Same, but SIGUSR1 makes the ticker's next tick() raise past its own ``except Exception``,
# as a bug reaching BaseException would: the ticker thread dies.
CRASHING_DAEMON = WEDGEABLE_DAEMON.replace(
    "threading.Event().wait()  # never returns: the ticker's loop stops here",
    "raise GeneratorExit('ticker crash on purpose')",
)


# -- sd_notify against the real daemon -----------------------------------------


def test_ready_status_and_stopping_arrive_over_the_notify_socket(daemon, notify_socket):
    proc = daemon({"NOTIFY_SOCKET": notify_socket.address})
    notify_socket.wait_for("READY=1")
    # READY=1 means the port is bound and served and the ticker runs: /health answers at once.
    status, body, _ = proc.request("GET", "/health")
    assert status == 200 and body["scheduler_running"] is True
    notify_socket.wait_for("STATUS=")
    status_lines = [line for _at, line in notify_socket.messages if line.startswith("STATUS=")]
    assert "next sync" in status_lines[-1] or "no sync scheduled" in status_lines[-1]
    assert "\n" not in status_lines[-1]

    assert proc.terminate() == 0
    notify_socket.wait_for("STOPPING=1")
    assert len(notify_socket.arrivals("READY=1")) == 1
    assert notify_socket.arrivals("WATCHDOG=1") == []  # no WATCHDOG_USEC: no pings


def test_status_line_is_kept_current_after_a_sync(daemon, standin, notify_socket):
    proc = daemon({"NOTIFY_SOCKET": notify_socket.address})
    notify_socket.wait_for("READY=1")
    wait_for(lambda: proc.get("/status")["last_syncs"]["standings"], 10.0, "the start-up standings sync")

    def status_matches_schedule() -> bool:
        notify_socket.listen(0.05)
        view = proc.get("/status")
        due_ts, kind = min((ts, k) for k, ts in view["next_syncs"].items() if ts is not None)
        due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due_ts))
        lines = [line for _at, line in notify_socket.messages if line.startswith("STATUS=")]
        return bool(lines) and lines[-1].endswith(f"next sync {kind} at {due}")

    # The start-up syncs moved every next due time; the last STATUS= names the one now soonest.
    wait_for(status_matches_schedule, 10.0, "a STATUS= line naming the next sync in /status")
    assert proc.terminate() == 0


def test_watchdog_pings_from_the_ticker_and_stops_when_the_ticker_is_wedged(daemon, tmp_path):
    sock = NotifySocket(notify_path(tmp_path))
    try:
        proc = daemon({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
                      command=("-c", WEDGEABLE_DAEMON))
        sock.wait_for("READY=1")
        first = sock.wait_for("WATCHDOG=1")
        last = sock.wait_for("WATCHDOG=1", count=8)
        pings = sock.arrivals("WATCHDOG=1")
        # Half of WATCHDOG_USEC (0.1 s) apart on average: well inside what systemd allows (0.2 s).
        assert (last - first) / 7 < WATCHDOG_USEC / 1e6
        assert pings == sorted(pings)

        proc.signal(signal.SIGUSR1)  # the ticker's next tick() never returns
        wedged_at = time.monotonic()
        sock.listen(1.2)
        late = [at - wedged_at for at in sock.arrivals("WATCHDOG=1") if at > wedged_at]
        # At most a loop already past tick() may still ping; then silence for 5x WATCHDOG_USEC,
        # so systemd would restart the service.
        assert all(delay_s < 0.2 for delay_s in late), late
        # ...while the rest of the process is alive and answering: only the watchdog can catch this.
        status, _body, _ = proc.request("GET", "/health")
        assert status in (200, 503)
    finally:
        sock.close()


def test_sigterm_exits_0_and_sends_stopping_while_the_watchdog_runs(daemon, tmp_path):
    sock = NotifySocket(notify_path(tmp_path))
    try:
        proc = daemon({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        sock.wait_for("READY=1")
        sock.wait_for("WATCHDOG=1", count=2)
        assert proc.terminate() == 0
        sock.wait_for("STOPPING=1")
        assert "stopped" in proc.log()
    finally:
        sock.close()


# -- journald ------------------------------------------------------------------


def test_under_journal_stream_each_line_carries_the_priority_of_its_level(daemon, standin, tmp_path):
    standin.set_fault("error500", paths=("/fetch/standings",))
    stderr_path = tmp_path / "journal.stderr"
    stderr_path.touch()
    proc = daemon({"JOURNAL_STREAM": journal_stream_of(stderr_path)}, log_path=stderr_path)
    wait_for(lambda: "outcome=failed" in proc.log() and "kind=rounds" in proc.log()
                  and "outcome=ok" in proc.log(), 10.0, "a failed standings sync and a successful rounds sync")
    assert proc.terminate() == 0

    lines = proc.log().splitlines()
    assert lines and all(re.match(r"<[0-7]>\S", line) for line in lines), lines
    assert not any(re.match(r"<\d>\d{4}-\d\d-\d\d", line) for line in lines), "journald adds its own timestamp"
    for line in lines:
        if " outcome=" in line and line[3:].startswith("sync "):
            expected = "<6>" if " outcome=ok " in line else "<4>"
            assert line.startswith(expected), line
    # journalctl -p warning shows exactly the failures.
    warnings = [line for line in lines if int(line[1]) <= 4]
    failures = [line for line in lines if line[3:].startswith("sync ") and " outcome=ok " not in line]
    assert warnings == failures and failures


def test_a_crashed_thread_is_logged_as_an_error_under_the_journal(daemon, tmp_path):
    stderr_path = tmp_path / "journal.stderr"
    stderr_path.touch()
    # WATCHDOG_USEC keeps the ticker looping every 0.1 s, so its next tick() comes soon.
    proc = daemon({"JOURNAL_STREAM": journal_stream_of(stderr_path), "WATCHDOG_USEC": str(WATCHDOG_USEC)},
                  log_path=stderr_path, command=("-c", CRASHING_DAEMON))
    proc.signal(signal.SIGUSR1)
    wait_for(lambda: "<3>thread crashed name=ticker" in proc.log(), 10.0, "the ticker crash, at error")
    assert proc.request("GET", "/health")[0] == 503  # a dead ticker shows in /health (and stops the watchdog)
    assert proc.terminate() == 0
    lines = proc.log().splitlines()
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert any(line.startswith("<3>") and "ticker crash on purpose" in line for line in lines)


def test_inherited_journal_stream_is_ignored_when_stderr_goes_elsewhere(daemon, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.touch()
    proc = daemon({"JOURNAL_STREAM": journal_stream_of(elsewhere)})
    assert proc.terminate() == 0
    lines = proc.log().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) ", line)
                         for line in lines), lines


# -- the unit ------------------------------------------------------------------


def unit_settings(unit: pathlib.Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text("utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            name, _, value = line.partition("=")
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


def test_unit_has_the_required_directives():
    settings = unit_settings()
    required = {
        "Type": "notify", "Restart": "on-failure", "DynamicUser": "yes", "StateDirectory": "scheduler_api",
        "EnvironmentFile": "-/etc/scheduler_api/scheduler_api.env", "ExecReload": "/bin/kill -HUP $MAINPID",
        "Environment": "PYTHONUNBUFFERED=1", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "", "MemoryDenyWriteExecute": "yes",
    }
    for name, value in required.items():
        assert value in settings.get(name, []), f"{name}={value}"
    assert settings["WatchdogSec"] and settings["SystemCallFilter"][0] == "@system-service"
    # The notify socket is AF_UNIX: sandboxing must keep it.
    assert set(settings["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_socket_unit_listens_on_the_default_address_and_stays_open_across_service_restarts():
    settings = unit_settings(ROOT / "scheduler_api.socket")
    assert settings["ListenStream"] == [f"{Config.host}:{Config.port}"]
    assert int(settings["Backlog"][0]) >= 1024
    # PartOf=scheduler_api.service would close the socket at every `systemctl restart scheduler_api`.
    assert "PartOf" not in settings and "BindsTo" not in settings
    assert settings["WantedBy"] == ["sockets.target"]


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed")
    return path


def test_unit_security_exposure_is_at_most_2():
    analyze = systemd_analyze()
    done = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
                          capture_output=True, text=True, timeout=30)
    found = re.search(r"Overall exposure level for scheduler_api\.service: (\d+\.\d+)", done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout


def test_unit_verifies_cleanly(tmp_path):
    analyze = systemd_analyze()
    # ExecStart names the venv of a real install; point it at an existing binary so that only the
    # unit's own directives are judged.
    copy = tmp_path / "scheduler_api.service"
    copy.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text("utf-8")))
    done = subprocess.run([analyze, "verify", "--no-pager", str(copy)], capture_output=True, text=True, timeout=30)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "scheduler_api" in line]
    assert complaints == [], done.stdout + done.stderr


# -- the example environment file ----------------------------------------------


def example_settings() -> dict[str, str]:
    settings = {}
    for line in ENV_EXAMPLE.read_text("utf-8").splitlines():
        found = re.fullmatch(r"#([A-Z][A-Z0-9_]*)=(.*)", line)
        if found:
            settings[found.group(1)] = found.group(2)
    return settings


def test_example_env_file_lists_every_variable_the_daemon_reads():
    # STATE_DIRECTORY is set by systemd (StateDirectory=), not by the operator.
    read = set(config_mod._VARIABLES) - {"STATE_DIRECTORY"}
    assert set(example_settings()) == read


def test_example_env_file_shows_the_real_defaults(tmp_path):
    uncommented = tmp_path / "all.env"
    uncommented.write_text("".join(f"{name}={value}\n" for name, value in example_settings().items()))
    assert config_mod.load({}, str(uncommented)) == Config()


def test_example_env_file_gives_every_variable_a_one_line_comment():
    lines = ENV_EXAMPLE.read_text("utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.fullmatch(r"#[A-Z][A-Z0-9_]*=.*", line):
            above = lines[number - 1]
            assert above.startswith("# ") and len(above) > 3, f"no comment above {line}"


def test_example_env_file_ships_as_package_data():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    globs = [g.strip() for g in parser["options.package_data"]["scheduler_api"].split(",")]
    assert any(fnmatch.fnmatch("data/scheduler_api.env", pattern) for pattern in globs)


# -- socket activation ------------------------------------------------------------------


def start_socket_activated(tmp_path: pathlib.Path, standin, listener: socket.socket) -> subprocess.Popen:
    """Start the daemon as systemd does for ``scheduler_api.socket``: the socket on descriptor 3,
    ``LISTEN_FDS=1`` and ``LISTEN_PID`` the daemon's own pid (set by the shell that then execs it)."""
    from harness import clean_env

    env = clean_env({
        "STATE_FILE": str(tmp_path / "state.json"), "FETCHER_URL": standin.url, "SCHEDULER_PORT": "1",
        "CALENDAR_FILE": str(ROOT / "tests" / "data" / DAEMON_CALENDAR), "LISTEN_FDS": "1",
    })
    def pass_socket() -> None:
        os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)

    log = open(tmp_path / "activated.log", "wb")
    return subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0" -m scheduler_api', sys.executable],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=pass_socket, close_fds=False, cwd=tmp_path)  # close_fds would close 3


def test_socket_activation_serves_on_the_passed_socket_and_keeps_requests_across_a_restart(standin, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    log = tmp_path / "activated.log"
    proc = start_socket_activated(tmp_path, standin, listener)
    try:
        wait_for(lambda: "listening url=" in log.read_text(), what="the daemon to listen")
        text = log.read_text()
        assert f"listening url=http://127.0.0.1:{port}" in text  # SCHEDULER_PORT=1 was never bound
        assert "socket activation: serving on the socket systemd passed" in text
        assert http_get(port, "/health")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        # Between two daemons the kernel keeps queueing connections on the socket systemd holds:
        waiting = socket.create_connection(("127.0.0.1", port), timeout=10)
        waiting.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        proc = start_socket_activated(tmp_path, standin, listener)
        answer = b""
        while chunk := waiting.recv(65536):
            answer += chunk
        waiting.close()
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        listener.close()


def http_get(port: int, target: str) -> tuple[int, bytes]:
    """:returns: ``(status, body)`` of one GET on a new connection."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
