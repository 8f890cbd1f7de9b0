"""The workflows of one cluster, seen and stopped through the Temporal client (ClusterTeardownWorkflow).

A cluster is a tree of workflows: `cluster/<ns>/<name>`, `infra/<ns>/<name>`,
`controlplane/<ns>/<name>`, `md/<ns>/<name>/<deployment>`, `health/<ns>/<name>` and
`machine/<ns>/<name>/<machine>`. Deleting it must not depend on any of them being healthy: a
failed or terminated owner never reports its machines again, and a machine workflow of a closed
owner runs on. So the teardown asks the owners to delete their machines (`delete_all`), waits a
bounded time (`describe_cluster_workflows`), and then terminates whatever of the tree still runs
(`terminate_cluster_workflows`) before it terminates the instances themselves by tag.

A workflow cannot describe, list or terminate other workflows; these activities do it with the
worker's own client (`activity.client()`). The tree is found with a visibility query
(`WorkflowId STARTS_WITH`); where the server has no visibility (the time-skipping test server)
it falls back to the ids the caller knows plus the machines the running owners report.

`find_clusters_sharing_id`: clusters created before AWS ids were namespaced use their name as
the id, so `prod` in two namespaces share their resources. Deleting one would delete the
other's: the teardown refuses while another running cluster reports the same id.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from capt.contracts.ids import (
    cluster_workflow_id,
    control_plane_workflow_id,
    deployment_workflow_id,
    machine_id,
    tree_ids,
)
from capt.rules.base import Frozen


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


class WorkflowIdsInput(_In):
    workflow_ids: tuple[str, ...]


class ClusterTreeInput(_In):
    namespace: str
    name: str
    # Owners the caller knows (the control plane's and the deployments' ids).
    known_ids: tuple[str, ...] = ()
    # Never touched (the caller itself, the cluster's own workflow).
    exclude: tuple[str, ...] = ()
    reason: str = "cluster deleted"


class WorkflowState(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: str
    status: (
        str  # running | completed | failed | terminated | canceled | timed_out | continued_as_new | not_found
    )
    workflow_type: str = ""


class WorkflowStates(BaseModel):
    workflows: tuple[WorkflowState, ...] = ()
    # True when the visibility store listed the tree; False when it was pieced together from ids.
    listed: bool = False

    def running(self) -> tuple[str, ...]:
        return tuple(w.workflow_id for w in self.workflows if w.status == "running")


class SharedIdInput(_In):
    namespace: str
    name: str
    cluster_id: str


class SharedIdResult(BaseModel):
    workflow_ids: tuple[str, ...] = ()


def tree_query(namespace: str, name: str) -> str:
    exact, prefixes = tree_ids(namespace, name)
    terms = [f'WorkflowId = "{i}"' for i in exact] + [f'WorkflowId STARTS_WITH "{p}"' for p in prefixes]
    return f'ExecutionStatus = "Running" AND ({" OR ".join(terms)})'


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower() if status is not None else "unknown"


def _no_visibility(err: RPCError) -> bool:
    return err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.INVALID_ARGUMENT)


async def _describe(client: Client, wf_id: str) -> WorkflowState:
    try:
        desc = await client.get_workflow_handle(wf_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return WorkflowState(workflow_id=wf_id, status="not_found")
        raise
    return WorkflowState(
        workflow_id=wf_id, status=_status_name(desc.status), workflow_type=desc.workflow_type
    )


async def _machines_of(client: Client, owner_id: str) -> list[str]:
    """Machine names a running owner reports in its `status` query (best effort)."""
    try:
        status = await client.get_workflow_handle(owner_id).query("status")
    except Exception:  # noqa: BLE001 - a query that fails only means we know fewer machines
        return []
    machines = status.get("machines", []) if isinstance(status, dict) else []
    return [m["name"] for m in machines if isinstance(m, dict) and m.get("name")]


async def _tree(client: Client, inp: ClusterTreeInput) -> WorkflowStates:
    """The running workflows of the cluster's tree."""
    exact, _prefixes = tree_ids(inp.namespace, inp.name)
    try:
        found = [
            WorkflowState(workflow_id=wf.id, status="running", workflow_type=wf.workflow_type)
            async for wf in client.list_workflows(tree_query(inp.namespace, inp.name))
        ]
        return WorkflowStates(workflows=tuple(sorted(found, key=lambda w: w.workflow_id)), listed=True)
    except RPCError as err:
        if not _no_visibility(err):
            raise
    ids = list(dict.fromkeys([*exact, *inp.known_ids]))
    states = [await _describe(client, i) for i in ids]
    owners = (
        control_plane_workflow_id(inp.namespace, inp.name),
        deployment_workflow_id(inp.namespace, inp.name, ""),
    )
    for s in list(states):
        if s.status == "running" and s.workflow_id.startswith(owners):
            for machine in await _machines_of(client, s.workflow_id):
                mid = machine_id(inp.namespace, inp.name, machine)
                if mid not in ids:
                    ids.append(mid)
                    states.append(await _describe(client, mid))
    running = [s for s in states if s.status == "running"]
    return WorkflowStates(workflows=tuple(sorted(running, key=lambda w: w.workflow_id)), listed=False)


