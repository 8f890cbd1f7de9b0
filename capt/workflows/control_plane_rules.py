"""KubeadmControlPlane arithmetic with CAPI's semantics — pure, deterministic, table-tested.

The ControlPlaneWorkflow asks `plan_control_plane` for one step at a time (create the first
machine with `kubeadm init`, add one, remove one, or wait and why), and asks
`check_control_plane_remediation` before it replaces an unhealthy machine. Validators for its
Temporal Updates use `control_plane_replicas_error`, `rollout_strategy_error` and
`version_change_error` so a bad request never enters history.

Sources followed (kubernetes-sigs/cluster-api, read to learn, not copied):
`controlplane/kubeadm/internal/controllers/{controller,scale,upgrade,remediation}.go`
(reconcile order, preflightChecks, selectMachineForScaleDown, upgradeControlPlane,
reconcileUnhealthyMachines, checkRetryLimits, canSafelyRemoveEtcdMember),
`controlplane/kubeadm/internal/control_plane.go` (MachineInFailureDomainWithMostMachines,
NextFailureDomainForScaleUp), `controlplane/kubeadm/internal/webhooks` (replicas, maxSurge and
version validation) and `util/failuredomains`.

Documented choices
------------------
- *Downgrades.* CAPI's webhook only forbids going up two or more minor versions (and to v1.19.0);
  it lets a minor downgrade through, which kubeadm cannot perform on a running control plane.
  capt rejects a minor (or major) downgrade unless the caller explicitly allows it; patch
  downgrades within a minor are allowed, as in CAPI.
- *Preflight.* CAPI requires, before adding or removing a machine, that no machine is being
  deleted, every machine has a node and every control-plane pod / etcd member condition is true.
  capt additionally requires the node to be Ready (the issue's "every machine has a Ready node")
  and waits for the control plane to be initialized before adding a second machine.
- *Ties.* Failure-domain ties are broken by the cluster's AZ order (see `failure_domains`),
  machine ties by creation time then name (CAPI's `Oldest()`/`Newest()`).
- *Never below one.* A scale-down that would leave no machine is refused even if the spec asks
  for it (replicas are validated to be >= 1 anyway).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Literal

from capt.rules.base import Frozen
from capt.rules.placement import pick_fewest, pick_most
from capt.spec.models import DEFAULT_MIN_HEALTHY_PERIOD_SECONDS as _SPEC_DEFAULT_MIN_HEALTHY_PERIOD_SECONDS
from capt.workflows.rollout import MachineView

# ---------------------------------------------------------------------------------------------
# Validation (Update validators)
# ---------------------------------------------------------------------------------------------


def is_valid_control_plane_replicas(replicas: int) -> bool:
    """Stacked etcd needs an odd member count: 1, 3, 5, 7, …"""
    return replicas >= 1 and replicas % 2 == 1


def control_plane_replicas_error(replicas: int) -> str | None:
    """The message a validator rejects `replicas` with, or None when it is fine."""
    if replicas < 1:
        return f"control plane replicas must be at least 1, got {replicas}"
    if replicas % 2 == 0:
        return (
            f"control plane replicas cannot be an even number ({replicas}) when etcd is stacked on "
            f"the control plane: use {replicas - 1} or {replicas + 1}"
        )
    return None


def rollout_strategy_error(replicas: int, max_surge: int) -> str | None:
    """KCP's rollout strategy rules: maxSurge is 0 or 1; 0 (remove first) needs >= 3 replicas."""
    if max_surge not in (0, 1):
        return f"control plane maxSurge must be 1 or 0, got {max_surge}"
    if max_surge == 0 and replicas < 3:
        return (
            "when the control plane is configured to scale in (maxSurge 0), replicas need to be "
            f"at least 3, got {replicas}"
        )
    return None


# Version rules live in spec/versions.py (one place for validate, apply and the workflows).


# ---------------------------------------------------------------------------------------------
# etcd quorum
# ---------------------------------------------------------------------------------------------


def etcd_quorum(members: int) -> int:
    """Votes an etcd cluster of `members` voting members needs: n // 2 + 1."""
    return members // 2 + 1


