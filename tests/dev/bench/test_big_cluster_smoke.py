"""The big-cluster benchmark's small default (3 + 20, two rollouts), end to end (~20 s of wall time)."""

from __future__ import annotations

import json

import pytest

from capt.dev.bench import big_cluster, results

# A benchmark run of ~20 s: with the end-to-end tests (`make e2e`), keeping `make test` under 5 min.
pytestmark = pytest.mark.e2e


def test_big_cluster_create_and_rollouts_against_their_bounds(tmp_path, monkeypatch):
    assert big_cluster.main(["--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "big_cluster.json").read_text())
    [run] = data["runs"]
    assert (run["control_plane"], run["workers"]) == (3, 20)

    # The bounds are lower bounds: measured times can only be longer (else the model is not applied).
    assert run["create"]["ratio"] >= 1.0
    assert run["create"]["control_plane_initialized_seconds"] < run["create"]["workers_complete_seconds"]
    assert [r["max_surge"] for r in run["rollouts"]] == [1, "10%"]
    for rollout in run["rollouts"]:
        assert rollout["ratio"] >= 1.0, rollout
        assert rollout["machines_launched"] == 20  # every worker replaced, exactly once
    one, ten = run["rollouts"]
    assert ten["surge_machines"] == 2 and ten["seconds"] < one["seconds"]

    histories = run["histories"]
    assert histories["MachineWorkflow"]["workflows"] == 3 + 3 * 20  # 3 CP + 20 created + 2 × 20 rolled
    assert histories["MachineDeploymentWorkflow"]["workflow_tasks"] > 0
    assert run["owner_signals"]["count"]["deployment_changed"] > 0

    text = big_cluster.section(data)
    assert 'id="big-cluster"' in text and "#8814" in text
    monkeypatch.setattr(results, "IMAGES", tmp_path)
    [png] = big_cluster.plots(data)
    assert png.exists() and png.stat().st_size > 0
