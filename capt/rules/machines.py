"""The machine as CAPI's planners see it (MachineDeployment and KubeadmControlPlane alike), and
when it becomes available (minReadySeconds). Pure."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import model_validator

from capt.rules.base import Frozen


class MachineView(Frozen):
    """What a planner needs to know about one machine. Times are workflow-clock seconds."""

    name: str
    # Hash of the machine template (plus version, failure domain, bootstrap config) the machine
    # was created from. Machines of one revision form one "MachineSet".
    revision: str
    created: float
    failure_domain: str | None = None
    # Name of the machine's Node once it joined (CAPI: status.nodeRef).
    node_name: str | None = None
    # When the Node last became Ready; None while it is not Ready.
    ready_since: float | None = None
    # Deletion has started (CAPI: deletionTimestamp set). The machine still exists.
    deleting: bool = False
    # A user asked for this machine to go first (CAPI: cluster.x-k8s.io/delete-machine annotation).
    marked_for_deletion: bool = False
    # False once the health check found it unhealthy or its node reports an unhealthy condition
    # (CAPI: HealthCheckSucceeded / NodeHealthy false).
    healthy: bool = True
    # Control-plane machines only: the API server, controller-manager, scheduler and etcd pods run
    # healthy (CAPI: the Machine*PodHealthy conditions) and its etcd member is healthy.
    components_healthy: bool = True
    etcd_member_healthy: bool = True

    @model_validator(mode="after")
    def _ready_needs_node(self) -> MachineView:
        if self.ready_since is not None and self.node_name is None:
            raise ValueError(f"machine {self.name}: a Ready machine must name its node")
        return self

    @property
    def ready(self) -> bool:
        """Its node is Ready and the machine is not being deleted."""
        return self.ready_since is not None and not self.deleting

    def available(self, now: float, min_ready_seconds: int = 0) -> bool:
        """Ready for at least `min_ready_seconds` (CAPI's Available), and not being deleted."""
        return self.ready and self.ready_since + min_ready_seconds <= now  # type: ignore[operator]

    @property
    def deletion_healthy(self) -> bool:
        """CAPI's `isMachineHealthy` for deletion priority: has a node, nothing reports it unhealthy."""
        return self.node_name is not None and self.healthy


def next_availability_time(
    machines: Iterable[MachineView], now: float, min_ready_seconds: int
) -> float | None:
    """The earliest time a Ready-but-not-yet-available machine becomes available (for a durable
    timer in the workflow), or None when no machine is waiting on `minReadySeconds`."""
    times = [
        m.ready_since + min_ready_seconds
        for m in machines
        if m.ready and m.ready_since + min_ready_seconds > now  # type: ignore[operator]
    ]
    return min(times) if times else None


def oldest(machines: Iterable[MachineView]) -> MachineView | None:
    """The machine created first (ties by name), as CAPI's collections.Oldest()."""
    return min(machines, key=lambda m: (m.created, m.name), default=None)


def newest(machines: Iterable[MachineView]) -> MachineView | None:
    """The machine created last (ties by name), as CAPI's collections.Newest()."""
    return max(machines, key=lambda m: (m.created, m.name), default=None)