class EtcdRemovalAssessment(Frozen):
    allowed: bool
    target_members: int  # members left after the removal
    target_unhealthy: int  # of those, how many are unhealthy
    target_quorum: int  # quorum of the cluster left after the removal

    @property
    def reason(self) -> str:
        verdict = "keeps" if self.allowed else "would lose"
        return (
            f"removing the member {verdict} etcd quorum: {self.target_members - self.target_unhealthy} "
            f"healthy of {self.target_members} remaining members, quorum {self.target_quorum}"
        )


def assess_etcd_member_removal(
    members: Sequence[str], unhealthy: Collection[str], target: str | None
) -> EtcdRemovalAssessment:
    """CAPI's `canSafelyRemoveEtcdMember`, exactly.

    Project the etcd cluster *after* removing `target` (None when the machine to remove hosts no
    member): `t` members remain, `u` of them unhealthy (a member with no matching machine counts as
    unhealthy — the caller puts it in `unhealthy`). Removal is safe iff `t - u >= t // 2 + 1`.

    How this relates to the issue's phrasing "with n members and u unhealthy (the one being
    replaced counted as unhealthy), remove only if n - u >= n // 2 + 1": for the odd member counts
    a stable control plane has (3, 5, 7) the two are the same rule — 3 tolerates only the target
    being unhealthy, 5 one more, 7 two more. With an even count (mid-rollout, e.g. 4 after a
    surge) CAPI's projection is the exact one and allows what is safe: 4 members, the target and
    one other unhealthy -> 3 remain, 2 healthy >= quorum 2.
    """
    remaining = [m for m in dict.fromkeys(members) if m != target]
    total = len(remaining)
    bad = sum(1 for m in remaining if m in unhealthy)
    quorum = etcd_quorum(total)
    return EtcdRemovalAssessment(
        allowed=total - bad >= quorum, target_members=total, target_unhealthy=bad, target_quorum=quorum
    )


def can_safely_remove_etcd_member(
    members: Sequence[str], unhealthy: Collection[str], target: str | None
) -> bool:
    return assess_etcd_member_removal(members, unhealthy, target).allowed


def _etcd_view(
    machines: Sequence[MachineView], etcd_members: Sequence[str] | None, alarms: Collection[str] = ()
) -> tuple[list[str], set[str]]:
    """Members and unhealthy members; members default to the machines' node names.

    A member with a machine is as healthy as that machine's etcd member; a member without a
    machine (CAPI: its health cannot be read) counts as healthy unless etcd reports an alarm
    for it (`alarms`: member names).
    """
    by_node = {m.node_name: m for m in machines if m.node_name is not None}
    members = list(etcd_members) if etcd_members is not None else list(by_node)
    unhealthy = {
        member
        for member in members
        if (member in alarms if member not in by_node else not by_node[member].etcd_member_healthy)
    }
    return members, unhealthy


def projected_scale_up_failures(
    machines: Sequence[MachineView],
    etcd_members: Sequence[str] | None = None,
    alarms: Collection[str] = (),
) -> list[str]:
    """CAPI's checkHealthinessWhileRemediationInProgress: may a replacement machine be added while
    a remediation is in progress, though not every machine is healthy? Projects the target
    control plane (the current machines plus one new machine, assumed unhealthy — the worst
    case — unless it would be the first or second etcd member) and asks two things: is there
    still one machine whose control-plane components are all healthy, and would the projected
    etcd cluster keep quorum? So a 5-machine control plane that lost two machines can replace
    them one at a time instead of waiting for every machine to be healthy (a deadlock)."""
    failures: list[str] = []
    alive = [m for m in machines if not m.deleting]
    if alive and not any(m.components_healthy and m.node_name is not None for m in alive):
        failures.append(
            "cannot add a control plane machine when no machine has all control plane components healthy"
        )
    members, unhealthy = _etcd_view(machines, etcd_members, alarms)
    if not members:
        failures.append("cannot check etcd health before scale up: the etcd member list is empty")
        return failures
    voting = len(members) + 1
    bad = len(unhealthy) + (1 if len(members) > 1 else 0)
    quorum = voting // 2 + 1
    if voting - bad < quorum:
        failures.append(
            f"adding a member could lose etcd quorum: {voting - bad} healthy of {voting} members, quorum {quorum}"
        )
    return failures


