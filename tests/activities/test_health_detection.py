"""MachineHealthCheck detection (capt/workflows/health/detection.py) and settings validation: table tests."""

from __future__ import annotations

import datetime as dt

import pytest

from capt.activities.aws.instances import InstanceInfo
from capt.activities.owners import WatchedMachine
from capt.activities.workload.objects import NodeCondition, NodeInfo
from capt.spec.models import HealthCheckSpec, UnhealthyCondition
from capt.workflows.health import detection as detect
from capt.workflows.health.models import HealthSettings, settings_error

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def machine(name: str = "m", **kw) -> WatchedMachine:
    base = dict(
        name=name,
        owner="machine-deployment",
        owner_name="md-0",
        role="worker",
        phase="Running",
        instance_id=f"i-{name}",
        node_name=f"node-{name}",
        node_ready=True,
    )
    return WatchedMachine(**{**base, **kw})


def node(name: str = "m", ready: str = "True", since: dt.datetime | None = T0, **conditions) -> NodeInfo:
    conds = [NodeCondition(type="Ready", status=ready, since=since)]
    conds += [NodeCondition(type=t, status=s, since=since) for t, s in conditions.items()]
    return NodeInfo(
        name=f"node-{name}",
        instance_id=f"i-{name}",
        ready=ready == "True",
        ready_status=ready,
        conditions=tuple(conds),
    )


def instance(name: str = "m", state: str = "running", launched: dt.datetime = T0) -> InstanceInfo:
    return InstanceInfo(instance_id=f"i-{name}", state=state, machine_name=name, launch_time=launched)


def obs(now: float, instances=(), nodes=(), **kw) -> detect.Observation:
    return detect.Observation(
        now=at(now),
        instances=None if instances is None else {i.instance_id: i for i in instances},
        nodes=None if nodes is None else tuple(nodes),
        **kw,
    )


CHECK = HealthCheckSpec(
    name="workers",
    machine_deployments=("md-0",),
    node_startup_timeout_seconds=600,
    unhealthy_conditions=(
        UnhealthyCondition(type="Ready", status="False", timeout_seconds=300),
        UnhealthyCondition(type="Ready", status="Unknown", timeout_seconds=300),
    ),
)


@pytest.mark.parametrize(
    ("m", "observation", "state", "reason"),
    [
        # healthy: instance running, node Ready
        (machine(), obs(1000, [instance()], [node()]), "healthy", None),
        # being deleted: neither healthy nor a candidate
        (machine(phase="Deleting", deleting=True), obs(1000, [], []), "deleting", None),
        (
            machine(phase="Failed", message="instance i-m is terminated while provisioning"),
            obs(10, [instance()], [node()]),
            "unhealthy",
            "MachineFailed",
        ),
        # instance checks
        (machine(), obs(1000, [], [node()]), "unhealthy", "InstanceGone: instance i-m not found"),
        (machine(), obs(1000, [instance(state="terminated")], [node()]), "unhealthy", "is terminated"),
        (machine(), obs(1000, [instance(state="shutting-down")], [node()]), "unhealthy", "is shutting-down"),
        (machine(), obs(1000, [instance(state="stopped")], [node()]), "unhealthy", "is stopped"),
        (machine(), obs(1000, [instance(state="pending")], [node()]), "healthy", None),
        # DescribeInstances failed this interval: no verdict on instances
        (machine(), obs(1000, None, [node()]), "healthy", None),
        # node gone (its node was known), only when the API could be listed
        (machine(), obs(1000, [instance()], []), "unhealthy", "NodeNotFound: node node-m is gone"),
        (machine(), obs(1000, [instance()], None), "healthy", None),
        # matched by node name when the providerID is not set
        (
            machine(),
            obs(1000, [instance()], [NodeInfo(name="node-m", ready=True, ready_status="True")]),
            "healthy",
            None,
        ),
    ],
)
def test_machine_instance_and_node_checks(m, observation, state, reason) -> None:
    v = detect.assess(m, CHECK, observation)
    assert v.state == state
    if reason is None:
        assert v.reasons == ()
    else:
        assert any(reason in r for r in v.reasons), v.reasons


