"""Issue 18's MachineHealthCheck / KCP remediation fields: how the loader reads them, per apiVersion."""

from __future__ import annotations

import pytest

from capt.spec.loader import ManifestError, load_manifest
from tests.spec.test_spec_loader import by_kind, kcp_to_v1beta2, mutate


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
            lambda docs: kcp_to_v1beta2(docs)["spec"].update(remediation={"minHealthyPeriodSeconds": 600}),
            600,
        ),
        (
            "zero is allowed (every failure is a new remediation sequence)",
            lambda docs: kcp_to_v1beta2(docs)["spec"].update(remediation={"minHealthyPeriodSeconds": 0}),
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
            lambda docs: kcp_to_v1beta2(docs)["spec"].update(remediation={"minHealthyPeriodSeconds": -1}),
            "spec.remediation.minHealthyPeriodSeconds",
        ),
    ],
)
def test_kcp_min_healthy_period_bad_values(edit, fragment) -> None:
    with pytest.raises(ManifestError) as err:
        load_manifest(mutate(edit), env={})
    assert fragment in str(err.value)


def _mhc_v1beta2(docs: list[dict], **spec) -> dict:
    mhc = by_kind(docs, "MachineHealthCheck")
    mhc["apiVersion"] = "cluster.x-k8s.io/v1beta2"
    mhc["spec"] = {
        "clusterName": "demo",
        "selector": {"matchLabels": {"cluster.x-k8s.io/deployment-name": "demo-md"}},
        **spec,
    }
    return mhc


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        ("none by default", lambda docs: None, []),
        (
            "v1beta1 spec.unhealthyMachineConditions (timeout a duration)",
            lambda docs: by_kind(docs, "MachineHealthCheck")["spec"].update(
                unhealthyMachineConditions=[{"type": "UpToDate", "status": "False", "timeout": "10m"}]
            ),
            [("UpToDate", "False", 600)],
        ),
        (
            "v1beta2 spec.checks.unhealthyMachineConditions (timeoutSeconds)",
            lambda docs: _mhc_v1beta2(
                docs,
                checks={
                    "unhealthyMachineConditions": [
                        {"type": "InfrastructureReady", "status": "False", "timeoutSeconds": 300},
                        {"type": "NodeReady", "status": "Unknown", "timeoutSeconds": 0},
                    ]
                },
            ),
            [("InfrastructureReady", "False", 300), ("NodeReady", "Unknown", 0)],
        ),
    ],
)
def test_unhealthy_machine_conditions_are_read(case, edit, expected) -> None:
    hc = load_manifest(mutate(edit), env={}).spec.health_checks[0]
    assert [(c.type, c.status, c.timeout_seconds) for c in hc.unhealthy_machine_conditions] == expected, case


@pytest.mark.parametrize(
    ("case", "condition", "fragment"),
    [
        (
            "CAPI forbids the health check's own conditions",
            {"type": "Ready", "status": "False", "timeoutSeconds": 1},
            "must not be one of",
        ),
        (
            "status is True, False or Unknown",
            {"type": "NodeReady", "status": "false", "timeoutSeconds": 1},
            "must be one of True",
        ),
        (
            "timeoutSeconds is a non-negative integer",
            {"type": "NodeReady", "status": "False", "timeoutSeconds": -5},
            "non-negative",
        ),
        ("type and status are required", {"type": "NodeReady"}, "needs type, status"),
    ],
)
def test_unhealthy_machine_conditions_bad_values(case, condition, fragment) -> None:
    edit = lambda docs: _mhc_v1beta2(docs, checks={"unhealthyMachineConditions": [condition]})  # noqa: E731
    with pytest.raises(ManifestError) as err:
        load_manifest(mutate(edit), env={})
    assert "spec.checks.unhealthyMachineConditions[0]" in str(err.value) and fragment in str(err.value), case


def test_a_machine_condition_capt_does_not_report_is_a_warning() -> None:
    def edit(docs):
        _mhc_v1beta2(
            docs,
            checks={
                "unhealthyMachineConditions": [
                    {"type": "EtcdMemberHealthy", "status": "False", "timeoutSeconds": 60}
                ]
            },
        )

    result = load_manifest(mutate(edit), env={})
    assert any("EtcdMemberHealthy=False never matches" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("case", "edit", "expected"),
    [
        ("none by default: capt replaces the machine", lambda docs: None, None),
        (
            "v1beta1 spec.remediationTemplate (an ObjectReference)",
            lambda docs: by_kind(docs, "MachineHealthCheck")["spec"].update(
                remediationTemplate={
                    "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
                    "kind": "Metal3RemediationTemplate",
                    "name": "reboot",
                    "namespace": "default",
                }
            ),
            ("infrastructure.cluster.x-k8s.io/v1beta1", "Metal3RemediationTemplate", "reboot", "default"),
        ),
        (
            "v1beta2 spec.remediation.templateRef",
            lambda docs: _mhc_v1beta2(
                docs,
                remediation={
                    "templateRef": {
                        "apiVersion": "remediation.example.com/v1",
                        "kind": "TicketTemplate",
                        "name": "ops",
                    }
                },
            ),
            ("remediation.example.com/v1", "TicketTemplate", "ops", None),
        ),
    ],
)
def test_remediation_template_is_read(case, edit, expected) -> None:
    t = load_manifest(mutate(edit), env={}).spec.health_checks[0].remediation_template
    assert (None if t is None else (t.api_version, t.kind, t.name, t.namespace)) == expected, case


def test_remediation_template_needs_kind_name_and_api_version() -> None:
    def edit(docs):
        by_kind(docs, "MachineHealthCheck")["spec"]["remediationTemplate"] = {"kind": "X", "name": "r"}

    with pytest.raises(ManifestError) as err:
        load_manifest(mutate(edit), env={})
    assert "spec.remediationTemplate: needs apiVersion" in str(err.value)
