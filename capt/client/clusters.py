"""Talking to ClusterWorkflows through the Temporal client (used by capt/cli/).

Each cluster is the workflow `cluster/<namespace>/<name>`; applying the same cluster twice
reaches the same workflow. Every request is an Update: the workflow's validator rejects a
bad one before it enters history, and the rejection comes back here as `Rejected` with the
validator's message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from capt.contracts import names
from capt.contracts.ids import cluster_workflow_id
from capt.spec.models import ClusterSpec
from capt.workflows.cluster.models import (
    ApplyAnswer,
    ApplyRequest,
    ClusterInput,
    ClusterStatus,
    ScaleControlPlaneRequest,
    ScaleDeploymentRequest,
    UpgradeRequest,
)
from capt.workflows.cluster.workflow import ClusterWorkflow

TASK_QUEUE = "capt"


class Rejected(Exception):
    """The workflow's validator refused the request (nothing changed)."""


class NotFound(Exception):
    pass


class Failed(Exception):
    """The cluster's workflow ended without the result waited for (failed, terminated, ...)."""


async def connect() -> Client:
    """TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (or a Temporal config profile); one try, and a
    ConnectionError with one clear line when the server is not there."""
    from capt.client import codec
    from capt.client.connection import connect_config

    try:
        cfg = connect_config()
    except Exception as err:  # noqa: BLE001 - a bad TEMPORAL_PROFILE / config file, in one line
        raise ConnectionError(f"Temporal client configuration: {err}") from None
    try:
        converter = codec.converter_from_env()
    except codec.CodecKeyError as err:
        raise ConnectionError(f"payload keys: {err}") from None
    timeout = request_timeout()
    try:
        # A server that accepts and never answers must not hang the CLI (CAPT_REQUEST_TIMEOUT).
        return await asyncio.wait_for(Client.connect(**cfg, data_converter=converter), timeout)
    except RuntimeError:
        raise ConnectionError(f"cannot reach Temporal at {cfg['target_host']}") from None
    except TimeoutError:
        raise ConnectionError(
            f"Temporal at {cfg['target_host']} did not answer within {timeout:g}s"
        ) from None


def request_timeout() -> float:
    """Seconds a single request to Temporal may take (`capt --request-timeout`, CAPT_REQUEST_TIMEOUT)."""
    import os

    try:
        return float(os.environ.get("CAPT_REQUEST_TIMEOUT", "15"))
    except ValueError:
        return 15.0


def _unwrap(err: WorkflowUpdateFailedError) -> Rejected:
    cause = err.cause
    message = getattr(cause, "message", None) or str(cause or err)
    return Rejected(message)


async def _elsewhere(client: Client, namespace: str, name: str) -> str:
    """ "; found in team-a; use -n team-a" when a running cluster of that name is in another namespace."""
    others = []
    try:
        query = f'WorkflowType = "ClusterWorkflow" AND ExecutionStatus = "Running" AND CaptCluster = "{name}"'
        async for wf in client.list_workflows(query):
            parts = wf.id.split("/")
            if len(parts) == 3 and parts[2] == name and parts[1] != namespace:
                others.append(parts[1])
    except RPCError:
        return ""
    if not others:
        return ""
    return f"; found in {', '.join(sorted(others))}; use -n {sorted(others)[0]}"


async def running_handle(client: Client, namespace: str, name: str):
    handle = client.get_workflow_handle(cluster_workflow_id(namespace, name))
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(
                f"cluster {namespace}/{name} not found" + await _elsewhere(client, namespace, name)
            ) from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise NotFound(
            f"cluster {namespace}/{name} is not running (its workflow is {desc.status.name.lower()})"
        )
    return handle


async def apply(
    client: Client,
    spec: ClusterSpec,
    task_queue: str = TASK_QUEUE,
    secrets: Mapping[str, Mapping[str, bytes]] | None = None,
) -> tuple[bool, ApplyAnswer]:
    """Create the cluster's workflow, or send the changed spec to the running one.
    Returns (created, answer).

    `secrets` (the manifest's referenced Secret documents, `LoadResult.secrets`) are stored in
    Secrets Manager under the cluster's prefix first: the workflow only ever sees their names."""
    try:
        handle = await running_handle(client, spec.namespace, spec.name)
    except NotFound:
        handle = None
    if secrets:
        owner = names.cluster_id(spec.namespace, spec.name)
        if handle is not None:
            owner = (await status(client, spec.namespace, spec.name)).cluster_id or owner
        spec = await asyncio.to_thread(store_secrets, spec, secrets, owner)
    if handle is None:
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


def store_secrets(spec: ClusterSpec, secrets: Mapping[str, Mapping[str, bytes]], owner: str) -> ClusterSpec:
    """Store the Secrets in Secrets Manager (capt/activities/aws/user_secrets.py) and return the spec
    with each addon's Secret versions, so a changed Secret re-applies a Reconcile addon."""
    from capt.activities.aws import user_secrets

    versions = user_secrets.store(
        spec.region,
        spec.namespace,
        spec.name,
        owner,
        secrets,
        additional_tags=spec.additional_tags,
    )
    addons = tuple(
        a.model_copy(
            update={
                "secret_versions": tuple(
                    (r.name, versions[r.name])
                    for r in a.resources
                    if r.kind == "Secret" and r.name in versions
                )
            }
        )
        for a in spec.addons
    )
    return spec.model_copy(update={"addons": addons})


