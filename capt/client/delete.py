"""`capt delete cluster`: delete a cluster's workflow tree and everything it made in AWS, whether its
ClusterWorkflow is running or has closed (then a ClusterTeardownWorkflow is started in its place)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from capt.client.clusters import (
    TASK_QUEUE,
    NotFound,
    _closed_status,
    _status_name,
    _unwrap,
)
from capt.contracts import names
from capt.contracts.ids import cluster_workflow_id, control_plane_workflow_id, deployment_workflow_id
from capt.workflows.cluster.models import (
    ApplyAnswer,
    ClusterInput,
    ClusterStatus,
)
from capt.workflows.teardown.models import TeardownInput


@dataclass(frozen=True)
class DeleteOutcome:
    # deleting: the running workflow (cluster or teardown) got the delete Update;
    # already-deleted: the last run ended Deleted; teardown: a ClusterTeardownWorkflow now runs
    # (started, or an identical concurrent `capt delete`'s, attached).
    action: str
    message: str
    run_id: str | None = None


async def _started_input(client: Client, wf_id: str, run_id: str | None, workflow_type: str):
    """What the run was started with (ClusterInput or TeardownInput), or None."""
    try:
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        kind = TeardownInput if workflow_type == "ClusterTeardownWorkflow" else ClusterInput
        (inp,) = await client.data_converter.decode(started.input.payloads, [kind])
        return inp
    except Exception:  # noqa: BLE001 - an unreadable input only means the flags are needed
        return None


async def delete(
    client: Client,
    namespace: str,
    name: str,
    *,
    region: str | None = None,
    cluster_id: str | None = None,
    task_queue: str = TASK_QUEUE,
) -> DeleteOutcome:
    """`capt delete cluster`, by the state of `cluster/<ns>/<name>`:

    - running (a ClusterWorkflow, or a teardown an earlier `capt delete` started): the `delete`
      Update; a deletion under way is joined, a failed one is run again;
    - completed Deleted: nothing to do;
    - failed, terminated, timed out, canceled (or completed in another phase): a
      ClusterTeardownWorkflow at that id, with the region and AWS id from the closed run's
      status (or its input), else from `region`/`cluster_id`; a concurrent delete attaches to it;
    - never started: only with `region` (the id: `cluster_id`, else `<namespace>.<name>`).
    """
    wf_id = cluster_workflow_id(namespace, name)
    handle = client.get_workflow_handle(wf_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        desc = None
    if desc is not None and desc.status == WorkflowExecutionStatus.RUNNING:
        try:
            await handle.execute_update("delete", result_type=ApplyAnswer)
        except WorkflowUpdateFailedError as err:
            raise _unwrap(err) from None
        what = "deleting" if desc.workflow_type == "ClusterWorkflow" else "deletion under way (attached)"
        return DeleteOutcome("deleting", what, desc.run_id)

    last: ClusterStatus | None = None
    version = ""
    owners: tuple[str, ...] = ()
    if desc is not None:
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            try:
                last = await client.get_workflow_handle(
                    wf_id, run_id=desc.run_id, result_type=ClusterStatus
                ).result(follow_runs=False)
            except Exception:  # noqa: BLE001 - read it as for any closed run below
                last = None
            if last is not None and last.phase == "Deleted":
                return DeleteOutcome("already-deleted", "already deleted", desc.run_id)
        last = last or await _closed_status(client, wf_id, desc.run_id)
        if last is not None:
            region = region or last.region
            cluster_id = cluster_id or last.cluster_id
            version = last.version
            # Owners it knew (its deployments' workflow ids cannot be listed everywhere).
            owners = tuple(
                ([control_plane_workflow_id(namespace, name)] if last.control_plane else [])
                + [deployment_workflow_id(namespace, name, d.name) for d in last.deployments]
            )
        else:
            inp = await _started_input(client, wf_id, desc.run_id, desc.workflow_type)
            if isinstance(inp, TeardownInput):
                region, cluster_id = region or inp.region, cluster_id or inp.cluster_id
            elif isinstance(inp, ClusterInput):
                region = region or inp.spec.region
                cluster_id = cluster_id or (inp.carry.cluster_id if inp.carry else None)
                version = inp.spec.control_plane.version
    if not region:
        where = (
            f"its workflow is {_status_name(desc.status)} and says nothing of its region"
            if desc is not None
            else "no workflow of it exists"
        )
        raise NotFound(
            f"cluster {namespace}/{name}: {where}; to delete what it left in AWS, pass --region "
            f"(and --cluster-id if its AWS id is not {name!r})"
        )
    # Unknown (no run to read it from): the id every cluster created since ids were namespaced
    # has. A legacy cluster (id = name) needs --cluster-id; guessing the bare name instead could
    # sweep another namespace's legacy cluster of that name.
    cluster_id = cluster_id or names.cluster_id(namespace, name)
    started = await client.start_workflow(
        "ClusterTeardownWorkflow",
        TeardownInput(
            namespace=namespace,
            name=name,
            region=region,
            cluster_id=cluster_id,
            owners=owners,
            version=version,
        ),
        id=wf_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=f"delete everything of {namespace}/{name} in {region}",
    )
    why = f"its workflow is {_status_name(desc.status)}" if desc is not None else "it has no workflow"
    return DeleteOutcome(
        "teardown",
        f"{why}: deleting what it has in AWS ({region}, id {cluster_id})",
        started.result_run_id,
    )
