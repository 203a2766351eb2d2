"""Life under systemd (SPEC.md §7, §8): sd_notify over a real socket, the watchdog, journald lines, the unit.

The daemon runs as a real ``python -m scheduler_api`` process against a
:class:`FetcherStandIn`; the tests play systemd's part by binding the
``NOTIFY_SOCKET`` datagram socket themselves. Every wait polls with a
deadline; every process started here is killed at teardown.
"""

from __future__ import annotations

import configparser
import fnmatch
import http.client
import io
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from typing import Callable, Iterator

import pytest

from scheduler_api import config as config_mod
from scheduler_api.config import Config
from scheduler_api.journal import Notifier, setup_logging, under_journal, watchdog_interval_s
from scheduler_api.standin import FetcherStandIn

from daemon import wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT = ROOT / "scheduler_api.service"
ENV_EXAMPLE = ROOT / "scheduler_api" / "data" / "scheduler_api.env"
CALENDAR = ROOT / "tests" / "data" / "ergast-2026.json"
WATCHDOG_USEC = 200_000  # the ticker then pings every 0.1 s
LISTENING = re.compile(r"listening url=http://127\.0\.0\.1:(\d+)")
# A daemon started by these tests must not inherit systemd's or the developer's settings.
SCRUBBED_PREFIXES = (
    "SCHEDULER_", "FETCHER_", "FETCH_PATH_", "CALENDAR_", "STATE_", "SEASONS_", "ROUNDS_", "RESULTS_",
    "STANDINGS_", "RACE_WEEKEND_", "LIVE_", "LOG_LEVEL", "SHUTDOWN_GRACE", "NOTIFY_SOCKET", "WATCHDOG_",
    "JOURNAL_STREAM", "INVOCATION_ID", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
)

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


class NotifySocket:
    """Plays systemd's side of sd_notify(3): a bound ``AF_UNIX`` datagram socket.

    :param address: a filesystem path, or ``@name`` for an abstract socket.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[tuple[float, str]] = []  # (arrival, monotonic s; one assignment)

    def _receive(self, timeout_s: float) -> None:
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            datagram = self.sock.recv(4096)
        except socket.timeout:
            return
        arrived_mono = time.monotonic()
        for line in datagram.decode("utf-8").split("\n"):
            if line:
                self.messages.append((arrived_mono, line))

    def wait_for(self, assignment: str, timeout_s: float = 10.0, count: int = 1) -> float:
        """Receive until ``assignment`` (e.g. ``READY=1``, or ``STATUS=`` as a prefix) arrived ``count`` times.

        :returns: when the last of them arrived, monotonic seconds.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.arrivals(assignment)
            if len(found) >= count:
                return found[count - 1]
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise AssertionError(f"{assignment!r} x{count} did not arrive within {timeout_s}s: {self.messages}")
            self._receive(remaining_s)

    def listen(self, duration_s: float) -> None:
        """Receive whatever arrives during ``duration_s`` seconds (to prove that something does not)."""
        deadline = time.monotonic() + duration_s
        while (remaining_s := deadline - time.monotonic()) > 0:
            self._receive(remaining_s)

    def arrivals(self, assignment: str) -> list[float]:
        """:returns: arrival times of messages equal to ``assignment``, or starting with it if it ends in ``=``."""
        return [at for at, line in self.messages
                if line == assignment or (assignment.endswith("=") and line.startswith(assignment))]

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """One ``python -m scheduler_api`` process; stderr is collected in a file.

    :param command: the Python arguments after the interpreter.
    :param env: settings over a scrubbed copy of the environment.
    """

    def __init__(self, tmp_path: pathlib.Path, env: dict[str, str], command: tuple[str, ...] = ("-m", "scheduler_api"),
                 stderr_path: pathlib.Path | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_PREFIXES)}
        base["PYTHONPATH"] = os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        base.update({"SCHEDULER_HOST": "127.0.0.1", "SCHEDULER_PORT": "0", "PYTHONUNBUFFERED": "1"})
        base.update(env)
        self.stderr_path = stderr_path or tmp_path / "daemon.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, *command], cwd=tmp_path, env=base,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr)

    def log(self) -> str:
        return self.stderr_path.read_text("utf-8", errors="replace")

    @property
    def port(self) -> int:
        found = wait_for(lambda: LISTENING.search(self.log()), 10.0, "the 'listening' line")
        return int(found.group(1))

    def get(self, path: str) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            conn.close()

    def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, as ``systemctl stop`` does. :returns: the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def standin() -> Iterator[FetcherStandIn]:
    fetcher = FetcherStandIn().start()
    yield fetcher
    fetcher.stop()


