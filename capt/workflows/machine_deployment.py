"""MachineDeploymentWorkflow — a CAPI MachineDeployment (and its MachineSets) over MachineWorkflows.

One loop, like the ControlPlaneWorkflow: build a `rollout.DeploymentState` from the machines the
workflow owns, ask the pure planner `rollout.plan_machine_deployment` for the next step (which
machines to create, in which revision and availability zone; which to delete, in order), apply it
by starting or signalling MachineWorkflows, and wait — until a machine reports a change, an Update
arrives, or a durable timer fires (a machine finishing `minReadySeconds`, the progress deadline,
or the idle recheck). Every decision lives in `workflows/rollout.py` (table-tested); this file
applies decisions and keeps the books.

Revisions: the machine template, the bootstrap (kubeadm) config, the Kubernetes version and the
MachineDeployment's own failure domain hash to a revision (`revision_of`). Machines carry the
revision they were made from; the machines of one revision play the part of one CAPI MachineSet.
A changed template is a new revision, and the planner rolls machines over to it within
maxSurge / maxUnavailable. The history of revisions (number, hash, version, template names) is
kept for `describe`, bounded by `revisionHistoryLimit` old revisions without machines.

Temporal semantics worth knowing when reading this file:
- Requests are Temporal Updates with validators. A validator runs before the request is written
  to history: a rejected request (negative replicas, a version newer than the control plane's,
  an unknown machine) leaves no trace and changes nothing. Accepted requests are *merged* into one
  desired spec (replicas, template, strategy, paused), so a second template change during a
  rollout retargets it, as CAPI does.
- Machines are child workflows started with ParentClosePolicy.ABANDON: they outlive this run,
  which continues-as-new (when Temporal suggests it, or after `max_iterations` loop turns) to keep
  its history small, carrying the `MachineBook`, the revision history and the planner's
  `sized_for`. It waits for `all_handlers_finished` first, so an Update being handled still gets
  its answer; Updates and signals that arrive later are delivered to the next run (they address
  the workflow id, not the run).
- Machines report every phase change with the `machine_changed` signal; this workflow cannot
  query them. A worker restart replays the history: recorded child starts and signals are not
  sent again, so a restart mid-rollout creates no extra machine.

The deployment creates no machine before the control plane is initialized (workers join through
the API server): the input's `control_plane_initialized` flag, or the `control_plane_changed`
signal / `set_control_plane` Update the cluster workflow sends once the first control-plane node
is Ready. The same message carries the control plane's version, which bounds the version a
template change may ask for (a kubelet must not be newer than its API server).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError

from capt.contracts.ids import deployment_workflow_id

# Note: `import workflows.rollout as rollout`, not `from workflows import rollout`: written the
# second way, this module got a sandbox copy of `rollout` (re-imported on every workflow task), whose
# MachineView is not the class `MachineBook.views()` returns, and pydantic refused the machines.
from capt.workflows.owner import OwnerWorkflow

with workflow.unsafe.imports_passed_through():
    import capt.contracts.search_attributes as sa
    import capt.workflows.rollout as rollout
    from capt.activities.workload import activities as workload
    from capt.contracts.owners import (
        Condition,
        DeploymentMachine,
        DeploymentRemediationAnswer,
        DeploymentRemediationRequest,
        DeploymentStatus,
        RevisionSummary,
    )
    from capt.rules.intstr import IntOrPercent, IntOrPercentError, check_int_or_percent
    from capt.rules.versions import parse_kubernetes_version, worker_version_error
    from capt.spec.models import KubeadmConfigSpec, MachineDeploymentSpec, MachineTemplate, RollingUpdate
    from capt.workflows import activity_options as opts
    from capt.workflows.machine_models import ClusterContext, DeleteOptions, MachineInput
    from capt.workflows.machine_owner import (
        MachineBook,
        RestartInputs,
        delete_machine,
        new_machine_name,
        revision_of,
        start_machine,
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
# kubelet may be at most this many minors older than the API server (Kubernetes skew policy).


# ---------------------------------------------------------------------------------------------
# Models: input, carried state, requests, status
# ---------------------------------------------------------------------------------------------


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
    strategy: rollout.StrategyType | None = None
    max_surge: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    delete_policy: rollout.DeletePolicy | None = None
    min_ready_seconds: int | None = None
    progress_deadline_seconds: int | None = None


class ControlPlaneInfo(BaseModel):
    """What the deployment needs to know about its control plane (None: unchanged)."""

    initialized: bool | None = None
    version: str | None = None


class DeleteMachinesRequest(BaseModel):
    """A user deletes machines (CAPI: `kubectl delete machine`); the deployment replaces them."""

    machines: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Small pure helpers (validation, progress), kept apart from the Temporal code
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# The workflow
# ---------------------------------------------------------------------------------------------


@workflow.defn(name="MachineDeploymentWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class MachineDeploymentWorkflow(OwnerWorkflow):
    @workflow.init
    def __init__(self, inp: MachineDeploymentInput) -> None:
        self._input: MachineDeploymentInput | None = None
        self._spec: MachineDeploymentSpec | None = None
        self._cp_version: str | None = None
        self._cp_initialized = False
        self._carry = DeploymentCarry()
        self._wake = False
        self._operation = "starting"
        self._last_reported: DeploymentStatus | None = None
        # From the input here, not in run(): signals/Updates that come with a continued-as-new
        # run's first task are handled before run() starts and must not be overwritten.
        self._input, self._spec = inp, inp.spec
        self._cp_version, self._cp_initialized = inp.control_plane_version, inp.control_plane_initialized
        if inp.carry is not None:
            self._carry = inp.carry
        else:
            self._carry.cluster_paused = inp.paused
        if self._carry.first_bootstrap_template_name is None:
            self._carry.first_bootstrap_template_name = inp.spec.bootstrap_template_name

    # --- ids ----------------------------------------------------------------------------------
    @staticmethod
    def workflow_id(namespace: str, cluster: str, deployment: str) -> str:
        """`md/<namespace>/<cluster>/<deployment>`: stable and readable in the Web UI."""
        return deployment_workflow_id(namespace, cluster, deployment)

    # --- queries --------------------------------------------------------------------------------
    @workflow.query
    def status(self) -> DeploymentStatus:
        spec, cluster = self._spec, self._input.cluster if self._input else None
        assert spec is not None and cluster is not None
        state = self._state()
        counts = rollout.deployment_counts(state)
        now, min_ready = state.now, state.strategy.min_ready_seconds
        views = {v.name: v for v in state.machines}
        machines = [
            DeploymentMachine(
                name=m.status.name,
                phase=m.status.phase,
                revision=m.status.revision,
                up_to_date=m.status.revision == state.current_revision,
                availability_zone=m.status.failure_domain,
                instance_id=m.status.instance_id,
                node_name=m.status.node_name,
                node_ready=m.status.node_ready,
                available=views[m.status.name].available(now, min_ready),
                unhealthy=m.unhealthy,
                deleting=views[m.status.name].deleting,
                message=m.unhealthy_reason or m.status.failure_reason or m.status.message,
            )
            for m in sorted(self._carry.book.live(), key=lambda m: (m.created, m.status.name))
        ]
        per_revision: dict[str, int] = {}
        for m in machines:
            per_revision[m.revision] = per_revision.get(m.revision, 0) + 1
        revisions = [
            RevisionSummary(
                number=r.number,
                revision=r.revision,
                version=r.version,
                machine_template=r.machine_template.name,
                bootstrap_template=r.bootstrap_template_name,
                failure_domain=r.failure_domain,
                current=r.revision == state.current_revision,
                machines=per_revision.get(r.revision, 0),
            )
            for r in sorted(self._carry.revisions, key=lambda r: r.number)
        ]
        if self._carry.deleting:
            phase = "Deleted" if not machines else "Deleting"
        elif not self._cp_initialized:
            phase = "WaitingForControlPlane"
        elif counts.replicas < spec.replicas:
            phase = "ScalingUp"
        elif counts.replicas > spec.replicas:
            phase = "ScalingDown"
        else:
            phase = "Running"
        strategy = (
            f"RollingUpdate maxSurge={spec.rolling_update.max_surge} "
            f"maxUnavailable={spec.rolling_update.max_unavailable}"
            if spec.strategy == "RollingUpdate"
            else "OnDelete"
        )
        return DeploymentStatus(
            name=spec.name,
            cluster=cluster.name,
            phase=phase,
            desired_replicas=spec.replicas,
            replicas=counts.replicas,
            ready_replicas=counts.ready,
            available_replicas=counts.available,
            up_to_date_replicas=counts.up_to_date,
            unavailable_replicas=counts.unavailable,
            revision=state.current_revision,
            version=spec.version,
            paused=spec.paused,
            cluster_paused=self._carry.cluster_paused,
            strategy=f"{strategy}, deletion order {spec.delete_policy}",
            control_plane_initialized=self._cp_initialized,
            control_plane_version=self._cp_version,
            conditions=self._conditions(state),
            revisions=revisions,
            machines=machines,
            operation=self._operation,
            last_remediation=self._carry.last_remediation,
        )

    # --- signals --------------------------------------------------------------------------------
    # machine_changed, machines_healthy and delete_all: OwnerWorkflow's.
    @workflow.signal
    def control_plane_changed(self, info: ControlPlaneInfo) -> None:
        """From the cluster workflow (a workflow cannot send Updates): the control plane was
        initialized and/or changed version. A malformed version is ignored (logged)."""
        if info.version is not None:
            try:
                parse_kubernetes_version(info.version)
            except ValueError as e:
                workflow.logger.warning("ignoring control plane version: %s", e)
                info = info.model_copy(update={"version": None})
        self._apply_control_plane(info)

    @workflow.signal
    def apply_spec(self, spec: MachineDeploymentSpec) -> None:
        """The ClusterWorkflow's desired deployment (a workflow cannot send Updates), already
        checked by its Update validators with the same rules (cluster_changes). Latest wins."""
        self._replace_spec(spec)

    @workflow.signal
    def set_paused(self, paused: bool) -> None:
        """The cluster is paused or resumed: while paused no machine is created or deleted and
        remediation is refused (CAPI's Cluster.spec.paused). Not the deployment's own spec.paused."""
        self._carry.cluster_paused = paused
        self._wake = True

    # --- updates --------------------------------------------------------------------------------
    @workflow.update
    def set_control_plane(self, info: ControlPlaneInfo) -> DeploymentStatus:
        self._apply_control_plane(info)
        return self.status()

    @set_control_plane.validator
    def _validate_control_plane(self, info: ControlPlaneInfo) -> None:
        if info.version is not None:
            parse_kubernetes_version(info.version)
        if info.initialized is False and self._cp_initialized:
            raise ValueError("a control plane cannot become uninitialized")

    @workflow.update
    def scale(self, req: ScaleRequest) -> DeploymentStatus:
        self._replace_spec(self._spec.model_copy(update={"replicas": req.replicas}))  # type: ignore[union-attr]
        return self.status()

    @scale.validator
    def _validate_scale(self, req: ScaleRequest) -> None:
        self._reject_if_deleting()
        if req.replicas < 0:
            raise ValueError(f"replicas must not be negative, got {req.replicas}")

    @workflow.update
    def change_template(self, req: TemplateRequest) -> DeploymentStatus:
        changes: dict = {}
        if req.machine_template is not None:
            changes["machine_template"] = req.machine_template
        if req.bootstrap is not None:
            changes["bootstrap"] = req.bootstrap
        if req.bootstrap_template_name is not None:
            changes["bootstrap_template_name"] = req.bootstrap_template_name
        if req.version is not None:
            changes["version"] = req.version
        if req.failure_domain is not None:
            changes["failure_domain"] = req.failure_domain or None
        self._replace_spec(self._spec.model_copy(update=changes))  # type: ignore[union-attr]
        return self.status()

    @change_template.validator
    def _validate_template(self, req: TemplateRequest) -> None:
        self._reject_if_deleting()
        if all(
            v is None
            for v in (
                req.machine_template,
                req.bootstrap,
                req.bootstrap_template_name,
                req.version,
                req.failure_domain,
            )
        ):
            raise ValueError("nothing to change: give a machine template, bootstrap config or version")
        if req.version is not None and (err := worker_version_error(req.version, self._cp_version)):
            raise ValueError(err)
        if req.failure_domain:
            known = self._input.cluster.failure_domains  # type: ignore[union-attr]
            if req.failure_domain not in known:
                raise ValueError(
                    f"failure domain {req.failure_domain!r} is not one of the cluster's: {known}"
                )

    @workflow.update
    def set_strategy(self, req: StrategyRequest) -> DeploymentStatus:
        spec = self._spec
        assert spec is not None
        rolling = spec.rolling_update
        if req.max_surge is not None or req.max_unavailable is not None:
            rolling = RollingUpdate(
                max_surge=rolling.max_surge if req.max_surge is None else req.max_surge,
                max_unavailable=rolling.max_unavailable
                if req.max_unavailable is None
                else req.max_unavailable,
            )
        changes: dict = {"rolling_update": rolling}
        for field in ("strategy", "delete_policy", "min_ready_seconds", "progress_deadline_seconds"):
            if (value := getattr(req, field)) is not None:
                changes[field] = value
        self._replace_spec(spec.model_copy(update=changes))
        return self.status()

    @set_strategy.validator
    def _validate_strategy(self, req: StrategyRequest) -> None:
        self._reject_if_deleting()
        if err := strategy_error(self._spec, req):  # type: ignore[arg-type]
            raise ValueError(err)

    @workflow.update
    def pause(self) -> DeploymentStatus:
        """Rollouts wait; scaling still applies."""
        self._replace_spec(self._spec.model_copy(update={"paused": True}))  # type: ignore[union-attr]
        return self.status()

    @workflow.update
    def resume(self) -> DeploymentStatus:
        self._replace_spec(self._spec.model_copy(update={"paused": False}))  # type: ignore[union-attr]
        return self.status()

    @pause.validator
    def _validate_pause(self) -> None:
        self._reject_if_deleting()

    @resume.validator
    def _validate_resume(self) -> None:
        self._reject_if_deleting()

    @workflow.update
    async def delete_machines(self, req: DeleteMachinesRequest) -> DeploymentStatus:
        for name in req.machines:
            if (owned := self._carry.book.machines.get(name)) is not None:
                owned.marked_for_deletion = True
                await delete_machine(self._carry.book, name, restart=self._restart_inputs())
        self._wake = True
        return self.status()

    @delete_machines.validator
    def _validate_delete_machines(self, req: DeleteMachinesRequest) -> None:
        self._reject_if_deleting()
        if not req.machines:
            raise ValueError("name at least one machine")
        self._reject_unknown(req.machines)

    @workflow.update
    async def remediate(self, req: DeploymentRemediationRequest) -> DeploymentRemediationAnswer:
        """Asked by the health workflow (CAPI's MachineSet remediation): replace unhealthy machines
        of the current revision, newest first, at most maxInFlight at once — delete first, the
        planner then creates the replacement. Machines of old revisions are left to the rollout."""
        book = self._carry.book
        names = req.names()
        if self._carry.cluster_paused:
            self._carry.last_remediation = f"{workflow.now().isoformat()}: refused, the cluster is paused"
            return DeploymentRemediationAnswer(accepted=False, deferred=names, reason="the cluster is paused")
        for name in names:
            if (owned := book.machines.get(name)) is not None:
                owned.unhealthy, owned.unhealthy_reason = True, req.reason or "unhealthy"
        self._forget_finished_remediations()
        decision = rollout.plan_deployment_remediation(
            book.views(),
            names,
            current_revision=self._revision(),
            replicas=self._spec.replicas,  # type: ignore[union-attr]
            # CAPI reads maxInFlight from the MachineDeployment; the check's is capt's fallback.
            max_in_flight=self._spec.remediation_max_in_flight  # type: ignore[union-attr]
            if self._spec.remediation_max_in_flight is not None  # type: ignore[union-attr]
            else req.max_in_flight,
            in_flight=len(self._carry.remediating),
        )
        for name in decision.remediate:
            self._carry.remediating.append(name)
            await delete_machine(book, name, restart=self._restart_inputs())
        parts = []
        if decision.remediate:
            parts.append(f"replacing {', '.join(decision.remediate)}")
        if decision.deferred:
            parts.append(f"deferred {', '.join(decision.deferred)}")
        if decision.skipped:
            parts.append(f"left to the rollout {', '.join(decision.skipped)}")
        self._carry.last_remediation = (
            f"{workflow.now().isoformat()}: {'; '.join(parts)}"
            + (f" ({req.reason})" if req.reason else "")
            + (f" — {decision.reason}" if decision.reason else "")
        )
        self._wake = True
        return DeploymentRemediationAnswer(
            accepted=bool(decision.remediate),
            remediated=decision.remediate,
            deferred=decision.deferred,
            skipped=decision.skipped,
            reason=decision.reason,
        )

    @remediate.validator
    def _validate_remediate(self, req: DeploymentRemediationRequest) -> None:
        self._reject_if_deleting()
        if not req.names():
            raise ValueError("name at least one machine to remediate")
        self._reject_unknown(req.names())
        if req.max_in_flight is not None:
            check_int_or_percent(req.max_in_flight)

    def _reject_if_deleting(self) -> None:
        if self._carry.deleting:
            raise ValueError("the machine deployment is being deleted")

    def _reject_unknown(self, names: tuple[str, ...]) -> None:
        unknown = [n for n in names if n not in self._carry.book.machines]
        if unknown:
            raise ValueError(
                f"not machines of machine deployment {self._spec.name}: {', '.join(unknown)}"  # type: ignore[union-attr]
            )

    # --- run ------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: MachineDeploymentInput) -> DeploymentStatus:
        self._upsert_search_attributes()
        return await self._owner_loop(inp)

    # --- the owner loop's hooks (capt/workflows/owner.py) ----------------------------------------
    def _paused_operation(self) -> str | None:
        return "cluster paused: no machine is created or deleted" if self._carry.cluster_paused else None

    def _loop_timeout(self) -> timedelta:
        return self._wait_after()

    def _continue_as_new_input(self, inp: MachineDeploymentInput) -> MachineDeploymentInput:
        return inp.model_copy(
            update={
                "spec": self._spec,
                "control_plane_version": self._cp_version,
                "control_plane_initialized": self._cp_initialized,
                "carry": self._carry,
            }
        )

    # --- one step -------------------------------------------------------------------------------
    def _revision(self) -> str:
        s = self._spec
        assert s is not None
        first = self._carry.first_bootstrap_template_name
        base = deployment_revision(s, first)
        return deployment_revision(s, first, rolled_after=self._carry.rolled_after.get(base))

    def _roll_if_rollout_after_passed(self) -> None:
        """CAPI's rolloutAfter: once it has passed, a current MachineSet created before it is
        replaced by a new one of the same template (here: a new revision id); one created after
        it (or not used yet) keeps its machines, whatever rolloutAfter says later."""
        at = self._rollout_after() if self._carry.honours_rollout_after else None
        now = workflow.now().timestamp()
        if at is None or at > now:
            return
        current = self._revision()
        made = next((r.created for r in self._carry.revisions if r.revision == current), None)
        if made is None or made >= at:
            return
        spec = self._spec
        assert spec is not None
        self._carry.rolled_after[deployment_revision(spec, self._carry.first_bootstrap_template_name)] = at
        self._carry.last_progress = now  # a new target: the progress deadline counts from now

    def _rollout_after(self) -> float | None:
        """spec.rolloutAfter as workflow-clock seconds (None: unset or not a time)."""
        text = self._spec.rollout_after if self._spec is not None else None
        if not text:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    def _state(self) -> rollout.DeploymentState:
        spec, cluster = self._spec, self._input.cluster if self._input else None
        assert spec is not None and cluster is not None
        views = self._carry.book.views()
        with_machines = {v.revision for v in views}
        current = self._revision()
        return rollout.DeploymentState(
            replicas=spec.replicas,
            strategy=rollout.DeploymentStrategy.from_spec(spec),
            current_revision=current,
            machines=tuple(views),
            # Only revisions that still have machines (and the current one) are MachineSets.
            revisions=tuple(
                rollout.RevisionView(revision=r.revision, created=r.created)
                for r in self._carry.revisions
                if r.revision in with_machines or r.revision == current
            ),
            paused=spec.paused,
            sized_for=self._carry.sized_for,
            failure_domains=tuple(cluster.failure_domains),
            pinned_failure_domain=spec.failure_domain,
            now=workflow.now().timestamp(),
            seed=spec.name,
            exact_delete_order=self._carry.exact_delete_order,
        )

    async def _step(self) -> None:
        self._forget_finished_remediations()
        if not self._cp_initialized:
            self._operation = "waiting for the control plane to be initialized"
            return
        if not self._carry.exact_delete_order and workflow.patched(PATCH_EXACT_DELETE_ORDER):
            self._carry.exact_delete_order = True
        if not self._carry.honours_rollout_after and workflow.patched(PATCH_ROLLOUT_AFTER):
            self._carry.honours_rollout_after = True
        self._roll_if_rollout_after_passed()
        state = self._state()
        if not rollout.deployment_complete(state) and await self._observe_nodes():
            state = self._state()
        plan = rollout.plan_machine_deployment(state)
        ceiling = state.replicas + state.strategy.surge(state.replicas)
        if plan.mode == "scale" and plan.create and len(state.machines) + len(plan.create) > ceiling:
            # CAPI's proportional `scale` sizes revisions by their machines *not* being deleted, so
            # applied now it would briefly exceed replicas + maxSurge counting the machines still
            # being deleted. Those deletions end soon (each signals): scale once they have, with
            # `sized_for` left as it is so the next turn is still a scaling event.
            self._operation = (
                f"scaling to {state.replicas} waits for "
                f"{sum(1 for m in state.machines if m.deleting)} machine(s) to finish deleting "
                f"(at most {ceiling} machines)"
            )
            return
        self._carry.sized_for = plan.sized_for
        if plan.record_revision is not None:
            self._record_revision(plan.record_revision)
        self._promote_current_revision()
        for name in plan.delete:
            await delete_machine(self._carry.book, name, restart=self._restart_inputs())
        for create in plan.create:
            await self._create_machine(create)
        self._track_progress()
        self._prune_revisions()
        if plan.idle:
            done = rollout.deployment_complete(self._state())
            self._operation = "idle" if done else "waiting: " + ("; ".join(plan.notes) or "machines starting")
        else:
            self._operation = f"{plan.mode}: creating {len(plan.create)}, deleting {len(plan.delete)}" + (
                f" — {'; '.join(plan.notes)}" if plan.notes else ""
            )

    async def _observe_nodes(self) -> bool:
        """While a rollout or scale is in progress, list the running machines' nodes (at most every
        NODE_CHECK) so a node that went NotReady stops counting as available, and one Ready again
        counts minReadySeconds from now (CAPI reads the node through its watch). True if any
        machine's availability changed. Best effort: an unreachable API changes nothing."""
        book, carry = self._carry.book, self._carry
        assert self._input is not None
        now = workflow.now().timestamp()
        if carry.nodes_checked_at is not None and now - carry.nodes_checked_at < NODE_CHECK.total_seconds():
            return False
        running = {
            m.status.instance_id: m.status.name
            for m in book.live()
            if m.status.instance_id and m.status.phase == "Running" and not m.delete_sent
        }
        if not running or not workflow.patched(PATCH_OBSERVE_NODES):
            return False
        carry.nodes_checked_at = now
        cluster = self._input.cluster
        try:
            listed = await workflow.execute_activity(
                workload.list_workload_nodes,
                workload.ListNodesRequest(
                    access=workload.WorkloadAccess(
                        region=cluster.region,
                        endpoint_host=cluster.endpoint_host,
                        endpoint_port=cluster.endpoint_port,
                        pki=cluster.pki,
                    ),
                    instance_ids=tuple(sorted(running)),
                ),
                **opts.KUBE_CALL,
            )
        except ActivityError:
            return False
        if not listed.reachable:
            return False
        seen = {n.instance_id: n.ready for n in listed.nodes}
        return book.observe_nodes({name: seen.get(iid, False) for iid, name in running.items()}, now)

    async def _create_machine(self, create: rollout.MachineToCreate) -> None:
        spec, inp = self._spec, self._input
        assert spec is not None and inp is not None
        record = next((r for r in self._carry.revisions if r.revision == create.revision), None)
        if record is None:
            # The planner only creates machines of recorded revisions. A plain exception fails the
            # workflow *task* (retried, visible in the UI), never the deployment itself.
            raise RuntimeError(f"no record of revision {create.revision}")
        name = new_machine_name(f"{spec.name}-{create.revision[:5]}")
        while name in self._carry.book.machines:
            name = new_machine_name(f"{spec.name}-{create.revision[:5]}")
        await start_machine(
            self._carry.book,
            MachineInput(
                cluster=inp.cluster,
                name=name,
                role="worker",
                bootstrap_kind="join-worker",
                owner_workflow_id=workflow.info().workflow_id,
                # A revision pinned to an AZ keeps its machines there.
                failure_domain=record.failure_domain or create.failure_domain,
                version=record.version,
                revision=create.revision,
                template=record.machine_template,
                kubeadm=record.bootstrap,
                node_startup_timeout_seconds=inp.node_startup_timeout_seconds,
                node_drain_timeout_seconds=inp.node_drain_timeout_seconds,
                deployment=spec.name,
            ),
        )

    # --- revisions --------------------------------------------------------------------------------
    def _record_revision(self, view: rollout.RevisionView) -> None:
        spec = self._spec
        assert spec is not None
        self._carry.revisions = [r for r in self._carry.revisions if r.revision != view.revision]
        self._carry.revisions.append(
            RevisionRecord(
                number=max((r.number for r in self._carry.revisions), default=0) + 1,
                revision=view.revision,
                created=view.created,
                version=spec.version,
                machine_template=spec.machine_template,
                bootstrap=spec.bootstrap,
                bootstrap_template_name=spec.bootstrap_template_name,
                failure_domain=spec.failure_domain,
            )
        )

    def _promote_current_revision(self) -> None:
        """Rolling back to a revision that still has machines makes it the newest (CAPI bumps
        the MachineSet's revision number)."""
        current = self._revision()
        top = max((r.number for r in self._carry.revisions), default=0)
        for r in self._carry.revisions:
            if r.revision == current and r.number != top:
                r.number = top + 1

    def _prune_revisions(self) -> None:
        """Keep the current revision, revisions with machines, and the newest
        `revisionHistoryLimit` old ones without machines (for describe)."""
        spec = self._spec
        assert spec is not None
        current = self._revision()
        with_machines = {m.status.revision for m in self._carry.book.live()}
        empty_old = sorted(
            (r for r in self._carry.revisions if r.revision != current and r.revision not in with_machines),
            key=lambda r: r.number,
        )
        drop = {r.revision for r in empty_old[: max(len(empty_old) - spec.revision_history_limit, 0)]}
        self._carry.revisions = [r for r in self._carry.revisions if r.revision not in drop]

    # --- progress, conditions -----------------------------------------------------------------------
    def _track_progress(self) -> None:
        state = self._state()
        key = progress_key(state)
        if (
            key != self._carry.progress_key
            or self._carry.last_progress is None
            or rollout.deployment_complete(state)
        ):
            self._carry.progress_key = key
            self._carry.last_progress = state.now

    def _deadline_exceeded(self, state: rollout.DeploymentState) -> bool:
        spec = self._spec
        assert spec is not None
        if spec.paused or not self._cp_initialized or self._carry.last_progress is None:
            return False
        if rollout.deployment_complete(state):
            return False
        return rollout.progress_deadline_exceeded(
            self._carry.last_progress, state.now, spec.progress_deadline_seconds
        )

    def _conditions(self, state: rollout.DeploymentState) -> list[Condition]:
        spec = self._spec
        assert spec is not None
        counts = rollout.deployment_counts(state)
        floor = spec.replicas - state.strategy.unavailable(spec.replicas)
        available = Condition(
            type="Available",
            status=counts.available >= floor,
            reason="MinimumReplicasAvailable" if counts.available >= floor else "MinimumReplicasUnavailable",
            message=f"{counts.available} available, at least {floor} required",
        )
        if not self._cp_initialized:
            progressing = Condition(
                type="Progressing",
                status=False,
                reason="WaitingForControlPlane",
                message="no machine is created before the control plane is initialized",
            )
        elif spec.paused:
            progressing = Condition(type="Progressing", status=False, reason="DeploymentPaused")
        elif rollout.deployment_complete(state):
            progressing = Condition(
                type="Progressing",
                status=True,
                reason="NewMachineSetAvailable",
                message=f"revision {state.current_revision} has successfully progressed",
            )
        elif self._deadline_exceeded(state):
            progressing = Condition(
                type="Progressing",
                status=False,
                reason="ProgressDeadlineExceeded",
                message=(
                    f"revision {state.current_revision} has made no progress for more than "
                    f"{spec.progress_deadline_seconds}s; still trying within maxUnavailable"
                ),
            )
        else:
            progressing = Condition(
                type="Progressing",
                status=True,
                reason="MachineSetUpdated",
                message=f"{counts.up_to_date} of {spec.replicas} machines up to date, {counts.available} available",
            )
        if self._carry.cluster_paused:
            paused = Condition(type="Paused", status=True, reason="ClusterPaused")
        else:
            paused = Condition(
                type="Paused", status=spec.paused, reason="Paused" if spec.paused else "NotPaused"
            )
        return [available, progressing, paused]

    def _recheck_after(self) -> timedelta:
        state = self._state()
        spec = self._spec
        assert spec is not None
        wake_at = state.now + IDLE_RECHECK.total_seconds()
        if self._carry.honours_rollout_after and (at := self._rollout_after()) is not None and at > state.now:
            wake_at = min(wake_at, at + 1)  # roll as soon as rolloutAfter passes
        if (
            t := rollout.next_availability_time(state.machines, state.now, spec.min_ready_seconds)
        ) is not None:
            wake_at = min(wake_at, t)
        if (
            self._carry.last_progress is not None
            and not spec.paused
            and not rollout.deployment_complete(state)
            and not self._deadline_exceeded(state)
        ):
            # Wake just after the deadline so the condition (and the Web UI) shows it on time.
            wake_at = min(wake_at, self._carry.last_progress + spec.progress_deadline_seconds + 1)
        return timedelta(seconds=max(wake_at - state.now, 1.0))

    # --- remediation, deletion ------------------------------------------------------------------------
    def _forget_finished_remediations(self) -> None:
        self._carry.remediating = [n for n in self._carry.remediating if n in self._carry.book.machines]

    def _restart_inputs(self) -> RestartInputs:
        spec, inp = self._spec, self._input
        assert spec is not None and inp is not None
        return RestartInputs(
            cluster=inp.cluster,
            template=spec.machine_template,
            kubeadm=spec.bootstrap,
            node_drain_timeout_seconds=inp.node_drain_timeout_seconds,
        )

    def _wait_after(self) -> timedelta:
        """The loop's wait: `_recheck_after`, and no longer than until machines are due a look."""
        recheck = self._recheck_after()
        if self._carry.nodes_checked_at is not None and not rollout.deployment_complete(self._state()):
            recheck = min(recheck, NODE_CHECK)  # a rollout or scale: keep the nodes' state fresh
        if not self._sees_closed_machines():
            return recheck
        due = self._carry.book.next_check()
        if due is None:
            return recheck
        return min(recheck, timedelta(seconds=max(due - workflow.now().timestamp(), 1.0)))

    # --- helpers ------------------------------------------------------------------------------------
    def _replace_spec(self, spec: MachineDeploymentSpec) -> None:
        """Every change of the desired deployment goes through here (Updates and apply_spec)."""
        before = self._spec
        assert before is not None
        revision_before = self._revision()
        self._spec = spec
        if self._revision() != revision_before or (before.paused and not spec.paused):
            # A new target, or a resumed rollout: the progress deadline counts from now
            # (Kubernetes: "ReplicaSetUpdated" / "DeploymentResumed").
            self._carry.last_progress = workflow.now().timestamp()
        if spec.version != before.version:
            self._upsert_search_attributes()
        self._wake = True

    def _apply_control_plane(self, info: ControlPlaneInfo) -> None:
        if info.version is not None:
            self._cp_version = info.version
        if info.initialized:
            if not self._cp_initialized:
                self._carry.last_progress = workflow.now().timestamp()
            self._cp_initialized = True
        self._wake = True

    def _upsert_search_attributes(self) -> None:
        assert self._input is not None and self._spec is not None
        workflow.upsert_search_attributes(
            [
                sa.CLUSTER_NAME.value_set(self._input.cluster.name),
                sa.KUBERNETES_VERSION.value_set(self._spec.version),
            ]
        )

    async def _report(self) -> None:
        """Tell the ClusterWorkflow when the status changed (a workflow cannot query another one,
        so status flows up as signals)."""
        owner = self._input.owner_workflow_id if self._input else None
        if not owner:
            return
        status = self.status()
        if status == self._last_reported:
            return
        self._last_reported = status
        await workflow.get_external_workflow_handle(owner).signal("deployment_changed", status)

    def _publish(self) -> None:
        """What the Web UI shows without opening the history."""
        s = self.status()
        progressing = s.condition("Progressing")
        lines = [
            f"**{s.name}** ({s.cluster}): {s.available_replicas}/{s.desired_replicas} available, "
            f"{s.ready_replicas} ready, {s.up_to_date_replicas} up to date, {s.replicas} machines — {s.phase}",
            f"revision {s.revision} ({s.version}), {s.strategy}"
            + (", **paused**" if s.paused else "")
            + (", **cluster paused**" if s.cluster_paused else ""),
        ]
        if progressing is not None:
            lines.append(f"Progressing: {progressing.reason} {progressing.message}".strip())
        lines.append(s.operation)
        if s.last_remediation:
            lines.append(f"last remediation: {s.last_remediation}")
        workflow.set_current_details("\n\n".join(lines))


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
