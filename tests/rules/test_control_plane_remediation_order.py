"""KCP's choice of the control-plane machine to remediate first (CAPI's pickMachineToBeRemediated,
controlplane/kubeadm/internal/controllers/remediation.go): one rule per case, as CAPI's own
TestPickMachineToBeRemediated table does."""

from __future__ import annotations

import pytest

from capt.rules.control_plane_remediation import (
    DEFAULT_MIN_HEALTHY_PERIOD_SECONDS,
    RemediationRecord,
    check_control_plane_remediation,
    order_machines_to_remediate,
    pick_machine_to_remediate,
)
from capt.rules.machines import MachineView
from capt.spec.models import ControlPlaneSpec


def cp(
    name: str,
    created: float,
    *,
    healthy: bool = False,
    node: bool = True,
    etcd: bool = True,
    components: bool = True,
    deleting: bool = False,
) -> MachineView:
    return MachineView(
        name=name,
        revision="r1",
        created=created,
        node_name=f"node-{name}" if node else None,
        healthy=healthy,
        etcd_member_healthy=etcd,
        components_healthy=components,
        deleting=deleting,
    )


@pytest.mark.parametrize(
    ("case", "machines", "marked", "expected"),
    [
        ("no unhealthy machine: nothing", [cp("a", 1, healthy=True)], (), None),
        ("one unhealthy machine: that one", [cp("a", 1, healthy=True), cp("b", 2)], (), "b"),
        (
            "remediate-machine annotation first, over an older one",
            [cp("old", 1), cp("new", 9)],
            ("new",),
            "new",
        ),
        (
            "the annotation beats a machine without a node",
            [cp("nonode", 1, node=False), cp("marked", 9)],
            ("marked",),
            "marked",
        ),
        (
            "the annotation makes a machine a candidate even when it looks healthy",
            [cp("bad", 1), cp("marked", 9, healthy=True)],
            ("marked",),
            "marked",
        ),
        (
            "a machine without a node before an older one with a node",
            [cp("old", 1), cp("nonode", 9, node=False)],
            (),
            "nonode",
        ),
        ("an etcd problem before an older machine", [cp("old", 1), cp("etcd", 9, etcd=False)], (), "etcd"),
        (
            "no node beats an etcd problem",
            [cp("etcd", 1, etcd=False), cp("nonode", 9, node=False)],
            (),
            "nonode",
        ),
        (
            "a component (API server) problem before an older machine",
            [cp("old", 1), cp("api", 9, components=False)],
            (),
            "api",
        ),
        (
            "an etcd problem beats a component problem",
            [cp("api", 1, components=False), cp("etcd", 9, etcd=False)],
            (),
            "etcd",
        ),
        ("otherwise the oldest", [cp("b", 5), cp("a", 3), cp("c", 4)], (), "a"),
        ("same age: by name", [cp("b", 5), cp("a", 5)], (), "a"),
        (
            "two without a node: the oldest of them",
            [cp("n2", 7, node=False), cp("n1", 6, node=False), cp("old", 1)],
            (),
            "n1",
        ),
        (
            "a machine being deleted is still ordered (the remediation check then refuses it)",
            [cp("old", 1, deleting=True), cp("new", 9)],
            (),
            "old",
        ),
    ],
)
def test_pick_machine_to_remediate_order(case, machines, marked, expected) -> None:
    picked = pick_machine_to_remediate(machines, marked)
    assert (picked.name if picked else None) == expected, case


def test_external_etcd_skips_the_etcd_rule() -> None:
    # CAPI checks etcd health only when KCP manages etcd (stacked); capt always does, by default.
    machines = [cp("old", 1), cp("etcd", 9, etcd=False)]
    assert pick_machine_to_remediate(machines, etcd_managed=False).name == "old"


def test_order_lists_every_candidate_in_remediation_order() -> None:
    machines = [
        cp("ok", 0, healthy=True),
        cp("oldest", 1),
        cp("api", 2, components=False),
        cp("etcd", 3, etcd=False),
        cp("nonode", 4, node=False),
        cp("marked", 5),
    ]
    assert [m.name for m in order_machines_to_remediate(machines, ("marked",))] == [
        "marked",
        "nonode",
        "etcd",
        "api",
        "oldest",
    ]


def _three_healthy_but(target: str) -> list[MachineView]:
    return [cp(n, i, healthy=n != target) for i, n in enumerate(("cp0", "cp1", "cp2"))]


@pytest.mark.parametrize(
    ("case", "min_healthy", "now", "retry_count"),
    [
        # The target replaced cp0 at t=10 (retry 1 of that remediation) and fails again.
        ("default 1h: within it, a retry", None, 10 + 3599, 2),
        ("default 1h: exactly 1h later, a new sequence (CAPI: After, strict)", None, 10 + 3600, 0),
        ("10 min from the spec: within it, a retry", 600, 10 + 599, 2),
        ("10 min from the spec: exactly then, a new sequence", 600, 10 + 600, 0),
        ("zero: never a retry", 0, 11, 0),
    ],
)
def test_min_healthy_period_comes_from_the_spec(case, min_healthy, now, retry_count) -> None:
    last = RemediationRecord(machine="cp0", timestamp=10, retry_count=1)
    kw = {} if min_healthy is None else {"min_healthy_period_seconds": min_healthy}
    d = check_control_plane_remediation(
        _three_healthy_but("cp1"), "cp1", initialized=True, now=now, last_remediation=last, **kw
    )
    assert d.allowed and d.retry_count == retry_count, case


def test_min_healthy_period_default_is_the_spec_models() -> None:
    assert (
        DEFAULT_MIN_HEALTHY_PERIOD_SECONDS
        == ControlPlaneSpec.model_fields["remediation_min_healthy_period_seconds"].default
        == 3600
    )
