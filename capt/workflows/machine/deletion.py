"""MachineWorkflow: deletion (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import bootstrap_data, lb_membership
    from capt.activities.aws import instances as ec2
    from capt.activities.workload import activities as workload
    from capt.contracts.machines import MachineStatus
    from capt.workflows import activity_options as opts
    from capt.workflows.machine.policy import (
        PATCH_DRAIN_PACED,
        _instance_polls,
        drain_attempt_seconds,
    )


class _DeletionMixin:
    async def _delete_only(self) -> MachineStatus:
        """Delete mode: delete what an earlier, closed workflow of this machine left behind."""
        inp = self._input
        assert inp is not None and self._status is not None
        self._delete_requested = True
        self._update(deletion_requested_at=workflow.now())
        if not self._status.instance_id:
            found = await workflow.execute_activity(
                ec2.lookup_machine_instance,
                ec2.MachineInstanceLookup(
                    region=inp.cluster.region, cluster_name=inp.cluster.name, machine_name=inp.name
                ),
                **opts.AWS_CALL,
            )
            if found.instance is not None:
                self._update(instance_id=found.instance.instance_id, instance_state=found.instance.state)
        await self._delete()
        return self._status  # type: ignore[return-value]

    # --- delete ---------------------------------------------------------------------------
    async def _delete(self) -> None:
        inp = self._input
        assert inp is not None and self._status is not None
        await self._set_phase("Deleting", message="deleting")
        node = self._status.node_name
        if node and not self._skip_node_cleanup:
            await self._best_effort(
                "cordon", workload.cordon_node, workload.CordonRequest(access=self._access(), node_name=node)
            )
            await self._drain(node)
        if inp.role == "control-plane" and inp.cluster.load_balancer is not None and self._status.instance_id:
            await workflow.execute_activity(
                lb_membership.deregister_from_load_balancer, self._load_balancer_request(), **opts.AWS_CALL
            )
        if self._status.instance_id:
            await workflow.execute_activity(
                ec2.terminate_instance,
                ec2.TerminateInstanceRequest(
                    region=inp.cluster.region,
                    instance_id=self._status.instance_id,
                    cluster_name=inp.cluster.name,
                    cluster_id=inp.cluster.cluster_id,
                ),
                **opts.AWS_CALL,
            )
            for delay in _instance_polls():
                found = await self._describe_instance()
                if found.state in ("terminated", "gone"):
                    break
                await workflow.sleep(delay)
        if node and not self._skip_node_cleanup:
            await self._best_effort(
                "delete node",
                workload.delete_node,
                workload.NodeRequest(access=self._access(), node_name=node),
            )
        await self._delete_bootstrap_secrets()
        await self._set_phase("Deleted", deleted_at=workflow.now(), node_ready=False, message="deleted")

    async def _delete_bootstrap_secrets(self) -> None:
        inp = self._input
        assert inp is not None
        await workflow.execute_activity(
            bootstrap_data.delete_bootstrap_data,
            bootstrap_data.DeleteBootstrapDataRequest(
                cluster_name=inp.cluster.name,
                namespace=inp.cluster.namespace,
                region=inp.cluster.region,
                machine_name=inp.name,
                secret_prefix=self._bootstrap.secret_prefix if self._bootstrap else None,
                chunks=self._bootstrap.chunks if self._bootstrap else 0,
                cluster_id=inp.cluster.cluster_id,
            ),
            **opts.AWS_CALL,
        )

    async def _best_effort(self, what: str, fn, arg, options: dict | None = None):
        """Node hygiene (cordon, drain, delete Node) must not block deleting the instance:
        an unreachable API server is logged and skipped, as CAPI does after its timeouts."""
        try:
            return await workflow.execute_activity(
                fn, arg, **{**(options or opts.KUBE_CALL), "retry_policy": opts.BEST_EFFORT_RETRY}
            )
        except ActivityError as err:
            workflow.logger.warning("%s of %s skipped: %s", what, arg.node_name, err.cause or err)
            self._update(message=f"{what} skipped: {err.cause or err}")
            return None

    async def _drain(self, node: str) -> None:
        """Evict the node's pods within nodeDrainTimeout, one bounded activity call at a time
        (each heartbeats); PodDisruptionBudgets are honoured by the eviction API."""
        inp = self._input
        assert inp is not None
        # 0: no timeout (CAPI: drain until it succeeds); attempts then grow to 10 minutes each.
        unbounded = inp.node_drain_timeout_seconds == 0
        deadline = workflow.now() + timedelta(seconds=inp.node_drain_timeout_seconds)
        chunk = 0.0
        while True:
            if self._skip_node_cleanup:  # the cluster is being deleted meanwhile: stop draining
                return
            if unbounded:
                chunk = drain_attempt_seconds(chunk)
            else:
                left = (deadline - workflow.now()).total_seconds()
                chunk = max(5.0, min(60.0, left))
            started = workflow.now()
            result = await self._best_effort(
                "drain",
                workload.drain_node,
                workload.DrainRequest(access=self._access(), node_name=node, timeout_seconds=chunk),
                opts.drain_call(int(chunk)),
            )
            if result is None or result.drained or not result.node_found:
                return
            if unbounded:
                self._update(
                    message=f"draining {node}: {len(result.blocked)} pod(s) blocked (no nodeDrainTimeout)"
                )
            elif workflow.now() >= deadline:
                self._update(message=f"drain of {node} timed out; {len(result.blocked)} pod(s) blocked")
                return
            # An attempt that came back early (an error, a fake) waits out its time: never a spin.
            early = chunk - (workflow.now() - started).total_seconds()
            if early > 1 and workflow.patched(PATCH_DRAIN_PACED):
                await workflow.sleep(early)

    # --- helpers ----------------------------------------------------------------------------
    async def _delete_or_wait(self, seconds: float) -> bool:
        """A durable timer that ends early if a delete is requested. True = delete requested."""
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: self._delete_requested, timeout=timedelta(seconds=seconds))
        return self._delete_requested
