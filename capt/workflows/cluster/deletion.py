"""ClusterWorkflow: deletion (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

import contextlib

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, FailureError

from capt.contracts.ids import (
    control_plane_workflow_id,
    deployment_workflow_id,
    infra_workflow_id,
)

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import secrets as sm
    from capt.activities.workload.activities import WorkloadAccess
    from capt.contracts.ids import health_workflow_id, teardown_workflow_id
    from capt.workflows import activity_options as opts
    from capt.workflows.cluster.models import (
        ClusterStatus,
        _cause,
    )
    from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
    from capt.workflows.health.workflow import HealthCheckWorkflow
    from capt.workflows.infrastructure.models import InfraInput
    from capt.workflows.infrastructure.workflow import InfrastructureWorkflow
    from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow
    from capt.workflows.teardown.models import TeardownInput


class _DeletionMixin:
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