# ---------------------------------------------------------------------------------------------
# Scale up / scale down choices
# ---------------------------------------------------------------------------------------------


def _oldest(machines: Iterable[MachineView]) -> MachineView | None:
    return min(machines, key=lambda m: (m.created, m.name), default=None)


def _newest(machines: Iterable[MachineView]) -> MachineView | None:
    return max(machines, key=lambda m: (m.created, m.name), default=None)


def needs_rollout(
    machine: MachineView, desired_revision: str, rollout_after: float | None = None, now: float = 0.0
) -> bool:
    """Outdated: another revision, or created before a `rolloutAfter` that has passed."""
    if machine.revision != desired_revision:
        return True
    return rollout_after is not None and rollout_after < now and machine.created < rollout_after


def pick_failure_domain_for_scale_up(
    failure_domains: Sequence[str],
    machines: Sequence[MachineView],
    desired_revision: str,
    rollout_after: float | None = None,
    now: float = 0.0,
) -> str | None:
    """The AZ with the fewest up-to-date, not-deleting machines; ties: fewest machines overall,
    then AZ order (CAPI's NextFailureDomainForScaleUp / PickFewest)."""
    up_to_date = [
        m for m in machines if not m.deleting and not needs_rollout(m, desired_revision, rollout_after, now)
    ]
    return pick_fewest(failure_domains, machines, up_to_date)


def select_machine_for_scale_down(
    machines: Sequence[MachineView], failure_domains: Sequence[str], outdated: Collection[str] = ()
) -> MachineView | None:
    """CAPI's selectMachineForScaleDown.

    Eligible machines are the first non-empty of: outdated machines marked for deletion; any machine
    marked for deletion; outdated machines with unhealthy control-plane components; outdated
    machines; all machines (machines already being deleted are never picked again). From them, the
    oldest machine in the failure domain with the most machines — except that an eligible machine
    outside the cluster's failure domains (or in none) goes first, oldest first.
    """
    alive = [m for m in machines if not m.deleting]
    old = [m for m in alive if m.name in outdated]
    groups = (
        [m for m in old if m.marked_for_deletion],
        [m for m in alive if m.marked_for_deletion],
        [m for m in old if not (m.components_healthy and m.etcd_member_healthy)],
        old,
        alive,
    )
    eligible = next((g for g in groups if g), None)
    if eligible is None:
        return None
    outside = [m for m in eligible if m.failure_domain not in failure_domains]
    # A machine outside the known failure domains goes first; else the fullest failure domain.
    oldest_outside = _oldest(outside)
    fd = oldest_outside.failure_domain if oldest_outside else pick_most(failure_domains, machines, eligible)
    return _oldest(m for m in eligible if m.failure_domain == fd)


def preflight_failures(machines: Sequence[MachineView], exclude: str | None = None) -> list[str]:
    """Why the control plane is not stable enough to add or remove a machine (empty: go ahead).

    No machine may be deleting; every machine (but `exclude`, the one about to be removed) must have
    a Ready node, healthy control-plane components and a healthy etcd member.
    """
    if not machines:
        return []
    deleting = sorted(m.name for m in machines if m.deleting)
    if deleting:
        return [f"waiting for machines to be deleted: {', '.join(deleting)}"]
    failures: list[str] = []
    for m in sorted(machines, key=lambda m: m.name):
        if m.name == exclude:
            continue
        if m.node_name is None:
            failures.append(f"machine {m.name} does not have a node yet")
            continue
        if m.ready_since is None:
            failures.append(f"machine {m.name}: node {m.node_name} is not Ready")
        if not m.components_healthy:
            failures.append(f"machine {m.name}: control plane components are not healthy")
        if not m.etcd_member_healthy:
            failures.append(f"machine {m.name}: etcd member is not healthy")
    return failures


# ---------------------------------------------------------------------------------------------
# The control plane planner
# ---------------------------------------------------------------------------------------------


