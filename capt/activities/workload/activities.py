"""Temporal activities on a workload cluster's Kubernetes API.

Every activity takes a `WorkloadAccess` (the endpoint, the region and the ARNs of the cluster's
PKI secrets), reads the CA certificate and the admin client certificate/key from Secrets Manager
itself, and returns names, ids and states only: no key, token or certificate ever enters a
workflow history or a log line.

Polling and waiting
- `workload_readyz` and `list_workload_nodes` answer "not reachable" as data (`reachable=False`
  with the reason) instead of failing: a workflow polling for an API server that is still coming
  up, or for a node to become Ready, decides itself, with durable timers, how long to wait.
- The mutating activities (`cordon_node`, `drain_node`, `delete_node`,
  `create_bootstrap_token_secret`) raise a retryable error when the API server cannot be reached
  or answers 5xx, so Temporal's retry policy applies.
- 401/403 (or a client certificate the server rejects) and a server certificate that is not the
  cluster's fail at once (non-retryable) with a message that says so.
- `drain_node` runs a bounded drain (`timeout_seconds`) and heartbeats: schedule it with a
  heartbeat timeout, and loop in the workflow for a node drain timeout longer than one call.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from capt.activities.aws import secrets as sm
from capt.activities.aws import token_secrets
from capt.activities.aws.models import AwsResult
from capt.activities.aws.secrets import ClusterPKIRefs
from capt.activities.aws.session import aws_activity
from capt.activities.kubeadm import tokens as ktokens
from capt.activities.workload import drain as wdrain
from capt.activities.workload.client import WorkloadClient
from capt.activities.workload.objects import NodeInfo, node_info
from capt.activities.workload.transport import CONTEXTS, DEFAULT_TIMEOUT, WorkloadUnreachable, tls_context


class WorkloadAccess(BaseModel):
    """How to reach one workload cluster's API server. ARNs only: the material is read inside."""

    model_config = ConfigDict(frozen=True)

    region: str
    endpoint_host: str
    endpoint_port: int = 6443
    pki: ClusterPKIRefs
    timeout_seconds: float = DEFAULT_TIMEOUT


def _cache_key(access: WorkloadAccess) -> tuple:
    return (access.region, access.pki.ca_arn, access.pki.admin_arn)


def connect(access: WorkloadAccess) -> WorkloadClient:
    """A client for the cluster's API server, with the CA and admin credentials from Secrets
    Manager (cached as an SSL context for a few minutes; dropped on an authentication failure)."""
    key = _cache_key(access)

    def build():
        ca_cert, admin = sm.read_admin_credentials(sm.client(access.region), access.pki)
        return tls_context(ca_cert, admin.cert, admin.key)

    return WorkloadClient.for_endpoint(
        access.endpoint_host,
        access.endpoint_port,
        CONTEXTS.get(key, build),
        timeout=access.timeout_seconds,
        on_auth_failure=lambda: CONTEXTS.drop(key),
    )


# --------------------------------------------------------------------------------------------
# readyz


class WorkloadReadyzRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess


class WorkloadReadyz(AwsResult):
    reachable: bool
    ready: bool
    status_code: int | None = None
    detail: str = ""


@aws_activity
def workload_readyz(req: WorkloadReadyzRequest) -> WorkloadReadyz:
    """Is the API server up and ready (`GET /readyz` = 200)? Unreachable is an answer, not an error."""
    with connect(req.access) as client:
        try:
            ready, status, body = client.readyz()
        except WorkloadUnreachable as err:
            return WorkloadReadyz(reachable=False, ready=False, detail=str(err))
    return WorkloadReadyz(reachable=True, ready=ready, status_code=status, detail=body)


# --------------------------------------------------------------------------------------------
# nodes


class ListNodesRequest(BaseModel):
    """All Nodes, or only those named, or only those backed by the given EC2 instances."""

    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    names: tuple[str, ...] = ()
    instance_ids: tuple[str, ...] = ()
    label_selector: str | None = None


class WorkloadNodes(AwsResult):
    reachable: bool
    nodes: tuple[NodeInfo, ...] = ()
    detail: str = ""

    def by_instance_id(self) -> dict[str, NodeInfo]:
        return {n.instance_id: n for n in self.nodes if n.instance_id}


@aws_activity
def list_workload_nodes(req: ListNodesRequest) -> WorkloadNodes:
    """Nodes with their Ready condition (and since when), instance id and AZ from the providerID,
    kubelet version and labels. Names only → one GET per name (a missing Node is left out)."""
    with connect(req.access) as client:
        try:
            if req.names and not req.instance_ids and not req.label_selector:
                raw = [n for n in (client.get_node(name) for name in req.names) if n is not None]
            else:
                raw = client.list_nodes(req.label_selector)
        except WorkloadUnreachable as err:
            return WorkloadNodes(reachable=False, detail=str(err))
    nodes = [node_info(n) for n in raw]
    if req.names:
        nodes = [n for n in nodes if n.name in req.names]
    if req.instance_ids:
        nodes = [n for n in nodes if n.instance_id in req.instance_ids]
    return WorkloadNodes(reachable=True, nodes=tuple(sorted(nodes, key=lambda n: n.name)))


class NodeRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    node_name: str


class CordonRequest(NodeRequest):
    unschedulable: bool = True  # False uncordons


class NodeChange(AwsResult):
    node_name: str
    found: bool  # False: there is no such Node (for a delete or a cordon before deletion: done)


@aws_activity
def cordon_node(req: CordonRequest) -> NodeChange:
    """Mark the Node unschedulable (merge patch on spec.unschedulable). A missing Node is reported,
    not an error."""
    with connect(req.access) as client:
        node = client.set_unschedulable(req.node_name, req.unschedulable)
    return NodeChange(node_name=req.node_name, found=node is not None)


@aws_activity
def delete_node(req: NodeRequest) -> NodeChange:
    """Delete the Node object. Already gone (404) is done."""
    with connect(req.access) as client:
        existed = client.delete_node(req.node_name)
    return NodeChange(node_name=req.node_name, found=existed)


# --------------------------------------------------------------------------------------------
# drain


class DrainRequest(NodeRequest):
    # This call's bound; loop in the workflow (durable timers) for a longer node drain timeout.
    timeout_seconds: float = 60.0
    poll_interval_seconds: float = 5.0
    # Forget pods deleted longer ago than this (CAPI uses 1s for an unreachable node); None waits.
    skip_wait_for_delete_seconds: float | None = None


class BlockedPod(BaseModel):
    model_config = ConfigDict(frozen=True)

    pod: str  # namespace/name
    reason: str  # the API server's answer, e.g. 429 and the disruption budget's message


class DrainResult(AwsResult):
    node_name: str
    node_found: bool
    drained: bool  # no pod left to evict or waiting to terminate (DaemonSet/mirror pods excepted)
    timed_out: bool
    passes: int
    evicted: tuple[str, ...] = ()
    blocked: tuple[BlockedPod, ...] = ()
    terminating: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@aws_activity
def drain_node(req: DrainRequest) -> DrainResult:
    """Cordon, then evict every pod but DaemonSet and mirror pods, retrying PDB-blocked (429)
    evictions every poll interval, until the node is empty or `timeout_seconds` passed."""
    skip = (
        dt.timedelta(seconds=req.skip_wait_for_delete_seconds)
        if req.skip_wait_for_delete_seconds is not None
        else None
    )
    with connect(req.access) as client:
        report = wdrain.drain(
            client,
            req.node_name,
            timeout=req.timeout_seconds,
            interval=req.poll_interval_seconds,
            skip_deleted_after=skip,
            heartbeat=activity.heartbeat,
        )
    if report.timed_out:
        activity.logger.info(
            "drain of %s not finished after %gs: %d blocked, %d terminating",
            req.node_name,
            req.timeout_seconds,
            len(report.blocked),
            len(report.terminating),
        )
    return DrainResult(
        node_name=req.node_name,
        node_found=report.node_found,
        drained=report.drained,
        timed_out=report.timed_out,
        passes=report.passes,
        evicted=tuple(report.evicted),
        blocked=tuple(BlockedPod(pod=k, reason=v) for k, v in sorted(report.blocked.items())),
        terminating=tuple(report.terminating),
        skipped=tuple(report.skipped),
    )


# --------------------------------------------------------------------------------------------
# bootstrap-token Secret


class BootstrapTokenSecretRequest(BaseModel):
    """The token is read from Secrets Manager by ARN (from `ensure_bootstrap_token`), never passed."""

    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    token_secret_arn: str
    description: str = ""


class BootstrapTokenSecretResult(AwsResult):
    secret_name: str  # bootstrap-token-<id>, in kube-system
    token_id: str  # public: it names the Secret
    expiration: dt.datetime
    action: str  # "created" | "replaced"


@aws_activity
def create_bootstrap_token_secret(req: BootstrapTokenSecretRequest) -> BootstrapTokenSecretResult:
    """Make the API server accept the stored bootstrap token: create its kube-system Secret, or
    replace it (409) so a refreshed expiration reaches the cluster. Idempotent."""
    token = token_secrets.read_bootstrap_token(sm.client(req.access.region), req.token_secret_arn)
    with connect(req.access) as client:
        action = client.create_or_replace_secret(ktokens.bootstrap_token_secret(token, req.description))
    return BootstrapTokenSecretResult(
        secret_name=token.secret_name, token_id=token.id, expiration=token.expiration, action=action
    )


ACTIVITIES = [
    workload_readyz,
    list_workload_nodes,
    cordon_node,
    drain_node,
    delete_node,
    create_bootstrap_token_secret,
]
