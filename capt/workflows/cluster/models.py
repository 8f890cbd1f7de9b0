"""The models, constants and pure helpers of this workflow (its class is in workflow.py)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws.models import Blocker
    from capt.contracts.owners import ControlPlaneStatus, DeploymentStatus
    from capt.rules.versions import oldest
    from capt.spec.models import (
        AddonSpec,
        ClusterSpec,
        ControlPlaneSpec,
        HealthCheckSpec,
        MachineDeploymentSpec,
    )
    from capt.workflows.infrastructure.models import InfraResult
    from capt.workflows.machine.models import ClusterContext
    from capt.workflows.machinedeployment.models import ControlPlaneInfo


Phase = Literal[
    "Pending", "Provisioning", "Provisioned", "Ready", "Updating", "Paused", "Deleting", "Deleted", "Failed"
]


RECHECK = timedelta(minutes=10)


# workflow.patched ids; docs/versioning.md lists each with when it can be retired.
# One recheck timer every RECHECK, kept across wakes: the loop used to start a timer at every wait
# and cancel it at the next wake (a signal from an owner, an Update), two events per wake, a fifth
# of a cluster's history. Histories recorded before it wait with a fresh timer each time.
PATCH_ONE_RECHECK_TIMER = "cluster-one-recheck-timer"


# Deletion by the child ClusterTeardownWorkflow (`teardown/<ns>/<name>`): workload objects first,
# bounded waits for the owners, everything tagged for the cluster (Kubernetes' tag too), secrets
# last; a failure leaves the cluster Failed and a later `delete` runs it again. Histories recorded
# before it delete as they did: owners' delete_all with unbounded waits, secrets, then the
# InfrastructureWorkflow's delete.
PATCH_TEARDOWN_V2 = "teardown-v2"


# The cluster's id in AWS is `<namespace>.<name>` (contracts.names.cluster_id), chosen once at the
# start of the cluster's first run and carried: `prod` in two namespaces no longer shares AWS
# names and ownership tags. Histories recorded before it (and clusters created before it, whose
# carry has no id) keep the bare name as their id.
PATCH_NAMESPACED_CLUSTER_ID = "namespaced-cluster-id"


# Applying an addon: a few attempts (the API server may still be settling), then the failure is
# recorded and the next reconcile (at the latest RECHECK later) tries again.
ADDON_CALL = dict(
    start_to_close_timeout=timedelta(seconds=120),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=4
    ),
)


class ClusterCarry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: Phase = "Pending"
    message: str = ""
    phase_since: datetime | None = None  # when the phase last changed (workflow time)
    infra: InfraResult | None = None
    context: ClusterContext | None = None
    control_plane_started: bool = False
    control_plane: ControlPlaneStatus | None = None
    deployments: dict[str, DeploymentStatus] = {}
    # What each deployment was last told (its version may lag the desired one: CAPI's order).
    forwarded: dict[str, MachineDeploymentSpec] = {}
    removing: list[str] = []  # deployments being deleted because the manifest dropped them
    health_started: bool = False
    sent_health_checks: tuple[HealthCheckSpec, ...] = ()
    forwarded_cp_info: ControlPlaneInfo | None = None
    # What the control plane was last told.
    sent_control_plane: ControlPlaneSpec | None = None
    sent_paused: bool = False
    # ClusterResourceSets: addon name -> digest of the content last applied (ApplyOnce addons are
    # never applied again; Reconcile ones again when the digest changes) or refused for good.
    addons_applied: dict[str, str] = {}
    addons_refused: dict[str, str] = {}
    paused: bool = False
    deleting: bool = False
    events: list[str] = []  # recent notable events, newest last (bounded)
    iterations: int = 0
    # The cluster's AWS identity (owned tags, names); None = the name (clusters created before
    # ids were namespaced).
    cluster_id: str | None = None
    # Deletion by ClusterTeardownWorkflow (patch teardown-v2): runs started, whether the last
    # one failed (the cluster then waits, Failed, for another `delete`), the health check told
    # to stop, and what blocks the deletion as the teardown last reported.
    delete_attempts: int = 0
    teardown_failed: bool = False
    health_stopped: bool = False
    blocked: list[Blocker] = []


class ClusterInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: ClusterSpec
    carry: ClusterCarry | None = None
    max_iterations: int = 1000


class ApplyRequest(BaseModel):
    spec: ClusterSpec


class ApplyAnswer(BaseModel):
    changed: bool
    summary: str


class ScaleControlPlaneRequest(BaseModel):
    replicas: int


class ScaleDeploymentRequest(BaseModel):
    deployment: str
    replicas: int


class UpgradeRequest(BaseModel):
    version: str


class InfrastructureSummary(BaseModel):
    vpc_id: str | None = None
    availability_zones: tuple[str, ...] = ()
    load_balancer: str | None = None
    endpoint: str | None = None
    aws_calls: int = 0


class ClusterStatus(BaseModel):
    name: str
    namespace: str
    region: str
    # What the cluster's AWS resources are named after and tagged as owned by: `<namespace>.<name>`,
    # or the name for a cluster created before ids were namespaced.
    cluster_id: str | None = None
    phase: Phase
    message: str
    phase_since: datetime | None = None
    paused: bool
    version: str
    endpoint: str | None
    infrastructure: InfrastructureSummary
    control_plane: ControlPlaneStatus | None
    deployments: list[DeploymentStatus]
    ready_machines: int
    desired_machines: int
    events: list[str]
    # While a deletion is blocked, what blocks it.
    blocked: list[Blocker] = []


def _cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


def _addon_digest(addon: AddonSpec) -> str:
    """A deterministic digest of an addon's content (pure: safe in workflow code)."""
    # secret_versions only when set, so addons without Secrets keep the digests they had.
    text = addon.model_dump_json(exclude={"secret_versions"})
    if addon.secret_versions:
        text += repr(addon.secret_versions)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _settled_version(cp: ControlPlaneStatus, desired: str) -> str:
    """The version every control-plane machine runs (the oldest while a rollout is on)."""
    versions = {m.version for m in cp.machines} or {desired}
    return oldest(versions)