class ControlPlaneState(Frozen):
    replicas: int
    max_surge: int = 1
    # Revision (hash of version + machine template + kubeadm config) new machines get.
    desired_revision: str
    machines: tuple[MachineView, ...] = ()
    failure_domains: tuple[str, ...] = ()
    initialized: bool = False
    rollout_after: float | None = None
    now: float = 0.0
    # A remediation deleted a machine and its replacement is not created yet.
    remediation_in_progress: bool = False


class ControlPlaneStep(Frozen):
    # init: create the first machine (kubeadm init); scale_up: join one more; scale_down: remove
    # `machine` (move etcd leadership to `etcd_leader_candidate`, remove its etcd member, then
    # delete it); wait: nothing is safe now, see `reason`; idle: nothing to do.
    action: Literal["idle", "init", "scale_up", "scale_down", "wait"]
    purpose: Literal["", "scale", "rollout"] = ""
    machine: str | None = None
    failure_domain: str | None = None
    etcd_leader_candidate: str | None = None
    outdated: tuple[str, ...] = ()
    reason: str = ""


def plan_control_plane(state: ControlPlaneState) -> ControlPlaneStep:
    """One KCP step. A rollout (machines needing it) takes precedence over scaling:
    with fewer than replicas + maxSurge machines add an up-to-date one, otherwise remove an
    outdated one — so maxSurge 1 creates first and maxSurge 0 removes first. Then scaling: the first
    machine is created with kubeadm init, more are added one at a time, extra ones removed one at a
    time. Every add and remove waits for the preflight checks. Remediation is separate
    (`check_control_plane_remediation`) and, as in CAPI, is considered before this step.
    """
    machines = list(state.machines)
    outdated = tuple(
        sorted(
            m.name
            for m in machines
            if not m.deleting and needs_rollout(m, state.desired_revision, state.rollout_after, state.now)
        )
    )
    count = len(machines)  # deleting machines included, as in CAPI
    if outdated:
        if count < state.replicas + state.max_surge:
            return _scale_up(state, "rollout", outdated)
        return _scale_down(state, "rollout", outdated)
    if count < state.replicas:
        if count == 0:
            fd = pick_failure_domain_for_scale_up(state.failure_domains, machines, state.desired_revision)
            return ControlPlaneStep(
                action="init",
                purpose="scale",
                failure_domain=fd,
                reason="create the first control plane machine",
            )
        return _scale_up(state, "scale", outdated)
    if count > state.replicas:
        return _scale_down(state, "scale", outdated)
    return ControlPlaneStep(action="idle")


def _scale_up(
    state: ControlPlaneState, purpose: Literal["scale", "rollout"], outdated: tuple[str, ...]
) -> ControlPlaneStep:
    if not state.initialized:
        return ControlPlaneStep(
            action="wait",
            purpose=purpose,
            outdated=outdated,
            reason="waiting for the control plane to be initialized",
        )
    failures = preflight_failures(state.machines)
    if failures and state.remediation_in_progress and not any(m.deleting for m in state.machines):
        # The replacement of a remediated machine: CAPI's projected check, not "all healthy".
        failures = projected_scale_up_failures(state.machines)
    if failures:
        return ControlPlaneStep(action="wait", purpose=purpose, outdated=outdated, reason="; ".join(failures))
    fd = pick_failure_domain_for_scale_up(
        state.failure_domains, state.machines, state.desired_revision, state.rollout_after, state.now
    )
    return ControlPlaneStep(
        action="scale_up",
        purpose=purpose,
        failure_domain=fd,
        outdated=outdated,
        reason=f"{len(state.machines)} machines, want {state.replicas}"
        if purpose == "scale"
        else "rolling out",
    )