@pytest.fixture
def start_daemon(tmp_path: pathlib.Path, standin: FetcherStandIn) -> Iterator[Callable[..., Daemon]]:
    """Start daemons pointed at the stand-in, a state file and a calendar file in ``tmp_path``."""
    started: list[Daemon] = []
    calendar = tmp_path / "calendar.json"
    shutil.copyfile(CALENDAR, calendar)

    def start(env: dict[str, str] | None = None, **kwargs) -> Daemon:
        settings = {"FETCHER_URL": standin.url, "STATE_FILE": str(tmp_path / "state.json"),
                    "CALENDAR_FILE": str(calendar), **(env or {})}
        daemon = Daemon(tmp_path, settings, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def notify_path(tmp_path: pathlib.Path) -> str:
    """A socket path in ``tmp_path``, or in a short temporary directory when that is too long for AF_UNIX."""
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) < 100:
        return str(path)
    return os.path.join(tempfile.mkdtemp(prefix="sa-"), "notify.sock")  # pragma: no cover - long tmp dirs


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path: pathlib.Path) -> Iterator[NotifySocket]:
    """systemd's notify socket, as a path (``/run/...``-like) and as an abstract (``@...``) one."""
    address = notify_path(tmp_path) if request.param == "path" else f"@scheduler_api-test-{uuid.uuid4().hex}"
    sock = NotifySocket(address)
    yield sock
    sock.close()


# -- sd_notify against the real daemon -----------------------------------------


def test_ready_status_and_stopping_arrive_over_the_notify_socket(start_daemon, notify_socket):
    daemon = start_daemon({"NOTIFY_SOCKET": notify_socket.address})
    notify_socket.wait_for("READY=1")
    # READY=1 means the port is bound and served and the ticker runs: /health answers at once.
    status, body = daemon.get("/health")
    assert status == 200 and body["scheduler_running"] is True
    notify_socket.wait_for("STATUS=")
    status_lines = [line for _at, line in notify_socket.messages if line.startswith("STATUS=")]
    assert "next sync" in status_lines[-1] or "no sync scheduled" in status_lines[-1]
    assert "\n" not in status_lines[-1]

    assert daemon.terminate() == 0
    notify_socket.wait_for("STOPPING=1")
    assert len(notify_socket.arrivals("READY=1")) == 1
    assert notify_socket.arrivals("WATCHDOG=1") == []  # no WATCHDOG_USEC: no pings


def test_status_line_is_kept_current_after_a_sync(start_daemon, standin, notify_socket):
    daemon = start_daemon({"NOTIFY_SOCKET": notify_socket.address})
    notify_socket.wait_for("READY=1")
    wait_for(lambda: daemon.get("/status")[1]["last_syncs"]["standings"], 10.0, "the start-up standings sync")

    def status_matches_schedule() -> bool:
        notify_socket.listen(0.05)
        view = daemon.get("/status")[1]
        due_ts, kind = min((ts, k) for k, ts in view["next_syncs"].items() if ts is not None)
        due = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due_ts))
        lines = [line for _at, line in notify_socket.messages if line.startswith("STATUS=")]
        return bool(lines) and lines[-1].endswith(f"next sync {kind} at {due}")

    # The start-up syncs moved every next due time; the last STATUS= names the one now soonest.
    wait_for(status_matches_schedule, 10.0, "a STATUS= line naming the next sync in /status")
    assert daemon.terminate() == 0


