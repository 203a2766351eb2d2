"""Run the recording fetcher stand-in in its own process, so its timing never shares a GIL with what is measured.

Protocol on stdin/stdout, one line each:
  start-up prints ``url http://127.0.0.1:PORT``;
  ``dump`` prints one JSON list of ``[method, path, arrived_mono]`` for the /fetch calls so far, then clears them;
  ``quit`` (or end of input) stops the stand-in and exits.
Arrival times are ``time.monotonic()``: CLOCK_MONOTONIC is system-wide, so
they compare with the parent's clock.
"""

from __future__ import annotations

import json
import logging
import sys

from scheduler_api.standin import FetcherStandIn


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    standin = FetcherStandIn(calendar={"MRData": {"RaceTable": {"season": "2000", "Races": []}}}).start()
    print("url", standin.url, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "dump":
            calls = standin.fetch_calls()
            with standin._lock:  # the bench owns this instance: drop what was read
                standin.calls.clear()
            print(json.dumps([[c.method, c.path, c.arrived_mono] for c in calls]), flush=True)
        elif command == "quit":
            break
    standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
