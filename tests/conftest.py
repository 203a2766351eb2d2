"""Shared fixtures: a fake clock, a seeded random source, a mocked fetcher session, and builders."""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any, Callable

import pytest
import requests
import responses

from scheduler_api.config import Config
from scheduler_api.fetcher import FetcherClient
from scheduler_api.scheduler import Scheduler
from scheduler_api.persist import StateFile
from scheduler_api.state import CalendarRecord, State
from scheduler_api.workers import InlineExecutor

DATA = pathlib.Path(__file__).parent / "data"
FETCHER = "http://fetcher.test"


def load_calendar(name: str) -> Any:
    """:returns: a real calendar copied into ``tests/data`` (see its SOURCES.md)."""
    return json.loads((DATA / name).read_text("utf-8"))


def ts(text: str) -> int:
    """:returns: UTC unix seconds of an ISO time such as ``2026-12-06T13:30:00Z``."""
    import datetime

    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


class FakeClock:
    """Both clocks under the test's control; nothing sleeps.

    ``advance`` moves both clocks; ``jump_wall`` moves only wall time (a
    wall-clock step, or a suspend: the monotonic clock stops while wall time
    jumps).
    """

    def __init__(self, now_ts: float, mono: float = 1000.0) -> None:
        self.wall = float(now_ts)
        self.mono = float(mono)

    def monotonic(self) -> float:
        return self.mono

    def now_ts(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def jump_wall(self, seconds: float) -> None:
        self.wall += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-11-30T12:00:00Z (between Qatar and Abu Dhabi 2026)."""
    return FakeClock(ts("2026-11-30T12:00:00Z"))


@pytest.fixture
def rng() -> random.Random:
    """A seeded random source for jitter."""
    return random.Random(1234)


@pytest.fixture
def mocked() -> responses.RequestsMock:
    """requests under ``responses``; unfired mocks fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def config() -> Config:
    """The defaults (README, Configuration), pointed at a fake fetcher URL, with ``STAGGER`` off so that
    tests can pin the instants of one shared grid; the stagger's own tests turn it on."""
    return Config(fetcher_url=FETCHER, stagger_s=0.0)


def make_client(config: Config, clock: FakeClock) -> FetcherClient:
    """:returns: a FetcherClient over a plain session (mocked by ``responses`` in tests)."""
    session = requests.Session()
    session.trust_env = False
    return FetcherClient(config.fetcher_url, config.fetch_paths, config.fetcher_connect_timeout_s,
                         config.fetcher_timeout_s, session, clock)


class Harness:
    """A scheduler driven by hand: inline executor, fake clock, in-memory or file state."""

    def __init__(self, config: Config, clock: FakeClock, rng: random.Random, calendar: Any = None,
                 state_path: str | None = None, **scheduler_kwargs: Any) -> None:
        self.config = config
        self.clock = clock
        self.state = State(StateFile(state_path, clock).load())
        if calendar is not None:
            self.state.set_calendar(CalendarRecord(calendar, "test", int(clock.now_ts())))
        self.client = make_client(config, clock)
        self.scheduler = Scheduler(config, self.state, clock, InlineExecutor(self.client),
                                   lambda: make_client(config, clock), rng, **scheduler_kwargs)

    def start(self) -> "Harness":
        self.scheduler.start()
        return self

    def tick(self) -> float | None:
        return self.scheduler.tick(self.clock.monotonic())

    def run_until(self, end_mono: float) -> None:
        """Tick at every wake-up until ``end_mono`` (monotonic seconds), advancing the clock."""
        while True:
            next_mono = self.tick()
            if next_mono is None or next_mono > end_mono:
                self.clock.advance(end_mono - self.clock.mono)
                self.tick()
                return
            self.clock.advance(max(0.0, next_mono - self.clock.mono))


@pytest.fixture
def harness(config: Config, clock: FakeClock, rng: random.Random) -> Callable[..., Harness]:
    """Build a :class:`Harness`: ``harness(calendar=..., config_=..., calendar_source=..., health=...)``;
    keyword arguments beyond the first three go to the :class:`Scheduler`."""

    def build(calendar: Any = None, config_: Config | None = None, state_path: str | None = None,
              **scheduler_kwargs: Any) -> Harness:
        return Harness(config_ or config, clock, rng, calendar, state_path, **scheduler_kwargs)

    return build


@pytest.fixture(scope="session")
def cal2026():
    """The real 2026 calendar (``tests/data/ergast-2026.json``), parsed once."""
    from scheduler_api.calendar_parse import parse_calendar

    return parse_calendar(load_calendar("ergast-2026.json"))
