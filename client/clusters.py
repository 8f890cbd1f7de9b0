"""Talking to ClusterWorkflows through the Temporal client (used by cli.py).

Each cluster is the workflow `cluster/<namespace>/<name>`; applying the same cluster twice
reaches the same workflow. Every request is an Update: the workflow's validator rejects a
bad one before it enters history, and the rejection comes back here as `Rejected` with the
validator's message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from spec.models import ClusterSpec
from workflows.cluster import (
    ApplyAnswer,
    ApplyRequest,
    ClusterInput,
    ClusterStatus,
    ClusterWorkflow,
    ScaleControlPlaneRequest,
    ScaleDeploymentRequest,
    UpgradeRequest,
    cluster_workflow_id,
)

TASK_QUEUE = "capt"


class Rejected(Exception):
    """The workflow's validator refused the request (nothing changed)."""


class NotFound(Exception):
    pass


async def connect() -> Client:
    """TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (or a Temporal config profile); one try, and a
    ConnectionError with one clear line when the server is not there."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    from worker import connect_config

    cfg = connect_config()
    try:
        return await Client.connect(**cfg, data_converter=pydantic_data_converter)
    except RuntimeError:
        raise ConnectionError(f"cannot reach Temporal at {cfg['target_host']}") from None


def _unwrap(err: WorkflowUpdateFailedError) -> Rejected:
    cause = err.cause
    message = getattr(cause, "message", None) or str(cause or err)
    return Rejected(message)


async def running_handle(client: Client, namespace: str, name: str):
    handle = client.get_workflow_handle(cluster_workflow_id(namespace, name))
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"cluster {namespace}/{name} not found") from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise NotFound(
            f"cluster {namespace}/{name} is not running (its workflow is {desc.status.name.lower()})"
        )
    return handle


async def apply(client: Client, spec: ClusterSpec, task_queue: str = TASK_QUEUE) -> tuple[bool, ApplyAnswer]:
    """Create the cluster's workflow, or send the changed spec to the running one.
    Returns (created, answer)."""
    try:
        handle = await running_handle(client, spec.namespace, spec.name)
    except NotFound:
        await client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
            static_summary=f"cluster {spec.namespace}/{spec.name} in {spec.region}",
        )
        return True, ApplyAnswer(changed=True, summary="created")
    try:
        return False, await handle.execute_update(ClusterWorkflow.apply, ApplyRequest(spec=spec))
    except WorkflowUpdateFailedError as err:
        raise _unwrap(err) from None


async def status(client: Client, namespace: str, name: str) -> ClusterStatus:
    handle = client.get_workflow_handle(cluster_workflow_id(namespace, name))
    try:
        return await handle.query(ClusterWorkflow.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"cluster {namespace}/{name} not found") from None
        raise


async def list_clusters(client: Client) -> list[ClusterStatus]:
    """Running clusters, from the workflow list (the CaptCluster search attribute)."""
    found = []
    async for wf in client.list_workflows('WorkflowType = "ClusterWorkflow" AND ExecutionStatus = "Running"'):
        name = wf.id.split("/")
        if len(name) == 3:
            try:
                found.append(await status(client, name[1], name[2]))
            except (NotFound, RPCError):
                continue
    return sorted(found, key=lambda s: (s.namespace, s.name))


async def update(client: Client, namespace: str, name: str, which: str, arg=None) -> ApplyAnswer:
    handle = await running_handle(client, namespace, name)
    method = {
        "scale_control_plane": ClusterWorkflow.scale_control_plane,
        "scale_deployment": ClusterWorkflow.scale_deployment,
        "upgrade": ClusterWorkflow.upgrade,
        "pause": ClusterWorkflow.pause,
        "resume": ClusterWorkflow.resume,
        "delete": ClusterWorkflow.delete,
    }[which]
    try:
        if arg is None:
            return await handle.execute_update(method)
        return await handle.execute_update(method, arg)
    except WorkflowUpdateFailedError as err:
        raise _unwrap(err) from None


def scale_control_plane(replicas: int) -> ScaleControlPlaneRequest:
    return ScaleControlPlaneRequest(replicas=replicas)


def scale_deployment(deployment: str, replicas: int) -> ScaleDeploymentRequest:
    return ScaleDeploymentRequest(deployment=deployment, replicas=replicas)


def upgrade(version: str) -> UpgradeRequest:
    return UpgradeRequest(version=version)


async def wait(
    client: Client,
    namespace: str,
    name: str,
    done: Callable[[ClusterStatus], bool],
    timeout: float,
    on_progress: Callable[[ClusterStatus], None] | None = None,
    interval: float = 2.0,
) -> ClusterStatus:
    """Poll the cluster's status until `done` (or Failed); TimeoutError after `timeout` s.
    A deleted cluster's workflow has ended: its last status is read from its result."""
    deadline = time.monotonic() + timeout
    last: ClusterStatus | None = None
    handle = client.get_workflow_handle_for(ClusterWorkflow.run, cluster_workflow_id(namespace, name))
    while True:
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            last = await handle.result()
        elif desc.status != WorkflowExecutionStatus.RUNNING:
            raise RuntimeError(f"cluster workflow is {desc.status.name.lower()}")
        else:
            last = await handle.query(ClusterWorkflow.status)
        if on_progress:
            on_progress(last)
        if done(last) or last.phase == "Failed":
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s; the cluster is {last.phase}: {last.message}")
        await asyncio.sleep(interval)
