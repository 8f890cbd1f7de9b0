"""Pure functions over the Kubernetes objects capt reads: Nodes and the pods a drain evicts.

No I/O. Inputs are the JSON objects the API server returns; outputs are small pydantic models
(names, ids and states only) that may travel in activity results.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


class ProviderID(BaseModel):
    model_config = ConfigDict(frozen=True)

    availability_zone: str | None
    instance_id: str


def parse_provider_id(provider_id: str | None) -> ProviderID | None:
    """`aws:///<az>/<instance-id>` (the AWS cloud provider's form; also `aws:///<instance-id>` and
    `aws://<az>/<instance-id>`) → its parts; None for anything else."""
    if not provider_id or not provider_id.startswith("aws://"):
        return None
    parts = [p for p in provider_id[len("aws://") :].split("/") if p]
    if not parts or not _INSTANCE_ID.match(parts[-1]) or len(parts) > 2:
        return None
    return ProviderID(availability_zone=parts[0] if len(parts) == 2 else None, instance_id=parts[-1])


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


ConditionStatus = Literal["True", "False", "Unknown"]


class NodeCondition(BaseModel):
    """One entry of a Node's status.conditions: type, status and since when (for health checks)."""

    model_config = ConfigDict(frozen=True)

    type: str
    status: str
    since: dt.datetime | None = None  # lastTransitionTime
    reason: str | None = None


class NodeInfo(BaseModel):
    """What capt needs to know about a Node: no addresses beyond its name, no images, no secrets."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider_id: str | None = None
    instance_id: str | None = None
    availability_zone: str | None = None
    # The Ready condition: status "True"/"False"/"Unknown" (missing = "Unknown"), since when, why.
    ready: bool = False
    ready_status: ConditionStatus = "Unknown"
    ready_since: dt.datetime | None = None
    ready_reason: str | None = None
    last_heartbeat: dt.datetime | None = None
    kubelet_version: str | None = None
    unschedulable: bool = False
    control_plane: bool = False
    labels: dict[str, str] = {}
    created: dt.datetime | None = None
    deleting: bool = False
    # Every condition the kubelet (or a node-problem detector) reports, Ready included, for
    # MachineHealthCheck's unhealthyConditions.
    conditions: tuple[NodeCondition, ...] = ()

    def condition(self, type_: str) -> NodeCondition | None:
        return next((c for c in self.conditions if c.type == type_), None)


def node_info(node: dict) -> NodeInfo:
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None) or {}
    ready_status = ready.get("status") if ready.get("status") in ("True", "False") else "Unknown"
    pid = parse_provider_id(spec.get("providerID"))
    return NodeInfo(
        name=meta.get("name", ""),
        provider_id=spec.get("providerID"),
        instance_id=pid.instance_id if pid else None,
        availability_zone=pid.availability_zone if pid else None,
        ready=ready_status == "True",
        ready_status=ready_status,
        ready_since=parse_time(ready.get("lastTransitionTime")),
        ready_reason=ready.get("reason"),
        last_heartbeat=parse_time(ready.get("lastHeartbeatTime")),
        kubelet_version=(status.get("nodeInfo") or {}).get("kubeletVersion"),
        unschedulable=bool(spec.get("unschedulable")),
        control_plane=CONTROL_PLANE_LABEL in labels,
        labels=labels,
        created=parse_time(meta.get("creationTimestamp")),
        deleting=bool(meta.get("deletionTimestamp")),
        conditions=tuple(
            NodeCondition(
                type=str(c["type"]),
                status=str(c.get("status") or "Unknown"),
                since=parse_time(c.get("lastTransitionTime")),
                reason=c.get("reason"),
            )
            for c in status.get("conditions") or []
            if c.get("type")
        ),
    )


# --------------------------------------------------------------------------------------------
# pods, for drain

PodAction = Literal["evict", "skip-daemonset", "skip-mirror", "terminating"]


def pod_key(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def pod_action(
    pod: dict, now: dt.datetime | None = None, skip_deleted_after: dt.timedelta | None = None
) -> PodAction | None:
    """What a drain does with a pod on the node, as `kubectl drain --ignore-daemonsets` decides:

    - mirror pods (static pods: the kubelet owns them, the API cannot evict them) stay;
    - DaemonSet pods stay (their controller would recreate them on the cordoned node anyway);
    - pods already being deleted are waited for, not evicted again — or, with
      `skip_deleted_after`, forgotten once deleted longer than that (CAPI does this for
      unreachable nodes, whose kubelet will never confirm the deletion); None = forgotten;
    - everything else (including completed pods) is evicted.
    """
    meta = pod.get("metadata") or {}
    if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
        return "skip-mirror"
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "DaemonSet" and ref.get("controller"):
            return "skip-daemonset"
    deleted = meta.get("deletionTimestamp")
    if deleted:
        since = parse_time(deleted)
        if (
            skip_deleted_after is not None
            and now is not None
            and since is not None
            and now - since > skip_deleted_after
        ):
            return None
        return "terminating"
    return "evict"


# --------------------------------------------------------------------------------------------
# cloud-backed objects, for the workload teardown (capt/activities/workload/teardown.py)

EBS_CSI_DRIVER = "ebs.csi.aws.com"
IN_TREE_EBS_PROVISIONER = "kubernetes.io/aws-ebs"


def default_load_balancer_name(service_uid: str) -> str:
    """The AWS cloud provider's name for a Service's load balancer (classic ELB or NLB):
    cloudprovider.DefaultLoadBalancerName, "a" + the UID without dashes, cut to 32 characters."""
    return ("a" + service_uid.replace("-", ""))[:32]


def ebs_volume_id(pv: dict) -> str | None:
    """The EBS volume id behind a PersistentVolume: `spec.csi.volumeHandle` for the EBS CSI driver,
    or the in-tree `spec.awsElasticBlockStore.volumeID` (`aws://<az>/vol-…` or `vol-…`); None for
    any other kind of volume."""
    spec = pv.get("spec") or {}
    csi = spec.get("csi") or {}
    if csi.get("driver") == EBS_CSI_DRIVER:
        handle = str(csi.get("volumeHandle") or "")
        return handle or None
    legacy = str((spec.get("awsElasticBlockStore") or {}).get("volumeID") or "")
    if legacy:
        return legacy.rstrip("/").rsplit("/", 1)[-1] or None
    return None


def ebs_volume_zone(pv: dict) -> str | None:
    """The availability zone of an EBS-backed PV: from `aws://<az>/vol-…`, else its node affinity."""
    spec = pv.get("spec") or {}
    legacy = str((spec.get("awsElasticBlockStore") or {}).get("volumeID") or "")
    if legacy.startswith("aws://"):
        parts = [p for p in legacy[len("aws://") :].split("/") if p]
        if len(parts) == 2:
            return parts[0]
    terms = (((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")) or []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr.get("key") in ("topology.kubernetes.io/zone", "topology.ebs.csi.aws.com/zone"):
                values = expr.get("values") or []
                if len(values) == 1:
                    return str(values[0])
    return None


def pod_claims(pod: dict) -> tuple[str, ...]:
    """The PVC names a pod mounts: `persistentVolumeClaim.claimName`, and `<pod>-<volume>` for a
    generic ephemeral volume."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    out = []
    for volume in spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            out.append(str(claim))
        elif volume.get("ephemeral") is not None and volume.get("name"):
            out.append(f"{meta.get('name', '')}-{volume['name']}")
    return tuple(out)
