"""The command line in-process: ``plan`` through ``main()``, and which hosts count as loopback.

The command line in real processes (exit codes, the demo) is tested in ``test_proc_main.py``.
"""

from __future__ import annotations

import json
import os

from scheduler_api.__main__ import main

from conftest import ts
from harness import clean_env


def test_plan_command_prints_json_from_bundled_calendar(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # ergast-2026.json is not here: the bundled copy is used
    for name in set(os.environ) - set(clean_env()):  # the allow-list of the process tests, here too
        monkeypatch.delenv(name)
    assert main(["plan", "--at", "2026-12-06T13:30:00Z", "--calendar", "ergast-2026.json", "--json",
                 "--hours", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {"at", "is_race_weekend", "live_session", "current_intervals", "next_syncs"} <= set(plan)
    assert plan["at"] == ts("2026-12-06T13:30:00Z") and plan["live_session"]["round"] == 23


def test_loopback_addresses_need_no_token_warning():
    from scheduler_api.__main__ import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org"))
