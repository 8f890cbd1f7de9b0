"""`OwnerSink`, the ClusterWorkflow's stand-in: it receives the owners' status signals and
records the points the benchmark reads."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from capt.contracts.owners import ControlPlaneStatus, DeploymentStatus
from capt.dev.bench.big_cluster.settings import CP_VERSION
from capt.workflows.machinedeployment.models import ControlPlaneInfo

# ---------------------------------------------------------------------------------------------
# The ClusterWorkflow's stand-in
# ---------------------------------------------------------------------------------------------


class SinkInput(BaseModel):
    deployment_workflow_id: str


class Point(BaseModel):
    """One `deployment_changed` signal as the owner received it (workflow-clock seconds)."""

    at: float
    revision: str
    version: str
    replicas: int
    up_to_date: int
    available: int
    desired: int
    bytes: int


class SinkView(BaseModel):
    points: list[Point]
    control_plane_initialized_at: float | None
    control_plane_ready_at: float | None
    signals: dict[str, int]
    signal_bytes: dict[str, int]
    largest_signal: dict[str, int]


@workflow.defn(name="BenchOwnerSink", sandboxed=False)
class OwnerSink:
    """Receives the owners' status signals as the ClusterWorkflow does (`deployment_changed`,
    `control_plane_changed`), records them, relays the control plane's initialization to the
    deployment (the ClusterWorkflow's `control_plane_changed` to it), and ends on `finish`."""

    @workflow.init
    def __init__(self, inp: SinkInput) -> None:
        self._md = inp.deployment_workflow_id
        self._points: list[Point] = []
        self._cp_init: float | None = None
        self._cp_ready: float | None = None
        self._relay = False
        self._done = False
        self._signals: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._largest: dict[str, int] = {}

    def _count(self, name: str, size: int) -> None:
        self._signals[name] = self._signals.get(name, 0) + 1
        self._bytes[name] = self._bytes.get(name, 0) + size
        self._largest[name] = max(self._largest.get(name, 0), size)

    @workflow.run
    async def run(self, inp: SinkInput) -> None:
        while not self._done:
            await workflow.wait_condition(lambda: self._relay or self._done)
            if self._relay:
                self._relay = False
                await workflow.get_external_workflow_handle(self._md).signal(
                    "control_plane_changed", ControlPlaneInfo(initialized=True, version=CP_VERSION)
                )

    @workflow.signal
    def deployment_changed(self, status: DeploymentStatus) -> None:
        size = len(status.model_dump_json())
        self._count("deployment_changed", size)
        self._points.append(
            Point(
                at=workflow.now().timestamp(),
                revision=status.revision,
                version=status.version,
                replicas=status.replicas,
                up_to_date=status.up_to_date_replicas,
                available=status.available_replicas,
                desired=status.desired_replicas,
                bytes=size,
            )
        )

    @workflow.signal
    def control_plane_changed(self, status: ControlPlaneStatus) -> None:
        self._count("control_plane_changed", len(status.model_dump_json()))
        now = workflow.now().timestamp()
        if status.initialized and self._cp_init is None:
            self._cp_init = now
            self._relay = True
        if status.ready and self._cp_ready is None:
            self._cp_ready = now

    @workflow.signal
    def finish(self) -> None:
        self._done = True

    @workflow.query
    def view(self, since: int) -> SinkView:
        return SinkView(
            points=self._points[since:],
            control_plane_initialized_at=self._cp_init,
            control_plane_ready_at=self._cp_ready,
            signals=dict(self._signals),
            signal_bytes=dict(self._bytes),
            largest_signal=dict(self._largest),
        )
