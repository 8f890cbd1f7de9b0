"""KubeadmControlPlane remediation: which unhealthy machine goes first and whether it may go now
(CAPI's remediation.go: one at a time, never below quorum, retry periods). Pure."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from capt.rules.base import Frozen
from capt.rules.machines import MachineView, newest
from capt.rules.quorum import _etcd_view, assess_etcd_member_removal


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
DEFAULT_MIN_HEALTHY_PERIOD_SECONDS = 3600


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
        leader = newest(m for m in machines if m.healthy and m.name != target)
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
