"""Issue 18's MachineHealthCheck / KCP remediation fields: how the loader reads them, per apiVersion."""

from __future__ import annotations

import pytest

from spec.loader import ManifestError, load_manifest
from tests.spec.test_spec_loader import by_kind, mutate


def _kcp_v1beta2(docs: list[dict]) -> dict:
    kcp = by_kind(docs, "KubeadmControlPlane")
    kcp["apiVersion"] = "controlplane.cluster.x-k8s.io/v1beta2"
    kcp["spec"]["machineTemplate"] = {
        "spec": {
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "AWSMachineTemplate",
                "name": "demo-cp",
            }
        }
    }
    return kcp


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        ("default: CAPI's DefaultMinHealthyPeriod, 1h", lambda docs: None, 3600),
        (
            "v1beta1 spec.remediationStrategy.minHealthyPeriod (a duration)",
            lambda docs: by_kind(docs, "KubeadmControlPlane")["spec"].update(
                remediationStrategy={"minHealthyPeriod": "2h30m"}
            ),
            9000,
        ),
        (
            "v1beta2 spec.remediation.minHealthyPeriodSeconds",
            lambda docs: _kcp_v1beta2(docs)["spec"].update(remediation={"minHealthyPeriodSeconds": 600}),
            600,
        ),
        (
            "zero is allowed (every failure is a new remediation sequence)",
            lambda docs: _kcp_v1beta2(docs)["spec"].update(remediation={"minHealthyPeriodSeconds": 0}),
            0,
        ),
    ],
)
def test_kcp_min_healthy_period(case, edit, expected) -> None:
    spec = load_manifest(mutate(edit), env={}).spec
    assert spec.control_plane.remediation_min_healthy_period_seconds == expected, case


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda docs: by_kind(docs, "KubeadmControlPlane")["spec"].update(
                remediationStrategy={"minHealthyPeriod": "an hour"}
            ),
            "spec.remediationStrategy.minHealthyPeriod",
        ),
        (
            lambda docs: _kcp_v1beta2(docs)["spec"].update(remediation={"minHealthyPeriodSeconds": -1}),
            "spec.remediation.minHealthyPeriodSeconds",
        ),
    ],
)
def test_kcp_min_healthy_period_bad_values(edit, fragment) -> None:
    with pytest.raises(ManifestError) as err:
        load_manifest(mutate(edit), env={})
    assert fragment in str(err.value)
