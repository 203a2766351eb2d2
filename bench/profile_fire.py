"""Profile the daemon while it fires (the fire-accuracy setting of ``run.py``) with py-spy, and summarise.

``python bench/profile_fire.py [--seconds 10] [--gil] [--out FILE]``: starts the
stand-in and our daemon as ``run.py`` does (rounds and results every 100 ms,
standings every 250 ms, a race live), records the daemon with ``py-spy record
--format raw`` (collapsed stacks; ``--gil``: only samples of the thread
holding the interpreter lock), then prints the share of samples per thread
and the functions seen in the most samples (inclusive), grouped by module.
Needs py-spy (``pip install py-spy``) and the right to trace the process.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from peers import StandIn, daemon, write_calendar  # noqa: E402


def summarise(path: str, top: int) -> str:
    """:returns: a report of a collapsed-stacks file: samples per thread, then the busiest frames."""
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            samples = int(count)
            frames = stack.split(";")
            total += samples
            threads[frames[0]] += samples
            for frame in set(frames[1:]):
                inclusive[_short(frame)] += samples
            leaf[_short(frames[-1])] += samples
    lines = [f"{total} samples"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in threads.most_common(8)]
    lines.append("busiest frames (inclusive):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines.append("where the samples end (self):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaf.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``send (requests/adapters.py:486)`` -> ``send (requests/adapters.py)``: lines vary, functions do not."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3", "scheduler_api/"):
        if marker in where:
            where = where.split(marker, 1)[1] if marker != "scheduler_api/" else "scheduler_api/" + where.split(
                marker, 1)[1]
            break
    return f"{name} ({where})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500, help="samples per second (default 500)")
    parser.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL")
    parser.add_argument("--out", help="keep the collapsed stacks in this file")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    tmp = tempfile.mkdtemp(prefix="scheduler_api_profile_")
    calendar = os.path.join(tmp, "calendar.json")
    write_calendar(calendar, time.time())
    out = args.out or os.path.join(tmp, "stacks.txt")
    standin = StandIn()
    try:
        with daemon(tmp, standin, calendar, False) as (proc, _url):
            time.sleep(2.0)
            command = [spy, "record", "--format", "raw", "--threads", "--rate", str(args.rate),
                       "--duration", str(args.seconds), "--pid", str(proc.pid), "--output", out, "--nonblocking"]
            if args.gil:
                command.append("--gil")
            subprocess.run(command, check=True, capture_output=True)
    finally:
        standin.close()
    print(summarise(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
