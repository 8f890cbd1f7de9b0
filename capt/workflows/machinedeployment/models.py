"""The models, constants and pure helpers of this workflow (its class is in workflow.py)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow

# Note: `import capt.rules.deployment as rollout`, not `from capt.rules import deployment`: written the
# second way, this module got a sandbox copy of `rollout` (re-imported on every workflow task), whose
# MachineView is not the class `MachineBook.views()` returns, and pydantic refused the machines.

with workflow.unsafe.imports_passed_through():
    import capt.rules.deployment as rollout
    import capt.rules.fenceposts as fenceposts
    from capt.rules.intstr import IntOrPercent, IntOrPercentError, check_int_or_percent
    from capt.spec.models import KubeadmConfigSpec, MachineDeploymentSpec, MachineTemplate
    from capt.workflows.machine.models import ClusterContext, DeleteOptions
    from capt.workflows.machine_owner import (
        MachineBook,
        revision_of,
    )


# When nothing happens, look again this often. Machines signal every change, so this is only a
# safety net; minReadySeconds and the progress deadline get their own timers.
IDLE_RECHECK = timedelta(minutes=5)


# workflow.patched id (docs/versioning.md): while a rollout or scale is in progress, look at the
# machines' nodes at most this often, so availability follows the node's current Ready state.
PATCH_OBSERVE_NODES = "deployment-observes-nodes"


NODE_CHECK = timedelta(seconds=30)


# workflow.patched id: scale-downs pick machines by CAPI's delete priorities exactly (Random ties
# by name, whole-second ages, a node not Ready counts as unhealthy).
PATCH_EXACT_DELETE_ORDER = "deployment-exact-delete-order"


# workflow.patched id: spec.rolloutAfter, once passed, is part of the revision (the machines roll).
PATCH_ROLLOUT_AFTER = "deployment-rollout-after"


class RevisionRecord(BaseModel):
    """One revision the deployment has rolled to — a CAPI MachineSet, with its own copy of the
    template: proportional scaling during a rollout creates machines of old revisions too, and
    they must be made from what their revision hashes, not from the current spec."""

    model_config = ConfigDict(extra="forbid")

    number: int  # CAPI's machinedeployment.clusters.x-k8s.io/revision: bumped when it becomes current
    revision: str
    created: float  # workflow-clock seconds
    version: str
    machine_template: MachineTemplate
    bootstrap: KubeadmConfigSpec
    bootstrap_template_name: str
    failure_domain: str | None = None


class DeploymentCarry(BaseModel):
    """State carried across continue-as-new."""

    model_config = ConfigDict(extra="forbid")

    book: MachineBook = MachineBook()
    revisions: list[RevisionRecord] = []
    sized_for: rollout.ReplicaAnnotations | None = None
    # Progress deadline bookkeeping: when the rollout last moved, and what it looked like then.
    last_progress: float | None = None
    progress_key: tuple[str, int, int, int] | None = None
    # Remediated machines whose deletion has not finished (counted against maxInFlight).
    remediating: list[str] = []
    last_remediation: str = ""
    iterations: int = 0
    deleting: bool = False
    # How delete_all asked the machines to go (skip_node_cleanup on cluster deletion).
    delete_options: DeleteOptions | None = None
    # The cluster is paused (CAPI's Cluster.spec.paused): nothing is created or deleted.
    cluster_paused: bool = False
    # The KubeadmConfigTemplate name the deployment started with (None: not recorded yet, then
    # the current one). A different name is part of the revision: renaming the template rolls
    # the machines, as in CAPI, while deployments created before keep their revisions.
    first_bootstrap_template_name: str | None = None
    # When the machines' nodes were last listed (workflow-clock seconds; None: never).
    nodes_checked_at: float | None = None
    # Scale-downs use CAPI's delete priorities exactly (set once, under PATCH_EXACT_DELETE_ORDER).
    exact_delete_order: bool = False
    # spec.rolloutAfter rolls the machines once it passes (set once, under PATCH_ROLLOUT_AFTER).
    honours_rollout_after: bool = False
    # Base revision (templates, version, failure domain) -> the rolloutAfter that last rolled its
    # machines (CAPI: a new MachineSet of the same template); part of the revision id.
    rolled_after: dict[str, float] = {}


class MachineDeploymentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: ClusterContext
    spec: MachineDeploymentSpec
    # The control plane's Kubernetes version (None: unknown, no version check) and whether its
    # first node is Ready. Both are updated by `control_plane_changed` / `set_control_plane`.
    control_plane_version: str | None = None
    control_plane_initialized: bool = False
    # From the cluster's MachineHealthCheck when it has one (CAPI's default otherwise).
    node_startup_timeout_seconds: int = 600
    node_drain_timeout_seconds: int = 300
    # The ClusterWorkflow: told `deployment_changed(DeploymentStatus)` whenever the status changes.
    owner_workflow_id: str | None = None
    # The cluster is paused (see `set_paused`); ignored when `carry` is given.
    paused: bool = False
    carry: DeploymentCarry | None = None
    # Continue-as-new after this many loop turns even if Temporal has not suggested it yet.
    max_iterations: int = 500


class ScaleRequest(BaseModel):
    replicas: int


class TemplateRequest(BaseModel):
    """A new machine template, bootstrap config and/or version: a new revision, rolled out.
    `failure_domain`: an AZ pins the deployment to it; "" spreads it over the cluster's AZs again."""

    machine_template: MachineTemplate | None = None
    bootstrap: KubeadmConfigSpec | None = None
    bootstrap_template_name: str | None = None
    version: str | None = None
    failure_domain: str | None = None


