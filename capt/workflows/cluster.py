"""ClusterWorkflow — the cluster as one durable entity (`cluster/<namespace>/<name>`).

It runs: infrastructure (child, `infra/…`) → cluster PKI → the control plane (child,
`controlplane/…`) → machine deployments (children, `md/…`, once the control plane is
initialized) → the health check (child, `health/…`); then it stays alive, serving Updates
and the `status` query, until it is deleted.

Requests arrive as Temporal Updates whose validators use the same pure rules as the owners'
(`workflows/cluster_changes.py`), so a bad request is rejected before it enters history.
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
import hashlib
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError
from temporalio.workflow import ParentClosePolicy

from capt.contracts.ids import (
    control_plane_workflow_id,
    deployment_workflow_id,
    infra_workflow_id,
)

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import secrets as sm
    from capt.activities.aws.models import Blocker
    from capt.activities.workload.activities import WorkloadAccess
    from capt.activities.workload.addons import ApplyAddonsRequest, apply_addons
    from capt.contracts import names
    from capt.contracts import search_attributes as sa
    from capt.contracts.ids import health_workflow_id, teardown_workflow_id
    from capt.contracts.owners import ControlPlaneStatus, DeploymentStatus
    from capt.rules.versions import oldest
    from capt.spec.models import (
        AddonSpec,
        ClusterSpec,
        ControlPlaneSpec,
        HealthCheckSpec,
        MachineDeploymentSpec,
    )
    from capt.workflows import activity_options as opts
    from capt.workflows.cluster_changes import (
        ApplyPreview,
        ChangeRejected,
        ClusterChanges,
        field_changes,
        machine_effects,
        plan_changes,
    )
    from capt.workflows.control_plane import ControlPlaneInput, ControlPlaneWorkflow
    from capt.workflows.health import HealthCheckWorkflow
    from capt.workflows.health_models import HealthCheckInput, HealthSettings
    from capt.workflows.infrastructure import InfraInput, InfraResult, InfrastructureWorkflow
    from capt.workflows.machine_deployment import MachineDeploymentWorkflow
    from capt.workflows.machine_deployment_models import ControlPlaneInfo, MachineDeploymentInput
    from capt.workflows.machine_models import ClusterContext, LoadBalancerRef
    from capt.workflows.teardown_models import TeardownInput

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
# The cluster's id in AWS is `<namespace>.<name>` (plan.names.cluster_id), chosen once at the
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


@workflow.defn(name="ClusterWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class ClusterWorkflow:
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

    def _choose_cluster_id(self) -> str:
        """The cluster's id in AWS, chosen once per cluster, before anything is created or deleted.

        A new cluster gets `<namespace>.<name>`. A replay of a history recorded before the patch
        takes the other branch and keeps the name, as does a carry from such a run (`__init__`).
        """
        spec, c = self._spec, self._carry
        assert spec is not None
        if c.cluster_id is None:
            if workflow.patched(PATCH_NAMESPACED_CLUSTER_ID):
                c.cluster_id = names.cluster_id(spec.namespace, spec.name)
            else:
                c.cluster_id = spec.name
        return c.cluster_id

    async def _provision(self) -> None:
        spec = self._spec
        assert spec is not None
        cluster_id = self._choose_cluster_id()
        self._set_phase("Provisioning", "creating network, security groups and the API load balancer")
        try:
            infra = await workflow.execute_child_workflow(
                InfrastructureWorkflow.run,
                InfraInput(spec=spec, operation="create", cluster_id=cluster_id),
                id=infra_workflow_id(spec.namespace, spec.name),
                static_summary=f"network and API load balancer of {spec.name}",
            )
        except ChildWorkflowError as err:
            self._set_phase("Failed", f"infrastructure: {_cause(err)}")
            return
        self._carry.infra = infra
        self._event(f"infrastructure ready: {infra.vpc_id}, endpoint {infra.control_plane_endpoint_host}")
        self._set_phase("Provisioning", "cluster PKI")
        try:
            pki = await workflow.execute_activity(
                sm.ensure_cluster_pki,
                sm.ClusterPKIRequest(
                    cluster_name=spec.name,
                    namespace=spec.namespace,
                    region=spec.region,
                    endpoint_host=infra.control_plane_endpoint_host,
                    endpoint_port=infra.control_plane_endpoint_port,
                    additional_tags=spec.additional_tags,
                    cluster_id=cluster_id,
                ),
                **opts.BOOTSTRAP_CALL,
            )
        except ActivityError as err:
            self._set_phase("Failed", f"cluster PKI: {_cause(err)}")
            return
        lb = infra.load_balancer
        self._carry.context = ClusterContext(
            name=spec.name,
            namespace=spec.namespace,
            region=spec.region,
            endpoint_host=infra.control_plane_endpoint_host or "",
            endpoint_port=infra.control_plane_endpoint_port,
            pki=pki,
            pod_cidrs=spec.network.pod_cidrs,
            service_cidrs=spec.network.service_cidrs,
            service_domain=spec.network.service_domain,
            private_subnets=tuple((s.availability_zone, s.id) for s in infra.subnets if not s.is_public),
            security_groups=tuple(sorted(infra.security_groups.items())),
            load_balancer=LoadBalancerRef(
                type=lb.type, name=lb.name, dns_name=lb.dns_name, target_group_arn=lb.target_group_arn
            )
            if lb
            else None,
            additional_tags=spec.additional_tags,
            ssh_key_name=spec.ssh_key_name,
            aws_id=cluster_id,
        )
        self._set_phase("Provisioning", "control plane")

    # --- reconcile --------------------------------------------------------------------------
    async def _reconcile(self) -> None:
        spec, c = self._spec, self._carry
        assert spec is not None and c.context is not None
        if not c.control_plane_started:
            await workflow.start_child_workflow(
                ControlPlaneWorkflow.run,
                ControlPlaneInput(
                    cluster=c.context,
                    spec=spec.control_plane,
                    owner_workflow_id=workflow.info().workflow_id,
                ),
                id=control_plane_workflow_id(spec.namespace, spec.name),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"KubeadmControlPlane {spec.control_plane.name}",
            )
            c.control_plane_started = True
            c.sent_control_plane, c.sent_paused = spec.control_plane, c.paused
            self._event("control plane started")
        cp_handle = workflow.get_external_workflow_handle(
            control_plane_workflow_id(spec.namespace, spec.name)
        )
        if c.sent_control_plane != spec.control_plane:
            await cp_handle.signal(ControlPlaneWorkflow.apply_spec, spec.control_plane)
            c.sent_control_plane = spec.control_plane
        if c.sent_paused != c.paused:
            await cp_handle.signal(ControlPlaneWorkflow.set_paused, c.paused)
            for name in c.forwarded:
                handle = workflow.get_external_workflow_handle(
                    deployment_workflow_id(spec.namespace, spec.name, name)
                )
                await handle.signal(MachineDeploymentWorkflow.set_paused, c.paused)
            c.sent_paused = c.paused

        cp = c.control_plane
        if cp is None or not cp.initialized:
            self._update_phase()  # state only: Failed if the first control-plane machine failed
            return
        cp_done = cp.ready and cp.version == spec.control_plane.version and not cp.paused
        info = ControlPlaneInfo(initialized=True, version=_settled_version(cp, spec.control_plane.version))
        for md in spec.machine_deployments:
            forwarded = c.forwarded.get(md.name)
            effective = md
            if forwarded is not None and md.version != forwarded.version and not cp_done:
                # CAPI's order: workers take a new version after the control plane runs it.
                effective = md.model_copy(update={"version": forwarded.version})
            wf_id = deployment_workflow_id(spec.namespace, spec.name, md.name)
            if forwarded is None:
                await workflow.start_child_workflow(
                    MachineDeploymentWorkflow.run,
                    MachineDeploymentInput(
                        cluster=c.context,
                        spec=effective,
                        control_plane_version=info.version,
                        control_plane_initialized=True,
                        node_startup_timeout_seconds=_node_startup_timeout(spec, md.name),
                        owner_workflow_id=workflow.info().workflow_id,
                        paused=c.paused,
                    ),
                    id=wf_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    static_summary=f"MachineDeployment {md.name}",
                )
                self._event(f"deployment {md.name} started")
            elif forwarded != effective:
                await workflow.get_external_workflow_handle(wf_id).signal(
                    MachineDeploymentWorkflow.apply_spec, effective
                )
            c.forwarded[md.name] = effective
        if c.forwarded_cp_info != info:
            for name in c.forwarded:
                await workflow.get_external_workflow_handle(
                    deployment_workflow_id(spec.namespace, spec.name, name)
                ).signal(MachineDeploymentWorkflow.control_plane_changed, info)
            c.forwarded_cp_info = info
        # Deployments the manifest no longer has: delete their machines, then forget them.
        for name in [n for n in c.forwarded if n not in {md.name for md in spec.machine_deployments}]:
            if name not in c.removing:
                await workflow.get_external_workflow_handle(
                    deployment_workflow_id(spec.namespace, spec.name, name)
                ).signal(MachineDeploymentWorkflow.delete_all)
                c.removing.append(name)
                self._event(f"deployment {name} removed from the manifest: deleting its machines")
            status = c.deployments.get(name)
            if status is not None and status.phase == "Deleted":
                del c.forwarded[name]
                c.deployments.pop(name, None)
                c.removing.remove(name)
        await self._reconcile_health()
        self._update_phase()
        await self._reconcile_addons()

    async def _reconcile_health(self) -> None:
        """One HealthCheckWorkflow per cluster, once its machines exist; settings follow apply."""
        spec, c = self._spec, self._carry
        assert spec is not None and c.context is not None
        wf_id = health_workflow_id(spec.namespace, spec.name)
        if not c.health_started:
            if not spec.health_checks:
                return
            await workflow.start_child_workflow(
                HealthCheckWorkflow.run,
                HealthCheckInput(cluster=c.context, checks=spec.health_checks),
                id=wf_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"MachineHealthChecks of {spec.name}",
            )
            c.health_started, c.sent_health_checks = True, spec.health_checks
            self._event(f"health check started ({len(spec.health_checks)} check(s))")
        elif c.sent_health_checks != spec.health_checks:
            await workflow.get_external_workflow_handle(wf_id).signal(
                HealthCheckWorkflow.apply_settings, HealthSettings(checks=spec.health_checks)
            )
            c.sent_health_checks = spec.health_checks

    async def _reconcile_addons(self) -> None:
        """ClusterResourceSets, applied to the workload cluster once its control plane is
        initialized (and the cluster not paused). What was applied is in the carry, so neither
        a continue-as-new nor a later reconcile applies an ApplyOnce addon again; a Reconcile
        addon is applied again when its content changes. A failure never fails the cluster: it
        is recorded (event + status message) and retried on a later reconcile, unless the
        activity called it permanent (a bad document), then only once the content changes."""
        spec, c = self._spec, self._carry
        assert spec is not None and c.context is not None
        if c.paused:
            return
        for addon in spec.addons:
            digest = _addon_digest(addon)
            applied = c.addons_applied.get(addon.name)
            if c.addons_refused.get(addon.name) == digest:
                continue
            if applied is not None and (addon.strategy == "ApplyOnce" or applied == digest):
                continue
            access = WorkloadAccess(
                region=c.context.region,
                endpoint_host=c.context.endpoint_host,
                endpoint_port=c.context.endpoint_port,
                pki=c.context.pki,
            )
            try:
                result = await workflow.execute_activity(
                    apply_addons,
                    ApplyAddonsRequest(
                        access=access, addons=(addon,), namespace=spec.namespace, cluster_name=spec.name
                    ),
                    summary=f"apply addon {addon.name}",
                    **ADDON_CALL,
                )
            except ActivityError as err:
                if isinstance(err.cause, ApplicationError) and err.cause.non_retryable:
                    c.addons_refused[addon.name] = digest
                self._addon_failed(addon.name, _cause(err))
                continue
            if result.failures:
                first = result.failures[0]
                self._addon_failed(
                    addon.name,
                    f"{len(result.failures)} object(s) not applied, e.g. {first.kind} {first.name}: {first.reason}",
                )
                continue
            c.addons_applied[addon.name] = digest
            c.addons_refused.pop(addon.name, None)
            created = sum(o.action == "created" for o in result.applied)
            self._event(
                f"addon {addon.name} applied: {len(result.applied)} object(s), {created} created, "
                f"{len(result.applied) - created} configured"
            )

    def _addon_failed(self, name: str, reason: str) -> None:
        self._event(f"addon {name} not applied (retried later): {reason}")
        self._carry.message = f"{self._carry.message}; addon {name} not applied: {reason}"[:500]

    def _update_phase(self) -> None:
        spec, c = self._spec, self._carry
        assert spec is not None
        if c.phase == "Failed" and c.context is None:
            return  # provisioning failed (infrastructure or PKI): nothing runs to change that
        if c.paused:
            self._set_phase("Paused", "paused: no change is applied until resume")
            return
        cp = c.control_plane
        deployments = [c.deployments.get(md.name) for md in spec.machine_deployments]
        failed_workers = _failed_workers(deployments)
        if cp is None or not cp.initialized:
            if (reason := _control_plane_failure(cp)) is not None:
                # Not sticky: a replacement of the machine (remediation) starts over.
                self._set_phase("Failed", reason + failed_workers)
            else:
                self._set_phase(
                    "Provisioning", (cp.operation if cp else "control plane starting") + failed_workers
                )
            return
        settled = (
            cp.ready
            and cp.version == spec.control_plane.version
            # The control plane's last report may predate a scale just forwarded to it.
            and cp.desired_replicas == cp.replicas == cp.ready_replicas == spec.control_plane.replicas
            and all(
                d is not None
                and d.desired_replicas == md.replicas
                and d.ready_replicas == d.replicas == d.up_to_date_replicas == md.replicas
                and d.version == md.version
                for d, md in zip(deployments, spec.machine_deployments, strict=True)
            )
        )
        ever_ready = any(e.startswith("cluster Ready") for e in c.events) or c.phase in ("Ready", "Updating")
        if settled:
            if c.phase != "Ready":
                self._event("cluster Ready")
            self._set_phase("Ready", "every machine is up to date and Ready")
        elif ever_ready:
            self._set_phase("Updating", _progress(cp, deployments) + failed_workers)
        else:
            self._set_phase(
                "Provisioned" if cp.ready else "Provisioning", _progress(cp, deployments) + failed_workers
            )

    # --- delete -----------------------------------------------------------------------------
    async def _teardown_v2(self) -> bool:
        """Delete through the child ClusterTeardownWorkflow; True once nothing is left. A failed
        teardown (something blocks, a timeout) makes the cluster Failed, with the reason and what
        blocks; it returns False and the next `delete` Update runs it again."""
        spec, c = self._spec, self._carry
        assert spec is not None
        c.delete_attempts += 1
        c.blocked = []
        self._set_phase(
            "Deleting", "deleting load balancer Services and volumes, machines, then AWS resources"
        )
        self._publish()
        if c.health_started and not c.health_stopped:
            # First: a machine going away on purpose must not look like one to remediate.
            with contextlib.suppress(FailureError):  # it may be gone already
                await workflow.get_external_workflow_handle(
                    health_workflow_id(spec.namespace, spec.name)
                ).signal(HealthCheckWorkflow.stop)
            c.health_stopped = True
        ctx = c.context
        owners = (
            [control_plane_workflow_id(spec.namespace, spec.name)] if c.control_plane_started else []
        ) + [deployment_workflow_id(spec.namespace, spec.name, name) for name in c.forwarded]
        try:
            await workflow.execute_child_workflow(
                "ClusterTeardownWorkflow",
                TeardownInput(
                    namespace=spec.namespace,
                    name=spec.name,
                    region=spec.region,
                    cluster_id=c.cluster_id or spec.name,
                    workload=WorkloadAccess(
                        region=ctx.region,
                        endpoint_host=ctx.endpoint_host,
                        endpoint_port=ctx.endpoint_port,
                        pki=ctx.pki,
                    )
                    if ctx is not None
                    else None,
                    owner_workflow_id=workflow.info().workflow_id,
                    owners=tuple(owners),
                    version=spec.control_plane.version,
                ),
                id=teardown_workflow_id(spec.namespace, spec.name),
                result_type=ClusterStatus,
                static_summary=f"delete everything of {spec.namespace}/{spec.name} in AWS",
            )
        except ChildWorkflowError as err:
            reason = _cause(err)
            c.teardown_failed = True
            self._event(f"deletion failed (attempt {c.delete_attempts}): {reason}")
            self._set_phase(
                "Failed",
                f"deletion failed: {reason.removesuffix('; run `capt delete` again')}; run `capt delete` again",
            )
            self._publish()
            return False
        c.blocked = []
        self._event("cluster deleted: nothing owned by it is left")
        self._set_phase("Deleted", "deleted")
        self._publish()
        return True

    async def _teardown(self) -> None:
        spec, c = self._spec, self._carry
        assert spec is not None
        cluster_id = self._choose_cluster_id()
        self._set_phase("Deleting", "deleting worker machines")
        self._publish()
        if c.health_started:
            # First: a machine going away on purpose must not look like one to remediate.
            await workflow.get_external_workflow_handle(health_workflow_id(spec.namespace, spec.name)).signal(
                HealthCheckWorkflow.stop
            )
        for name in list(c.forwarded):
            await workflow.get_external_workflow_handle(
                deployment_workflow_id(spec.namespace, spec.name, name)
            ).signal(MachineDeploymentWorkflow.delete_all)
        await workflow.wait_condition(
            lambda: all(
                c.deployments.get(n) is not None and c.deployments[n].phase == "Deleted" for n in c.forwarded
            )
        )
        if c.control_plane_started:
            self._set_phase("Deleting", "deleting control plane machines")
            self._publish()
            await workflow.get_external_workflow_handle(
                control_plane_workflow_id(spec.namespace, spec.name)
            ).signal(ControlPlaneWorkflow.delete_all)
            await workflow.wait_condition(
                lambda: c.control_plane is not None and c.control_plane.operation == "deleted"
            )
        # Secrets first: the infrastructure's final sweep checks everything the cluster owns.
        await workflow.execute_activity(
            sm.delete_cluster_secrets,
            sm.DeleteClusterSecretsRequest(
                cluster_name=spec.name, namespace=spec.namespace, region=spec.region, cluster_id=cluster_id
            ),
            **opts.AWS_CALL,
        )
        self._set_phase("Deleting", "deleting network, security groups and load balancer")
        self._publish()
        await workflow.execute_child_workflow(
            InfrastructureWorkflow.run,
            InfraInput(spec=spec, operation="delete", cluster_id=cluster_id),
            id=infra_workflow_id(spec.namespace, spec.name),
            static_summary=f"delete the network of {spec.name}",
        )
        self._event("cluster deleted: nothing owned by it is left")
        self._set_phase("Deleted", "deleted")
        self._publish()

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