def booting(created: float | None = 0, **kw) -> WatchedMachine:
    base = dict(phase="Provisioned", node_name=None, node_ready=False)
    return machine(**{**base, "created_at": None if created is None else at(created), **kw})


@pytest.mark.parametrize(
    ("m", "observation", "first_seen", "state"),
    [
        (booting(0), obs(600, [instance()], []), None, "starting"),  # exactly the timeout: not yet
        (booting(0), obs(601, [instance()], []), None, "unhealthy"),
        # the instance launched later than the machine was created: counted from the launch
        (booting(0), obs(601, [instance(launched=at(100))], []), None, "starting"),
        (booting(0), obs(701, [instance(launched=at(100))], []), None, "unhealthy"),
        # a worker: counted from the control plane's initialization when that is later
        (
            booting(0),
            obs(650, [instance()], [], control_plane_initialized_at=at(200)),
            None,
            "starting",
        ),
        (booting(0), obs(801, [instance()], [], control_plane_initialized_at=at(200)), None, "unhealthy"),
        # …but not a control-plane machine
        (
            booting(0, owner="control-plane", owner_name="cp", role="control-plane"),
            obs(650, [instance()], [], control_plane_initialized_at=at(200)),
            None,
            "unhealthy",
        ),
        # no creation time: counted from when the health check first saw it
        (booting(None, instance_id=None, phase="Pending"), obs(650, [], []), at(100).timestamp(), "starting"),
        (
            booting(None, instance_id=None, phase="Pending"),
            obs(701, [], []),
            at(100).timestamp(),
            "unhealthy",
        ),
        # a worker before the control plane is initialized is not penalized
        (booting(0), obs(5000, [instance()], [], control_plane_initialized=False), None, "starting"),
        # a registered node that is not Ready: not nodeStartupTimeout's (CAPI applies it only while
        # there is no node) — unhealthyConditions judge it: Ready=False 201 s < 300 s: not yet…
        (booting(0), obs(601, [instance()], [node(ready="False", since=at(400))]), None, "healthy"),
        # …and past the condition's 300 s it is unhealthy
        (booting(0), obs(601, [instance()], [node(ready="False", since=at(50))]), None, "unhealthy"),
        # a Ready node seen before the owner noticed: fine
        (booting(0), obs(601, [instance()], [node()]), None, "healthy"),
    ],
)
def test_node_startup_timeout(m, observation, first_seen, state) -> None:
    v = detect.assess(m, CHECK, observation, first_seen=first_seen)
    assert v.state == state, v.reasons
    if state == "unhealthy":
        # With a node, its conditions judge it (CAPI); without one, nodeStartupTimeout does.
        has_node = bool(observation.nodes) and any(n.instance_id == m.instance_id for n in observation.nodes)
        assert v.reasons[0].startswith("UnhealthyNodeCondition" if has_node else "NodeStartupTimeout")


def test_node_startup_timeout_zero_disables_it() -> None:
    check = CHECK.model_copy(update={"node_startup_timeout_seconds": 0})
    assert detect.assess(booting(0), check, obs(100_000, [instance()], [])).state == "starting"


@pytest.mark.parametrize(
    ("n", "now", "state"),
    [
        (node(ready="False", since=at(0)), 300, "healthy"),  # exactly the timeout: not yet
        (node(ready="False", since=at(0)), 301, "unhealthy"),
        (node(ready="Unknown", since=at(0)), 301, "unhealthy"),
        (node(ready="True", since=at(0)), 100_000, "healthy"),
        # a condition the check does not name never matters
        (node(ready="True", since=at(0), MemoryPressure="True"), 100_000, "healthy"),
    ],
)
def test_unhealthy_conditions(n, now, state) -> None:
    v = detect.assess(machine(), CHECK, obs(now, [instance()], [n]))
    assert v.state == state
    if state == "unhealthy":
        assert "UnhealthyNodeCondition" in v.reasons[0] and "for more than 300s" in v.reasons[0]


