"""The command line as a user runs it, in real processes: exit codes, the demo, the import-time set-up.

Every process here gets the allow-list environment of ``harness.py``; the
in-process parts of ``__main__.py`` are tested in ``test_main.py``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from harness import REPO, Daemon, clean_env, daemon, free_port, standin, wait_for  # noqa: F401 - fixtures


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m scheduler_api ARGS`` to the end. :returns: the finished process, output as text."""
    return subprocess.run([sys.executable, "-m", "scheduler_api", *args], cwd=REPO, env=clean_env(env),
                          capture_output=True, text=True, timeout=30)


def test_bad_configuration_exits_2_with_one_line_naming_the_variable():
    done = run_cli(env={"ROUNDS_INTERVAL_OFF_SEASON": "5x"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "ROUNDS_INTERVAL_OFF_SEASON" in lines[0] and "5x" in lines[0]


def test_plan_with_bad_instant_exits_2():
    done = run_cli("plan", "--at", "next tuesday")
    assert done.returncode == 2 and "--at" in done.stderr


def test_demo_comes_up_healthy_and_logs_start_up_syncs(tmp_path):
    proc = Daemon(tmp_path / "demo.log", {}, args=("--demo", "--port", str(free_port())))
    try:
        proc.start(wait=False)

        def up_and_synced() -> bool:
            try:
                health = proc.get("/health")
            except OSError:
                return False
            logged = proc.log()
            return health["fetcher_service_connected"] and all(
                f"sync kind={kind}" in logged for kind in ("seasons", "rounds", "standings"))

        wait_for(up_and_synced, 15.0, "the demo to come up and sync")
        health = proc.get("/health")
        assert health is not None and health["status"] == "healthy" and health["fetcher_service_connected"] is True
        text = proc.log()
        for kind in ("seasons", "rounds", "standings"):
            assert f"sync kind={kind}" in text and "trigger=schedule outcome=ok attempt=1" in text
    finally:
        assert proc.terminate() == 0


def test_daemon_process_runs_without_a_charset_detector_and_without_warnings():
    probe = (
        "import sys, scheduler_api.__main__, requests\n"
        "from scheduler_api.fetcher import judge\n"
        "from scheduler_api.httpcall import Answer\n"
        "print(sys.modules.get('charset_normalizer') is None)\n"
        "answer = requests.models.Response()\n"
        "answer.status_code, answer._content = 502, b'<html>bad gateway</html>'\n"
        "print(answer.text, judge(Answer(502, '', {}, answer.content, False), 1, 0.0).error)\n"
    )
    done = subprocess.run([sys.executable, "-W", "default", "-c", probe], cwd=REPO, capture_output=True, text=True,
                          timeout=30, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True", "<html>bad gateway</html> HTTP 502"]
    assert done.stderr == ""


# -- the client commands and --version, against real daemons -------------------------


def test_version_prints_the_package_version():
    from scheduler_api import __version__

    done = run_cli("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"scheduler-api {__version__}\n", "")
    assert __version__ == "0.2.0"


def test_trigger_status_and_history_against_the_demo(tmp_path):
    port = free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = Daemon(tmp_path / "demo.log", {"TMPDIR": str(tmp)}, args=("--demo", "--port", str(port)))
    env = {"SCHEDULER_PORT": str(port)}
    try:
        proc.start()
        done = run_cli("trigger", "results", "--season", "2026", "--round", "24", env=env)
        assert (done.returncode, done.stdout, done.stderr) == (0, "Results sync triggered for round 24\n", "")
        status = run_cli("status", env=env)
        assert status.returncode == 0, status.stderr
        assert "  Mode:     " in status.stdout and "results" in status.stdout
        assert max(len(line) for line in status.stdout.splitlines()) <= 80
        history = run_cli("history", "--kind", "results", "--json", env=env)
        assert history.returncode == 0 and '"round": 24' in history.stdout.replace('"round":24', '"round": 24')
        assert any(name.startswith("scheduler_api_demo_") for name in os.listdir(tmp))
    finally:
        assert proc.terminate() == 0
    assert os.listdir(tmp) == []  # the demo's temporary state directory is removed at exit


def test_trigger_exits_1_with_the_reason_when_the_fetcher_is_stopped(daemon, standin):
    proc = daemon()
    standin.stop()
    done = run_cli("trigger", "seasons", env={"SCHEDULER_PORT": str(proc.port)})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("scheduler-api: ") and "connection refused" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_client_with_no_daemon_exits_3_in_under_2_s_with_one_line():
    port = free_port()
    started = time.monotonic()
    done = run_cli("status", env={"SCHEDULER_PORT": str(port)})
    took_s = time.monotonic() - started
    assert done.returncode == 3 and took_s < 2.0, took_s
    assert done.stderr == f"scheduler-api: no daemon answering at http://127.0.0.1:{port} (connection refused)\n"


@pytest.mark.parametrize("command", [
    "plan --at 2026-12-06T13:30:00Z --calendar ergast-2026.json --json | head -c 100",
    "plan --at 2026-12-06T13:30:00Z --calendar ergast-2026.json | head -n 1",
    "--version | true",
])
def test_a_closed_pipe_is_no_error(command):
    for _ in range(3):  # the reader may close before or after the first write: try it more than once
        done = subprocess.run(["bash", "-c", f'"$0" -m scheduler_api {command}; echo "status=${{PIPESTATUS[0]}}" >&2',
                               sys.executable], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=30)
        assert done.stderr == "status=0\n"


# -- start-up line ---------------------------------------------------------------------


def test_start_line_names_version_and_each_non_default_setting_with_its_source_secrets_masked(daemon, tmp_path):
    env_file = tmp_path / "scheduler_api.env"
    env_file.write_text("SCHEDULER_API_TOKEN=s3cr3t-t0ken\nROUNDS_INTERVAL_OFF_SEASON=45m\nLOG_LEVEL=info\n")
    proc = daemon({"CALENDAR_URL": "https://user:pa55@example.org/f1/{season}.json?api_key=k3y", "CALENDAR_FILE": ""},
                  args=("--env-file", str(env_file)))
    starts = [line for line in proc.log().splitlines() if " start version=" in line]
    assert len(starts) == 1
    line = starts[0]
    assert "INFO start version=0.2.0 non_default: " in line
    assert f"ROUNDS_INTERVAL_OFF_SEASON=45m ({env_file})" in line
    assert f"SCHEDULER_API_TOKEN=*** ({env_file})" in line
    assert "CALENDAR_URL=https://example.org/f1/{season}.json?api_key=*** (env)" in line
    assert "SCHEDULER_PORT=0 (env)" in line and "LOG_LEVEL" not in line  # info is the default INFO
    assert "s3cr3t" not in line and "pa55" not in line and "k3y" not in line


# -- the state file, for real ----------------------------------------------------------


def test_fifo_as_state_file_exits_2_at_once_with_one_line(tmp_path):
    fifo = tmp_path / "state.json"
    os.mkfifo(fifo)
    done = run_cli(env={"STATE_FILE": str(fifo), "SCHEDULER_PORT": "0"})
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"STATE_FILE {fifo} is a FIFO, not a regular file" in errors[0]


def test_read_only_state_directory_exits_2_naming_it_for_a_user_who_cannot_write_it(request):
    """Root writes anywhere: the daemon runs as ``nobody`` (setpriv) in a directory only root may write."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    outer = pathlib.Path(tempfile.mkdtemp(prefix="scheduler_api_ro_"))  # tmp_path is 0700: nobody cannot enter
    request.addfinalizer(lambda: shutil.rmtree(outer, ignore_errors=True))
    directory = outer / "state"
    directory.mkdir()
    outer.chmod(0o755)
    directory.chmod(0o755)
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "scheduler_api"]
    done = subprocess.run(argv, cwd="/", env=clean_env({"STATE_FILE": str(directory / "state.json"),
                                                       "SCHEDULER_PORT": "0", "HOME": "/"}),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert f"state directory {directory} cannot be written (Permission denied)" in errors[0]


@pytest.mark.parametrize("content", [
    b'{"history": 5}',
    b'{"version": 1, "last_syncs": {"rounds": "yesterday"}}',
    b'{"version": 1, "last_syncs": {"rounds": 1' + b"0" * 400 + b"}}",
    b'{"version": 1, "last_syncs": {}, "calendar": {"body": {"rounds": "none"}, "source": "x", "fetched_at": 1}}',
    b"[" * 50_000 + b"]" * 50_000,
], ids=["history-a-number", "timestamp-a-string", "year-10e400", "calendar-not-a-calendar", "deeply-nested"])
def test_damaged_state_file_warns_moves_aside_and_the_daemon_starts_fresh(daemon, tmp_path, content):
    (tmp_path / "state.json").write_bytes(content)
    proc = daemon()
    proc.settle()
    assert proc.get("/health")["scheduler_running"] is True
    assert "WARNING state file" in proc.log() and "starting fresh" in proc.log()
    aside = [name for name in os.listdir(tmp_path) if name.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes() == content
    assert proc.terminate() == 0


def test_second_daemon_on_the_same_file_through_a_symlink_refuses(daemon, tmp_path):
    first = daemon()
    os.symlink(tmp_path / "state.json", tmp_path / "alias.json")
    done = run_cli(env={"STATE_FILE": str(tmp_path / "alias.json"), "SCHEDULER_PORT": "0"})
    assert done.returncode == 1
    assert f"state file {tmp_path / 'alias.json'} (-> {tmp_path / 'state.json'}) is in use" in done.stderr
    assert first.get("/health")["scheduler_running"] is True
