"""The critical-path benchmark's small default, end to end (a few seconds of wall time)."""

from __future__ import annotations

import json

from capt.dev.bench import critical_path


def test_critical_path_measures_a_create_against_its_lower_bound(tmp_path):
    assert critical_path.main(["--lb", "classic", "--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "critical_path.json").read_text())
    [run] = data["runs"]
    assert data["machine"]["cores"] >= 1
    assert (run["control_plane"], run["workers"]) == (3, 3)
    # A lower bound: the measured create can only be slower (else the model is not applied).
    assert run["create_seconds"] >= run["lower_bound_seconds"] == 273
    assert run["create_seconds"] < run["capa_order_seconds"]
    # The NAT gateways were modelled: the network took at least their 120 s.
    assert run["network_ready_seconds"] >= 120
    names = [name for name, _, _ in run["timeline"]["machines"]]
    assert sum(n.startswith("control-plane") for n in names) == 3
