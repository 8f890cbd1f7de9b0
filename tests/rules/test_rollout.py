"""Table tests and step-by-step simulations for the pure rollout arithmetic.

Cases come from issues 6, 7 and 9 and from CAPI's own unit tests and rollout "golden" logs
(kubernetes-sigs/cluster-api: mdutil/util_test.go, machinedeployment testdata/rollingupdate/*.golden,
util/failuredomains/failure_domains_test.go, controlplane/kubeadm scale_test.go and
remediation_test.go, machinehealthcheck_controller_test.go) and from Kubernetes' Deployment
proportional-scaling tests (the arithmetic CAPI's `scale` was ported from).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from capt.rules.control_plane import (
    ControlPlaneState,
    control_plane_replicas_error,
    is_valid_control_plane_replicas,
    needs_rollout,
    pick_failure_domain_for_scale_up,
    plan_control_plane,
    preflight_failures,
    rollout_strategy_error,
    select_machine_for_scale_down,
)
from capt.rules.control_plane_remediation import (
    RemediationRecord,
    check_control_plane_remediation,
    pick_machine_to_remediate,
)
from capt.rules.deletion import deletion_order
from capt.rules.deployment import (
    DeploymentPlan,
    DeploymentState,
    ReplicaAnnotations,
    RevisionView,
    deployment_complete,
    deployment_counts,
    plan_machine_deployment,
    progress_deadline_exceeded,
)
from capt.rules.deployment_remediation import plan_deployment_remediation
from capt.rules.fenceposts import DeploymentStrategy, max_surge, max_unavailable, resolve_fenceposts
from capt.rules.health import (
    TOO_MANY_UNHEALTHY,
    limit_in_flight,
    max_unhealthy_allows,
    parse_unhealthy_range,
)
from capt.rules.intstr import IntOrPercentError
from capt.rules.machines import MachineView, next_availability_time
from capt.rules.placement import pick_fewest, pick_most, spread
from capt.rules.quorum import assess_etcd_member_removal, can_safely_remove_etcd_member, etcd_quorum
from capt.rules.versions import parse_kubernetes_version, version_change_error
from capt.spec.models import MachineDeploymentSpec, MachineTemplate
from capt.workflows.machinedeployment.models import strategy_of


def machine(
    name: str,
    revision: str = "r1",
    created: float = 0.0,
    *,
    ready: bool = True,
    ready_since: float | None = None,
    node: bool | None = None,
    fd: str | None = None,
    deleting: bool = False,
    marked: bool = False,
    healthy: bool = True,
    components: bool = True,
    etcd: bool = True,
) -> MachineView:
    has_node = ready if node is None else node
    return MachineView(
        name=name,
        revision=revision,
        created=created,
        failure_domain=fd,
        node_name=f"node-{name}" if has_node else None,
        ready_since=(created if ready_since is None else ready_since) if ready else None,
        deleting=deleting,
        marked_for_deletion=marked,
        healthy=healthy,
        components_healthy=components,
        etcd_member_healthy=etcd,
    )


# =============================================================================================
# Fenceposts (issue 7; CAPI TestResolveFenceposts, TestMaxUnavailable, ResolveFenceposts doc)
# =============================================================================================


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        ("0%", "0%", 0, (0, 1)),  # issue 7 / CAPI: both zero -> unavailable 1
        ("39%", "39%", 10, (4, 3)),  # surge rounds up, unavailable rounds down
        (0, 0, 3, (0, 1)),
        (1, 0, 3, (1, 0)),
        (0, 1, 3, (0, 1)),
        (3, 1, 6, (3, 1)),
        ("25%", "25%", 10, (3, 2)),
        ("100%", "0%", 7, (7, 0)),
        ("0%", "1%", 2, (0, 1)),  # floor(0.02) = 0 -> both zero -> 1
        ("1%", "25%", 2, (1, 0)),  # ceil(0.02) = 1
    ],
)
def test_resolve_fenceposts(surge, unavailable, replicas, expected):
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


@pytest.mark.parametrize(
    ("surge", "unavailable"),
    [("oops", "39%"), ("55%", "urg"), ("5", "1"), ("5", 1), (1, "1"), (-1, 0), (True, 0)],
)
def test_resolve_fenceposts_rejects_non_percent_strings(surge, unavailable):
    with pytest.raises(IntOrPercentError):
        resolve_fenceposts(surge, unavailable, 7)


@pytest.mark.parametrize(
    ("replicas", "value", "expected"),
    [
        (10, 5, 5),  # less than replicas
        (10, 10, 10),  # equal
        (5, 10, 5),  # greater: clamped to replicas
        (0, 10, 0),  # zero replicas -> 0
        (10, "50%", 5),
        (10, "100%", 10),
        (5, "100%", 5),
    ],
)
def test_max_unavailable(replicas, value, expected):
    assert max_unavailable(replicas, value) == expected


def test_fenceposts_are_zero_for_on_delete():
    assert max_unavailable(5, 2, strategy="OnDelete") == 0
    assert max_surge(5, 2, strategy="OnDelete") == 0
    assert max_surge(5, "50%") == 3


def test_strategy_from_spec():
    md = MachineDeploymentSpec(
        name="md-0",
        version="v1.30.0",
        machine_template=MachineTemplate(name="t", instance_type="t3.large"),
        bootstrap={},
        bootstrap_template_name="b",
        rolling_update={"max_surge": "25%", "max_unavailable": 1},
        delete_policy="Oldest",
        min_ready_seconds=30,
    )
    s = strategy_of(md)
    assert (s.type, s.max_surge, s.max_unavailable, s.delete_policy, s.min_ready_seconds) == (
        "RollingUpdate",
        "25%",
        1,
        "Oldest",
        30,
    )
    assert (s.surge(8), s.unavailable(8)) == (2, 1)


# =============================================================================================
# A deployment simulator: applies plans step by step, machines boot and deletions finish later
# =============================================================================================


@dataclass
class DeploymentSim:
    replicas: int
    strategy: DeploymentStrategy
    current: str = "r2"
    machines: list[MachineView] = field(default_factory=list)
    revisions: list[RevisionView] = field(default_factory=list)
    sized_for: ReplicaAnnotations | None = None
    paused: bool = False
    failure_domains: tuple[str, ...] = ()
    now: float = 100.0
    seq: int = 0
    rng: random.Random | None = None  # random boot / deletion delays when set
    boots_never: bool = False  # new machines never become Ready
    boot_at: dict[str, float] = field(default_factory=dict)
    gone_at: dict[str, float] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    @classmethod
    def with_old(cls, replicas: int, n_old: int | None = None, **kw) -> DeploymentSim:
        sim = cls(replicas=replicas, **kw)
        for _ in range(replicas if n_old is None else n_old):
            sim.seq += 1
            sim.machines.append(machine(f"m{sim.seq}", "r1", created=float(sim.seq)))
        sim.revisions.append(RevisionView(revision="r1", created=0.0))
        sim.sized_for = ReplicaAnnotations(
            desired_replicas=replicas, max_replicas=replicas + sim.strategy.surge(replicas)
        )
        return sim

    def state(self) -> DeploymentState:
        return DeploymentState(
            replicas=self.replicas,
            strategy=self.strategy,
            current_revision=self.current,
            machines=tuple(self.machines),
            revisions=tuple(self.revisions),
            paused=self.paused,
            sized_for=self.sized_for,
            failure_domains=self.failure_domains,
            now=self.now,
            seed="md-0",
        )

    def counts(self) -> tuple[int, int]:
        alive = [m for m in self.machines if not m.deleting]
        return (
            sum(1 for m in alive if m.revision != self.current),
            sum(1 for m in alive if m.revision == self.current),
        )

    def available(self) -> int:
        return sum(1 for m in self.machines if m.available(self.now, self.strategy.min_ready_seconds))

    def plan(self) -> DeploymentPlan:
        return plan_machine_deployment(self.state())

    def apply(self, plan: DeploymentPlan) -> None:
        if plan.record_revision is not None:
            self.revisions.append(plan.record_revision)
        self.sized_for = plan.sized_for
        doomed = set(plan.delete)
        assert len(doomed) == len(plan.delete), "a machine is deleted twice"
        for i, m in enumerate(self.machines):
            if m.name in doomed:
                assert not m.deleting, f"{m.name} was already being deleted"
                self.machines[i] = m.model_copy(update={"deleting": True})
                delay = self.rng.choice([0, 0, 1, 2]) if self.rng else 0
                self.gone_at[m.name] = self.now + delay
                self.deleted.append(m.name)
        for c in plan.create:
            self.seq += 1
            name = f"m{self.seq}"
            self.machines.append(
                MachineView(name=name, revision=c.revision, created=self.now, failure_domain=c.failure_domain)
            )
            delay = self.rng.choice([1, 1, 2, 3]) if self.rng else 1
            self.boot_at[name] = self.now + delay

    def tick(self, dt: float = 1.0) -> None:
        self.now += dt
        kept = []
        for m in self.machines:
            if m.deleting and self.gone_at.get(m.name, self.now) <= self.now:
                continue
            booted = self.boot_at.get(m.name, self.now) <= self.now
            if m.ready_since is None and not m.deleting and not self.boots_never and booted:
                m = m.model_copy(update={"node_name": f"node-{m.name}", "ready_since": self.now})
            kept.append(m)
        self.machines = kept

    def check_invariants(self) -> None:
        surge = self.strategy.surge(self.replicas)
        floor = self.replicas - self.strategy.unavailable(self.replicas)
        assert len(self.machines) <= self.replicas + surge, (
            f"{len(self.machines)} machines exist (deleting included), limit {self.replicas + surge}"
        )
        assert self.available() >= floor, f"{self.available()} available, floor {floor}"

    def run(self, max_steps: int = 400, invariants: bool = True) -> list[tuple[int, int]]:
        """Plan, apply, let time pass, until complete. Returns each non-idle step's
        (old delta, new delta) in not-deleting machines; checks the invariants after every change."""
        steps: list[tuple[int, int]] = []
        for _ in range(max_steps):
            if invariants:
                self.check_invariants()
            before = self.counts()
            plan = self.plan()
            self.apply(plan)
            if invariants:
                self.check_invariants()
            after = self.counts()
            if not plan.idle:
                steps.append((after[0] - before[0], after[1] - before[1]))
            elif deployment_complete(self.state()):
                return steps
            self.tick()
        raise AssertionError(f"no convergence after {max_steps} steps: {self.machines}")


def rolling(surge, unavailable, policy="Oldest", min_ready=0) -> DeploymentStrategy:
    return DeploymentStrategy(
        max_surge=surge, max_unavailable=unavailable, delete_policy=policy, min_ready_seconds=min_ready
    )


# =============================================================================================
# Rolling update sequences (issue 7; CAPI golden rollout logs; ResolveFenceposts doc comment)
# =============================================================================================


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        # issue 7: 3 replicas, surge 1 / unavailable 0: new +1 (4 total), old -1, three times.
        (3, 1, 0, [(0, 1), (-1, 0)] * 3),
        # issue 7: surge 0 / unavailable 1: old -1, new +1, three times.
        (3, 0, 1, [(-1, 0), (0, 1)] * 3),
        # issue 7: 6 replicas surge 3 / unavailable 1: old 6->5 & new 0->3, old 5->2 & new 3->4,
        # old 2->1 & new 4->6, old 1->0.
        (6, 3, 1, [(-1, 3), (-3, 1), (-1, 2), (-1, 0)]),
        # CAPI golden logs.
        (6, 1, 3, [(-3, 1), (-1, 3), (-2, 1), (0, 1)]),
        (6, 10, 0, [(0, 6), (-6, 0)]),
        (6, 0, 10, [(-6, 0), (0, 6)]),
        # CAPI's ResolveFenceposts doc comment.
        (2, "0%", "1%", [(-1, 0), (0, 1)] * 2),
        (1, "0%", "1%", [(-1, 0), (0, 1)]),
        (2, "1%", "25%", [(0, 1), (-1, 0)] * 2),
        (1, "1%", "25%", [(0, 1), (-1, 0)]),
        (2, "1%", "0%", [(0, 1), (-1, 0)] * 2),
        (1, "1%", "0%", [(0, 1), (-1, 0)]),
    ],
)
def test_rolling_update_sequences(replicas, surge, unavailable, expected):
    sim = DeploymentSim.with_old(replicas, strategy=rolling(surge, unavailable))
    assert sim.run() == expected
    assert sim.counts() == (0, replicas)
    assert deployment_complete(sim.state())


def test_six_replicas_deletes_oldest_first_with_oldest_policy():
    sim = DeploymentSim.with_old(6, strategy=rolling(3, 1, policy="Oldest"))
    sim.run()
    assert sim.deleted == ["m1", "m2", "m3", "m4", "m5", "m6"]


def test_sequences_hold_with_min_ready_seconds_and_the_planner_waits_for_availability():
    sim = DeploymentSim.with_old(3, strategy=rolling(1, 0, min_ready=5))
    assert sim.run() == [(0, 1), (-1, 0)] * 3
    # The first new machine is Ready at t=101 but not available until 106: nothing to do meanwhile.
    sim = DeploymentSim.with_old(3, strategy=rolling(1, 0, min_ready=5))
    sim.apply(sim.plan())
    sim.tick()
    assert sim.plan().idle
    assert next_availability_time(sim.machines, sim.now, 5) == 106.0
    sim.now = 106.0
    assert sim.plan().delete == ("m1",)


def test_percentage_rollout_keeps_invariants():
    sim = DeploymentSim.with_old(10, strategy=rolling("25%", "25%"))  # surge 3, unavailable 2
    steps = sim.run()
    assert sum(d[0] for d in steps) == -10 and sum(d[1] for d in steps) == 10
    assert steps[0] == (-2, 3)


@pytest.mark.parametrize("seed", range(60))
def test_random_rollouts_never_break_the_invariants(seed):
    rng = random.Random(seed)
    replicas = rng.randint(1, 7)
    strategy = rolling(
        rng.choice([0, 1, 2, "25%", "50%"]),
        rng.choice([0, 1, "25%", "50%"]),
        policy=rng.choice(["Random", "Newest", "Oldest"]),
        min_ready=rng.choice([0, 2]),
    )
    sim = DeploymentSim.with_old(replicas, strategy=strategy, rng=rng, failure_domains=("a", "b", "c"))
    sim.run()  # asserts both invariants before and after every step
    assert sim.counts() == (0, replicas)
    assert all(m.revision == "r2" for m in sim.machines)


def test_new_machines_that_never_become_ready_stall_within_the_budget():
    sim = DeploymentSim.with_old(3, strategy=rolling(1, 0), boots_never=True)
    for _ in range(20):
        sim.apply(sim.plan())
        sim.check_invariants()
        sim.tick()
    assert sim.counts() == (3, 1)  # one surge machine, no old machine removed
    assert sim.available() == 3
    assert "cannot scale old revisions down" in " ".join(sim.plan().notes)


def test_stalled_rollout_with_unavailable_budget_deletes_only_within_it():
    sim = DeploymentSim.with_old(4, strategy=rolling(1, 1), boots_never=True)
    for _ in range(20):
        sim.apply(sim.plan())
        sim.check_invariants()
        sim.tick()
    assert sim.available() == 3  # exactly the floor, never below
    assert len(sim.machines) == 5


def test_slow_deletions_count_toward_the_surge():
    sim = DeploymentSim.with_old(3, strategy=rolling(1, 0))
    sim.apply(sim.plan())  # new +1
    sim.tick()
    plan = sim.plan()
    assert plan.delete == ("m1",)
    sim.apply(plan)
    # m1 is still being deleted: 4 machines exist, so no new machine may be created yet.
    sim.gone_at["m1"] = sim.now + 10
    sim.tick()
    assert sim.plan().idle
    assert len(sim.machines) == 4


def test_unavailable_old_machines_are_removed_first():
    # Old revision: m1 and m2 available, m3 never got a node; new revision has one available machine.
    machines = (
        machine("m1", "r1", 1),
        machine("m2", "r1", 2),
        machine("m3", "r1", 3, ready=False),
        machine("n1", "r2", 10),
    )
    state = DeploymentState(
        replicas=3,
        strategy=rolling(1, 0, policy="Oldest"),
        current_revision="r2",
        machines=machines,
        sized_for=ReplicaAnnotations(desired_replicas=3, max_replicas=4),
        now=20,
    )
    plan = plan_machine_deployment(state)
    # maxScaledDown = 4 - 3 - 0 = 1: the unavailable m3 goes, not the oldest m1.
    assert plan.delete == ("m3",)
    assert plan.target("r1") == 2


def test_cleanup_removes_exactly_the_unavailable_old_machine():
    # m3 has a Ready node but has not been Ready for minReadySeconds yet: CAPI's deletion order
    # ranks it like any healthy machine (Oldest would pick m1); the cleanup step takes m3.
    machines = (
        machine("m1", "r1", 1),
        machine("m2", "r1", 2),
        machine("m3", "r1", 3, ready_since=19),
        machine("n1", "r2", 10),
    )
    state = DeploymentState(
        replicas=3,
        strategy=rolling(1, 0, policy="Oldest", min_ready=5),
        current_revision="r2",
        machines=machines,
        sized_for=ReplicaAnnotations(desired_replicas=3, max_replicas=4),
        now=20,
    )
    assert plan_machine_deployment(state).delete == ("m3",)
    assert _names(deletion_order(machines[:3], "Oldest"))[0] == "m1"


def test_oldest_revision_scales_down_first():
    machines = (
        machine("a1", "r1", 1),
        machine("b1", "r2", 5),
        machine("b2", "r2", 6),
        machine("c1", "r3", 10),
    )
    state = DeploymentState(
        replicas=3,
        strategy=rolling(1, 0, policy="Newest"),
        current_revision="r3",
        machines=machines,
        sized_for=ReplicaAnnotations(desired_replicas=3, max_replicas=4),
        now=20,
    )
    plan = plan_machine_deployment(state)
    assert plan.delete == ("a1",)
    assert dict(plan.targets) == {"r3": 1, "r1": 0, "r2": 2}


def test_new_machine_set_with_extra_old_machines():
    # CAPI TestNewMSNewReplicas "scale up - to depReplicas": 6 replicas, new has 2, another set 5,
    # maxSurge 10 -> new grows to 6.
    machines = tuple(machine(f"o{i}", "r1", i) for i in range(5)) + tuple(
        machine(f"n{i}", "r2", 10 + i) for i in range(2)
    )
    state = DeploymentState(
        replicas=6, strategy=rolling(10, 1), current_revision="r2", machines=machines, now=50
    )
    plan = plan_machine_deployment(state)
    assert plan.target("r2") == 6
    assert [c.revision for c in plan.create] == ["r2"] * 4


def test_first_rollout_records_the_new_revision_and_fresh_deployment_creates_all():
    state = DeploymentState(replicas=3, strategy=rolling(1, 0), current_revision="r1", now=7)
    plan = plan_machine_deployment(state)
    assert plan.record_revision == RevisionView(revision="r1", created=7)
    assert len(plan.create) == 3  # surge only limits the total: 0 exist, limit 4, want 3
    assert plan.sized_for == ReplicaAnnotations(desired_replicas=3, max_replicas=4)


def test_scale_down_without_rollout_uses_delete_policy():
    machines = tuple(machine(f"m{i}", "r1", float(i)) for i in range(1, 6))
    base = dict(current_revision="r1", machines=machines, now=100, sized_for=None)
    newest = plan_machine_deployment(DeploymentState(replicas=3, strategy=rolling(1, 0, "Newest"), **base))
    oldest = plan_machine_deployment(DeploymentState(replicas=3, strategy=rolling(1, 0, "Oldest"), **base))
    assert newest.delete == ("m5", "m4")
    assert oldest.delete == ("m1", "m2")


# =============================================================================================
# Proportional scaling (issue 7: 3 -> 10 mid-rollout; Kubernetes TestScale tables)
# =============================================================================================


def test_scale_three_to_ten_mid_rollout_is_proportional_then_rollout_completes():
    sim = DeploymentSim.with_old(3, strategy=rolling(1, 0))
    sim.apply(sim.plan())  # new +1: old 3, new 1
    sim.tick()
    assert sim.counts() == (3, 1)
    sim.replicas = 10
    plan = sim.plan()
    assert plan.mode == "scale"
    # allowed 10 + 1 = 11, sized for 4: old round(3*11/4)=8 (+5), new round(1*11/4)=3 (+2).
    assert dict(plan.targets) == {"r1": 8, "r2": 3}
    assert sorted(c.revision for c in plan.create) == ["r1"] * 5 + ["r2"] * 2
    assert plan.delete == ()
    assert plan.sized_for == ReplicaAnnotations(desired_replicas=10, max_replicas=11)
    sim.apply(plan)
    sim.tick()
    assert len(sim.machines) == 11
    # The rollout goes on under the new size; the planner never deletes below the floor.
    for _ in range(200):
        assert len(sim.machines) <= 11
        before = sim.available()
        plan = sim.plan()
        assert plan.mode == "rolling"
        sim.apply(plan)
        assert sim.available() >= min(before, 10)
        if plan.idle and deployment_complete(sim.state()):
            break
        sim.tick()
    assert sim.counts() == (0, 10)


def _proportional_state(replicas, sized_for, new, olds, surge=0):
    machines: list[MachineView] = []
    revisions = []
    for i, size in enumerate(olds):
        rev = f"old{i}"
        revisions.append(RevisionView(revision=rev, created=float(-100 * (i + 1))))
        machines += [machine(f"{rev}-{j}", rev, -100.0 * (i + 1)) for j in range(size)]
    revisions.append(RevisionView(revision="new", created=0.0))
    machines += [machine(f"new-{j}", "new", 0.0) for j in range(new)]
    return DeploymentState(
        replicas=replicas,
        strategy=rolling(surge, 1),
        current_revision="new",
        machines=tuple(machines),
        revisions=tuple(revisions),
        sized_for=ReplicaAnnotations(desired_replicas=sized_for, max_replicas=sized_for + surge),
        now=1000,
    )


@pytest.mark.parametrize(
    ("name", "replicas", "sized_for", "new", "olds", "expected_new", "expected_olds"),
    [
        ("proportional scaling: 5 -> 10", 10, 5, 2, [3], 4, [6]),
        ("proportional scaling: 5 -> 3", 3, 5, 2, [3], 1, [2]),
        ("proportional scaling: 9 -> 4", 4, 9, 8, [1], 4, [0]),
        ("proportional scaling: 7 -> 10", 10, 7, 2, [3, 2], 3, [4, 3]),
        ("proportional scaling: 13 -> 8", 8, 13, 2, [8, 3], 1, [5, 2]),
        ("leftover distribution: 3 -> 4", 4, 3, 1, [1, 1], 2, [1, 1]),
        ("leftover distribution: 4 -> 3", 3, 4, 1, [2, 1], 1, [1, 1]),
        ("scale down to zero", 0, 3, 1, [2], 0, [0]),
        ("one active revision takes it all", 6, 3, 0, [3], 0, [6]),
    ],
)
def test_proportional_scaling_table(name, replicas, sized_for, new, olds, expected_new, expected_olds):
    plan = plan_machine_deployment(_proportional_state(replicas, sized_for, new, olds))
    assert plan.mode == "scale", name
    targets = dict(plan.targets)
    assert targets["new"] == expected_new, name
    assert [targets[f"old{i}"] for i in range(len(olds))] == expected_olds, name
    assert len(plan.create) - len(plan.delete) == replicas - (new + sum(olds)), name


def test_paused_with_no_active_revision_scales_the_newest():
    # CAPI FindOneActiveOrLatest: no revision has machines -> the newest one is scaled.
    state = _proportional_state(6, 3, 0, [0]).model_copy(update={"paused": True})
    plan = plan_machine_deployment(state)
    assert plan.mode == "scale" and dict(plan.targets) == {"new": 6, "old0": 0}
    no_new = state.model_copy(update={"current_revision": "r9"})  # template changed while paused
    plan = plan_machine_deployment(no_new)
    assert plan.record_revision is None and plan.target("new") == 6  # newest existing revision


def test_paused_deployment_scales_but_does_not_roll():
    sim = DeploymentSim.with_old(3, strategy=rolling(1, 0), paused=True)
    assert sim.plan().idle  # template changed, but paused: no rollout
    sim.replicas = 5
    plan = sim.plan()
    assert plan.mode == "scale"
    assert [c.revision for c in plan.create] == ["r1", "r1"]  # the only active revision grows
    assert plan.record_revision is None
    sim.apply(plan)
    sim.tick()
    sim.paused = False
    assert sim.run() == [(0, 1), (-1, 0)] * 5


def test_saturated_new_revision_scales_old_ones_to_zero_when_paused():
    machines = (machine("o1", "r1", 1), *(machine(f"n{i}", "r2", 10) for i in range(3)))
    state = DeploymentState(
        replicas=3,
        strategy=rolling(1, 0),
        current_revision="r2",
        machines=machines,
        paused=True,
        sized_for=ReplicaAnnotations(desired_replicas=3, max_replicas=4),
        now=100,
    )
    plan = plan_machine_deployment(state)
    assert plan.delete == ("o1",)


# =============================================================================================
# OnDelete (issue 7)
# =============================================================================================


def test_on_delete_replaces_only_machines_a_user_deleted():
    sim = DeploymentSim.with_old(3, strategy=DeploymentStrategy(type="OnDelete"))
    plan = sim.plan()
    assert plan.mode == "on_delete" and plan.idle and plan.record_revision is not None
    sim.apply(plan)
    for _ in range(5):  # nothing happens on its own
        sim.tick()
        assert sim.plan().idle
    # A user deletes m2: nothing is created while it is still being deleted...
    sim.machines[1] = sim.machines[1].model_copy(update={"deleting": True})
    sim.gone_at["m2"] = sim.now + 3
    assert sim.plan().idle
    for _ in range(3):
        sim.tick()
    # ...then one machine of the new revision replaces it.
    plan = sim.plan()
    assert [c.revision for c in plan.create] == ["r2"] and plan.delete == ()
    assert sim.deleted == []


def test_on_delete_scale_down_removes_old_machines():
    machines = tuple(machine(f"m{i}", "r1", float(i)) for i in range(1, 4))
    state = DeploymentState(
        replicas=2,
        strategy=DeploymentStrategy(type="OnDelete", delete_policy="Oldest"),
        current_revision="r2",
        machines=machines,
        now=10,
    )
    plan = plan_machine_deployment(state)
    assert plan.mode == "on_delete"
    assert plan.delete == ("m1",) and plan.create == ()


# =============================================================================================
# Delete policy (CAPI deletion order)
# =============================================================================================


def _names(ms):
    return [m.name for m in ms]


def test_deletion_order_priorities():
    ms = [
        machine("healthy-old", created=1),
        machine("healthy-new", created=9),
        machine("no-node", created=5, ready=False),
        machine("mhc-failed", created=6, healthy=False),
        machine("marked", created=7, marked=True),
        machine("deleting", created=8, deleting=True),
    ]
    for policy in ("Random", "Newest", "Oldest"):
        order = _names(deletion_order(ms, policy, seed="x"))
        assert order[:4] == ["deleting", "marked", "mhc-failed", "no-node"], policy
    assert _names(deletion_order(ms, "Oldest"))[4:] == ["healthy-old", "healthy-new"]
    assert _names(deletion_order(ms, "Newest"))[4:] == ["healthy-new", "healthy-old"]


def test_deletion_order_ties_by_name():
    ms = [machine("b", created=1), machine("a", created=1), machine("c", created=1)]
    assert _names(deletion_order(ms, "Oldest")) == ["a", "b", "c"]
    assert _names(deletion_order(ms, "Newest")) == ["a", "b", "c"]


def test_random_deletion_order_is_deterministic_per_seed():
    ms = [machine(f"md-0-{i}", created=float(i)) for i in range(8)]
    first = _names(deletion_order(ms, "Random", seed="md-0"))
    assert first == _names(deletion_order(list(reversed(ms)), "Random", seed="md-0"))
    orders = {tuple(_names(deletion_order(ms, "Random", seed=f"seed-{i}"))) for i in range(6)}
    assert len(orders) > 1  # the seed matters
    assert first not in (_names(ms), _names(reversed(ms)))  # not simply by age or name


def test_unknown_delete_policy_is_an_error():
    with pytest.raises(ValueError, match="unsupported delete policy"):
        deletion_order([machine("a"), machine("b")], "Largest")  # type: ignore[arg-type]


# =============================================================================================
# Failure domains (CAPI failure_domains_test.go; issue 7 spreading)
# =============================================================================================


@dataclass(frozen=True)
class FD:
    failure_domain: str | None


def fds(*names):
    return [FD(n) for n in names]


A, B, C = "us-west-1a", "us-west-1b", "us-west-1c"


@pytest.mark.parametrize(
    ("domains", "all_machines", "up_to_date", "expected"),
    [
        ((), [], [], None),
        ((A,), [], [], [A]),
        ((A, B), fds(A), fds(A), [B]),  # "one machine in a failure domain"
        ((A,), fds(None), fds(None), [A]),  # "no failure domain specified on machine"
        ((A,), fds(B), fds(B), [A]),  # "mismatched failure domain on machine"
        # Use case A: 3 failure domains, 3 control plane machines
        ((A, B, C), [], [], [A, B, C]),
        ((A, B, C), fds(A), fds(A), [B, C]),
        ((A, B, C), fds(A, B), fds(A, B), [C]),
        ((A, B, C), fds(A, B, C), [], [A, B, C]),  # 3 outdated, scale up to 4
        ((A, B, C), fds(A, B, C), fds(A), [B, C]),
        ((A, B, C), fds(A, B, C), fds(A, B), [C]),
        ((A, B, C), fds(A, C, C), fds(C), [B]),  # after a forced deletion
        ((A, B, C), fds(A, A, C), fds(A, C), [B]),
        # Use case B: 2 failure domains
        ((A, B), fds(A, A, B), [], [B]),
        ((A, B), fds(A, B, B), fds(B), [A]),
        ((A, B), fds(A, B, B), fds(A, B), [A]),
        # Use case C: 3 failure domains, 5 machines
        ((A, B, C), fds(A, A, B, C), fds(A, A, B, C), [B, C]),
        ((A, B, C), fds(A, A, B, B, C), [], [C]),
        ((A, B, C), fds(A, B, B, C, C), fds(C), [A]),
        ((A, B, C), fds(A, A, B, C, C), fds(A, C), [B]),
        ((A, B, C), fds(A, B, B, C, C), fds(A, B, C), [A]),
        ((A, B, C), fds(A, A, B, C, C), fds(A, A, B, C), [B]),
    ],
)
def test_pick_fewest(domains, all_machines, up_to_date, expected):
    picked = pick_fewest(domains, all_machines, up_to_date)
    if expected is None:
        assert picked is None
    else:
        assert picked in expected
        assert picked == min(expected, key=domains.index)  # deterministic: AZ order breaks ties


@pytest.mark.parametrize(
    ("domains", "all_machines", "eligible", "expected"),
    [
        ((), [], [], None),
        ((A,), [], [], None),
        ((A, B), fds(A), fds(A), [A]),
        ((A,), fds(None), fds(None), None),
        ((A,), fds(B), fds(B), None),
        ((), fds(B), fds(B), None),
        # scale down during a rollout (3 FDs)
        ((A, B, C), fds(A, A, B, C), fds(A, B, C), [A]),
        ((A, B, C), fds(A, B, B, C), fds(B, C), [B]),
        ((A, B, C), fds(A, B, C, C), fds(C), [C]),
        ((A, B, C), fds(A, B, C), fds(A, B, C), [A, B, C]),
        ((A, B, C), fds(B, C), fds(B, C), [B, C]),
        ((A, B, C), fds(A, B, C), fds(A), [A]),
        # 2 FDs
        ((A, B), fds(A, A, B, B), fds(A, A, B), [A]),
        ((A, B), fds(A, A, B, B), fds(A, B), [A, B]),
        ((A, B), fds(A, A, B, B), fds(B), [B]),
        ((A, B), fds(A, A, B), fds(B), [B]),
        ((A, B), fds(A, A, B), fds(A, B), [A]),
        # 3 FDs, 6 machines
        ((A, B, C), fds(A, A, B, B, C, C), fds(A, A, B, B, C), [A, B]),
        ((A, B, C), fds(A, A, B, B, C, C), fds(A, B, B, C), [B]),
    ],
)
def test_pick_most(domains, all_machines, eligible, expected):
    picked = pick_most(domains, all_machines, eligible)
    if expected is None:
        assert picked is None
    else:
        assert picked in expected
        assert picked == min(expected, key=domains.index)


def test_spread_places_machines_evenly():
    assert spread(3, ("a", "b", "c"), [], []) == ["a", "b", "c"]
    assert spread(3, ("a", "b", "c"), fds("a", "a", "b"), fds("a", "a", "b")) == ["c", "b", "c"]
    assert spread(2, (), [], []) == [None, None]
    assert spread(0, ("a",), [], []) == []


def test_worker_machines_spread_over_azs_unless_pinned():
    state = DeploymentState(
        replicas=6, strategy=rolling(1, 0), current_revision="r1", failure_domains=("a", "b", "c")
    )
    plan = plan_machine_deployment(state)
    assert [c.failure_domain for c in plan.create] == ["a", "b", "c", "a", "b", "c"]
    pinned = plan_machine_deployment(state.model_copy(update={"pinned_failure_domain": "b"}))
    assert {c.failure_domain for c in pinned.create} == {"b"}


def test_rollout_keeps_azs_balanced():
    sim = DeploymentSim(replicas=3, strategy=rolling(1, 0), current="r1", failure_domains=("a", "b", "c"))
    sim.run(invariants=False)  # creation from nothing: no availability floor to keep yet
    assert sorted(m.failure_domain for m in sim.machines) == ["a", "b", "c"]
    sim.current = "r2"
    sim.run()
    assert sorted(m.failure_domain for m in sim.machines) == ["a", "b", "c"]


# =============================================================================================
# Deployment status, progress deadline, remediation of workers
# =============================================================================================


def test_deployment_counts_and_complete():
    machines = (
        machine("a", "r2", 0),
        machine("b", "r2", 0, ready_since=95),
        machine("c", "r1", 0, deleting=True),
        machine("d", "r2", 0, ready=False),
    )
    state = DeploymentState(
        replicas=3, strategy=rolling(1, 0, min_ready=10), current_revision="r2", machines=machines, now=100
    )
    counts = deployment_counts(state)
    assert counts.model_dump() == {
        "replicas": 4,
        "ready": 2,
        "available": 1,
        "up_to_date": 3,
        "unavailable": 2,
    }
    assert not deployment_complete(state)
    done = state.model_copy(update={"machines": machines[:2] + (machine("d", "r2", 0),), "now": 200})
    assert deployment_complete(done)


def test_progress_deadline():
    assert not progress_deadline_exceeded(100, 700, 600)
    assert progress_deadline_exceeded(100, 700.5, 600)


def test_state_validation():
    with pytest.raises(ValueError):
        DeploymentState(replicas=-1, current_revision="r")
    with pytest.raises(ValueError, match="unique"):
        DeploymentState(replicas=1, current_revision="r", machines=(machine("a"), machine("a")))
    with pytest.raises(ValueError, match="node"):
        MachineView(name="x", revision="r", created=0, ready_since=1)


def test_deployment_remediation_current_revision_newest_first_within_max_in_flight():
    machines = (
        machine("old", "r1", 1, healthy=False),
        machine("n1", "r2", 10, healthy=False),
        machine("n2", "r2", 20, healthy=False),
        machine("n3", "r2", 30, healthy=False, ready=False),
        machine("gone", "r2", 5, healthy=False, deleting=True),
    )
    unhealthy = ["old", "n1", "n2", "n3", "gone"]
    all_now = plan_deployment_remediation(machines, unhealthy, "r2", replicas=4)
    assert all_now.remediate == ("n3", "n2", "n1") and all_now.skipped == ("old",)
    limited = plan_deployment_remediation(machines, unhealthy, "r2", replicas=4, max_in_flight=2, in_flight=1)
    assert limited.remediate == ("n3",) and limited.deferred == ("n2", "n1")
    assert "too many remediations" in limited.reason
    pct = plan_deployment_remediation(machines, unhealthy, "r2", replicas=3, max_in_flight="50%")
    assert pct.remediate == ("n3", "n2")  # 50% of 3 rounds up to 2
    old_only = plan_deployment_remediation(machines, ["old"], "r2", replicas=4)
    assert old_only.remediate == () and "pending removal due to rollout" in old_only.reason


# =============================================================================================
# KubeadmControlPlane: validation (issue 6; CAPI webhook tests)
# =============================================================================================


@pytest.mark.parametrize(
    ("replicas", "valid"),
    [(-1, False), (0, False), (1, True), (2, False), (3, True), (4, False), (5, True), (7, True)],
)
def test_control_plane_replicas(replicas, valid):
    assert is_valid_control_plane_replicas(replicas) is valid
    assert (control_plane_replicas_error(replicas) is None) is valid


def test_even_replicas_message_is_clear():
    assert "even" in control_plane_replicas_error(4) and "3 or 5" in control_plane_replicas_error(4)


@pytest.mark.parametrize(
    ("replicas", "surge", "ok"), [(3, 1, True), (3, 0, True), (1, 0, False), (1, 1, True), (5, 2, False)]
)
def test_rollout_strategy(replicas, surge, ok):
    assert (rollout_strategy_error(replicas, surge) is None) is ok


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        ("v1.20.0", "v1.21.0", True),  # issue 6
        ("v1.20.0", "v1.22.0", False),  # issue 6: skipping a minor
        ("v1.20.5", "v1.21.9", True),  # any patch of the next minor
        ("v1.16.6", "v1.18.1", False),  # CAPI: "should fail when skipping control plane minor versions"
        ("v1.16.6", "v1.16.6", True),  # same version
        ("v1.16.6", "v1.16.9", True),
        ("v1.16.9", "v1.16.6", True),  # patch downgrade allowed, as in CAPI
        ("v1.18.8", "v1.19.0", False),  # CAPI: v1.19.0 is refused
        ("v1.18.8", "v1.19.1", True),
        ("v1.21.0", "v1.20.0", False),  # minor downgrade: refused by capt
        ("v1.30.0", "v2.0.0", False),
        ("1.29.3", "v1.30.0-rc.1", True),
        ("v1.20.0", "", False),  # CAPI: "should fail when no control plane version is passed"
        ("v1.20.0", "latest", False),
    ],
)
def test_version_change(current, target, ok):
    error = version_change_error(current, target)
    assert (error is None) is ok, error


def test_minor_downgrade_can_be_allowed_explicitly():
    assert version_change_error("v1.21.0", "v1.20.3", allow_minor_downgrade=True) is None
    assert "v1.21.x" in version_change_error("v1.20.0", "v1.22.0")


def test_parse_kubernetes_version():
    assert parse_kubernetes_version("v1.30.2+build.1") == (1, 30, 2)
    with pytest.raises(ValueError):
        parse_kubernetes_version("v1.30")


# =============================================================================================
# etcd quorum (issue 6; CAPI canSafelyRemoveEtcdMember tests)
# =============================================================================================


@pytest.mark.parametrize(("members", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_etcd_quorum(members, quorum):
    assert etcd_quorum(members) == quorum


@pytest.mark.parametrize(
    ("members", "unhealthy", "target", "allowed"),
    [
        (["n1"], {"n1"}, "n1", False),  # 1 machine CP: nothing left
        (["n1", "n2"], {"n1"}, "n1", True),  # 2 machines, no other failure
        (["n1", "n2"], {"n1", "n2"}, "n1", False),  # 2 machines, one more failure
        (["n1", "n2", "n3"], {"n1"}, "n1", True),  # issue 6: 1 of 3 unhealthy
        (["n1", "n2", "n3"], {"n1", "n2"}, "n1", False),  # issue 6: 2 of 3 unhealthy
        (["n2", "n3"], set(), None, True),  # the machine being remediated has no member
        (["n1", "n2", "n3", "n4", "n5"], {"n1", "n2"}, "n1", True),  # 5: one more failure tolerated
        (["n1", "n2", "n3", "n4", "n5"], {"n1", "n2", "n3"}, "n1", False),
        ([f"n{i}" for i in range(1, 8)], {"n1", "n2", "n3"}, "n1", True),  # 7: two more
        ([f"n{i}" for i in range(1, 8)], {"n1", "n2", "n3", "n4"}, "n1", False),
        (["n1", "n2", "n3", "n4"], {"n1", "n2"}, "n1", True),  # even count: 3 left, 2 healthy
    ],
)
def test_can_safely_remove_etcd_member(members, unhealthy, target, allowed):
    assert can_safely_remove_etcd_member(members, unhealthy, target) is allowed


@pytest.mark.parametrize("n", [3, 5, 7])
def test_capi_rule_matches_issue_formula_for_odd_member_counts(n):
    members = [f"n{i}" for i in range(n)]
    for u in range(1, n + 1):  # the target plus u-1 other unhealthy members
        capi = can_safely_remove_etcd_member(members, set(members[:u]), members[0])
        issue = n - u >= n // 2 + 1
        assert capi is issue, (n, u)


def test_assessment_reason_carries_numbers():
    a = assess_etcd_member_removal(["n1", "n2", "n3"], {"n1", "n2"}, "n1")
    assert (a.target_members, a.target_unhealthy, a.target_quorum) == (2, 1, 2)
    assert "would lose" in a.reason and "1 healthy of 2" in a.reason


# =============================================================================================
# Control plane scale-down choice and preflight (CAPI scale_test.go)
# =============================================================================================

H = 3600.0


def cp_machine(name, fd, created, *, marked=False, **kw):
    return machine(name, "r1", created, fd=fd, marked=marked, **kw)


M = {
    "machine-1": cp_machine("machine-1", "one", H),
    "machine-2": cp_machine("machine-2", "one", -3 * H),
    "machine-3": cp_machine("machine-3", "one", -4 * H),
    "machine-4": cp_machine("machine-4", "two", -H),
    "machine-5": cp_machine("machine-5", "two", -2 * H),
    "machine-6": cp_machine("machine-6", "two", -7 * H),
    "machine-7": cp_machine("machine-7", "two", -5 * H, marked=True),
    "machine-8": cp_machine("machine-8", "two", -6 * H, marked=True),
}
MC3 = [M[f"machine-{i}"] for i in (1, 2, 3, 4, 5)]
UP_TO_DATE = [m for m in MC3 if m.name != "machine-5"]
MC6 = [M[f"machine-{i}"] for i in (6, 7, 8)]


@pytest.mark.parametrize(
    ("machines", "outdated", "expected"),
    [
        (MC3, ["machine-5"], "machine-5"),  # oldest in the FD with most outdated machines
        (UP_TO_DATE, [], "machine-3"),  # no outdated: oldest in the largest FD
        (MC6, ["machine-6", "machine-7"], "machine-7"),  # the single marked outdated machine
        (MC6, ["machine-7", "machine-8"], "machine-8"),  # oldest marked machine first
        (MC6, [], "machine-8"),  # marked but up to date: still first
    ],
)
def test_select_machine_for_scale_down(machines, outdated, expected):
    picked = select_machine_for_scale_down(machines, ("one", "two"), outdated)
    assert picked is not None and picked.name == expected


def test_select_machine_for_scale_down_more_rules():
    ms = [
        cp_machine("a1", "a", 1),
        cp_machine("a2", "a", 2, components=False),
        cp_machine("b1", "b", 3),
        cp_machine("x1", None, 4),
        cp_machine("gone", "a", 0, deleting=True),
    ]
    # Outdated with unhealthy components beat other outdated machines.
    assert select_machine_for_scale_down(ms[:3], ("a", "b"), ["a1", "a2", "b1"]).name == "a2"
    # A machine outside the known failure domains goes first.
    assert select_machine_for_scale_down(ms, ("a", "b"), []).name == "x1"
    # Deleting machines are never picked; nothing alive -> None.
    assert select_machine_for_scale_down(ms[4:], ("a", "b")) is None


def test_preflight():
    good = [cp_machine("a", "a", 1), cp_machine("b", "b", 2)]
    assert preflight_failures([]) == []
    assert preflight_failures(good) == []
    assert "to be deleted: c" in preflight_failures([*good, cp_machine("c", "c", 3, deleting=True)])[0]
    assert "does not have a node" in preflight_failures([*good, cp_machine("c", "c", 3, ready=False)])[0]
    not_ready = cp_machine("c", "c", 3, ready=False, node=True)
    assert "not Ready" in preflight_failures([*good, not_ready])[0]
    assert "components" in preflight_failures([*good, cp_machine("c", "c", 3, components=False)])[0]
    assert "etcd member" in preflight_failures([*good, cp_machine("c", "c", 3, etcd=False)])[0]
    # The machine about to be removed is excluded from the checks.
    assert preflight_failures([*good, cp_machine("c", "c", 3, etcd=False)], exclude="c") == []


def test_needs_rollout_and_scale_up_failure_domain():
    m_old = machine("o", "r1", 10, fd="a")
    assert needs_rollout(m_old, "r2")
    assert not needs_rollout(m_old, "r1")
    assert needs_rollout(m_old, "r1", rollout_after=50, now=60)  # created before a passed rolloutAfter
    assert not needs_rollout(m_old, "r1", rollout_after=50, now=40)  # not passed yet
    ms = [
        machine("a-new", "r2", 1, fd="a"),
        machine("b-old", "r1", 1, fd="b"),
        machine("c-old", "r1", 1, fd="c"),
    ]
    assert pick_failure_domain_for_scale_up(("a", "b", "c"), ms, "r2") == "b"


# =============================================================================================
# Control plane simulation (issue 6: init, scale with AZ spread, rolling upgrades)
# =============================================================================================


@dataclass
class ControlPlaneSim:
    replicas: int
    max_surge: int = 1
    revision: str = "v1"
    failure_domains: tuple[str, ...] = ("a", "b", "c")
    machines: list[MachineView] = field(default_factory=list)
    initialized: bool = False
    now: float = 0.0
    seq: int = 0
    log: list[str] = field(default_factory=list)

    def state(self) -> ControlPlaneState:
        return ControlPlaneState(
            replicas=self.replicas,
            max_surge=self.max_surge,
            desired_revision=self.revision,
            machines=tuple(self.machines),
            failure_domains=self.failure_domains,
            initialized=self.initialized,
            now=self.now,
        )

    def ready(self) -> int:
        return sum(1 for m in self.machines if m.ready and m.components_healthy)

    def step(self) -> str:
        step = plan_control_plane(self.state())
        if step.action in ("init", "scale_up"):
            self.seq += 1
            self.machines.append(
                MachineView(
                    name=f"cp{self.seq}",
                    revision=self.revision,
                    created=self.now,
                    failure_domain=step.failure_domain,
                )
            )
        elif step.action == "scale_down":
            assert step.etcd_leader_candidate not in (None, step.machine)
            self.machines = [
                m.model_copy(update={"deleting": True}) if m.name == step.machine else m
                for m in self.machines
            ]
        self.log.append(step.action)
        return step.action

    def tick(self) -> None:
        self.now += 1
        self.machines = [
            m
            if m.ready_since is not None
            else m.model_copy(update={"node_name": f"n-{m.name}", "ready_since": self.now})
            for m in self.machines
            if not m.deleting
        ]
        if self.machines:
            self.initialized = True

    def run(self, max_count: int, min_ready: int, steps: int = 100) -> None:
        for _ in range(steps):
            action = self.step()
            assert len(self.machines) <= max_count, (len(self.machines), self.log)
            assert self.ready() >= min_ready, (self.ready(), self.log)
            if action == "idle":
                return
            self.tick()
            assert self.ready() >= min_ready
        raise AssertionError(f"no convergence: {self.log}")

    def per_az(self) -> list[int]:
        return [sum(1 for m in self.machines if m.failure_domain == fd) for fd in self.failure_domains]


def test_control_plane_init_then_scale_3_5_3_with_az_spread():
    sim = ControlPlaneSim(replicas=3)
    sim.run(max_count=3, min_ready=0)
    assert sim.log[0] == "init" and sim.log.count("scale_up") == 2
    assert sim.per_az() == [1, 1, 1]
    sim.replicas = 5
    sim.run(max_count=5, min_ready=3)
    assert sorted(sim.per_az()) == [1, 2, 2]
    sim.replicas = 3
    sim.run(max_count=5, min_ready=3)
    assert sim.per_az() == [1, 1, 1]
    assert sim.log.count("scale_down") == 2


@pytest.mark.parametrize(("surge", "max_count", "min_ready"), [(1, 4, 3), (0, 3, 2)])
def test_control_plane_rolling_upgrade(surge, max_count, min_ready):
    sim = ControlPlaneSim(replicas=3, max_surge=surge)
    sim.run(max_count=3, min_ready=0)
    sim.revision = "v2"
    log_start = len(sim.log)
    sim.run(max_count=max_count, min_ready=min_ready)
    actions = [a for a in sim.log[log_start:] if a in ("scale_up", "scale_down")]
    first, second = ("scale_up", "scale_down") if surge else ("scale_down", "scale_up")
    assert actions == [first, second] * 3
    assert {m.revision for m in sim.machines} == {"v2"} and len(sim.machines) == 3
    assert sim.per_az() == [1, 1, 1]


def test_control_plane_waits_for_initialization_and_preflight():
    booting = ControlPlaneState(
        replicas=3, desired_revision="v1", machines=(machine("cp1", "v1", 0, ready=False),), initialized=False
    )
    step = plan_control_plane(booting)
    assert step.action == "wait" and "initialized" in step.reason
    unhealthy = booting.model_copy(
        update={"machines": (machine("cp1", "v1", 0, etcd=False),), "initialized": True}
    )
    step = plan_control_plane(unhealthy)
    assert step.action == "wait" and "etcd member" in step.reason


def test_control_plane_never_removes_its_last_machine():
    state = ControlPlaneState(
        replicas=1, max_surge=0, desired_revision="v2", machines=(machine("cp1", "v1", 0),), initialized=True
    )
    step = plan_control_plane(state)
    assert step.action == "wait" and "last control plane machine" in step.reason


# =============================================================================================
# Control plane remediation preconditions (issue 6; CAPI remediation.go)
# =============================================================================================


def three(unhealthy=("cp1",), etcd_bad=("cp1",), **kw):
    return [
        machine(n, "v1", float(i), fd=fd, healthy=n not in unhealthy, etcd=n not in etcd_bad, **kw)
        for i, (n, fd) in enumerate([("cp1", "a"), ("cp2", "b"), ("cp3", "c")])
    ]


def test_remediation_allowed_one_of_three():
    d = check_control_plane_remediation(three(), "cp1", initialized=True, now=100)
    assert d.allowed and d.retry_count == 0
    assert d.etcd_leader_candidate == "cp3"  # newest healthy machine


def test_remediation_refused_to_protect_quorum():
    d = check_control_plane_remediation(three(etcd_bad=("cp1", "cp2")), "cp1", initialized=True, now=100)
    assert not d.allowed and "quorum" in d.reason


def test_remediation_counts_members_without_machines_healthy_unless_alarmed():
    """CAPI (issue 18): a member with no machine is healthy unless etcd reports an alarm for it."""
    members = ["node-cp1", "node-cp2", "node-cp3", "ghost"]
    ok = check_control_plane_remediation(three(), "cp1", initialized=True, now=1, etcd_members=members)
    assert ok.allowed  # 3 left: cp2, cp3, ghost all healthy -> 3 >= 2
    # cp3's member is unhealthy too: cp2 + ghost healthy of 3 -> 2 >= 2
    also = check_control_plane_remediation(
        three(etcd_bad=("cp1", "cp3")), "cp1", initialized=True, now=1, etcd_members=members
    )
    assert also.allowed
    # ... unless the ghost has an alarm: 1 healthy of 3 -> below quorum 2
    alarmed = check_control_plane_remediation(
        three(etcd_bad=("cp1", "cp3")),
        "cp1",
        initialized=True,
        now=1,
        etcd_members=members,
        etcd_alarms=("ghost",),
    )
    assert not alarmed.allowed


@pytest.mark.parametrize(
    ("machines", "kw", "fragment"),
    [
        ([machine("cp1", healthy=False)], {}, "less or equal to 1"),
        ([*three(), machine("cp4", "v1", 9, ready=False)], {}, "provisioning"),
        ([*three(), machine("cp4", "v1", 9, deleting=True)], {}, "deletion"),
        (three(), {"in_progress": RemediationRecord(machine="cp0", timestamp=50)}, "another remediation"),
        (
            three(),
            {"last_remediation": RemediationRecord(machine="cp0", timestamp=90), "retry_period_seconds": 60},
            "retryPeriod",
        ),
        (
            three(),
            {
                "last_remediation": RemediationRecord(machine="cp0", timestamp=0, retry_count=2),
                "max_retry": 2,
            },
            "maxRetry",
        ),
    ],
)
def test_remediation_refusals(machines, kw, fragment):
    d = check_control_plane_remediation(machines, "cp1", initialized=True, now=100, **kw)
    assert not d.allowed and fragment in d.reason, d.reason


def test_remediation_of_an_uninitialized_single_machine_is_allowed():
    d = check_control_plane_remediation(
        [machine("cp1", healthy=False, ready=False)], "cp1", initialized=False, now=10
    )
    assert d.allowed and d.etcd_leader_candidate is None


def test_remediation_already_deleting_or_unknown():
    ms = three()
    ms[0] = ms[0].model_copy(update={"deleting": True})
    assert (
        "already being deleted" in check_control_plane_remediation(ms, "cp1", initialized=True, now=1).reason
    )
    assert not check_control_plane_remediation(ms, "nope", initialized=True, now=1).allowed


def test_stale_in_progress_record_and_retry_counting():
    ms = three()  # machines created at t=0, 1, 2
    stale = RemediationRecord(machine="cp0", timestamp=1.5)  # cp3 was created after it: finished
    assert check_control_plane_remediation(ms, "cp1", initialized=True, now=100, in_progress=stale).allowed
    retry = RemediationRecord(machine="cp0", timestamp=10, retry_count=1)
    d = check_control_plane_remediation(
        ms, "cp1", initialized=True, now=100, last_remediation=retry, max_retry=3
    )
    assert d.allowed and d.retry_count == 2
    # Past minHealthyPeriod the machine counts as having been healthy: a new retry sequence.
    later = check_control_plane_remediation(
        ms, "cp1", initialized=True, now=10 + 3601, last_remediation=retry, max_retry=1
    )
    assert later.allowed and later.retry_count == 0


def test_pick_machine_to_remediate():
    ms = [
        machine("old-bad", created=1, healthy=False),
        machine("new-bad-no-node", created=5, healthy=False, ready=False),
        machine("ok", created=0),
    ]
    assert pick_machine_to_remediate(ms).name == "new-bad-no-node"
    assert pick_machine_to_remediate(ms[::2]).name == "old-bad"
    assert pick_machine_to_remediate([machine("ok")]) is None


# =============================================================================================
# MachineHealthCheck short-circuit and maxInFlight (issue 9; CAPI TestIsAllowedRemediation)
# =============================================================================================


@pytest.mark.parametrize(
    ("max_unhealthy", "expected", "healthy", "allowed", "remaining"),
    [
        (None, 3, 0, True, 0),  # not set
        ("abcdef", 5, 2, False, 0),  # not an int or percentage
        (1, 3, 1, False, 0),  # int less than current unhealthy
        (2, 3, 1, True, 0),  # int equal
        (3, 3, 1, True, 1),  # int greater
        ("50%", 5, 2, False, 0),  # percentage less (floor 2.5 = 2 < 3)
        ("60%", 5, 2, True, 0),  # percentage equal
        ("70%", 5, 2, True, 0),  # percentage greater (floor 3.5 = 3)
        ("40%", 6, 3, False, 0),  # issue 9: 3 of 6 unhealthy with 40% -> nothing remediated
        ("40%", 5, 3, True, 0),  # not above maxUnhealthy (2 of 5)
        (2, 5, 2, False, 0),  # above (3 of 5)
        ("2", 5, 3, False, 0),  # a string that is not a percentage
    ],
)
def test_max_unhealthy(max_unhealthy, expected, healthy, allowed, remaining):
    verdict = max_unhealthy_allows(max_unhealthy, None, expected, expected - healthy)
    assert verdict.allowed is allowed
    assert verdict.remaining == remaining
    assert (verdict.reason == "") is allowed


def test_too_many_unhealthy_reason():
    verdict = max_unhealthy_allows("40%", None, 6, 3)
    assert verdict.reason.startswith(TOO_MANY_UNHEALTHY)
    assert "total: 6, unhealthy: 3, maxUnhealthy: 40%" in verdict.reason


@pytest.mark.parametrize(
    ("value", "unhealthy", "allowed", "remaining"),
    [
        ("[1-3]", 0, False, 0),
        ("[1-3]", 1, True, 2),
        ("[1-3]", 3, True, 0),
        ("[1-3]", 4, False, 0),
        ((0, 2), 2, True, 0),
        ("[3-1]", 2, False, 0),  # max below min
        ("1-3", 2, False, 0),  # malformed
    ],
)
def test_unhealthy_range(value, unhealthy, allowed, remaining):
    verdict = max_unhealthy_allows("0%", value, 10, unhealthy)  # the range wins over maxUnhealthy
    assert (verdict.allowed, verdict.remaining) == (allowed, remaining)
    if not allowed and value in ("[1-3]",):
        assert verdict.reason.startswith(TOO_MANY_UNHEALTHY) and "unhealthyRange: [1-3]" in verdict.reason


def test_parse_unhealthy_range():
    assert parse_unhealthy_range("[2-5]") == (2, 5)
    assert parse_unhealthy_range((2, 5)) == (2, 5)
    for bad in ("[5-2]", "[a-b]", "2-5", (3, 1)):
        with pytest.raises(ValueError):
            parse_unhealthy_range(bad)


@pytest.mark.parametrize(
    ("max_in_flight", "replicas", "in_flight", "start", "deferred"),
    [
        (None, 3, 5, ("a", "b", "c"), ()),
        (1, 3, 0, ("a",), ("b", "c")),
        (2, 3, 1, ("a",), ("b", "c")),
        (2, 3, 2, (), ("a", "b", "c")),
        ("34%", 3, 0, ("a", "b"), ("c",)),  # ceil(1.02) = 2
        ("100%", 3, 0, ("a", "b", "c"), ()),
    ],
)
def test_limit_in_flight(max_in_flight, replicas, in_flight, start, deferred):
    result = limit_in_flight(["a", "b", "c"], max_in_flight, replicas, in_flight)
    assert (result.start, result.deferred) == (start, deferred)
    assert bool(result.reason) == bool(deferred)
