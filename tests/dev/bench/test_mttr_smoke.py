"""The MTTR benchmark's small default (1 and 10 clusters, polling and events), end to end (~20 s)."""

from __future__ import annotations

import json

import pytest

from capt.dev.bench import mttr, results

# A benchmark run of ~20 s: with the end-to-end tests (`make e2e`), keeping `make test` under 5 min.
pytestmark = pytest.mark.e2e

SLACK = 5.0  # activities run between a timer firing and the verdict


def test_mttr_detects_and_repairs_every_cluster(tmp_path, monkeypatch):
    assert mttr.main(["--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "mttr.json").read_text())
    runs = {(r["clusters"], r["mode"]): r for r in data["runs"]}
    assert set(runs) == {(1, "polling"), (1, "events"), (10, "polling"), (10, "events")}
    for (clusters, mode), r in runs.items():
        assert r["detected"] == r["repaired"] == clusters, r
        # Polling: seen at the next check (≤ one interval); events: at the next ≤ 20 s queue poll.
        limit = data["interval_seconds"] if mode == "polling" else data["event_poll_seconds"]
        assert 0 <= r["detection_p50"] <= r["detection_p99"] <= limit + SLACK, r
        # A replacement boots and joins after the detection: never sooner than the bound.
        assert min(r["repair_seconds"]) >= data["replacement_bound_seconds"]
        assert r["repair_p50"] >= r["detection_p50"] + data["replacement_bound_seconds"] - SLACK
    assert runs[(10, "events")]["queue_polls"] > 0 and runs[(10, "polling")]["queue_polls"] == 0

    text = mttr.section(data)
    assert 'id="mttr"' in text
    monkeypatch.setattr(results, "IMAGES", tmp_path)
    [png] = mttr.plots(data)
    assert png.exists()
