"""The scheduler peer: APScheduler 3.x ``BackgroundScheduler``, one ``IntervalTrigger`` per kind.

Posts to the fetcher stand-in with ``requests``, one ``requests.Session``
per job (each job's calls reuse one keep-alive connection, as each of our
workers does; a job never runs twice at once, so its session is never
shared between threads), coalescing and one instance per job, the
fixed-rate grid APScheduler's interval trigger computes from its start date.
A peer calling ``requests.post`` without a session would open a connection
per call and flatter us. The process also serves the bare HTTP server on ``PORT``, so a
load test hammers a scheduler process of the same shape as ours.

``python bench/aps_peer.py FETCHER_URL PORT SEASON ROUND``; prints ``ready``; SIGTERM stops it.
"""

from __future__ import annotations

import signal
import sys
import threading

import requests
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bare_server import serve_in_thread


def main() -> int:
    fetcher_url, port, season, round_ = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

    def post(session: requests.Session, path: str) -> None:
        try:
            session.post(fetcher_url + path, timeout=(3, 300)).close()
        except requests.RequestException:
            pass

    server = serve_in_thread(port)
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(6)},
                                    job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    jobs = (
        ("rounds", 0.1, f"/fetch/rounds?season={season}"),
        ("results", 0.1, f"/fetch/results?season={season}&round={round_}"),
        ("standings", 0.25, f"/fetch/standings?season={season}"),
    )
    for name, interval_s, path in jobs:
        session = requests.Session()
        session.trust_env = False
        scheduler.add_job(post, IntervalTrigger(seconds=interval_s), args=(session, path), id=name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler.start()
    print("ready", flush=True)
    stop.wait()
    scheduler.shutdown(wait=True)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