async def preview(client: Client, spec: ClusterSpec):
    """What applying `spec` would do to the running cluster (`capt diff`, `apply --dry-run`):
    the workflow's own rules, through a query, so nothing is recorded."""
    handle = await running_handle(client, spec.namespace, spec.name)
    return await handle.query(ClusterWorkflow.preview, ApplyRequest(spec=spec))


async def status(client: Client, namespace: str, name: str) -> ClusterStatus:
    handle = client.get_workflow_handle(cluster_workflow_id(namespace, name))
    try:
        return await handle.query(ClusterWorkflow.status)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(
                f"cluster {namespace}/{name} not found" + await _elsewhere(client, namespace, name)
            ) from None
        raise


async def cluster_rows(client: Client) -> list[dict]:
    """Running clusters from ONE visibility query over their search attributes (no query to any
    workflow): namespace, name, phase, observed Kubernetes version, ready machines, age."""
    import capt.contracts.search_attributes as sa

    rows = []
    async for wf in client.list_workflows('WorkflowType = "ClusterWorkflow" AND ExecutionStatus = "Running"'):
        parts = wf.id.split("/")
        if len(parts) != 3:
            continue
        attrs = wf.typed_search_attributes
        rows.append(
            {
                "namespace": parts[1],
                "name": parts[2],
                "phase": attrs.get(sa.PHASE) or "",
                "version": attrs.get(sa.KUBERNETES_VERSION) or "",
                "readyMachines": attrs.get(sa.READY_MACHINES),
                "started": wf.start_time,
            }
        )
    return sorted(rows, key=lambda r: (r["namespace"], r["name"]))


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
            # A teardown that failed reports what blocks it in its last status.
            last = await _closed_status(client, desc.id, desc.run_id)
            if last is None or last.phase != "Failed":
                reason = await _failure(client, desc.id, desc.run_id)
                raise Failed(
                    f"cluster {namespace}/{name}: its workflow is {_status_name(desc.status)}: {reason}"
                )
        else:
            last = await handle.query(ClusterWorkflow.status)
        if on_progress:
            on_progress(last)
        if done(last) or last.phase == "Failed":
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s; the cluster is {last.phase}: {last.message}")
        await asyncio.sleep(interval)


def parse_annotations(pairs: tuple[str, ...]) -> dict[str, str | None]:
    """kubectl's syntax: `key=value` sets, `key-` removes. ValueError names a malformed pair."""
    out: dict[str, str | None] = {}
    for pair in pairs:
        if "=" in pair:
            key, _, value = pair.partition("=")
            out[key] = value
        elif pair.endswith("-") and len(pair) > 1:
            out[pair[:-1]] = None
        else:
            raise ValueError(f"{pair!r}: write key=value to set an annotation or key- to remove it")
        if not key_ok(pair.partition("=")[0].rstrip("-")):
            raise ValueError(f"{pair!r}: not an annotation key")
    return out


def key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return (
        bool(name) and len(name) <= 63 and all(c.isalnum() or c in "-_." for c in name) and len(prefix) <= 253
    )


async def annotate_machine(
    client: Client, namespace: str, cluster: str, machine: str, annotations: dict[str, str | None]
):
    """The health workflow keeps machine annotations (skip-remediation, paused, remediate-machine)."""
    from capt.contracts.ids import health_workflow_id
    from capt.workflows.health.models import MachineAnnotations
    from capt.workflows.health.workflow import HealthCheckWorkflow

    handle = client.get_workflow_handle(health_workflow_id(namespace, cluster))
    try:
        return await handle.execute_update(
            HealthCheckWorkflow.annotate, MachineAnnotations(machine=machine, annotations=annotations)
        )
    except WorkflowUpdateFailedError as err:
        raise _unwrap(err) from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise NotFound(
            f"cluster {namespace}/{cluster} has no running health check (no MachineHealthCheck selects its machines)"
        ) from None


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", " ") if status is not None else "unknown"


async def _closed_status(client: Client, wf_id: str, run_id: str | None) -> ClusterStatus | None:
    """The last status of a closed run: its `status` query, answered by a worker replaying the
    run (through the workflow's patches, so a legacy cluster reports its legacy id)."""
    handle = client.get_workflow_handle(wf_id, run_id=run_id)
    try:
        return await handle.query(ClusterWorkflow.status, rpc_timeout=timedelta(seconds=20))
    except Exception:  # noqa: BLE001 - no worker, an old run that cannot answer: use its input
        return None


async def _failure(client: Client, wf_id: str, run_id: str | None) -> str:
    try:
        await client.get_workflow_handle(wf_id, run_id=run_id).result(follow_runs=False)
    except WorkflowFailureError as err:
        cause = err.cause
        while getattr(cause, "cause", None) is not None and not getattr(cause, "message", ""):
            cause = cause.cause
        return getattr(cause, "message", None) or str(cause or err)
    except Exception as err:  # noqa: BLE001
        return str(err)
    return "completed"
