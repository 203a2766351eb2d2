"""The Prometheus exposition, parsed with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from scheduler_api.metrics import Readings, SyncMetrics, render

KINDS = ("seasons", "rounds", "results", "standings")


def parse(text: str) -> dict[str, dict]:
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def readings(**changes) -> Readings:
    base = dict(kinds=KINDS, last_syncs={"seasons": 1796563800, "rounds": None, "results": None, "standings": None},
                next_syncs={"seasons": 1796585400, "rounds": 1796563830, "results": None, "standings": None},
                intervals_s={"seasons": 21600.0, "rounds": 30.0, "results": None, "standings": None},
                mode="race_weekend", fetcher_up=True, calendar_rounds=24, version="0.2.0")
    base.update(changes)
    return Readings(**base)


def test_every_line_parses_and_carries_the_values():
    metrics = SyncMetrics()
    metrics.sync_finished("seasons", "manual", "ok", 0.4)
    metrics.sync_finished("seasons", "schedule", "failed", 44.0)
    metrics.count("rounds", "skipped")
    metrics.count("rounds", "coalesced", 3)
    samples = parse(render(readings(), metrics))
    assert samples["scheduler_api_syncs_total"][(("kind", "seasons"), ("outcome", "ok"), ("trigger", "manual"))] == 1
    assert samples["scheduler_api_sync_duration_seconds_count"][(("kind", "seasons"),)] == 2
    assert samples["scheduler_api_sync_duration_seconds_sum"][(("kind", "seasons"),)] == 44.4
    assert samples["scheduler_api_sync_duration_seconds_bucket"][(("kind", "seasons"), ("le", "0.5"))] == 1
    assert samples["scheduler_api_sync_duration_seconds_bucket"][(("kind", "seasons"), ("le", "+Inf"))] == 2
    assert samples["scheduler_api_last_success_timestamp_seconds"] == {(("kind", "seasons"),): 1796563800}
    assert samples["scheduler_api_interval_seconds"] == {(("kind", "seasons"),): 21600.0, (("kind", "rounds"),): 30.0}
    assert samples["scheduler_api_mode"][(("mode", "race_weekend"),)] == 1
    assert samples["scheduler_api_mode"][(("mode", "off_season"),)] == 0
    assert samples["scheduler_api_skipped_total"][(("kind", "rounds"),)] == 1
    assert samples["scheduler_api_coalesced_total"][(("kind", "rounds"),)] == 3
    assert samples["scheduler_api_retries_total"][(("kind", "seasons"),)] == 0
    assert samples["scheduler_api_fetcher_up"] == {(): 1}
    assert samples["scheduler_api_calendar_rounds"] == {(): 24}
    assert samples["scheduler_api_build_info"] == {(("version", "0.2.0"),): 1}


def test_a_paused_kind_has_no_interval_or_next_sync_series():
    samples = parse(render(readings(), SyncMetrics()))
    assert (("kind", "results"),) not in samples["scheduler_api_interval_seconds"]
    assert (("kind", "results"),) not in samples["scheduler_api_next_sync_timestamp_seconds"]


def test_label_values_are_escaped():
    text = render(readings(version='1"\\\n'), SyncMetrics())
    assert parse(text)["scheduler_api_build_info"] == {(("version", '1"\\\n'),): 1}


# -- GET /metrics on the App, checked against /status -----------------------------------------

from test_api import ORIGIN_OK, api  # noqa: E402,F401 - the App harness and its fixture

from conftest import FETCHER  # noqa: E402


def test_metrics_after_one_manual_trigger_agree_with_status(mocked, api):  # noqa: F811
    mocked.post(f"{FETCHER}/fetch/seasons", json=ORIGIN_OK)
    a = api()
    a.post("/trigger/seasons")
    status, body, _ = a.app.handle("GET", "/metrics")
    assert status == 200 and body.content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(body.payload.decode())
    assert samples["scheduler_api_syncs_total"][(("kind", "seasons"), ("outcome", "ok"), ("trigger", "manual"))] == 1
    report = a.get("/status")[1]
    assert samples["scheduler_api_last_success_timestamp_seconds"][(("kind", "seasons"),)] == report["last_syncs"]["seasons"]
    assert samples["scheduler_api_next_sync_timestamp_seconds"][(("kind", "rounds"),)] == report["next_syncs"]["rounds"]
    assert samples["scheduler_api_interval_seconds"][(("kind", "rounds"),)] == 1800.0  # "30m" in /status
    assert (("kind", "results"),) not in samples["scheduler_api_interval_seconds"]  # paused off-season
    assert samples["scheduler_api_mode"][(("mode", report["mode"]["name"]),)] == 1
    assert samples["scheduler_api_calendar_rounds"] == {(): report["calendar"]["rounds"]}
    assert samples["scheduler_api_build_info"] == {(("version", "0.2.0"),): 1}


def test_metrics_takes_no_parameters(api):  # noqa: F811
    status, body, _ = api().app.handle("GET", "/metrics?x=1")
    assert status == 400
