"""MachineDeployment remediation: which unhealthy machines a deployment replaces now (CAPI's
MachineSet remediation with maxInFlight). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from capt.rules.base import Frozen
from capt.rules.health import limit_in_flight
from capt.rules.machines import MachineView


class DeploymentRemediation(Frozen):
    remediate: tuple[str, ...] = ()  # delete these now (the planner then recreates them)
    deferred: tuple[str, ...] = ()  # wait: too many remediations in flight
    skipped: tuple[str, ...] = ()  # old revision: the rollout replaces them
    reason: str = ""


def plan_deployment_remediation(
    machines: Sequence[MachineView],
    unhealthy: Iterable[str],
    current_revision: str,
    replicas: int,
    max_in_flight: int | str | None = None,
    in_flight: int = 0,
) -> DeploymentRemediation:
    """Which unhealthy machines the deployment replaces now (CAPI's MachineSet remediation).

    Only machines of the current revision are remediated (old ones are pending removal by the
    rollout); machines already being deleted are skipped; the newest go first (a machine failing to
    come up probably runs no workload yet), ties by name; at most `max_in_flight` (an int, or a
    percentage of `replicas` rounded up; None = no limit) remediations run at once, counting the
    `in_flight` ones — remediated machines whose deletion has not finished.
    """
    by_name = {m.name: m for m in machines}
    wanted = [by_name[n] for n in dict.fromkeys(unhealthy) if n in by_name and not by_name[n].deleting]
    skipped = tuple(m.name for m in wanted if m.revision != current_revision)
    candidates = sorted(
        (m for m in wanted if m.revision == current_revision), key=lambda m: (-m.created, m.name)
    )
    limited = limit_in_flight([m.name for m in candidates], max_in_flight, replicas, in_flight)
    reason = limited.reason
    if not reason and skipped and not limited.start:
        reason = "machine won't be remediated because it is pending removal due to rollout"
    return DeploymentRemediation(
        remediate=limited.start, deferred=limited.deferred, skipped=skipped, reason=reason
    )