def _scale_down(
    state: ControlPlaneState, purpose: Literal["scale", "rollout"], outdated: tuple[str, ...]
) -> ControlPlaneStep:
    victim = select_machine_for_scale_down(state.machines, state.failure_domains, outdated)
    if victim is None:
        return ControlPlaneStep(
            action="wait", purpose=purpose, outdated=outdated, reason="no machine can be removed"
        )
    others = [m for m in state.machines if m.name != victim.name and not m.deleting]
    if not others:
        return ControlPlaneStep(
            action="wait",
            purpose=purpose,
            outdated=outdated,
            reason=f"refusing to remove {victim.name}: it is the last control plane machine",
        )
    failures = preflight_failures(state.machines, exclude=victim.name)
    if failures:
        return ControlPlaneStep(action="wait", purpose=purpose, outdated=outdated, reason="; ".join(failures))
    return ControlPlaneStep(
        action="scale_down",
        purpose=purpose,
        machine=victim.name,
        etcd_leader_candidate=_newest(others).name,  # type: ignore[union-attr]
        outdated=outdated,
        reason=f"remove {victim.name}" + (" (outdated)" if victim.name in outdated else ""),
    )


# ---------------------------------------------------------------------------------------------
# Remediation
# ---------------------------------------------------------------------------------------------


class RemediationRecord(Frozen):
    """A remediation: which machine was replaced, when, and how many retries in a row it took.
    CAPI keeps it in the remediation-in-progress annotation (on the KCP) while the replacement is
    being created, and then in the remediation-for annotation on the replacement machine."""

    machine: str
    timestamp: float
    retry_count: int = 0


class ControlPlaneRemediationDecision(Frozen):
    allowed: bool
    machine: str | None = None
    reason: str = ""
    # When allowed: the retry count to record with this remediation.
    retry_count: int = 0
    # When allowed and initialized: move etcd leadership here before removing the member.
    etcd_leader_candidate: str | None = None


def remediation_order_key(
    m: MachineView, marked: Collection[str] = (), *, etcd_managed: bool = True
) -> tuple[bool, bool, bool, bool, float, str]:
    """Sort key of CAPI's pickMachineToBeRemediated (KCP): lower goes first.

    1. a machine carrying the `cluster.x-k8s.io/remediate-machine` annotation (`marked`: the
       names of such machines) before one without;
    2. a machine without a node (provisioning failed: no control-plane components at all);
    3. with a stacked (managed) etcd: a machine whose etcd member or etcd pod is not healthy;
    4. a machine whose API server, controller-manager or scheduler pod is not healthy
       (`components_healthy`, which also covers the etcd pod: rule 3 has already ordered those);
    5. the oldest, then the name.
    """
    return (
        m.name not in marked,
        m.node_name is not None,
        etcd_managed and m.etcd_member_healthy,
        m.components_healthy,
        m.created,
        m.name,
    )


def order_machines_to_remediate(
    machines: Sequence[MachineView], marked: Collection[str] = (), *, etcd_managed: bool = True
) -> list[MachineView]:
    """The unhealthy machines (`healthy` False, or marked with the remediate-machine annotation,
    which the health check turns into unhealthy) in the order KCP remediates them
    (`remediation_order_key`). As in CAPI, a machine being deleted is not left out: when it comes
    first, `check_control_plane_remediation` refuses ("already being deleted") and KCP waits."""
    candidates = [m for m in machines if not m.healthy or m.name in marked]
    return sorted(candidates, key=lambda m: remediation_order_key(m, marked, etcd_managed=etcd_managed))


def pick_machine_to_remediate(
    machines: Sequence[MachineView], marked: Collection[str] = (), *, etcd_managed: bool = True
) -> MachineView | None:
    """CAPI's getMachineToBeRemediated: the first of `order_machines_to_remediate`, or None."""
    ordered = order_machines_to_remediate(machines, marked, etcd_managed=etcd_managed)
    return ordered[0] if ordered else None


# CAPI's DefaultMinHealthyPeriod (1h); a manifest's KCP sets its own
# (ControlPlaneSpec.remediation_min_healthy_period_seconds, which the caller passes).
DEFAULT_MIN_HEALTHY_PERIOD_SECONDS = _SPEC_DEFAULT_MIN_HEALTHY_PERIOD_SECONDS


