"""The command line (SPEC.md §9): plan, exit codes, and the demo as a new user runs it."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request

from scheduler_api.__main__ import main

from conftest import ts
from daemon import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_plan_command_prints_json_from_bundled_calendar(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # ergast-2026.json is not here: the bundled copy is used
    for name in list(os.environ):
        if name.startswith(("SCHEDULER_", "FETCH", "CALENDAR_", "STATE_", "ROUNDS_", "RESULTS_", "STANDINGS_")):
            monkeypatch.delenv(name)
    assert main(["plan", "--at", "2026-12-06T13:30:00Z", "--calendar", "ergast-2026.json", "--json",
                 "--hours", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"at", "is_race_weekend", "live_session", "current_intervals", "next_syncs"} <= set(plan)
    assert plan["at"] == ts("2026-12-06T13:30:00Z") and plan["live_session"]["round"] == 23


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ.get("PATH", ""), **(env or {})}
    return subprocess.run([sys.executable, "-m", "scheduler_api", *args], cwd=ROOT, env=full_env,
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
    port = free_port()
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "scheduler_api", "--demo", "--port", str(port)], cwd=ROOT,
                                env={"PATH": os.environ.get("PATH", "")}, stderr=log, stdout=log)
    try:
        deadline = time.monotonic() + 15
        health = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                    health = json.loads(answer.read())
                logged = log_path.read_text()
                if health["fetcher_service_connected"] and all(
                        f"sync kind={kind}" in logged for kind in ("seasons", "rounds", "standings")):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert health is not None and health["status"] == "healthy" and health["fetcher_service_connected"] is True
        text = log_path.read_text()
        for kind in ("seasons", "rounds", "standings"):
            assert f"sync kind={kind}" in text and "trigger=schedule outcome=ok attempt=1" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_loopback_addresses_need_no_token_warning():
    from scheduler_api.__main__ import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))


def test_daemon_process_runs_without_a_charset_detector_and_without_warnings():
    probe = (
        "import sys, scheduler_api.__main__, requests\n"
        "from scheduler_api.fetcher import judge\n"
        "print(sys.modules.get('charset_normalizer') is None)\n"
        "answer = requests.models.Response()\n"
        "answer.status_code, answer._content = 502, b'<html>bad gateway</html>'\n"
        "print(answer.text, judge(answer, 1, 0.0).error)\n"
    )
    done = subprocess.run([sys.executable, "-W", "default", "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True", "<html>bad gateway</html> HTTP 502"]
    assert done.stderr == ""
