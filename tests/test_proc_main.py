"""The command line as a user runs it, in real processes: exit codes, the demo, the import-time set-up.

Every process here gets the allow-list environment of ``harness.py``; the
in-process parts of ``__main__.py`` are tested in ``test_main.py``.
"""

from __future__ import annotations

import subprocess
import sys

from harness import REPO, Daemon, clean_env, free_port, wait_for


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
