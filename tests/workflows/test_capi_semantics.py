"""Cluster API v1.10 semantics added for issue 18 — KubeadmControlPlane and MachineDeployment
rules — table-driven as CAPI's own unit tests are (one behaviour per case). The older KCP and
rollout tables are in test_rollout.py."""

from __future__ import annotations

import pytest

from capt.rules.control_plane import ControlPlaneState, plan_control_plane, projected_scale_up_failures
from capt.rules.quorum import _etcd_view
from tests.rules.test_rollout import machine


def sick(name: str, created: float = 0.0):
    """A machine whose node, components and etcd member are all unhealthy (its instance is gone)."""
    return machine(name, created=created, healthy=False, components=False, etcd=False)


# CAPI TestTargetEtcdClusterHealthy / checkHealthinessWhileRemediationInProgress: the target is the
# current members plus one new member, assumed unhealthy unless it is the first or second member.
@pytest.mark.parametrize(
    ("name", "machines", "members", "alarms", "allowed"),
    [
        (
            "5 members after one removal, 1 more unhealthy: 5 with 2 bad keeps quorum 3",
            [machine("a"), machine("b"), machine("c"), sick("d")],
            None,
            (),
            True,
        ),
        (
            "3 -> 2 members, 1 unhealthy: 3 with 2 bad loses quorum 2",
            [machine("a"), sick("b")],
            None,
            (),
            False,
        ),
        (
            "3 -> 2 members, both healthy: 3 with 1 bad keeps quorum 2",
            [machine("a"), machine("b")],
            None,
            (),
            True,
        ),
        (
            "a single member: the new one is assumed healthy (1 -> 2 must be possible)",
            [machine("a")],
            None,
            (),
            True,
        ),
        (
            "a member without a machine and no alarm counts healthy",
            [machine("a"), machine("b")],
            ["node-a", "node-b", "orphan"],
            (),
            True,
        ),
        (
            "a member without a machine with an alarm counts unhealthy: 4 with 2 bad loses quorum 3",
            [machine("a"), machine("b")],
            ["node-a", "node-b", "orphan"],
            ("orphan",),
            False,
        ),
        (
            "three healthy and an alarmed orphan: 5 with 2 bad keeps quorum 3",
            [machine("a"), machine("b"), machine("c")],
            ["node-a", "node-b", "node-c", "x"],
            ("x",),
            True,
        ),
        (
            "no machine has healthy components: nothing could serve the join",
            [sick("a"), sick("b"), sick("c")],
            ["node-a", "node-b", "node-c"],
            (),
            False,
        ),
        ("an empty member list cannot be judged", [machine("a", ready=False, node=False)], [], (), False),
    ],
)
def test_projected_scale_up(name, machines, members, alarms, allowed) -> None:
    failures = projected_scale_up_failures(machines, members, alarms)
    assert (not failures) == allowed, (name, failures)


@pytest.mark.parametrize(
    ("members", "alarms", "unhealthy"),
    [
        (None, (), {"node-c"}),  # members default to the machines' nodes
        (["node-a", "node-b", "node-c", "orphan"], (), {"node-c"}),  # no machine, no alarm: healthy
        (["node-a", "node-b", "node-c", "orphan"], ("orphan",), {"node-c", "orphan"}),
        (["node-a", "node-b", "node-c"], ("node-a",), {"node-c"}),  # a machine's member: its health rules
    ],
)
def test_etcd_member_health(members, alarms, unhealthy) -> None:
    machines = [machine("a"), machine("b"), sick("c")]
    assert _etcd_view(machines, members, alarms)[1] == unhealthy


def _state(machines, *, in_progress: bool) -> ControlPlaneState:
    return ControlPlaneState(
        replicas=5,
        desired_revision="r1",
        machines=tuple(machines),
        failure_domains=("a", "b", "c"),
        initialized=True,
        remediation_in_progress=in_progress,
    )


