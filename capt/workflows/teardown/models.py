"""ClusterTeardownWorkflow's interface: its input, its knobs, and the workload-API activities it
calls by name.

The teardown needs only who the cluster is (namespace, name, region, AWS id), never its spec, so
it can run for a cluster whose ClusterWorkflow failed, was terminated or never finished creating.

Workload objects (stage 1) are deleted by activities of the workload package, called by *name*
(`DELETE_CLOUD_BACKED_OBJECTS`, `LIST_CLOUD_BACKED_OBJECTS`, `DISCOVER_WORKLOAD_ACCESS`) with the
models below. A worker without them, an API server that cannot be reached, or no way to reach it
at all only skips that stage: the AWS sweep finds what the cloud provider and the CSI driver
left by their tags.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from capt.activities.workload.activities import WorkloadAccess

# Activity names (capt/activities/workload/teardown.py).
DELETE_CLOUD_BACKED_OBJECTS = "delete_cloud_backed_objects"
LIST_CLOUD_BACKED_OBJECTS = "list_cloud_backed_objects"
DISCOVER_WORKLOAD_ACCESS = "discover_workload_access"


class TeardownSettings(BaseModel):
    """How long each stage may take; tests shorten them."""

    model_config = ConfigDict(frozen=True)

    # Stage 1: wait for the cloud provider and the CSI driver to delete what the objects hold.
    workload_timeout_seconds: int = 300
    # Stage 2: the owners delete their machines; then whatever still runs is terminated.
    owners_timeout_seconds: int = 1200
    owners_poll_seconds: int = 30
    # Stage 3: instances terminated by tag.
    instances_timeout_seconds: int = 600
    # Stage 4/5: one delete is tried this many times (with backoff, about a minute) before its
    # blockers are described; a blocked sweep is re-run every `blocked_retry_seconds` until
    # `blocked_deadline_seconds`, then the teardown fails with the blockers.
    delete_attempts: int = 6
    blocked_retry_seconds: int = 120
    blocked_deadline_seconds: int = 1800
    # NAT gateways take minutes to go.
    nat_deleted_timeout_seconds: int = 900
    # Stage 7: the proof, re-read a few times (AWS reads lag deletions).
    final_sweep_attempts: int = 6
    final_sweep_interval_seconds: int = 10


class TeardownInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str
    name: str
    region: str
    # The AWS identity in the owned tags and names; None = the name (legacy clusters).
    cluster_id: str | None = None
    # How to reach the workload API (the parent's context); None = discover it, or skip.
    workload: WorkloadAccess | None = None
    # The live ClusterWorkflow to signal `teardown_changed`; None when run on its own.
    owner_workflow_id: str | None = None
    # Owner workflows (control plane, deployments) the parent knows: asked to delete their
    # machines first. Without a parent the tree is terminated instead.
    owners: tuple[str, ...] = ()
    # For the status only.
    version: str = ""
    settings: TeardownSettings = TeardownSettings()

    @property
    def aws_id(self) -> str:
        return self.cluster_id or self.name


# --- the workload teardown activities' models ----------------------------------------------------


class CloudBackedRequest(BaseModel):
    """Delete (or list) the objects of a workload cluster that hold AWS resources: Services of
    type LoadBalancer (the cloud provider's ELB and its security group) and PVCs backed by EBS
    (the CSI driver's volumes), with the pods that mount them."""

    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    cluster_id: str


class CloudBackedObject(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str  # Service | PersistentVolumeClaim | PersistentVolume
    namespace: str = ""
    name: str
    uid: str = ""
    # A Service's `status.loadBalancer.ingress[0].hostname`.
    load_balancer_hostname: str | None = None
    # A PV's volume (`spec.csi.volumeHandle`, or the in-tree `awsElasticBlockStore.volumeID`).
    volume_id: str | None = None
    reclaim_policy: str | None = None
    deleting: bool = False


class CloudBackedObjects(BaseModel):
    """What is still there. `reachable=False` (with the reason) when the API server could not
    be reached: the teardown then goes on without it."""

    model_config = ConfigDict(frozen=True)

    reachable: bool = True
    reason: str = ""
    objects: tuple[CloudBackedObject, ...] = ()


class DiscoverWorkloadRequest(BaseModel):
    """Find how to reach a cluster's API server without its workflow: the API load balancer by
    its role tag and the PKI secrets by name."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    region: str
    cluster_id: str


class DiscoveredWorkload(BaseModel):
    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess | None = None
    reason: str = ""


def volume_id_of(handle: str | None) -> str | None:
    """`vol-…` from a CSI volume handle or an in-tree id (`aws://zone/vol-…`)."""
    if not handle:
        return None
    last = handle.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("vol-") else None


def load_balancer_name_of(hostname: str | None) -> str | None:
    """The load balancer's name from its DNS name: `<name>-<n>.<region>.elb.amazonaws.com`
    (classic), `<name>-<hex>.elb.<region>.amazonaws.com` (NLB/ALB), `internal-` first when
    internal."""
    if not hostname or ".elb." not in f".{hostname}":
        return None
    label = hostname.split(".", 1)[0].removeprefix("internal-")
    name, sep, _ = label.rpartition("-")
    return name if sep and name else None
