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


def test_start_line_settings_are_those_that_differ_from_the_defaults_with_their_source(tmp_path):
    from scheduler_api import config as config_mod
    from scheduler_api.__main__ import build_parser, load_config

    env_file = tmp_path / "x.env"
    env_file.write_text("SCHEDULER_API_TOKEN=t0k\nSTANDINGS_INTERVAL_OFF_SEASON=1h\nFETCH_PATH_STANDINGS=off\n"
                        "FETCHER_URL=http://admin:hunter2@10.0.0.5:8082\n")
    environ = {"ROUNDS_INTERVAL_RACE_WEEKEND": "1m30s", "STATE_DIRECTORY": "/var/lib/scheduler_api",
               "CALENDAR_URL": "http://127.0.0.1:8000/seasons/{season}/rounds?token=abc&x=1"}
    config = config_mod.load(environ, str(env_file))

    assert config_mod.non_default_settings(config) == [
        ("FETCHER_URL", "http://10.0.0.5:8082", str(env_file)),
        ("CALENDAR_URL", "http://127.0.0.1:8000/seasons/{season}/rounds?token=***&x=1", "env"),
        ("ROUNDS_INTERVAL_RACE_WEEKEND", "1m30s", "env"),
        ("STATE_FILE", "/var/lib/scheduler_api/state.json", "STATE_DIRECTORY, env"),
        ("SCHEDULER_API_TOKEN", "***", str(env_file)),
        ("FETCH_PATH_STANDINGS", "off", str(env_file)),
    ]  # STANDINGS_INTERVAL_OFF_SEASON=1h is the default: not shown
    assert config_mod.non_default_settings(config_mod.Config()) == []

    args = build_parser().parse_args(["--port", "9000"])
    assert ("SCHEDULER_PORT", "9000", "--port") in config_mod.non_default_settings(load_config(args, None))


def test_pipe_safe_output_drops_writes_after_the_reader_went_away():
    from scheduler_api.__main__ import PipeSafe

    class ClosedPipe:
        def __init__(self):
            self.writes = 0

        def write(self, text):
            self.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            raise ValueError("no descriptor")  # nothing to point at /dev/null here

    stream = ClosedPipe()
    out = PipeSafe(stream)

    assert out.write("first\n") == 6 and out.write("second\n") == 7
    assert out.broken and stream.writes == 1
