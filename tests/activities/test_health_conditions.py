"""unhealthyConditions (node) and unhealthyMachineConditions (machine): one behaviour per case, as
CAPI's TestHealthCheckTargets / TestNeedsRemediation tables (machinehealthcheck_targets_test.go)."""

from __future__ import annotations

import pytest

from capt.activities.workload.objects import NodeCondition, NodeInfo
from capt.spec.models import HealthCheckSpec, UnhealthyCondition
from capt.workflows.health import detection as detect
from tests.activities.test_health_detection import at, instance, machine, obs


def node_with(*conds: tuple[str, str, float | None], name: str = "m") -> NodeInfo:
    """A node of machine `name` with (type, status, lastTransitionTime offset) conditions."""
    conditions = tuple(
        NodeCondition(type=t, status=s, since=None if since is None else at(since)) for t, s, since in conds
    )
    ready = next((s for t, s, _ in conds if t == "Ready"), "True")
    return NodeInfo(
        name=f"node-{name}",
        instance_id=f"i-{name}",
        ready=ready == "True",
        ready_status=ready,
        conditions=conditions,
    )


def check(
    *conds: tuple[str, str, int], machine_conds: tuple[tuple[str, str, int], ...] = ()
) -> HealthCheckSpec:
    return HealthCheckSpec(
        name="c",
        machine_deployments=("md-0",),
        unhealthy_conditions=tuple(
            UnhealthyCondition(type=t, status=s, timeout_seconds=n) for t, s, n in conds
        ),
        unhealthy_machine_conditions=tuple(
            UnhealthyCondition(type=t, status=s, timeout_seconds=n) for t, s, n in machine_conds
        ),
    )


READY_FALSE_5M = check(("Ready", "False", 300))


@pytest.mark.parametrize(
    ("case", "chk", "n", "now", "first_seen", "state"),
    [
        (
            "condition held less than its timeout",
            READY_FALSE_5M,
            node_with(("Ready", "False", 0)),
            299,
            {},
            "healthy",
        ),
        (
            "held exactly the timeout: not yet (CAPI: transition + timeout must be before now)",
            READY_FALSE_5M,
            node_with(("Ready", "False", 0)),
            300,
            {},
            "healthy",
        ),
        (
            "held longer than its timeout",
            READY_FALSE_5M,
            node_with(("Ready", "False", 0)),
            301,
            {},
            "unhealthy",
        ),
        (
            "the clock is lastTransitionTime, not when the health check first saw it",
            READY_FALSE_5M,
            node_with(("Ready", "False", 0)),
            1000,
            {"m|Ready|False": at(999).timestamp()},
            "unhealthy",
        ),
        (
            "a recent transition restarts the clock even if the status was seen long ago",
            READY_FALSE_5M,
            node_with(("Ready", "False", 900)),
            1000,
            {"m|Ready|False": at(0).timestamp()},
            "healthy",
        ),
        (
            "another status of the type does not match",
            READY_FALSE_5M,
            node_with(("Ready", "Unknown", 0)),
            9999,
            {},
            "healthy",
        ),
        (
            "a type the node does not report does not match",
            check(("DiskPressure", "True", 0)),
            node_with(("Ready", "True", 0)),
            9999,
            {},
            "healthy",
        ),
        (
            "timeout 0: unhealthy as soon as any time has passed since the transition",
            check(("MemoryPressure", "True", 0)),
            node_with(("Ready", "True", 0), ("MemoryPressure", "True", 10)),
            11,
            {},
            "unhealthy",
        ),
        (
            "conditions are OR-ed: one matching is enough",
            check(("Ready", "Unknown", 300), ("DiskPressure", "True", 60)),
            node_with(("Ready", "True", 0), ("DiskPressure", "True", 0)),
            61,
            {},
            "unhealthy",
        ),
        (
            "no lastTransitionTime and first sighting: the clock starts now",
            READY_FALSE_5M,
            node_with(("Ready", "False", None)),
            9999,
            {},
            "healthy",
        ),
        (
            "no lastTransitionTime: counted from the first sighting",
            READY_FALSE_5M,
            node_with(("Ready", "False", None)),
            1000,
            {"m|Ready|False": at(699).timestamp()},
            "unhealthy",
        ),
    ],
)
def test_unhealthy_node_conditions(case, chk, n, now, first_seen, state) -> None:
    v = detect.assess(machine(), chk, obs(now, [instance()], [n]), condition_first_seen=first_seen)
    assert v.state == state, (case, v.reasons)
    if state == "unhealthy":
        assert v.reasons[0].startswith("UnhealthyNodeCondition")


def test_node_conditions_are_not_judged_without_the_node_list() -> None:
    # API server unreachable: the node's conditions are unknown, nothing is concluded from them.
    v = detect.assess(machine(), READY_FALSE_5M, obs(9999, [instance()], None))
    assert v.state == "healthy"


