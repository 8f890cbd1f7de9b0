"""MachineWorkflow — one EC2 instance that becomes one Kubernetes node through kubeadm.

Phases follow CAPI's Machine: Pending → Provisioning → Provisioned → Running → Deleting →
Deleted, or Failed with a reason.

Create: bootstrap data (rendered and stored in Secrets Manager; the instance's user data is
only a boothook that fetches it) → instance → wait until running → wait for a Ready node
→ delete the bootstrap secret. A node that is not Ready within nodeStartupTimeout does not fail
the machine (as in CAPI, only a MachineHealthCheck remediates it): it keeps waiting, saying so.

Delete (the `request_delete` signal, or cancelling the workflow): cordon and drain the node,
deregister a control-plane machine from the API load balancer, terminate the instance and
wait until it is gone, delete the Node and any secret left over. A control-plane machine's
etcd member is removed by the ControlPlaneWorkflow *before* it asks the machine to go (as
CAPI's KCP does): the removal runs on a healthy sibling, which only the owner knows.
`request_delete(DeleteOptions(skip_node_cleanup=True))` (the cluster is being deleted) skips
the cordon, the drain and the Node's deletion.

Failure: anything AWS (or capt) says will never succeed — a non-retryable activity error such
as RunInstances' `InvalidAMIID.NotFound` or an image lookup that finds nothing — makes the
machine `Failed` with that reason; like every failed machine it keeps what it made until its
owner deletes it. The workflow itself does not fail, so its owner is never left waiting.

Delete mode (`MachineInput.mode="delete"`): the owner restarts a machine workflow that closed
without deleting its machine (failed, terminated, timed out) under the same id in this mode.
It only deletes: the instance the owner knew of, else the one its tags name.

Temporal semantics worth knowing when reading this file:
- Every `execute_activity` result is recorded in history. When a worker restarts, the new
  worker replays the history and gets the recorded results back instead of calling AWS
  again — RunInstances is never sent twice for one incarnation (and `ensure_instance` finds
  the instance by its tags even if it were).
- Waiting is `workflow.wait_condition(..., timeout=...)`: a durable timer that also wakes
  at once when a delete is requested. There is no sleeping inside activities.
- The owner (control plane or machine deployment) is told about every phase change with a
  signal, since a workflow cannot query another one.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import images, lb_membership, token_secrets
    from capt.activities.aws import instances as ec2
    from capt.activities.kubeadm import bootstrap as kb
    from capt.activities.workload import activities as workload
    from capt.contracts.machines import MachinePhase, MachineStatus
    from capt.workflows import activity_options as opts
    from capt.workflows.machine.models import DeleteOptions, MachineInput
    from capt.workflows.machine.policy import (
        DEFAULT_NODE_STARTUP_SECONDS,
        FAST_NODE_POLL_SECONDS,
        INSTANCE_GUARD_SECONDS,
        NODE_POLL_SECONDS,
        PATCH_DELETE_MODE,
        PATCH_NODE_POLL_FAST,
        PATCH_PERMANENT_FAILURE,
        PATCH_WAIT_FOR_NODE,
        MachineFailed,
        _instance_polls,
        late_node_poll,
        permanent_failure,
    )
from capt.workflows.machine.deletion import _DeletionMixin


@workflow.defn(name="MachineWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class MachineWorkflow(_DeletionMixin):
    def __init__(self) -> None:
        self._input: MachineInput | None = None
        self._status: MachineStatus | None = None
        self._delete_requested = False
        self._skip_node_cleanup = False
        self._bootstrap: kb.BootstrapRefs | None = None

    # --- interface ----------------------------------------------------------------------
    @workflow.query
    def status(self) -> MachineStatus:
        assert self._status is not None
        return self._status

    @workflow.signal
    def request_delete(self, options: DeleteOptions | None = None) -> None:
        """Ask the machine to go. Safe to send twice; honoured at the next step boundary.
        Signals sent without options (all of them, before DeleteOptions) decode as None.
        `skip_node_cleanup` sticks once asked for, even during a delete already under way."""
        if options is not None and options.skip_node_cleanup:
            self._skip_node_cleanup = True
        if not self._delete_requested:
            self._delete_requested = True
            self._update(deletion_requested_at=workflow.now())

    # --- run ----------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: MachineInput) -> MachineStatus:
        self._input = inp
        self._status = MachineStatus(
            name=inp.name,
            role=inp.role,
            revision=inp.revision,
            version=inp.version,
            deployment=inp.deployment,
            failure_domain=inp.failure_domain,
            created_at=workflow.now(),
            instance_id=inp.instance_id,
            node_name=inp.node_name,
        )
        if inp.delete_options is not None and inp.delete_options.skip_node_cleanup:
            self._skip_node_cleanup = True
        if inp.mode == "delete" and workflow.patched(PATCH_DELETE_MODE):
            return await self._delete_only()
        workflow.set_current_details(f"{inp.role} machine {inp.name} in {inp.failure_domain or 'any AZ'}")
        await self._notify_owner()
        try:
            await self._create()
            if not self._delete_requested:
                # Running: nothing to do until someone asks the machine to go.
                await workflow.wait_condition(lambda: self._delete_requested)
        except MachineFailed as failure:
            await self._fail(str(failure))
        except (ActivityError, ApplicationError) as err:
            reason = permanent_failure(err)
            if reason is None or not workflow.patched(PATCH_PERMANENT_FAILURE):
                raise
            await self._fail(reason)
        except asyncio.CancelledError:
            # Cancelling the workflow is the other way to delete: clean up, then re-raise so
            # the workflow ends as cancelled. Activities scheduled after the cancellation run.
            self._delete_requested = True
            await self._delete()
            raise
        await self._delete()
        return self._status

    async def _fail(self, reason: str) -> None:
        await self._set_phase("Failed", failure_reason=reason, message=reason)
        # A failed machine keeps its instance (for inspection) until its owner deletes it.
        await workflow.wait_condition(lambda: self._delete_requested)

    # --- create ---------------------------------------------------------------------------
    async def _create(self) -> None:
        inp = self._input
        assert inp is not None
        if self._delete_requested:
            return
        token_arn = None
        if inp.bootstrap_kind != "init":
            token = await workflow.execute_activity(
                token_secrets.ensure_bootstrap_token,
                token_secrets.BootstrapTokenRequest(
                    cluster_name=inp.cluster.name,
                    namespace=inp.cluster.namespace,
                    region=inp.cluster.region,
                    machine_name=inp.name,
                    additional_tags=inp.cluster.additional_tags,
                    cluster_id=inp.cluster.cluster_id,
                ),
                **opts.BOOTSTRAP_CALL,
            )
            token_arn = token.secret_arn
            await self._publish_token(token_arn)
        self._bootstrap = await workflow.execute_activity(
            kb.prepare_bootstrap_data,
            kb.BootstrapRequest(
                cluster_name=inp.cluster.name,
                namespace=inp.cluster.namespace,
                region=inp.cluster.region,
                machine_name=inp.name,
                kind=inp.bootstrap_kind,
                kubernetes_version=inp.version,
                kubeadm=inp.kubeadm,
                endpoint_host=inp.cluster.endpoint_host,
                endpoint_port=inp.cluster.endpoint_port,
                pod_cidrs=inp.cluster.pod_cidrs,
                service_cidrs=inp.cluster.service_cidrs,
                service_domain=inp.cluster.service_domain,
                pki=inp.cluster.pki,
                token_secret_arn=token_arn,
                additional_tags=inp.cluster.additional_tags,
                cluster_id=inp.cluster.cluster_id,
            ),
            **opts.BOOTSTRAP_CALL,
        )
        if self._delete_requested:
            return

        await self._set_phase("Provisioning", message="launching instance")
        # Resolve the AMI once and keep its id in history: every retry boots the same image.
        image = await workflow.execute_activity(
            images.lookup_image,
            images.ImageLookupRequest(
                region=inp.cluster.region,
                ami=inp.template.ami,
                kubernetes_version=inp.version,
                instance_type=inp.template.instance_type,
            ),
            **opts.AWS_CALL,
        )
        instance = await workflow.execute_activity(
            ec2.ensure_instance, self._instance_request(image.image.image_id), **opts.AWS_CALL
        )
        self._update(instance_id=instance.instance_id, instance_state=instance.state)
        await self._wait_instance_running()
        if self._delete_requested:
            return

        if inp.role == "control-plane" and inp.cluster.load_balancer is not None:
            await workflow.execute_activity(
                lb_membership.register_with_load_balancer, self._load_balancer_request(), **opts.AWS_CALL
            )
        await self._set_phase("Provisioned", message="instance running; waiting for the node to join")
        await self._wait_node_ready(token_arn)
        if self._delete_requested:
            return
        await self._set_phase("Running", running_at=workflow.now(), message="node Ready")
        # The node has joined: its bootstrap data (and join token) are no longer needed.
        await self._delete_bootstrap_secrets()

    async def _wait_instance_running(self) -> None:
        inp = self._input
        assert inp is not None and self._status is not None
        for delay in _instance_polls():
            found = await self._describe_instance()
            if found.state == "running":
                return
            if found.state in ("gone", "terminated", "shutting-down", "stopping", "stopped"):
                raise MachineFailed(
                    f"instance {self._status.instance_id} is {found.state} while provisioning"
                )
            if await self._delete_or_wait(delay):
                return

    async def _wait_node_ready(self, token_arn: str | None) -> None:
        """Poll the workload cluster for this instance's Node until it is Ready.

        Until nodeStartupTimeout (workflow time from the instance running) every 10 s, then less
        and less often: the machine does not fail on it (CAPI: only a MachineHealthCheck
        remediates). While a join is pending, the join token is refreshed before it expires.
        """
        inp = self._input
        assert inp is not None and self._status is not None
        # 0 disables the timeout (as in an MHC); the 10 s polls still slow down after 600 s.
        budget = inp.node_startup_timeout_seconds or DEFAULT_NODE_STARTUP_SECONDS
        deadline = workflow.now() + timedelta(seconds=budget)
        refresh_at = workflow.now() + timedelta(minutes=5)
        late = 0.0
        fast = workflow.patched(PATCH_NODE_POLL_FAST)
        guarded_at = workflow.now()  # the instance was just seen running
        while True:
            listed = await workflow.execute_activity(
                workload.list_workload_nodes,
                workload.ListNodesRequest(access=self._access(), instance_ids=(self._status.instance_id,)),
                **opts.KUBE_CALL,
            )
            node = listed.nodes[0] if listed.nodes else None
            if node is not None:
                self._update(node_name=node.name, node_ready=node.ready)
                if node.ready:
                    return
            elif not listed.reachable:
                self._update(message=f"waiting for the API server: {listed.detail}")
            if not fast or (workflow.now() - guarded_at).total_seconds() >= INSTANCE_GUARD_SECONDS:
                instance = await self._describe_instance()
                guarded_at = workflow.now()
                if instance.state != "running":
                    raise MachineFailed(
                        f"instance {self._status.instance_id} is {instance.state} before its node joined"
                    )
            now = workflow.now()
            poll = FAST_NODE_POLL_SECONDS if fast else NODE_POLL_SECONDS
            wait = min(poll, max(1.0, (deadline - now).total_seconds()))
            if now >= deadline:
                reason = "node never registered" if node is None else f"node {node.name} never became Ready"
                if not workflow.patched(PATCH_WAIT_FOR_NODE):
                    raise MachineFailed(
                        f"{reason} within nodeStartupTimeout ({inp.node_startup_timeout_seconds}s)"
                    )
                # CAPI: the machine waits; a MachineHealthCheck selecting it (nodeStartupTimeout,
                # not 0) remediates it. Without one, it waits until it is deleted.
                if not late:  # tell the owner once (describe shows it on the machine's row)
                    await self._set_phase(
                        self._status.phase,
                        message=f"{reason} within {budget}s of the instance running; waiting "
                        "(a MachineHealthCheck's nodeStartupTimeout remediates it)",
                    )
                late = late_node_poll((now - deadline).total_seconds(), late)
                wait = late
            if token_arn and now >= refresh_at:
                await workflow.execute_activity(
                    token_secrets.refresh_bootstrap_token,
                    token_secrets.BootstrapTokenRefreshRequest(
                        region=inp.cluster.region, secret_arn=token_arn
                    ),
                    **opts.BOOTSTRAP_CALL,
                )
                await self._publish_token(token_arn)
                refresh_at = now + timedelta(minutes=5)
            if await self._delete_or_wait(wait):
                return

    async def _describe_instance(self) -> ec2.DescribeInstanceResult:
        inp = self._input
        assert inp is not None and self._status is not None
        found = await workflow.execute_activity(
            ec2.describe_instance,
            ec2.DescribeInstanceRequest(region=inp.cluster.region, instance_id=self._status.instance_id),
            **opts.AWS_CALL,
        )
        changes: dict = {"instance_state": found.state}
        if found.instance is not None:
            changes["private_ip"] = found.instance.private_ip
            if found.instance.availability_zone:
                changes["failure_domain"] = found.instance.availability_zone
        self._update(**changes)
        return found

    async def _publish_token(self, token_arn: str) -> None:
        """Create (or refresh) the bootstrap-token Secret in the workload cluster."""
        await workflow.execute_activity(
            workload.create_bootstrap_token_secret,
            workload.BootstrapTokenSecretRequest(
                access=self._access(),
                token_secret_arn=token_arn,
                description=f"capt join token for {self._input.name}",
            ),
            **opts.KUBE_CALL,
        )

    def _access(self) -> workload.WorkloadAccess:
        c = self._input.cluster  # type: ignore[union-attr]
        return workload.WorkloadAccess(
            region=c.region, endpoint_host=c.endpoint_host, endpoint_port=c.endpoint_port, pki=c.pki
        )

    def _instance_request(self, image_id: str) -> ec2.InstanceRequest:
        inp = self._input
        assert inp is not None and self._bootstrap is not None
        c = inp.cluster
        role_group = "controlplane" if inp.role == "control-plane" else "node"
        subnet = inp.template.subnet_id or c.subnet_for(inp.failure_domain)
        if subnet is None:
            raise ApplicationError(
                f"no private subnet for failure domain {inp.failure_domain!r}", non_retryable=True
            )
        groups = (
            tuple(g for g in (c.security_group(role_group),) if g) + inp.template.additional_security_groups
        )
        return ec2.InstanceRequest(
            region=c.region,
            cluster_name=c.name,
            namespace=c.namespace,
            image_id=image_id,
            machine_name=inp.name,
            role=inp.role,
            incarnation=inp.incarnation,
            availability_zone=inp.failure_domain,
            subnet_id=subnet,
            security_group_ids=groups,
            template=inp.template,
            kubernetes_version=inp.version,
            ssh_key_name=inp.template.ssh_key_name or c.ssh_key_name,
            bootstrap_secret_prefix=self._bootstrap.secret_prefix,
            bootstrap_chunks=self._bootstrap.chunks,
            additional_tags=c.additional_tags,
            cluster_id=c.cluster_id,
        )

    def _load_balancer_request(self) -> lb_membership.LoadBalancerRegistration:
        inp = self._input
        assert inp is not None and inp.cluster.load_balancer is not None and self._status is not None
        lb = inp.cluster.load_balancer
        return lb_membership.LoadBalancerRegistration(
            region=inp.cluster.region,
            load_balancer_type=lb.type,
            load_balancer_name=lb.name,
            target_group_arn=lb.target_group_arn,
            instance_id=self._status.instance_id,
        )

    def _update(self, **changes) -> None:
        assert self._status is not None
        self._status = self._status.model_copy(update=changes)

    async def _set_phase(self, phase: MachinePhase, **changes) -> None:
        self._update(phase=phase, **changes)
        s = self._status
        assert s is not None
        workflow.set_current_details(
            f"{phase}: {s.role} {s.name} {s.instance_id or ''} {s.failure_domain or ''} — {s.message}".strip()
        )
        await self._notify_owner()

    async def _notify_owner(self) -> None:
        owner = self._input.owner_workflow_id if self._input else None
        if not owner:
            return
        try:
            await workflow.get_external_workflow_handle(owner).signal("machine_changed", self._status)
        except Exception as err:  # noqa: BLE001 - an owner that is gone must not stop a delete
            workflow.logger.warning("could not signal owner %s: %s", owner, err)
