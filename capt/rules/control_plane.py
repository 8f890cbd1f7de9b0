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

from collections.abc import Collection, Sequence
from typing import Literal

from capt.rules.base import Frozen
from capt.rules.machines import MachineView, newest, oldest
from capt.rules.placement import pick_fewest, pick_most
from capt.rules.quorum import (
    _etcd_view,
)


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
    oldest_outside = oldest(outside)
    fd = oldest_outside.failure_domain if oldest_outside else pick_most(failure_domains, machines, eligible)
    return oldest(m for m in eligible if m.failure_domain == fd)


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
        etcd_leader_candidate=newest(others).name,  # type: ignore[union-attr]
        outdated=outdated,
        reason=f"remove {victim.name}" + (" (outdated)" if victim.name in outdated else ""),
    )
