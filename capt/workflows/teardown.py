"""ClusterTeardownWorkflow — delete everything a cluster has in AWS, and always finish.

It needs only who the cluster is (namespace, name, region, AWS id), never its spec, so the same
workflow deletes a Ready cluster (as the child `teardown/<ns>/<name>` of its ClusterWorkflow), a
cluster whose create failed halfway, and one whose workflow failed or was terminated (started by
`capt delete` as `cluster/<ns>/<name>`). Stages:

0. Preflight: a legacy cluster (id = name) refuses while another running cluster has that id:
   their resources are one set, and deleting one would delete the other's.
1. Workload objects first, while the API server is still up: Services of type LoadBalancer and
   EBS-backed PVCs are deleted (`delete_cloud_backed_objects`), so that the cloud provider and
   the CSI driver remove their ELBs, security groups and volumes themselves; polled for up to 5
   minutes. The volumes and load balancers named on the way are remembered for the sweep. No
   access, an unreachable API or a worker without those activities skips this stage: the sweep
   finds the rest by tag.
2. Machines: with a live parent the owners (control plane, deployments) are asked to delete
   their machines and are given 20 minutes; then every workflow of the cluster's tree that still
   runs is terminated (machines of a failed owner, a stuck health check, a half-done create).
3. Instances: every instance tagged as the cluster's is terminated, and polled until it is.
4. The sweep (`sweep_cluster_resources`): ours (the CAPA owned tag) and Kubernetes'
   (`kubernetes.io/cluster/<id>=owned`: load balancers, target groups, security groups,
   volumes, interfaces, addresses), deleted in dependency order -- load balancers, NAT gateways
   and route tables; target groups; the rules naming the doomed groups, then the groups;
   volumes; interfaces left in our VPCs; addresses; internet gateway; subnets; VPC.
5. Each delete is tried a bounded number of times; then what blocks it is described (the ENI,
   rule, load balancer or attachment, by id, type and description) and published in the status.
   The sweep is re-run every 2 minutes; after 30 minutes the workflow fails with that list.
   `capt delete` starts it again.
6. Secrets last, once nothing that could use them is left: the cluster's secrets and its
   instance-events queue.
7. Proof: a sweep of both tags and the secret prefix comes back empty, or `ResourcesRemain`.

It answers the `status` query with a `ClusterStatus` (what `capt describe` and `capt delete
--wait` read), accepts `delete` Updates (idempotent) and rejects every other Update: the
cluster is being deleted. With a parent it reports each change with `teardown_changed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from capt.contracts.ids import cluster_workflow_id

with workflow.unsafe.imports_passed_through():
    from capt.activities import cluster_tree as tree
    from capt.activities.aws import (
        cleanup,
        gateways,
        instance_events,
        load_balancer,
        route_tables,
        security_groups,
        subnets,
        sweep,
        vpc,
    )
    from capt.activities.aws import errors as aws_errors
    from capt.activities.aws import instances as ec2
    from capt.activities.aws import secrets as sm
    from capt.activities.aws.models import Blocker, ClusterRef
    from capt.activities.workload.activities import WorkloadAccess
    from capt.activities.workload.teardown import CloudBackedObjects as WorkloadCloudObjects
    from capt.activities.workload.teardown import CloudBackedObjectsRequest, DeleteCloudBackedObjectsRequest
    from capt.contracts import search_attributes as sa
    from capt.workflows import activity_options as opts
    from capt.workflows.cluster_models import ApplyAnswer, ApplyRequest, ClusterStatus, InfrastructureSummary
    from capt.workflows.teardown_models import (
        DELETE_CLOUD_BACKED_OBJECTS,
        DISCOVER_WORKLOAD_ACCESS,
        LIST_CLOUD_BACKED_OBJECTS,
        DiscoveredWorkload,
        DiscoverWorkloadRequest,
        TeardownInput,
    )

BEING_DELETED = "the cluster is being deleted"
# A delete whose bounded attempts all failed on throttling or dropped connections says nothing
# about the resource: the sweep tries again in its short interval instead of describing
# blockers and waiting `blocked_retry_seconds` (before: a throttled revoke waited 120 s a round).
PATCH_TRANSIENT_FAULTS = "teardown-transient-faults"
# Calls that must not stop the teardown: a few tries, then the stage is skipped.
BEST_EFFORT = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=3
)
WORKLOAD_CALL = dict(start_to_close_timeout=timedelta(seconds=120), retry_policy=BEST_EFFORT)
# The Temporal client (the cluster's workflow tree).
TREE_CALL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
    ),
)
# What is deleted in stage 4, in dependency order (secrets and other kinds go in stage 6).
SWEPT_KINDS = (
    "instance",
    "load-balancer",
    "network-load-balancer",
    "nat-gateway",
    "route-table",
    "target-group",
    "security-group",
    "volume",
    "network-interface",
    "elastic-ip",
    "internet-gateway",
    "subnet",
    "vpc",
)
LB_KINDS = ("load-balancer", "network-load-balancer")
NAT_GONE = ("deleted", "failed")


def _cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)


def _error_type(err: BaseException) -> str:
    """The type of the activity's ApplicationError (AWS's code, or the class of a connection
    error), not of what it was raised from (`ClientError` for every AWS code)."""
    while not isinstance(err, ApplicationError) and err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "type", None) or type(err).__name__


@workflow.defn(name="ClusterTeardownWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class ClusterTeardownWorkflow:
    @workflow.init
    def __init__(self, inp: TeardownInput) -> None:
        self._inp = inp
        self._phase = "Deleting"
        self._message = "starting"
        self._events: list[str] = []
        self._blocked: list[Blocker] = []
        self._retained: list[str] = []  # volumes of Retain PVs the workload API named
        self._transient: list[str] = []  # this round's deletes that failed only on AWS's flakiness
        self._volume_ids: list[str] = []
        self._lb_names: list[str] = []
        self._calls = 0
        self._reported: tuple | None = None

    # --- handlers ------------------------------------------------------------------------------
    @workflow.query
    def status(self) -> ClusterStatus:
        inp = self._inp
        return ClusterStatus(
            name=inp.name,
            namespace=inp.namespace,
            region=inp.region,
            phase=self._phase,  # type: ignore[arg-type]
            message=self._message,
            paused=False,
            version=inp.version,
            endpoint=None,
            infrastructure=InfrastructureSummary(aws_calls=self._calls),
            control_plane=None,
            deployments=[],
            ready_machines=0,
            desired_machines=0,
            events=list(self._events),
            cluster_id=inp.aws_id,
            blocked=list(self._blocked),
        )

    @workflow.update
    def delete(self) -> ApplyAnswer:
        """Already deleting: a second `capt delete` attaches to this run."""
        return ApplyAnswer(changed=False, summary="deleting")

    @workflow.update
    def apply(self, req: ApplyRequest) -> ApplyAnswer:  # pragma: no cover - the validator refuses
        raise ApplicationError(BEING_DELETED)

    @apply.validator
    def _refuse_apply(self, req: ApplyRequest) -> None:
        raise ValueError(BEING_DELETED)

    @workflow.update(dynamic=True)
    def other_update(self, name: str, args: Sequence[RawValue]) -> None:  # pragma: no cover
        raise ApplicationError(BEING_DELETED)

    @other_update.validator
    def _refuse_other(self, name: str, args: Sequence[RawValue]) -> None:
        raise ValueError(BEING_DELETED)

    # --- run -----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: TeardownInput) -> ClusterStatus:
        workflow.upsert_search_attributes(
            [sa.CLUSTER_NAME.value_set(inp.name), sa.PHASE.value_set("Deleting")]
        )
        try:
            await self._preflight()
            await self._workload()
            await self._machines()
            await self._instances()
            await self._sweep()
            await self._secrets()
            await self._prove()
        except FailureError as err:
            reason = _cause(err)
            self._event(f"teardown failed: {reason}")
            self._set("Failed", reason)
            workflow.upsert_search_attributes([sa.PHASE.value_set("Failed")])
            await self._report(force=True)
            raise ApplicationError(
                f"{reason}; run `capt delete` again", type=_error_type(err), non_retryable=True
            ) from err
        self._blocked = []
        self._event(f"cluster {inp.namespace}/{inp.name} deleted: nothing tagged {inp.aws_id} is left")
        self._set("Deleted", "deleted")
        workflow.upsert_search_attributes([sa.PHASE.value_set("Deleted")])
        await self._report(force=True)
        return self.status()

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
        # activities/workload/teardown.py: one bounded pass deletes (and reports what is left and
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

    # --- stages 4 and 5: the sweep ---------------------------------------------------------------
    async def _sweep(self) -> None:
        s = self._inp.settings
        deadline = workflow.now() + timedelta(seconds=s.blocked_deadline_seconds)
        rounds = quiet = 0
        while True:
            inventory = await self._inventory()
            todo = [r for r in inventory.resources if r.kind in SWEPT_KINDS]
            if not todo:
                if self._blocked:
                    self._event("no longer blocked")
                self._blocked = []
                return
            rounds += 1
            counts: dict[str, int] = {}
            for r in todo:
                counts[r.kind] = counts.get(r.kind, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in counts.items())
            self._set("Deleting", f"deleting AWS resources (round {rounds}): {summary}")
            await self._report()
            blockers = await self._round(inventory)
            if blockers != self._blocked:
                self._blocked = blockers
                if blockers:
                    self._event(f"blocked: {'; '.join(b.text() for b in blockers[:5])}")
            if workflow.now() >= deadline:
                listing = "; ".join(b.text() for b in blockers) or ", ".join(f"{r.kind} {r.id}" for r in todo)
                raise ApplicationError(
                    f"deletion blocked after {s.blocked_deadline_seconds}s: {listing}",
                    type="DeletionBlocked",
                    non_retryable=True,
                )
            if blockers:
                self._set(
                    "Deleting", f"blocked, trying again in {s.blocked_retry_seconds}s: {blockers[0].text()}"
                )
                await self._report()
                await workflow.sleep(s.blocked_retry_seconds)
            elif self._transient:
                # Only AWS's flakiness stopped this round (never counted as quiet): again soon.
                self._set(
                    "Deleting",
                    f"{len(self._transient)} delete(s) failed on throttling or lost connections, "
                    f"trying again in {s.final_sweep_interval_seconds}s: {self._transient[0]}",
                )
                await self._report()
                await workflow.sleep(s.final_sweep_interval_seconds)
            else:
                # Deleted, but reads still show some of it (AWS lags), or only what others must
                # remove (an interface its load balancer still holds): soon, then less often.
                quiet += 1
                short = quiet <= s.final_sweep_attempts
                await workflow.sleep(s.final_sweep_interval_seconds if short else s.blocked_retry_seconds)

    async def _inventory(self, *, with_secrets: bool = False) -> sweep.SweepResult:
        inp = self._inp
        return await self._aws(
            sweep.sweep_cluster_resources,
            sweep.SweepClusterInput(
                cluster=self._ref(),
                volume_ids=tuple(self._volume_ids),
                load_balancer_names=tuple(self._lb_names),
                secret_prefix=sm.cluster_prefix(inp.namespace, inp.name) + "/" if with_secrets else None,
            ),
            summary="sweep the cluster's resources",
        )

    async def _round(self, inv: sweep.SweepResult) -> list[Blocker]:
        """One pass over the inventory in dependency order. A kind whose prerequisite failed
        is left for the next round; each failure is reported with what blocks it."""
        ref = self._ref()
        blockers: list[Blocker] = []
        failed: set[str] = set()
        self._transient = []
        attempts = self._inp.settings.delete_attempts

        async def attempt(kind: str, r: sweep.OwnedResource, call: Callable[[], Awaitable[Any]]) -> None:
            try:
                await call()
            except FailureError as err:
                failed.add(kind)
                if aws_errors.is_transient(_error_type(err)) and workflow.patched(PATCH_TRANSIENT_FAULTS):
                    self._transient.append(f"{kind} {r.name or r.id}: {_cause(err)}")
                    return
                blockers.extend(await self._blockers(kind, r, err))

        async def each(
            kind: str, call_for: Callable[[sweep.OwnedResource], Awaitable[Any]], items=None
        ) -> None:
            rs = inv.of(kind) if items is None else items
            await asyncio.gather(*(attempt(kind, r, lambda r=r: call_for(r)) for r in rs))

        def ok(*kinds: str) -> bool:
            return not failed.intersection(kinds)

        def delete(fn, arg, what: str):
            return self._aws(fn, arg, summary=what, attempts=attempts)

        async def instances() -> None:
            live = inv.of("instance")
            if live:
                await attempt("instance", live[0], self._terminate_instances)

        async def load_balancers() -> None:
            await asyncio.gather(
                each(
                    "load-balancer",
                    lambda r: delete(
                        load_balancer.delete_load_balancer,
                        load_balancer.DeleteLoadBalancerInput(cluster=ref, type="classic", name=r.id),
                        f"delete load balancer {r.name}",
                    ),
                ),
                each(
                    "network-load-balancer",
                    lambda r: delete(
                        load_balancer.delete_load_balancer,
                        load_balancer.DeleteLoadBalancerInput(cluster=ref, type="nlb", arn=r.id),
                        f"delete load balancer {r.name}",
                    ),
                ),
            )

        async def delete_nat(r: sweep.OwnedResource) -> None:
            state = r.state
            if state != "deleting":
                state = (
                    await delete(
                        gateways.delete_nat_gateway,
                        gateways.NatGatewayIdInput(cluster=ref, nat_gateway_id=r.id),
                        f"delete NAT gateway {r.id}",
                    )
                ).state
            deadline = workflow.now() + timedelta(seconds=self._inp.settings.nat_deleted_timeout_seconds)
            delays = opts.poll_intervals(first=5, factor=1.5, cap=30)
            while state not in NAT_GONE:
                if workflow.now() >= deadline:
                    raise ApplicationError(
                        f"NAT gateway {r.id} still {state}", type="Timeout", non_retryable=True
                    )
                await workflow.sleep(next(delays))
                state = (
                    await self._aws(
                        gateways.describe_nat_gateway,
                        gateways.NatGatewayIdInput(cluster=ref, nat_gateway_id=r.id),
                        summary=f"NAT gateway {r.id}",
                    )
                ).state

        instances_t = asyncio.ensure_future(instances())
        lbs_t = asyncio.ensure_future(load_balancers())
        nats_t = asyncio.ensure_future(each("nat-gateway", delete_nat))
        rts_t = asyncio.ensure_future(
            each(
                "route-table",
                lambda r: delete(
                    route_tables.delete_route_table,
                    route_tables.RouteTableIdInput(cluster=ref, route_table_id=r.id),
                    f"delete route table {r.name or r.id}",
                ),
            )
        )

        async def target_groups() -> None:
            await lbs_t
            if ok(*LB_KINDS):
                await each(
                    "target-group",
                    lambda r: delete(
                        load_balancer.delete_target_group,
                        load_balancer.TargetGroupInput(cluster=ref, arn=r.id),
                        f"delete target group {r.name}",
                    ),
                )

        async def groups() -> None:
            await asyncio.gather(lbs_t, instances_t)
            found = inv.of("security-group")
            if not found or not ok(*LB_KINDS, "instance"):
                return
            owned_vpcs = tuple(sorted({r.id for r in inv.of("vpc")}))
            # Rules naming a doomed group (the cloud provider's rule on the instances' group
            # admits its ELB's group) block that group's deletion: revoked first.
            await attempt(
                "security-group",
                found[0],
                lambda: delete(
                    cleanup.revoke_security_group_references,
                    cleanup.RevokeReferencesInput(
                        cluster=ref, group_ids=tuple(r.id for r in found), vpc_ids=owned_vpcs
                    ),
                    "revoke the rules that name the cluster's security groups",
                ),
            )
            if not ok("security-group"):
                return
            await each(
                "security-group",
                lambda r: delete(
                    security_groups.delete_security_group,
                    security_groups.GroupIdInput(cluster=ref, group_id=r.id),
                    f"delete security group {r.name or r.id}",
                ),
            )

        async def volumes() -> None:
            await instances_t
            if ok("instance"):
                await each(
                    "volume",
                    lambda r: delete(
                        cleanup.delete_volume,
                        cleanup.VolumeIdInput(cluster=ref, volume_id=r.id),
                        f"delete volume {r.name or r.id}",
                    ),
                )

        async def interfaces() -> None:
            await asyncio.gather(lbs_t, nats_t, instances_t)
            if not ok(*LB_KINDS, "nat-gateway", "instance"):
                return
            # Only detached ones: a requester-managed interface goes with its load balancer or
            # NAT gateway, an attached foreign one is reported by what it blocks.
            loose = [
                r
                for r in inv.of("network-interface")
                if r.state == "available" and "requester-managed" not in r.detail
            ]
            await each(
                "network-interface",
                lambda r: delete(
                    cleanup.delete_network_interface,
                    cleanup.NetworkInterfaceIdInput(cluster=ref, network_interface_id=r.id),
                    f"delete network interface {r.id}",
                ),
                loose,
            )

        tgs_t = asyncio.ensure_future(target_groups())
        sgs_t = asyncio.ensure_future(groups())
        vols_t = asyncio.ensure_future(volumes())
        enis_t = asyncio.ensure_future(interfaces())

        async def addresses() -> None:
            await nats_t  # a NAT gateway holds its address until it is deleted
            if ok("nat-gateway"):
                await each(
                    "elastic-ip",
                    lambda r: delete(
                        gateways.release_eip,
                        gateways.AllocationIdInput(cluster=ref, allocation_id=r.id),
                        f"release address {r.name or r.id}",
                    ),
                )

        eips_t = asyncio.ensure_future(addresses())

        async def internet_gateways() -> None:
            # Detaching fails while public addresses are mapped in the VPC.
            await asyncio.gather(nats_t, eips_t, lbs_t, instances_t)
            if ok("nat-gateway", "elastic-ip", *LB_KINDS, "instance"):
                await each(
                    "internet-gateway",
                    lambda r: delete(
                        gateways.delete_internet_gateway,
                        gateways.InternetGatewayIdInput(
                            cluster=ref, internet_gateway_id=r.id, vpc_id=r.vpc_id or None
                        ),
                        f"delete internet gateway {r.name or r.id}",
                    ),
                )

        async def subnets_() -> None:
            await asyncio.gather(nats_t, lbs_t, instances_t, rts_t, enis_t)
            if ok("nat-gateway", *LB_KINDS, "instance", "route-table", "network-interface"):
                await each(
                    "subnet",
                    lambda r: delete(
                        subnets.delete_subnet,
                        subnets.SubnetIdInput(cluster=ref, subnet_id=r.id),
                        f"delete subnet {r.name or r.id}",
                    ),
                )

        igw_t = asyncio.ensure_future(internet_gateways())
        subnets_t = asyncio.ensure_future(subnets_())
        await asyncio.gather(
            instances_t, lbs_t, nats_t, rts_t, tgs_t, sgs_t, vols_t, enis_t, eips_t, igw_t, subnets_t
        )
        if not failed:
            await each(
                "vpc",
                lambda r: delete(
                    vpc.delete_vpc, vpc.VpcIdInput(cluster=ref, vpc_id=r.id), f"delete VPC {r.name or r.id}"
                ),
            )
        return sorted(blockers, key=lambda b: (b.resource_kind, b.resource_id, b.blocker_kind, b.blocker_id))

    async def _blockers(self, kind: str, r: sweep.OwnedResource, err: FailureError) -> list[Blocker]:
        """What holds `r`, described once its delete gave up."""
        message, error_type = _cause(err), _error_type(err)
        try:
            found = (
                await self._aws(
                    cleanup.describe_blockers,
                    cleanup.BlockersInput(
                        cluster=self._ref(), kind=kind, id=r.id, error=message, error_type=error_type
                    ),
                    summary=f"what blocks {kind} {r.id}",
                    attempts=3,
                )
            ).blockers
        except ActivityError:
            found = (
                Blocker(
                    resource_kind=kind,
                    resource_id=r.id,
                    blocker_kind="error",
                    blocker_id="",
                    blocker_type=error_type,
                    description=message,
                ),
            )
        return [b.model_copy(update={"resource_name": r.name}) for b in found]

    # --- stage 6: secrets, stage 7: proof ----------------------------------------------------------
    async def _secrets(self) -> None:
        inp = self._inp
        self._set("Deleting", "deleting the cluster's secrets")
        await self._report()
        deleted = await self._aws(
            sm.delete_cluster_secrets,
            sm.DeleteClusterSecretsRequest(
                cluster_name=inp.name, namespace=inp.namespace, region=inp.region, cluster_id=inp.aws_id
            ),
            summary="delete the cluster's secrets",
        )
        self._event(f"{deleted.deleted} secret(s) deleted")
        try:
            await self._aws(
                instance_events.delete_instance_events,
                instance_events.InstanceEventsRequest(
                    region=inp.region, cluster_name=inp.name, namespace=inp.namespace
                ),
                summary="delete the instance-events queue and rule",
                attempts=3,
            )
        except ActivityError as err:
            self._event(f"instance-events queue not deleted: {_cause(err)}")

    async def _prove(self) -> None:
        s = self._inp.settings
        self._set("Deleting", "checking that nothing is left")
        await self._report()
        for attempt in range(s.final_sweep_attempts):
            left = await self._inventory(with_secrets=True)
            if not left.resources:
                return
            if attempt + 1 < s.final_sweep_attempts:
                await workflow.sleep(s.final_sweep_interval_seconds)
        listing = ", ".join(
            f"{r.kind} {r.id}" + (f" ({r.name})" if r.name and r.name != r.id else "") for r in left.resources
        )
        raise ApplicationError(
            f"resources of cluster {self._inp.aws_id} left after deletion: {listing}",
            type="ResourcesRemain",
            non_retryable=True,
        )

    # --- helpers ---------------------------------------------------------------------------------
    def _ref(self) -> ClusterRef:
        return ClusterRef(name=self._inp.aws_id, region=self._inp.region)

    async def _aws(self, fn, arg, *, summary: str, attempts: int | None = None):
        """An AWS activity; its calls are counted. `attempts` bounds the retries (a delete
        that keeps failing is then described as blocked) -- otherwise AWS_RETRY's."""
        options: dict[str, Any] = dict(opts.AWS_CALL)
        if attempts is not None:
            options["retry_policy"] = RetryPolicy(
                initial_interval=timedelta(seconds=2),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=30),
                maximum_attempts=attempts,
            )
        result = await workflow.execute_activity(fn, arg, summary=summary, **options)
        self._calls += sum(getattr(result, "aws_calls", {}).values())
        return result

    def _set(self, phase: str, message: str) -> None:
        self._phase, self._message = phase, message
        workflow.set_current_details(f"**{self._inp.namespace}/{self._inp.name}** — {phase}: {message}")

    def _event(self, text: str) -> None:
        stamp = workflow.now().strftime("%H:%M:%S")
        self._events = (self._events + [f"{stamp} {text}"])[-30:]

    async def _report(self, *, force: bool = False) -> None:
        """Tell the parent ClusterWorkflow what changed (best effort: it may be gone)."""
        parent = self._inp.owner_workflow_id
        if not parent:
            return
        key = (self._phase, self._message, tuple(self._blocked))
        if key == self._reported and not force:
            return
        self._reported = key
        with contextlib.suppress(FailureError):
            await workflow.get_external_workflow_handle(parent).signal("teardown_changed", self.status())
