"""ClusterWorkflow — the cluster as one durable entity (`cluster/<namespace>/<name>`).

It runs: infrastructure (child, `infra/…`) → cluster PKI → the control plane (child,
`controlplane/…`) → machine deployments (children, `md/…`, once the control plane is
initialized) → the health check (child, `health/…`); then it stays alive, serving Updates
and the `status` query, until it is deleted.

Requests arrive as Temporal Updates whose validators use the same pure rules as the owners'
(`capt/workflows/cluster/changes.py`), so a bad request is rejected before it enters history.
An accepted request changes the cluster's desired spec; the workflow forwards each owner its
new spec as a signal (a workflow cannot send Updates or queries to another workflow) and the
owners report their status back with signals — which is also what `describe` reads.

CAPI's upgrade order: a new Kubernetes version goes to the control plane first; deployments
get it only once every control-plane machine runs it and is Ready.

Children are started with ParentClosePolicy.ABANDON because this workflow continues-as-new
(carrying `ClusterCarry`) to keep its history bounded.
"""

from __future__ import annotations

import asyncio
import contextlib

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from capt.contracts import search_attributes as sa
    from capt.contracts.owners import ControlPlaneStatus, DeploymentStatus
    from capt.spec.models import (
        ClusterSpec,
    )
    from capt.workflows.cluster.changes import (
        ApplyPreview,
        ChangeRejected,
        ClusterChanges,
        field_changes,
        machine_effects,
        plan_changes,
    )
    from capt.workflows.cluster.models import (
        PATCH_ONE_RECHECK_TIMER,
        PATCH_TEARDOWN_V2,
        RECHECK,
        ApplyAnswer,
        ApplyRequest,
        ClusterCarry,
        ClusterInput,
        ClusterStatus,
        InfrastructureSummary,
        Phase,
        ScaleControlPlaneRequest,
        ScaleDeploymentRequest,
        UpgradeRequest,
    )
from capt.workflows.cluster.deletion import _DeletionMixin
from capt.workflows.cluster.reconcile import _ReconcileMixin