# --- unhealthyMachineConditions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "m", "n", "expected"),
    [
        (
            "running machine with a Ready node",
            machine(up_to_date=True),
            node_with(("Ready", "True", 0)),
            {
                "BootstrapConfigReady": "True",
                "InfrastructureReady": "True",
                "NodeReady": "True",
                "UpToDate": "True",
                "Deleting": "False",
            },
        ),
        (
            "NodeReady mirrors the node's Ready status (Unknown: kubelet stopped posting)",
            machine(),
            node_with(("Ready", "Unknown", 0)),
            {
                "BootstrapConfigReady": "True",
                "InfrastructureReady": "True",
                "NodeReady": "Unknown",
                "Deleting": "False",
            },
        ),
        (
            "pending: nothing ready yet; UpToDate absent when the owner did not say",
            machine(phase="Pending", instance_id=None, node_name=None, node_ready=False),
            None,
            {
                "BootstrapConfigReady": "False",
                "InfrastructureReady": "False",
                "NodeReady": "False",
                "Deleting": "False",
            },
        ),
        (
            "provisioning: bootstrap ready, instance not running yet",
            machine(phase="Provisioning", node_name=None, node_ready=False, up_to_date=False),
            None,
            {
                "BootstrapConfigReady": "True",
                "InfrastructureReady": "False",
                "NodeReady": "False",
                "UpToDate": "False",
                "Deleting": "False",
            },
        ),
        (
            "being deleted",
            machine(phase="Deleting", deleting=True),
            None,
            {
                "BootstrapConfigReady": "True",
                "InfrastructureReady": "True",
                "NodeReady": "True",
                "Deleting": "True",
            },
        ),
    ],
)
def test_machine_conditions_from_the_machine_status(case, m, n, expected) -> None:
    assert {c.type: c.status for c in detect.machine_conditions(m, n)} == expected, case


NOT_UP_TO_DATE_10M = check(machine_conds=(("UpToDate", "False", 600),))
KEY = detect.machine_condition_key("m", "UpToDate", "False")


@pytest.mark.parametrize(
    ("case", "chk", "m", "now", "first_seen", "state"),
    [
        (
            "first sighting: the clock starts now",
            NOT_UP_TO_DATE_10M,
            machine(up_to_date=False),
            5000,
            {},
            "healthy",
        ),
        (
            "held less than the timeout",
            NOT_UP_TO_DATE_10M,
            machine(up_to_date=False),
            600,
            {KEY: at(1).timestamp()},
            "healthy",
        ),
        (
            "held exactly the timeout: not yet",
            NOT_UP_TO_DATE_10M,
            machine(up_to_date=False),
            600,
            {KEY: at(0).timestamp()},
            "healthy",
        ),
        (
            "held longer than the timeout",
            NOT_UP_TO_DATE_10M,
            machine(up_to_date=False),
            601,
            {KEY: at(0).timestamp()},
            "unhealthy",
        ),
        (
            "another status does not match",
            NOT_UP_TO_DATE_10M,
            machine(up_to_date=True),
            9999,
            {KEY: at(0).timestamp()},
            "healthy",
        ),
        (
            "a condition the machine does not report never matches",
            check(machine_conds=(("EtcdMemberHealthy", "False", 0),)),
            machine(),
            9999,
            {detect.machine_condition_key("m", "EtcdMemberHealthy", "False"): at(0).timestamp()},
            "healthy",
        ),
        (
            "a worker is not judged before the control plane is initialized",
            NOT_UP_TO_DATE_10M,
            machine(up_to_date=False),
            601,
            {KEY: at(0).timestamp()},
            "starting",
        ),
    ],
)
def test_unhealthy_machine_conditions(case, chk, m, now, first_seen, state) -> None:
    observation = obs(now, [instance()], [node_with(("Ready", "True", 0))])
    if "initialized" in case:
        observation = observation.model_copy(update={"control_plane_initialized": False})
    v = detect.assess(m, chk, observation, condition_first_seen=first_seen)
    assert v.state == state, (case, v.reasons)
    if state == "unhealthy":
        assert v.reasons[0].startswith("UnhealthyMachine:") and "UpToDate=False" in v.reasons[0]


def test_machine_conditions_are_remembered_from_their_first_sighting() -> None:
    m = machine(up_to_date=False)
    n = node_with(("Ready", "True", 0))
    first = detect.observed_conditions([m], obs(100, [instance()], [n]), [NOT_UP_TO_DATE_10M], {})
    assert first == {KEY: at(100).timestamp()}
    later = detect.observed_conditions([m], obs(700, [instance()], [n]), [NOT_UP_TO_DATE_10M], first)
    assert later == first
    assert detect.assess(
        m, NOT_UP_TO_DATE_10M, obs(701, [instance()], [n]), condition_first_seen=later
    ).unhealthy
    # The API server being unreachable does not stop machine conditions from being tracked.
    kept = detect.observed_conditions([m], obs(800, [instance()], None), [NOT_UP_TO_DATE_10M], later)
    assert kept == first
    # No longer holding: forgotten.
    back = machine(up_to_date=True)
    assert detect.observed_conditions([back], obs(900, [instance()], [n]), [NOT_UP_TO_DATE_10M], later) == {}