def test_watchdog_pings_from_the_ticker_and_stops_when_the_ticker_is_wedged(start_daemon, tmp_path):
    sock = NotifySocket(notify_path(tmp_path))
    try:
        daemon = start_daemon({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
                              command=("-c", WEDGEABLE_DAEMON))
        sock.wait_for("READY=1")
        first = sock.wait_for("WATCHDOG=1")
        last = sock.wait_for("WATCHDOG=1", count=8)
        pings = sock.arrivals("WATCHDOG=1")
        # Half of WATCHDOG_USEC (0.1 s) apart on average: well inside what systemd allows (0.2 s).
        assert (last - first) / 7 < WATCHDOG_USEC / 1e6
        assert pings == sorted(pings)

        daemon.proc.send_signal(signal.SIGUSR1)  # the ticker's next tick() never returns
        wedged_at = time.monotonic()
        sock.listen(1.2)
        late = [at - wedged_at for at in sock.arrivals("WATCHDOG=1") if at > wedged_at]
        # At most a loop already past tick() may still ping; then silence for 5x WATCHDOG_USEC,
        # so systemd would restart the service.
        assert all(delay_s < 0.2 for delay_s in late), late
        # ...while the rest of the process is alive and answering: only the watchdog can catch this.
        status, _body = daemon.get("/health")
        assert status in (200, 503)
    finally:
        sock.close()


def test_sigterm_exits_0_and_sends_stopping_while_the_watchdog_runs(start_daemon, tmp_path):
    sock = NotifySocket(notify_path(tmp_path))
    try:
        daemon = start_daemon({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        sock.wait_for("READY=1")
        sock.wait_for("WATCHDOG=1", count=2)
        assert daemon.terminate() == 0
        sock.wait_for("STOPPING=1")
        assert "stopped" in daemon.log()
    finally:
        sock.close()


# -- sd_notify in-process ------------------------------------------------------


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


# -- journald ------------------------------------------------------------------


def journal_stream_of(path: pathlib.Path) -> str:
    """The ``JOURNAL_STREAM`` value systemd would set for a stderr connected to ``path``."""
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"


def test_under_journal_stream_each_line_carries_the_priority_of_its_level(start_daemon, standin, tmp_path):
    standin.set_fault("error500", paths=("/fetch/standings",))
    stderr_path = tmp_path / "journal.stderr"
    stderr_path.touch()
    daemon = start_daemon({"JOURNAL_STREAM": journal_stream_of(stderr_path)}, stderr_path=stderr_path)
    wait_for(lambda: "outcome=failed" in daemon.log() and "kind=rounds" in daemon.log()
                  and "outcome=ok" in daemon.log(), 10.0, "a failed standings sync and a successful rounds sync")
    assert daemon.terminate() == 0

    lines = daemon.log().splitlines()
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


def test_a_crashed_thread_is_logged_as_an_error_under_the_journal(start_daemon, tmp_path):
    stderr_path = tmp_path / "journal.stderr"
    stderr_path.touch()
    # WATCHDOG_USEC keeps the ticker looping every 0.1 s, so its next tick() comes soon.
    daemon = start_daemon({"JOURNAL_STREAM": journal_stream_of(stderr_path), "WATCHDOG_USEC": str(WATCHDOG_USEC)},
                          stderr_path=stderr_path, command=("-c", CRASHING_DAEMON))
    daemon.port  # noqa: B018 -- waits for the 'listening' line
    daemon.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "<3>thread crashed name=ticker" in daemon.log(), 10.0, "the ticker crash, at error")
    assert daemon.get("/health")[0] == 503  # a dead ticker shows in /health (and stops the watchdog)
    assert daemon.terminate() == 0
    lines = daemon.log().splitlines()
    assert all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert any(line.startswith("<3>") and "ticker crash on purpose" in line for line in lines)


def test_inherited_journal_stream_is_ignored_when_stderr_goes_elsewhere(start_daemon, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.touch()
    daemon = start_daemon({"JOURNAL_STREAM": journal_stream_of(elsewhere)})
    daemon.port  # noqa: B018 -- waits for the 'listening' line
    assert daemon.terminate() == 0
    lines = daemon.log().splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR) ", line)
                         for line in lines), lines


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


# -- the unit ------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text("utf-8").splitlines():
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