class StrategyRequest(BaseModel):
    strategy: fenceposts.StrategyType | None = None
    max_surge: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    delete_policy: fenceposts.DeletePolicy | None = None
    min_ready_seconds: int | None = None
    progress_deadline_seconds: int | None = None


class ControlPlaneInfo(BaseModel):
    """What the deployment needs to know about its control plane (None: unchanged)."""

    initialized: bool | None = None
    version: str | None = None


class DeleteMachinesRequest(BaseModel):
    """A user deletes machines (CAPI: `kubectl delete machine`); the deployment replaces them."""

    machines: tuple[str, ...]


def strategy_error(spec: MachineDeploymentSpec, req: StrategyRequest) -> str | None:
    """Why a strategy change is refused (Kubernetes' Deployment validation), or None."""
    for field, value in (("maxSurge", req.max_surge), ("maxUnavailable", req.max_unavailable)):
        if value is not None:
            try:
                check_int_or_percent(value)
            except IntOrPercentError as e:
                return f"{field}: {e}"
    min_ready = spec.min_ready_seconds if req.min_ready_seconds is None else req.min_ready_seconds
    deadline = (
        spec.progress_deadline_seconds
        if req.progress_deadline_seconds is None
        else req.progress_deadline_seconds
    )
    if min_ready < 0:
        return f"minReadySeconds must not be negative, got {min_ready}"
    if deadline <= min_ready:
        return f"progressDeadlineSeconds ({deadline}) must be greater than minReadySeconds ({min_ready})"
    return None


def progress_key(state: rollout.DeploymentState) -> tuple[str, int, int, int]:
    """What a rollout's progress is measured by (Kubernetes' Deployment progress): machines of the
    current revision created or becoming available, and old machines going away. A machine that
    fails does not move it."""
    min_ready, now = state.strategy.min_ready_seconds, state.now
    current = [m for m in state.machines if m.revision == state.current_revision and not m.deleting]
    old = [m for m in state.machines if m.revision != state.current_revision]
    return (
        state.current_revision,
        len(current),
        sum(1 for m in current if m.available(now, min_ready)),
        len(old),
    )


def deployment_revision(
    spec: MachineDeploymentSpec,
    first_bootstrap_template: str | None = None,
    *,
    rolled_after: float | None = None,
) -> str:
    """What makes a deployment's machines differ (CAPI: a new MachineSet): the infrastructure
    template (its name and contents), the bootstrap config's contents, the version, the failure
    domain — the bootstrap template's name once it differs from the one the deployment started
    with (so revisions recorded before it counted stay the same) — and the rolloutAfter that last
    rolled machines of that template."""
    parts: list = [spec.machine_template, spec.bootstrap, spec.version, spec.failure_domain]
    if first_bootstrap_template is not None and spec.bootstrap_template_name != first_bootstrap_template:
        parts.append(f"bootstrap-template:{spec.bootstrap_template_name}")
    if rolled_after is not None:
        parts.append(f"rollout-after:{rolled_after:.0f}")
    return revision_of(*parts)


def strategy_of(md: MachineDeploymentSpec) -> fenceposts.DeploymentStrategy:
    """The planner's strategy from a MachineDeployment's spec."""
    return fenceposts.DeploymentStrategy(
        type=md.strategy,
        max_surge=md.rolling_update.max_surge,
        max_unavailable=md.rolling_update.max_unavailable,
        delete_policy=md.delete_policy,
        min_ready_seconds=md.min_ready_seconds,
    )
