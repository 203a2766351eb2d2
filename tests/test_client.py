"""``scheduler-api status``/``trigger``/``history`` against a loopback server answering like the daemon."""

from __future__ import annotations

import argparse
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scheduler_api import client
from scheduler_api.config import Config

NOW = 1796563800  # 2026-12-06T13:30:00Z, during the Abu Dhabi race weekend
STATUS = {
    "status": "running", "is_race_weekend": True,
    "last_syncs": {"seasons": NOW - 7200, "rounds": NOW - 20, "results": None, "standings": NOW - 300},
    "next_syncs": {"seasons": NOW + 14400, "rounds": NOW + 10, "results": NOW + 5100, "standings": NOW},
    "current_intervals": {"rounds": "30s", "results": "paused", "standings": "5m"},
    "mode": {"name": "race_weekend", "season": 2026, "round": 24, "session": None},
    "seasons_interval": "6h", "next_mode_change": NOW + 5100,
    "calendar": {"loaded": True, "rounds": 24, "source": "https://api.jolpi.ca/ergast/f1/2026.json",
                 "fetched_at": NOW - 600},
    "in_flight": ["rounds:2026"], "counters": {"failed": 1},
    "last_failures": {"seasons": None, "rounds": {"at": NOW - 3600, "trigger": "schedule", "outcome": "failed",
                                                  "http_status": 500, "error": "HTTP 500: " + "x" * 300},
                      "results": None, "standings": None},
}
HEALTH = {"status": "degraded", "uptime_seconds": 86400, "fetcher_service_connected": True,
          "scheduler_running": True, "stale": [], "failing": ["rounds"]}


class FakeDaemon:
    def __init__(self, answers: dict[tuple[str, str], tuple[int, dict]]) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, method):
                owner.seen.append((method, self.path, self.headers.get("Authorization")))
                route = self.path.split("?", 1)[0]
                status, body = answers.get((method, route), (404, {"success": False, "message": "not found"}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self.answer("GET")

            def do_POST(self):
                self.answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.config = Config(port=self.server.server_address[1], token="t0k")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def daemon():
    made = []

    def make(answers):
        made.append(FakeDaemon(answers))
        return made[-1]

    yield make
    for one in made:
        one.close()


def run(config: Config, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    client.add_commands(sub)
    out, err = io.StringIO(), io.StringIO()
    code = client.run(parser.parse_args(argv), config, out, err, now_ts=lambda: NOW)
    return code, out.getvalue(), err.getvalue()


def test_status_shows_mode_and_every_kind_within_80_columns(daemon):
    fake = daemon({("GET", "/status"): (200, STATUS), ("GET", "/health"): (200, HEALTH)})
    code, out, _ = run(fake.config, "status")
    assert code == 0
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "race_weekend (season 2026, round 24)" in out
    assert "failing rounds" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()[0] in
            ("seasons", "rounds", "results", "standings")}
    assert rows["seasons"].split()[1:] == ["6h", "11:30:00Z", "(2h", "ago)", "17:30:00Z", "(in", "4h)"]
    assert "never" in rows["results"] and "(in 1h 25m)" in rows["results"]
    assert "13:29:40Z (20s ago)" in rows["rounds"] and "13:30:10Z (in 10s)" in rows["rounds"]
    assert "! rounds failed 12:30:00Z (1h ago): HTTP 500: xxx" in out


def test_status_json_prints_the_daemons_answer(daemon):
    fake = daemon({("GET", "/status"): (200, STATUS)})
    code, out, _ = run(fake.config, "status", "--json")
    assert code == 0 and json.loads(out) == STATUS


def test_trigger_prints_the_message_and_sends_the_token(daemon):
    ok = {"success": True, "message": "Results sync triggered for round 24", "fetcher_called": True, "timestamp": NOW}
    fake = daemon({("POST", "/trigger/results"): (200, ok)})
    code, out, _ = run(fake.config, "trigger", "results", "--season", "2026", "--round", "24")
    assert (code, out) == (0, "Results sync triggered for round 24\n")
    assert fake.seen == [("POST", "/trigger/results?season=2026&round=24", "Bearer t0k")]


@pytest.mark.parametrize("status, code", [(502, 1), (504, 1), (429, 1), (400, 2), (401, 2), (409, 2)])
def test_trigger_exit_status_follows_the_answer(daemon, status, code):
    failed = {"success": False, "message": "Results sync failed: HTTP 500: boom", "fetcher_called": True}
    fake = daemon({("POST", "/trigger/results"): (status, failed)})
    got, out, err = run(fake.config, "trigger", "results")
    assert got == code
    assert err == "scheduler-api: Results sync failed: HTTP 500: boom\n"


def test_no_daemon_exits_3_at_once_saying_where_it_looked():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    code, _, err = run(Config(port=port), "status")
    assert code == 3 and time.monotonic() - started < 2
    assert err == f"scheduler-api: no daemon answering at http://127.0.0.1:{port} (connection refused)\n"


def test_history_renders_records_newest_first(daemon):
    records = [{"kind": "results", "parameters": {"season": 2026, "round": 24}, "session": "race", "trigger": "schedule",
                "outcome": "timeout", "attempt": 1, "http_status": None, "duration_ms": 300000,
                "started_at": NOW - 300, "finished_at": NOW, "error": "no answer: deadline of 300s passed"}]
    fake = daemon({("GET", "/history"): (200, {"records": records, "count": 1})})
    code, out, _ = run(fake.config, "history", "--kind", "results", "--limit", "5")
    assert code == 0
    assert out.splitlines()[1].split() == ["12-06", "13:30:00", "results:2026:24", "schedule", "timeout", "-", "300.0s"]
    assert "deadline of 300s passed" in out
    assert fake.seen[0][1] == "/history?kind=results&limit=5"


@pytest.mark.parametrize("seconds, text", [(250, "4m 10s"), (7200, "2h"), (7260, "2h 1m"), (7205, "2h"),
                                           (3 * 86400 + 4 * 3600 + 5, "3d 4h"), (0, "0s"), (59, "59s")])
def test_relative(seconds, text):
    assert client.relative(seconds) == text


@pytest.mark.parametrize("host, url", [("0.0.0.0", "http://127.0.0.1:8081"), ("::", "http://[::1]:8081"),
                                       ("192.0.2.7", "http://192.0.2.7:8081")])
def test_a_wildcard_listen_address_is_reached_on_loopback(host, url):
    assert client.base_url(Config(host=host)) == url


def test_something_other_than_the_daemon_answering_is_exit_3(daemon):
    other = daemon({("GET", "/status"): (404, {"detail": "Not Found"})})  # not the daemon's error shape
    code, _, err = run(other.config, "status")
    assert code == 3 and "something else answered HTTP 404" in err