def _node_startup_timeout(spec: ClusterSpec, deployment: str) -> int:
    for hc in spec.health_checks:
        if deployment in hc.machine_deployments:
            return hc.node_startup_timeout_seconds
    return 600


def _control_plane_failure(cp: ControlPlaneStatus | None) -> str | None:
    """Why an uninitialized control plane will not initialize: its first machine failed and
    nothing replaces it yet (None otherwise)."""
    if cp is None or cp.initialized:
        return None
    failed = [m for m in cp.machines if m.phase == "Failed"]
    if not failed or any(m.phase not in ("Failed", "Deleting", "Deleted") for m in cp.machines):
        return None
    m = failed[0]
    return f"control plane machine {m.name} failed: {m.message or 'no reason given'}"


def _failed_workers(deployments: list[DeploymentStatus | None], shown: int = 3) -> str:
    """The failed worker machines for a phase message, at most `shown` of them by name:
    `; failed worker machines: md-0/md-0-abc12 (reason), …`, or "" when there are none."""
    failed = [(d.name, m) for d in deployments if d is not None for m in d.machines if m.phase == "Failed"]
    if not failed:
        return ""
    listed = ", ".join(f"{name}/{m.name} ({m.message or 'no reason given'})" for name, m in failed[:shown])
    more = f" and {len(failed) - shown} more" if len(failed) > shown else ""
    return f"; failed worker machines: {listed}{more}"


def _progress(cp: ControlPlaneStatus, deployments: list[DeploymentStatus | None]) -> str:
    parts = [f"control plane {cp.ready_replicas}/{cp.desired_replicas} ({cp.operation})"]
    parts += [f"{d.name} {d.ready_replicas}/{d.desired_replicas}" for d in deployments if d is not None]
    return "; ".join(parts)