def check_control_plane_remediation(
    machines: Sequence[MachineView],
    target: str,
    *,
    initialized: bool,
    now: float,
    etcd_members: Sequence[str] | None = None,
    etcd_alarms: Collection[str] = (),
    in_progress: RemediationRecord | None = None,
    last_remediation: RemediationRecord | None = None,
    max_retry: int | None = None,
    retry_period_seconds: float = 0,
    min_healthy_period_seconds: float = DEFAULT_MIN_HEALTHY_PERIOD_SECONDS,
) -> ControlPlaneRemediationDecision:
    """May the control plane delete `target` (to recreate it) now? CAPI's reconcileUnhealthyMachines.

    Refused, with the reason, when: the target is already being deleted; a previous remediation has
    not finished (no machine was created since it started); the retry limits say no
    (`last_remediation` is the record carried by the target if it was itself a replacement: within
    `min_healthy_period_seconds` of that remediation this counts as a retry, which must wait
    `retry_period_seconds` and may not exceed `max_retry`); and, once the control plane is
    initialized: it has one machine or fewer; a healthy machine is still provisioning (no node);
    a machine is being deleted; removing the target's etcd member would lose quorum
    (`assess_etcd_member_removal`); or no healthy machine can take etcd leadership.
    `etcd_members` is the etcd member list (node names); by default the machines' nodes. A
    member without a machine is healthy unless named in `etcd_alarms` (CAPI reads etcd alarms).
    """
    by_name = {m.name: m for m in machines}
    machine = by_name.get(target)
    if machine is None:
        return ControlPlaneRemediationDecision(
            allowed=False, machine=target, reason=f"unknown machine {target}"
        )
    if machine.deleting:
        return ControlPlaneRemediationDecision(
            allowed=False, machine=target, reason=f"machine {target} is already being deleted"
        )
    if in_progress is not None and not any(m.created > in_progress.timestamp for m in machines):
        return ControlPlaneRemediationDecision(
            allowed=False,
            machine=target,
            reason=f"another remediation is in progress (machine {in_progress.machine}): waiting for its replacement",
        )

    retry_count = 0
    if last_remediation is not None and last_remediation.timestamp + min_healthy_period_seconds > now:
        # The target replaced a machine recently and is failing again: a retry of that remediation.
        retry_count = last_remediation.retry_count
        if last_remediation.timestamp + retry_period_seconds > now:
            return ControlPlaneRemediationDecision(
                allowed=False,
                machine=target,
                reason=f"remediation already failed in the latest {retry_period_seconds:g}s (retryPeriod)",
            )
        if max_retry is not None and retry_count >= max_retry:
            return ControlPlaneRemediationDecision(
                allowed=False,
                machine=target,
                reason=f"remediation already failed {max_retry} times (maxRetry)",
            )
        retry_count += 1

    leader: MachineView | None = None
    if initialized:
        if len(machines) <= 1:
            return ControlPlaneRemediationDecision(
                allowed=False,
                machine=target,
                reason="can't remediate if current replicas are less or equal to 1",
            )
        if any(m.healthy and m.node_name is None for m in machines):
            return ControlPlaneRemediationDecision(
                allowed=False,
                machine=target,
                reason="waiting for control plane machine provisioning to complete before remediating",
            )
        if any(m.deleting for m in machines):
            return ControlPlaneRemediationDecision(
                allowed=False,
                machine=target,
                reason="waiting for control plane machine deletion to complete before remediating",
            )
        members, unhealthy = _etcd_view(machines, etcd_members, etcd_alarms)
        assessment = assess_etcd_member_removal(members, unhealthy, machine.node_name)
        if not assessment.allowed:
            return ControlPlaneRemediationDecision(
                allowed=False,
                machine=target,
                reason=f"can't remediate {target}: {assessment.reason}",
            )
        leader = _newest(m for m in machines if m.healthy and m.name != target)
        if leader is None:
            return ControlPlaneRemediationDecision(
                allowed=False, machine=target, reason="no healthy machine to forward etcd leadership to"
            )
    return ControlPlaneRemediationDecision(
        allowed=True,
        machine=target,
        retry_count=retry_count,
        etcd_leader_candidate=leader.name if leader is not None else None,
        reason=f"remediate {target}: delete it, then recreate",
    )
