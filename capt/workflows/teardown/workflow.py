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

import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, VersioningBehavior
from temporalio.exceptions import ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws.models import Blocker, ClusterRef
    from capt.contracts import search_attributes as sa
    from capt.workflows import activity_options as opts
    from capt.workflows.cluster.models import ApplyAnswer, ApplyRequest, ClusterStatus, InfrastructureSummary
    from capt.workflows.teardown.models import (
        TeardownInput,
    )
    from capt.workflows.teardown.policy import (
        BEING_DELETED,
        _cause,
        _error_type,
    )
from capt.workflows.teardown.discovery import _DiscoveryMixin
from capt.workflows.teardown.sweep import _SweepMixin


@workflow.defn(name="ClusterTeardownWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class ClusterTeardownWorkflow(_DiscoveryMixin, _SweepMixin):
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
