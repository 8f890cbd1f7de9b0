"""ClusterWorkflow: reconcile (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from capt.contracts.ids import (
    control_plane_workflow_id,
    deployment_workflow_id,
    infra_workflow_id,
)

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import secrets as sm
    from capt.activities.workload.activities import WorkloadAccess
    from capt.activities.workload.addons import ApplyAddonsRequest, apply_addons
    from capt.contracts import names
    from capt.contracts.ids import health_workflow_id
    from capt.workflows import activity_options as opts
    from capt.workflows.cluster.models import (
        ADDON_CALL,
        PATCH_NAMESPACED_CLUSTER_ID,
        _addon_digest,
        _cause,
        _control_plane_failure,
        _failed_workers,
        _node_startup_timeout,
        _progress,
        _settled_version,
    )
    from capt.workflows.controlplane.models import ControlPlaneInput
    from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
    from capt.workflows.health.models import HealthCheckInput, HealthSettings
    from capt.workflows.health.workflow import HealthCheckWorkflow
    from capt.workflows.infrastructure.models import InfraInput
    from capt.workflows.infrastructure.workflow import InfrastructureWorkflow
    from capt.workflows.machine.models import ClusterContext, LoadBalancerRef
    from capt.workflows.machinedeployment.models import ControlPlaneInfo, MachineDeploymentInput
    from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow


class _ReconcileMixin:
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