def test_condition_without_transition_time_uses_the_first_sighting() -> None:
    n = node(ready="False", since=None)
    m = machine()
    first = detect.observed_conditions([m], obs(100, [instance()], [n]), [CHECK], {})
    assert first == {"m|Ready|False": at(100).timestamp()}
    # Later sightings keep the first time; the timeout counts from it.
    later = detect.observed_conditions([m], obs(400, [instance()], [n]), [CHECK], first)
    assert later == first
    assert detect.assess(m, CHECK, obs(400, [instance()], [n]), condition_first_seen=later).state == "healthy"
    assert (
        detect.assess(m, CHECK, obs(401, [instance()], [n]), condition_first_seen=later).state == "unhealthy"
    )
    # Recovered: forgotten; an unreachable API keeps what was known.
    assert detect.observed_conditions([m], obs(500, [instance()], [node()]), [CHECK], later) == {}
    assert detect.observed_conditions([m], obs(500, [instance()], None), [CHECK], later) == later


def _cluster(n: int, unhealthy: int) -> tuple[list[WatchedMachine], detect.Observation]:
    machines = [machine(f"w{i}") for i in range(n)]
    nodes = [node(f"w{i}", ready="False" if i < unhealthy else "True", since=at(0)) for i in range(n)]
    return machines, obs(1000, [instance(f"w{i}") for i in range(n)], nodes)


def evaluate(check, machines, observation, in_flight=(), unhealthy_since=None):
    return detect.evaluate_check(
        check,
        machines,
        observation,
        first_seen={},
        condition_first_seen={},
        unhealthy_since=unhealthy_since or {},
        in_flight=in_flight,
    )


def test_short_circuit_three_of_six_with_max_unhealthy_40_percent() -> None:
    machines, observation = _cluster(6, 3)
    ev = evaluate(CHECK.model_copy(update={"max_unhealthy": "40%"}), machines, observation)
    assert (ev.expected, ev.healthy, len(ev.unhealthy)) == (6, 3, 3)
    assert not ev.allowed and ev.reason.startswith("TooManyUnhealthy")
    assert ev.remediate == ()
    # Two of six is within 40% (floor 2.4 = 2): both go, oldest detection first.
    machines, observation = _cluster(6, 2)
    ev = evaluate(
        CHECK.model_copy(update={"max_unhealthy": "40%"}),
        machines,
        observation,
        unhealthy_since={"w0": 500.0, "w1": 100.0},
    )
    assert ev.allowed and ev.remediate == ("w1", "w0")


def test_unhealthy_range() -> None:
    machines, observation = _cluster(6, 3)
    assert evaluate(CHECK.model_copy(update={"unhealthy_range": (1, 3)}), machines, observation).allowed
    ev = evaluate(CHECK.model_copy(update={"unhealthy_range": (1, 2)}), machines, observation)
    assert not ev.allowed and "unhealthyRange" in ev.reason


def test_booting_and_deleting_machines_count_against_max_unhealthy() -> None:
    # CAPI counts expected - healthy: a machine being replaced is not healthy.
    machines, observation = _cluster(3, 1)
    machines[2] = machines[2].model_copy(update={"phase": "Deleting", "deleting": True})
    ev = evaluate(CHECK.model_copy(update={"max_unhealthy": 1}), machines, observation)
    assert (ev.healthy, len(ev.unhealthy)) == (1, 1) and not ev.allowed


def test_max_in_flight_counts_accepted_remediations() -> None:
    machines, observation = _cluster(6, 2)
    machines.append(machine("gone", phase="Deleting", deleting=True))
    check = CHECK.model_copy(update={"max_in_flight": 1})
    ev = evaluate(check, machines, observation, in_flight=("gone",))
    assert ev.in_flight == ("gone",)
    assert ev.remediate == () and ev.deferred == ("w0", "w1")
    assert "too many remediations in progress" in ev.note
    ev = evaluate(check, machines[:6], observation)
    assert ev.remediate == ("w0",) and ev.deferred == ("w1",)


