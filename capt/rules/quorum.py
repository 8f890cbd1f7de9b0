"""etcd quorum: how many members a control plane can lose, and whether removing one member now
keeps quorum (CAPI's etcd health checks before scale-down and remediation). Pure."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from capt.rules.base import Frozen
from capt.rules.machines import MachineView


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
