"""MachineDeployment remediation.maxInFlight (issue 18): CAPI keeps it on the MachineDeployment
(v1beta1 spec.strategy.remediation, v1beta2 spec.remediation), not on the health check."""

from __future__ import annotations

import pytest
import yaml

from capt.spec.errors import ManifestError
from capt.spec.loader import load_manifest
from tests.spec.test_spec_loader import CLUSTERCTL_VARS
from tests.support.paths import CAPA_TEMPLATE


def with_md(path: str, value) -> str:
    docs = [d for d in yaml.safe_load_all(CAPA_TEMPLATE.read_text()) if d]
    for d in docs:
        if d["kind"] == "MachineDeployment":
            node = d["spec"]
            keys = path.split(".")
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
    return yaml.safe_dump_all(docs)


@pytest.mark.parametrize("value", [1, "50%"])
def test_max_in_flight_is_read(value) -> None:
    spec = load_manifest(with_md("strategy.remediation.maxInFlight", value), CLUSTERCTL_VARS, env={}).spec
    assert [d.remediation_max_in_flight for d in spec.machine_deployments] == [value]


@pytest.mark.parametrize("value", ["lots", -1, "150x"])
def test_a_bad_max_in_flight_names_the_field(value) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(with_md("strategy.remediation.maxInFlight", value), CLUSTERCTL_VARS, env={})
    assert "spec.strategy.remediation.maxInFlight" in str(info.value)


@pytest.mark.parametrize(
    ("surge", "unavailable", "refused"),
    [
        (0, 0, True),  # CAPI's webhook: both the integer 0
        ("0%", "0%", False),  # percentages are not refused; the fenceposts allow 1 unavailable
        (0, "0%", False),
        ("10%", 0, False),
    ],
)
def test_zero_zero_strategy_is_refused_only_as_capi_refuses_it(surge, unavailable, refused) -> None:
    text = with_md("strategy.rollingUpdate", {"maxSurge": surge, "maxUnavailable": unavailable})
    if refused:
        with pytest.raises(ManifestError, match="must not both be 0"):
            load_manifest(text, CLUSTERCTL_VARS, env={})
    else:
        load_manifest(text, CLUSTERCTL_VARS, env={})