def test_selector_leaves_other_owners_alone() -> None:
    machines, observation = _cluster(2, 2)
    other = [m.model_copy(update={"owner_name": "md-1"}) for m in machines]
    cp = [machine("c0", owner="control-plane", owner_name="cp", role="control-plane", instance_id="i-gone")]
    ev = evaluate(CHECK, other + cp, observation)
    assert ev.expected == 0 and ev.verdicts == ()
    cp_check = HealthCheckSpec(name="cp", control_plane=True)
    ev = evaluate(cp_check, other + cp, observation)
    assert [v.machine for v in ev.verdicts] == ["c0"] and ev.remediate == ("c0",)


def test_remediation_disabled_detects_but_asks_nothing() -> None:
    machines, observation = _cluster(3, 1)
    ev = evaluate(CHECK.model_copy(update={"remediation_enabled": False}), machines, observation)
    assert len(ev.unhealthy) == 1 and ev.remediate == () and "disabled" in ev.note


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        (HealthSettings(interval_seconds=10), None),
        (HealthSettings(checks=(CHECK,)), None),
        (HealthSettings(interval_seconds=0.5), "interval must be at least"),
        (HealthSettings(checks=(CHECK, CHECK)), "must be unique"),
        (
            HealthSettings(checks=(CHECK.model_copy(update={"unhealthy_range": (3, 1)}),)),
            "cannot be less than",
        ),
        (HealthSettings(checks=(CHECK.model_copy(update={"node_startup_timeout_seconds": -1}),)), "negative"),
        (HealthSettings(checks=(HealthCheckSpec(name="nothing"),)), "matches no machine"),
    ],
)
def test_settings_error(settings, error) -> None:
    err = settings_error(settings)
    assert (err is None) if error is None else (err is not None and error in err), err


def _evaluation(*verdicts: tuple[str, str]) -> detect.CheckEvaluation:
    return detect.CheckEvaluation(
        check="workers",
        expected=len(verdicts),
        healthy=sum(1 for _, state in verdicts if state == "healthy"),
        verdicts=tuple(
            detect.Verdict(machine=n, owner="machine-deployment/md-0", state=s) for n, s in verdicts
        ),
        allowance=(True, 1, ""),
    )


@pytest.mark.parametrize(
    ("machines", "evaluations", "observed", "cleared"),
    [
        # a marked machine every check finds healthy again: cleared
        ([machine("a", marked_unhealthy=True)], [_evaluation(("a", "healthy"))], True, {"md-0": ("a",)}),
        # still unhealthy in one check, healthy in another: kept
        (
            [machine("a", marked_unhealthy=True)],
            [_evaluation(("a", "healthy")), _evaluation(("a", "unhealthy"))],
            True,
            {},
        ),
        # not marked: nothing to tell the owner
        ([machine("a")], [_evaluation(("a", "healthy"))], True, {}),
        # still starting (no node yet, within its budget): kept until a verdict says healthy
        ([machine("a", marked_unhealthy=True)], [_evaluation(("a", "starting"))], True, {}),
        # being deleted: the mark goes with the machine
        ([machine("a", marked_unhealthy=True, deleting=True)], [_evaluation(("a", "healthy"))], True, {}),
        # no check selects it any more (the MHC was removed or narrowed): cleared ...
        ([machine("a", marked_unhealthy=True)], [], True, {"md-0": ("a",)}),
        # ... but not on an incomplete observation (instances or nodes not read this round)
        ([machine("a", marked_unhealthy=True)], [], False, {}),
        # grouped per owner, names sorted
        (
            [
                machine("b", marked_unhealthy=True),
                machine("a", marked_unhealthy=True),
                machine(
                    "c", marked_unhealthy=True, owner="control-plane", owner_name="cp", role="control-plane"
                ),
            ],
            [_evaluation(("a", "healthy"), ("b", "healthy"), ("c", "healthy"))],
            True,
            {"control-plane/cp": ("c",), "machine-deployment/md-0": ("a", "b")},
        ),
    ],
)
def test_healthy_again(machines, evaluations, observed, cleared) -> None:
    got = detect.healthy_again(machines, evaluations, observed=observed)
    assert got == {k if "/" in k else f"machine-deployment/{k}": v for k, v in cleared.items()}