@activity.defn
async def describe_cluster_workflows(inp: WorkflowIdsInput) -> WorkflowStates:
    """The status of each workflow id (not_found for an id never started)."""
    client = activity.client()
    return WorkflowStates(workflows=tuple([await _describe(client, i) for i in inp.workflow_ids]))


@activity.defn
async def request_cluster_deletion(inp: WorkflowIdsInput) -> WorkflowStates:
    """Signal `delete_all` to each owner that still runs (the control plane, the deployments);
    closed or unknown ones are reported as they are."""
    client = activity.client()
    out = []
    for wf_id in inp.workflow_ids:
        state = await _describe(client, wf_id)
        if state.status == "running":
            try:
                # DeleteOptions(skip_node_cleanup=True) as JSON: the cluster is going, so no
                # cordon, drain or Node deletion (nothing is left to keep running).
                await client.get_workflow_handle(wf_id).signal("delete_all", {"skip_node_cleanup": True})
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                state = WorkflowState(
                    workflow_id=wf_id, status="completed", workflow_type=state.workflow_type
                )
        out.append(state)
    return WorkflowStates(workflows=tuple(out))


@activity.defn
async def terminate_cluster_workflows(inp: ClusterTreeInput) -> WorkflowStates:
    """Terminate every running workflow of the cluster's tree (except `inp.exclude`); returns
    those it terminated."""
    client = activity.client()
    tree = await _tree(client, inp)
    done = []
    for w in tree.workflows:
        if w.workflow_id in inp.exclude:
            continue
        try:
            await client.get_workflow_handle(w.workflow_id).terminate(reason=inp.reason)
        except RPCError as err:
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise
            continue  # closed meanwhile
        done.append(w.model_copy(update={"status": "terminated"}))
    return WorkflowStates(workflows=tuple(done), listed=tree.listed)


@activity.defn
async def find_clusters_sharing_id(inp: SharedIdInput) -> SharedIdResult:
    """Running cluster workflows, other than `cluster/<ns>/<name>`, whose AWS id is `cluster_id`
    (their status' `cluster_id`, or their name when they have none). Empty without visibility."""
    client = activity.client()
    own = cluster_workflow_id(inp.namespace, inp.name)
    found = []
    try:
        async for wf in client.list_workflows(
            'WorkflowType = "ClusterWorkflow" AND ExecutionStatus = "Running"'
        ):
            if wf.id == own:
                continue
            try:
                status = await client.get_workflow_handle(wf.id).query("status")
            except Exception:  # noqa: BLE001 - a cluster that cannot answer is not counted
                continue
            if not isinstance(status, dict):
                continue
            if (status.get("cluster_id") or status.get("name")) == inp.cluster_id:
                found.append(wf.id)
    except RPCError as err:
        if not _no_visibility(err):
            raise
    return SharedIdResult(workflow_ids=tuple(sorted(found)))


CLUSTER_TREE_ACTIVITIES = [
    describe_cluster_workflows,
    request_cluster_deletion,
    terminate_cluster_workflows,
    find_clusters_sharing_id,
]
