"""ClusterTeardownWorkflow: discovery (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from capt.contracts.ids import cluster_workflow_id

with workflow.unsafe.imports_passed_through():
    from capt.activities import cluster_tree as tree
    from capt.activities.aws import (
        cleanup,
    )
    from capt.activities.aws import instances as ec2
    from capt.activities.workload.activities import WorkloadAccess
    from capt.activities.workload.teardown import CloudBackedObjects as WorkloadCloudObjects
    from capt.activities.workload.teardown import CloudBackedObjectsRequest, DeleteCloudBackedObjectsRequest
    from capt.workflows import activity_options as opts
    from capt.workflows.teardown.models import (
        DELETE_CLOUD_BACKED_OBJECTS,
        DISCOVER_WORKLOAD_ACCESS,
        LIST_CLOUD_BACKED_OBJECTS,
        DiscoveredWorkload,
        DiscoverWorkloadRequest,
    )
    from capt.workflows.teardown.policy import (
        BEST_EFFORT,
        TREE_CALL,
        WORKLOAD_CALL,
        _cause,
    )


class _DiscoveryMixin:
    # --- stage 0: preflight --------------------------------------------------------------------
    async def _preflight(self) -> None:
        inp = self._inp
        if inp.aws_id != inp.name:
            return  # a namespaced id is unique
        try:
            shared = await workflow.execute_activity(
                tree.find_clusters_sharing_id,
                tree.SharedIdInput(namespace=inp.namespace, name=inp.name, cluster_id=inp.aws_id),
                summary="clusters with the same AWS id",
                start_to_close_timeout=timedelta(seconds=120),
                retry_policy=BEST_EFFORT,
            )
        except ActivityError as err:
            self._event(f"could not check for other clusters with id {inp.aws_id}: {_cause(err)}")
            return
        if shared.workflow_ids:
            raise ApplicationError(
                f"running cluster(s) {', '.join(shared.workflow_ids)} use the same AWS id {inp.aws_id!r}: "
                "their resources cannot be told apart, so deleting this cluster would delete theirs",
                type="ClusterIdInUse",
                non_retryable=True,
            )

    # --- stage 1: workload objects ---------------------------------------------------------------
    async def _workload(self) -> None:
        inp = self._inp
        self._set("Deleting", "deleting the workload's load balancer Services and EBS volumes")
        await self._report()
        access = inp.workload or await self._discover()
        if access is None:
            return
        # capt/activities/workload/teardown.py: one bounded pass deletes (and reports what is left and
        # what it learned); later passes list until nothing is pending. An unreachable API is a
        # retryable error there: after WORKLOAD_CALL's attempts the stage is skipped.
        try:
            result = await workflow.execute_activity(
                DELETE_CLOUD_BACKED_OBJECTS,
                DeleteCloudBackedObjectsRequest(access=access),
                result_type=WorkloadCloudObjects,
                summary="delete LoadBalancer Services and EBS-backed PVCs",
                **WORKLOAD_CALL,
            )
        except ActivityError as err:
            self._event(f"workload objects not deleted ({_cause(err)}): the AWS sweep removes what they held")
            return
        self._learn(result)
        deadline = workflow.now() + timedelta(seconds=inp.settings.workload_timeout_seconds)
        delays = opts.poll_intervals(first=5, factor=1.5, cap=30)
        while not result.done:
            if workflow.now() >= deadline:
                left = ", ".join(
                    [f"Service {o.namespace}/{o.name}" for o in result.services]
                    + [f"PersistentVolumeClaim {o.namespace}/{o.name}" for o in result.claims]
                )
                self._event(
                    f"{result.pending} workload object(s) still there after "
                    f"{inp.settings.workload_timeout_seconds}s ({left[:300]}): the AWS sweep removes what they hold"
                )
                return
            await workflow.sleep(next(delays))
            # A truncated pass (too many objects for one call) deletes again; otherwise list.
            name, request, what = (
                (DELETE_CLOUD_BACKED_OBJECTS, DeleteCloudBackedObjectsRequest(access=access), "delete more")
                if result.truncated
                else (LIST_CLOUD_BACKED_OBJECTS, CloudBackedObjectsRequest(access=access), "left")
            )
            try:
                result = await workflow.execute_activity(
                    name,
                    request,
                    result_type=WorkloadCloudObjects,
                    summary=f"LoadBalancer Services and EBS-backed PVCs: {what}",
                    **WORKLOAD_CALL,
                )
            except ActivityError as err:
                self._event(f"workload objects not listed ({_cause(err)}): going on with the AWS sweep")
                return
            self._learn(result)
        self._event(
            f"workload objects deleted ({len(self._lb_names)} load balancer(s), {len(self._volume_ids)} volume(s) known)"
        )

    async def _discover(self) -> WorkloadAccess | None:
        inp = self._inp
        try:
            found = await workflow.execute_activity(
                DISCOVER_WORKLOAD_ACCESS,
                DiscoverWorkloadRequest(
                    namespace=inp.namespace, name=inp.name, region=inp.region, cluster_id=inp.aws_id
                ),
                result_type=DiscoveredWorkload,
                summary="find the workload API",
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
        except ActivityError as err:
            self._event(f"workload API not found ({_cause(err)}): skipping workload objects")
            return None
        if found.access is None:
            self._event(
                f"workload API not found ({found.reason or 'no API load balancer or PKI'}): skipping workload objects"
            )
        return found.access

    def _learn(self, result: WorkloadCloudObjects) -> None:
        """Keep what the workload API named: once the objects are gone it no longer does, and if
        the cloud controllers never clean up, the sweep needs these ids."""
        for vol in result.volume_ids:
            if vol not in self._volume_ids:
                self._volume_ids.append(vol)
        retained = [v for v in getattr(result, "retained_volume_ids", ()) if v not in self._retained]
        if retained:
            # Kubernetes would keep them (reclaimPolicy Retain); the cluster's deletion does not.
            self._retained += retained
            self._event(
                f"deleting {len(retained)} volume(s) of Retain PersistentVolumes: {', '.join(retained)}"
            )
        for lb in result.load_balancer_names:
            if lb not in self._lb_names:
                self._lb_names.append(lb)

    # --- stage 2: machines -----------------------------------------------------------------------
    async def _machines(self) -> None:
        inp, s = self._inp, self._inp.settings
        if inp.owner_workflow_id and inp.owners:
            self._set("Deleting", "deleting machines")
            await self._report()
            states = await workflow.execute_activity(
                tree.request_cluster_deletion,
                tree.WorkflowIdsInput(workflow_ids=inp.owners),
                summary="ask the owners to delete their machines",
                **TREE_CALL,
            )
            pending = states.running()
            deadline = workflow.now() + timedelta(seconds=s.owners_timeout_seconds)
            while pending:
                if workflow.now() >= deadline:
                    self._event(
                        f"{', '.join(pending)} still deleting after {s.owners_timeout_seconds}s: terminated"
                    )
                    break
                await workflow.sleep(s.owners_poll_seconds)
                states = await workflow.execute_activity(
                    tree.describe_cluster_workflows,
                    tree.WorkflowIdsInput(workflow_ids=pending),
                    summary="owners still deleting",
                    **TREE_CALL,
                )
                pending = states.running()
        own = workflow.info().workflow_id
        terminated = await workflow.execute_activity(
            tree.terminate_cluster_workflows,
            tree.ClusterTreeInput(
                namespace=inp.namespace,
                name=inp.name,
                known_ids=inp.owners,
                exclude=(own, cluster_workflow_id(inp.namespace, inp.name)),
                reason=f"cluster {inp.namespace}/{inp.name} is being deleted ({own})",
            ),
            summary="terminate the cluster's workflows that still run",
            **TREE_CALL,
        )
        if terminated.workflows:
            ids = [w.workflow_id for w in terminated.workflows]
            self._event(f"terminated {len(ids)} workflow(s): {', '.join(ids[:10])}")

    # --- stage 3: instances ----------------------------------------------------------------------
    async def _instances(self) -> None:
        self._set("Deleting", "terminating the cluster's instances")
        await self._report()
        n = await self._terminate_instances()
        if n:
            self._event(f"{n} instance(s) terminated")

    async def _terminate_instances(self) -> int:
        inp = self._inp
        result = await self._aws(
            cleanup.terminate_cluster_instances,
            cleanup.ClusterInput(cluster=self._ref()),
            summary="terminate the cluster's instances",
        )
        live = [i.instance_id for i in result.instances if i.state != "terminated"]
        deadline = workflow.now() + timedelta(seconds=inp.settings.instances_timeout_seconds)
        delays = opts.poll_intervals(first=5, factor=1.5, cap=30)
        while live:
            if workflow.now() >= deadline:
                raise ApplicationError(
                    f"instance(s) {', '.join(live)} not terminated after {inp.settings.instances_timeout_seconds}s",
                    type="Timeout",
                    non_retryable=True,
                )
            await workflow.sleep(next(delays))
            now = await self._aws(
                ec2.describe_cluster_instances,
                ec2.ClusterInstancesRequest(region=inp.region, cluster_name=inp.aws_id),
                summary="instances still shutting down",
            )
            live = [i.instance_id for i in now.instances if i.state != "terminated"]
        return len(result.instances)