@pytest.mark.parametrize(
    ("in_progress", "machines", "action"),
    [
        # After a remediation deleted one of two failed machines: the replacement is created.
        (True, [machine("a"), machine("b"), machine("c"), sick("d")], "scale_up"),
        # The same control plane scaling up for another reason waits for every machine healthy.
        (False, [machine("a"), machine("b"), machine("c"), sick("d")], "wait"),
        # Still deleting the remediated machine: wait (CAPI: HasDeletingMachine comes first).
        (True, [machine("a"), machine("b"), sick("d"), machine("e", deleting=True)], "wait"),
        # Projected quorum would be lost: wait even during a remediation.
        (True, [machine("a"), sick("b"), sick("c"), sick("d")], "wait"),
    ],
)
def test_scale_up_preflight_during_remediation(in_progress, machines, action) -> None:
    assert plan_control_plane(_state(machines, in_progress=in_progress)).action == action


# --- MachineDeployment: new machines always come from the newest revision (issue 18, high 3) ---

from capt.rules.deployment import DeploymentState, ReplicaAnnotations, plan_machine_deployment  # noqa: E402
from capt.rules.fenceposts import DeploymentStrategy  # noqa: E402

ON_DELETE = DeploymentStrategy(type="OnDelete", max_surge=0, max_unavailable=0)
ROLLING = DeploymentStrategy(max_surge=1, max_unavailable=0)


@pytest.mark.parametrize(
    ("name", "strategy", "machines", "replicas", "creates"),
    [
        (
            "OnDelete, template and replicas changed in one apply: both new machines from r2",
            ON_DELETE,
            [("a", "r1"), ("b", "r1"), ("c", "r1")],
            5,
            ["r2", "r2"],
        ),
        (
            "OnDelete mid-way (old and new revisions live), replicas up: new machines from r2",
            ON_DELETE,
            [("a", "r1"), ("b", "r1"), ("c", "r2")],
            5,
            ["r2", "r2"],
        ),
        (
            "RollingUpdate, template and replicas changed in one apply: the surge is from r2",
            ROLLING,
            [("a", "r1"), ("b", "r1"), ("c", "r1")],
            5,
            ["r2"] * 3,
        ),
    ],
)
def test_new_machines_come_from_the_newest_revision(name, strategy, machines, replicas, creates) -> None:
    views = tuple(machine(n, rev, float(i)) for i, (n, rev) in enumerate(machines))
    state = DeploymentState(
        replicas=replicas,
        strategy=strategy,
        current_revision="r2",
        machines=views,
        now=100,
        sized_for=ReplicaAnnotations(desired_replicas=3, max_replicas=3 + strategy.surge(3)),
    )
    plan = plan_machine_deployment(state)
    assert sorted(c.revision for c in plan.create) == creates, (name, plan)
    assert plan.delete == (), name


# --- MachineDeployment revision identity (issue 18) -------------------------------------------

from capt.spec.models import KubeadmConfigSpec, MachineDeploymentSpec, MachineTemplate  # noqa: E402
from capt.workflows.machinedeployment.models import deployment_revision  # noqa: E402

MD = MachineDeploymentSpec(
    name="md-0",
    replicas=3,
    version="v1.30.2",
    machine_template=MachineTemplate(name="md-0-infra", instance_type="m5.large"),
    bootstrap=KubeadmConfigSpec(),
    bootstrap_template_name="md-0-bootstrap",
)


@pytest.mark.parametrize(
    ("name", "changes", "same"),
    [
        ("nothing changed", {}, True),
        (
            "infrastructure template renamed",
            {"machine_template": MD.machine_template.model_copy(update={"name": "md-0-infra-v2"})},
            False,
        ),
        (
            "infrastructure template contents",
            {"machine_template": MD.machine_template.model_copy(update={"instance_type": "m5.xlarge"})},
            False,
        ),
        (
            "bootstrap config contents",
            {"bootstrap": KubeadmConfigSpec(pre_kubeadm_commands=("echo hi",))},
            False,
        ),
        ("bootstrap template renamed", {"bootstrap_template_name": "md-0-bootstrap-v2"}, False),
        ("version", {"version": "v1.30.3"}, False),
        ("failure domain", {"failure_domain": "us-west-2a"}, False),
        ("replicas are not part of it", {"replicas": 5}, True),
    ],
)
def test_deployment_revision(name, changes, same) -> None:
    first = MD.bootstrap_template_name
    before = deployment_revision(MD, first)
    after = deployment_revision(MD.model_copy(update=changes), first)
    assert (before == after) is same, name


