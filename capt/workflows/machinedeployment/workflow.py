"""MachineDeploymentWorkflow — a CAPI MachineDeployment (and its MachineSets) over MachineWorkflows.

One loop, like the ControlPlaneWorkflow: build a `rollout.DeploymentState` from the machines the
workflow owns, ask the pure planner `rollout.plan_machine_deployment` for the next step (which
machines to create, in which revision and availability zone; which to delete, in order), apply it
by starting or signalling MachineWorkflows, and wait — until a machine reports a change, an Update
arrives, or a durable timer fires (a machine finishing `minReadySeconds`, the progress deadline,
or the idle recheck). Every decision lives in `capt/rules/deployment.py` (table-tested); this file
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

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior

from capt.contracts.ids import deployment_workflow_id
from capt.workflows.owner import OwnerWorkflow

# Note: `import capt.rules.deployment as rollout`, not `from capt.rules import deployment`: written the
# second way, this module got a sandbox copy of `rollout` (re-imported on every workflow task), whose
# MachineView is not the class `MachineBook.views()` returns, and pydantic refused the machines.

with workflow.unsafe.imports_passed_through():
    import capt.rules.deployment as rollout
    import capt.rules.deployment_remediation as deployment_remediation
    from capt.contracts.owners import (
        DeploymentMachine,
        DeploymentRemediationAnswer,
        DeploymentRemediationRequest,
        DeploymentStatus,
        RevisionSummary,
    )
    from capt.rules.intstr import check_int_or_percent
    from capt.rules.versions import parse_kubernetes_version, worker_version_error
    from capt.spec.models import MachineDeploymentSpec, RollingUpdate
    from capt.workflows.machine_owner import (
        RestartInputs,
        delete_machine,
    )
    from capt.workflows.machinedeployment.models import (
        ControlPlaneInfo,
        DeleteMachinesRequest,
        DeploymentCarry,
        MachineDeploymentInput,
        ScaleRequest,
        StrategyRequest,
        TemplateRequest,
        strategy_error,
    )
from capt.workflows.machinedeployment.rollout_steps import _RolloutStepsMixin

# ---------------------------------------------------------------------------------------------
# The workflow
# ---------------------------------------------------------------------------------------------


@workflow.defn(name="MachineDeploymentWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class MachineDeploymentWorkflow(_RolloutStepsMixin, OwnerWorkflow):
    REPORT_SIGNAL = "deployment_changed"

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
        decision = deployment_remediation.plan_deployment_remediation(
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

    def _restart_inputs(self) -> RestartInputs:
        spec, inp = self._spec, self._input
        assert spec is not None and inp is not None
        return RestartInputs(
            cluster=inp.cluster,
            template=spec.machine_template,
            kubeadm=spec.bootstrap,
            node_drain_timeout_seconds=inp.node_drain_timeout_seconds,
        )

    def _owner_id(self) -> str | None:
        return self._input.owner_workflow_id if self._input else None

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
