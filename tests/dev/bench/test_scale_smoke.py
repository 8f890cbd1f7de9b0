"""The scale benchmark's small default on the local stack, end to end (about 30 s of wall time)."""

from __future__ import annotations

import json

import pytest

from capt.dev.bench import scale
from capt.dev.bench.scale import settings as scale_settings

pytestmark = pytest.mark.e2e


def test_scale_default(tmp_path) -> None:
    assert scale.main(["--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "scale.json").read_text())

    assert data["benchmark"] == "scale" and data["machine"]["cores"] >= 1
    [run] = data["runs"]
    [create] = run["creates"]
    assert create["size"] == create["new_clusters"] == scale_settings.DEFAULT_SIZES[-1]
    assert create["ready"] == create["size"] and create["all_ready"]
    assert 0 < create["time_to_ready_p50"] <= create["time_to_ready_p99"] <= create["wall_seconds"] + 1
    for field in ("worker_cpu_s_per_cluster", "server_cpu_s_per_cluster", "emulation_cpu_s_per_cluster"):
        assert create[field] > 0, field
    assert create["peak_rss_mib"]["worker"] > 0 and create["peak_rss_mib"]["temporal"] > 0
    assert create["timeline"][-1][1] == create["size"]

    [idle] = run["idle"]
    assert idle["size"] == create["size"] and idle["seconds"] >= scale_settings.DEFAULT_IDLE
    assert set(idle["cpu_pct_of_a_core"]) == set(scale_settings.SERVICES)
    assert idle["rss_mib"]["worker"] > 0
    assert "workflow_task_schedule_to_start_ms" in idle and "health_rounds" in idle

    # Every new cluster's workflows ran: tasks and activities were counted from the histories.
    [counted, *_] = run["histories"]
    assert counted["per_cluster"]["workflow_tasks"] > 0 and counted["per_cluster"]["activities"] > 0

    text = scale.section(data)
    assert "Against the anchors" in text and "73 s" in text