def test_revisions_recorded_before_the_template_name_counted_stay_the_same() -> None:
    from capt.workflows.machine_owner import revision_of

    legacy = revision_of(MD.machine_template, MD.bootstrap, MD.version, MD.failure_domain)
    assert deployment_revision(MD, MD.bootstrap_template_name) == legacy
    assert deployment_revision(MD, None) == legacy


# --- MachineSet delete priorities exactly (CAPI machineset_delete_policy_test.go) --------------

from capt.rules.deletion import capi_deletion_order  # noqa: E402

NOW = 100 * 86400.0


def aged(name: str, days: float, **kw):
    return machine(name, created=NOW - days * 86400, **kw)


@pytest.mark.parametrize(
    ("policy", "machines", "first"),
    [
        # Random: every healthy machine ranks the same; ties by name (CAPI: names end in random chars)
        ("Random", [aged("c", 1), aged("a", 5), aged("b", 3)], ["a", "b", "c"]),
        ("Random", [aged("a", 5), aged("z", 1, deleting=True)], ["z", "a"]),  # being deleted first
        ("Random", [aged("a", 5), aged("y", 1, marked=True)], ["y", "a"]),  # delete-machine annotation
        ("Random", [aged("a", 5), aged("x", 1, ready=False, node=True)], ["x", "a"]),  # node not Ready
        ("Random", [aged("a", 5), aged("w", 1, ready=False, node=False)], ["w", "a"]),  # no node
        ("Random", [aged("a", 5), aged("v", 1, healthy=False)], ["v", "a"]),  # MHC unhealthy
        # annotation (75) before unhealthy (50)
        ("Random", [aged("u", 1, healthy=False), aged("y", 1, marked=True)], ["y", "u"]),
        # Oldest / Newest by age
        ("Oldest", [aged("b", 1), aged("a", 5), aged("c", 3)], ["a", "c", "b"]),
        ("Newest", [aged("b", 1), aged("a", 5), aged("c", 3)], ["b", "c", "a"]),
        # whole-second ages: created within the same second tie, by name
        ("Oldest", [machine("b", created=NOW - 10.2), machine("a", created=NOW - 10.7)], ["a", "b"]),
        ("Oldest", [machine("b", created=NOW - 10.9), machine("a", created=NOW - 10.1)], ["a", "b"]),
        # Newest: a machine created this instant ranks level with an unhealthy one (50): by name
        ("Newest", [machine("b", created=NOW), aged("a", 1, healthy=False)], ["a", "b"]),
        ("Newest", [machine("a", created=NOW), aged("b", 1, healthy=False)], ["a", "b"]),
    ],
)
def test_capi_deletion_order(policy, machines, first) -> None:
    assert [m.name for m in capi_deletion_order(machines, policy, NOW)] == first


def test_scale_down_uses_capis_order_when_exact() -> None:
    views = (aged("c", 1), aged("a", 5), aged("b", 3))
    state = DeploymentState(
        replicas=2,
        strategy=DeploymentStrategy(delete_policy="Random"),
        current_revision="r1",
        machines=views,
        now=NOW,
        seed="md-0",
        exact_delete_order=True,
    )
    assert plan_machine_deployment(state).delete == ("a",)


def test_a_rollout_after_roll_is_a_new_revision_of_the_same_template() -> None:
    base = deployment_revision(MD, MD.bootstrap_template_name)
    once = deployment_revision(MD, MD.bootstrap_template_name, rolled_after=200.0)
    again = deployment_revision(MD, MD.bootstrap_template_name, rolled_after=900.0)
    assert len({base, once, again}) == 3
    assert deployment_revision(MD, MD.bootstrap_template_name, rolled_after=200.0) == once