@workflow.defn(name="ClusterWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class ClusterWorkflow(_ReconcileMixin, _DeletionMixin):
    @workflow.init
    def __init__(self, inp: ClusterInput) -> None:
        # From the input here, not in run(): signals/Updates that come with a continued-as-new
        # run's first task are handled before run() starts and must not be overwritten.
        self._spec: ClusterSpec | None = inp.spec
        self._carry = inp.carry if inp.carry is not None else ClusterCarry(paused=inp.spec.paused)
        if inp.carry is not None and self._carry.cluster_id is None:
            # Continued from a run that predates namespaced ids: its resources carry the name.
            self._carry.cluster_id = inp.spec.name
        self._wake = False
        self._recheck: asyncio.Task | None = None  # the running RECHECK timer (patched runs)

    # --- query ----------------------------------------------------------------------------
    @workflow.query
    def status(self) -> ClusterStatus:
        spec, c = self._spec, self._carry
        assert spec is not None
        infra = c.infra
        cp = c.control_plane
        deployments = [c.deployments[md.name] for md in spec.machine_deployments if md.name in c.deployments]
        ready = (cp.ready_replicas if cp else 0) + sum(d.ready_replicas for d in deployments)
        desired = spec.control_plane.replicas + sum(md.replicas for md in spec.machine_deployments)
        return ClusterStatus(
            name=spec.name,
            namespace=spec.namespace,
            region=spec.region,
            cluster_id=c.cluster_id,
            phase=c.phase,
            message=c.message,
            phase_since=c.phase_since,
            paused=c.paused,
            version=spec.control_plane.version,
            endpoint=(
                f"{c.context.endpoint_host}:{c.context.endpoint_port}" if c.context is not None else None
            ),
            infrastructure=InfrastructureSummary(
                vpc_id=infra.vpc_id if infra else None,
                availability_zones=infra.failure_domains if infra else (),
                load_balancer=infra.load_balancer.name if infra and infra.load_balancer else None,
                endpoint=infra.control_plane_endpoint_host if infra else None,
                aws_calls=sum(infra.aws_calls.values()) if infra else 0,
            ),
            control_plane=cp,
            deployments=deployments,
            ready_machines=ready,
            desired_machines=desired,
            events=list(c.events),
            blocked=list(c.blocked),
        )

    # --- signals from the owners ------------------------------------------------------------
    @workflow.signal
    def control_plane_changed(self, status: ControlPlaneStatus) -> None:
        self._carry.control_plane = status
        self._wake = True

    @workflow.signal
    def deployment_changed(self, status: DeploymentStatus) -> None:
        self._carry.deployments[status.name] = status
        self._wake = True

    @workflow.query
    def preview(self, req: ApplyRequest) -> ApplyPreview:
        """What `apply` would do with this spec, judged by the same rules (`capt diff`,
        `capt apply --dry-run`). A query: nothing is recorded in the history."""
        assert self._spec is not None
        try:
            self._reject_if_deleting()
            changes = self._changes(req.spec)
        except ValueError as err:
            return ApplyPreview(accepted=False, reason=str(err))
        return ApplyPreview(
            accepted=True,
            summary=changes.summary(),
            fields=tuple(field_changes(self._spec, req.spec)),
            machines=tuple(machine_effects(self._spec, req.spec, changes)),
        )

    # --- updates ----------------------------------------------------------------------------
    @workflow.update
    def apply(self, req: ApplyRequest) -> ApplyAnswer:
        changes = self._changes(req.spec)
        self._spec = req.spec
        if changes.paused is not None:
            self._carry.paused = changes.paused
        if not changes.empty and self._carry.phase in ("Ready", "Updating"):
            # Visible at once: a client waiting for Ready must not see the state before the change.
            self._set_phase("Updating", f"applying: {changes.summary()}")
        self._event(f"applied: {changes.summary()}")
        self._wake = True
        return ApplyAnswer(changed=not changes.empty, summary=changes.summary())

    @apply.validator
    def _validate_apply(self, req: ApplyRequest) -> None:
        self._reject_if_deleting()
        self._changes(req.spec)

    @workflow.update
    def scale_control_plane(self, req: ScaleControlPlaneRequest) -> ApplyAnswer:
        return self.apply(ApplyRequest(spec=self._with_control_plane(replicas=req.replicas)))

    @scale_control_plane.validator
    def _validate_scale_control_plane(self, req: ScaleControlPlaneRequest) -> None:
        self._validate_apply(ApplyRequest(spec=self._with_control_plane(replicas=req.replicas)))

    @workflow.update
    def scale_deployment(self, req: ScaleDeploymentRequest) -> ApplyAnswer:
        return self.apply(ApplyRequest(spec=self._with_deployment(req.deployment, replicas=req.replicas)))

    @scale_deployment.validator
    def _validate_scale_deployment(self, req: ScaleDeploymentRequest) -> None:
        self._reject_if_deleting()
        assert self._spec is not None
        if req.deployment not in {md.name for md in self._spec.machine_deployments}:
            raise ValueError(f"cluster {self._spec.name} has no machine deployment {req.deployment!r}")
        self._validate_apply(ApplyRequest(spec=self._with_deployment(req.deployment, replicas=req.replicas)))

    @workflow.update
    def upgrade(self, req: UpgradeRequest) -> ApplyAnswer:
        return self.apply(ApplyRequest(spec=self._with_version(req.version)))

    @upgrade.validator
    def _validate_upgrade(self, req: UpgradeRequest) -> None:
        self._validate_apply(ApplyRequest(spec=self._with_version(req.version)))

    @workflow.update
    def pause(self) -> ApplyAnswer:
        return self.apply(ApplyRequest(spec=self._spec.model_copy(update={"paused": True})))  # type: ignore[union-attr]

    @pause.validator
    def _validate_pause(self) -> None:
        self._reject_if_deleting()

    @workflow.update
    def resume(self) -> ApplyAnswer:
        return self.apply(ApplyRequest(spec=self._spec.model_copy(update={"paused": False})))  # type: ignore[union-attr]

    @resume.validator
    def _validate_resume(self) -> None:
        self._reject_if_deleting()

    @workflow.update
    def delete(self) -> ApplyAnswer:
        """Start deleting the cluster. Returns at once; the workflow ends when nothing is left.
        After a teardown that failed (phase Failed), the next `delete` runs it again."""
        c = self._carry
        if not c.deleting:
            c.deleting = True
            self._event("delete requested")
            self._wake = True
        elif c.teardown_failed:
            c.teardown_failed = False
            self._event("delete requested again")
            self._set_phase("Deleting", "deleting again")
            self._wake = True
        return ApplyAnswer(changed=True, summary="deleting")

    @workflow.signal
    def teardown_changed(self, status: ClusterStatus) -> None:
        """The ClusterTeardownWorkflow's progress (and what blocks it), shown as the cluster's."""
        c = self._carry
        if not c.deleting or c.teardown_failed:
            return
        c.blocked = list(status.blocked)
        if status.phase == "Deleting":
            c.message = status.message

    def _reject_if_deleting(self) -> None:
        if self._carry.deleting:
            raise ValueError("the cluster is being deleted")

    def _changes(self, desired: ClusterSpec) -> ClusterChanges:
        assert self._spec is not None
        cp = self._carry.control_plane
        running_versions = tuple(sorted({m.version for m in cp.machines})) if cp else ()
        try:
            return plan_changes(self._spec, desired, running_versions)
        except ChangeRejected as exc:
            raise ValueError(str(exc)) from None

    def _with_control_plane(self, **changes) -> ClusterSpec:
        assert self._spec is not None
        return self._spec.model_copy(
            update={"control_plane": self._spec.control_plane.model_copy(update=changes)}
        )

    def _with_deployment(self, name: str, **changes) -> ClusterSpec:
        assert self._spec is not None
        mds = tuple(
            md.model_copy(update=changes) if md.name == name else md for md in self._spec.machine_deployments
        )
        return self._spec.model_copy(update={"machine_deployments": mds})

    def _with_version(self, version: str) -> ClusterSpec:
        """`capt upgrade`: the control plane and every deployment (deployments follow later)."""
        spec = self._with_control_plane(version=version)
        mds = tuple(md.model_copy(update={"version": version}) for md in spec.machine_deployments)
        return spec.model_copy(update={"machine_deployments": mds})

    # --- run ------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ClusterInput) -> ClusterStatus:
        self._choose_cluster_id()
        self._publish()
        if self._carry.context is None and not self._carry.deleting:
            await self._provision()
        while True:
            self._wake = False
            if self._carry.deleting:
                if workflow.patched(PATCH_TEARDOWN_V2):
                    if await self._teardown_v2():
                        return self.status()
                    # Failed: wait, Failed, for another `delete` (capt delete) to run it again.
                    await workflow.wait_condition(lambda: not self._carry.teardown_failed)
                    continue
                await self._teardown()
                return self.status()
            if self._carry.context is not None:
                await self._reconcile()
            self._publish()
            self._carry.iterations += 1
            if workflow.info().is_continue_as_new_suggested() or self._carry.iterations >= inp.max_iterations:
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._carry.iterations = 0
                workflow.continue_as_new(
                    ClusterInput(spec=self._spec, carry=self._carry, max_iterations=inp.max_iterations)
                )
            await self._wait_for_change()

    async def _wait_for_change(self) -> None:
        """Until something happened (`_wake`) or RECHECK passed."""
        if not workflow.patched(PATCH_ONE_RECHECK_TIMER):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._wake, timeout=RECHECK)
            return
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.create_task(workflow.sleep(RECHECK))
        recheck = self._recheck
        await workflow.wait_condition(lambda: self._wake or recheck.done())

    # --- presentation -------------------------------------------------------------------------
    def _set_phase(self, phase: Phase, message: str) -> None:
        if phase != self._carry.phase or self._carry.phase_since is None:
            self._carry.phase_since = workflow.now()
        self._carry.phase, self._carry.message = phase, message

    def _event(self, text: str) -> None:
        stamp = workflow.now().strftime("%H:%M:%S")
        self._carry.events = (self._carry.events + [f"{stamp} {text}"])[-30:]

    def _publish(self) -> None:
        """Search attributes for the Web UI's list (filter by cluster, phase, version) and a
        markdown summary on the workflow's page."""
        s = self.status()
        workflow.upsert_search_attributes(
            [
                sa.CLUSTER_NAME.value_set(s.name),
                sa.PHASE.value_set(s.phase),
                sa.KUBERNETES_VERSION.value_set(s.version),
                sa.READY_MACHINES.value_set(s.ready_machines),
            ]
        )
        lines = [
            f"**{s.namespace}/{s.name}** — {s.phase}: {s.message}",
            f"{s.ready_machines}/{s.desired_machines} machines ready · {s.version} · {s.region}"
            + (f" · id `{s.cluster_id}`" if s.cluster_id else ""),
        ]
        if s.endpoint:
            lines.append(f"endpoint `{s.endpoint}`")
        workflow.set_current_details("\n\n".join(lines))
