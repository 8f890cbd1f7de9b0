"""What one reconcile round works on: the snapshot of a cluster (context, targets, the work items),
the results to write back, and the AWS access helpers and retry memos the controllers share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError

from capt.dev.simulator.cloud_controllers.names import EBS_DRIVER, IN_TREE_EBS, PROVISIONED_BY, Tagging

# --------------------------------------------------------------------------------------------
# the snapshot: what each cluster's controllers see


@dataclass(frozen=True)
class CloudContext:
    """Where the cluster's controllers run: the control-plane instance's region, VPC, subnet and
    cluster id."""

    cluster_key: str
    cluster_name: str
    region: str
    vpc_id: str
    subnet_id: str
    tagging: Tagging | None
    error: str = ""


@dataclass(frozen=True)
class Target:
    instance_id: str
    security_groups: tuple[str, ...]


@dataclass(frozen=True)
class ServiceWork:
    key: tuple[str, str, str, str]
    uid: str
    namespace: str
    name: str
    action: str  # ensure | delete
    lb_name: str
    ports: tuple[tuple[str, int, int], ...] = ()  # (protocol, port, nodePort)
    source_ranges: tuple[str, ...] = ()
    internal: bool = False
    additional_tags: tuple[tuple[str, str], ...] = ()
    targets: tuple[Target, ...] = ()

    @property
    def signature(self) -> tuple:
        return (self.ports, self.source_ranges, self.internal, self.additional_tags, self.targets)


@dataclass(frozen=True)
class ProvisionWork:
    pvc_key: tuple[str, str, str, str]
    pvc_uid: str
    pv: str
    zone: str
    size_gib: int
    volume_type: str
    encrypted: bool
    kms_key_id: str | None
    iops: int | None
    throughput: int | None
    tags: tuple[tuple[str, str], ...]
    in_tree: bool
    fs_type: str
    reclaim_policy: str
    class_name: str
    access_modes: tuple[str, ...]
    volume_mode: str


@dataclass(frozen=True)
class BindWork:
    """A PV already provisioned for the claim (an earlier round's result was not written back)."""

    pvc_key: tuple[str, str, str, str]
    pvc_uid: str
    pv: str


@dataclass(frozen=True)
class VolumeDeleteWork:
    pv: str
    pv_uid: str
    volume_id: str


@dataclass
class ClusterWork:
    context: CloudContext
    ccm: bool
    csi: bool
    services: list[ServiceWork] = field(default_factory=list)
    provisions: list[ProvisionWork] = field(default_factory=list)
    binds: list[BindWork] = field(default_factory=list)
    volume_deletes: list[VolumeDeleteWork] = field(default_factory=list)
    attachments: dict[str, str] = field(default_factory=dict)  # volume id -> instance id (desired)


@dataclass
class Results:
    hostnames: dict[tuple, tuple[str, str]] = field(default_factory=dict)  # svc key -> (uid, hostname)
    lbs_deleted: dict[tuple, str] = field(default_factory=dict)  # svc key -> uid
    provisioned: list[tuple[ProvisionWork, str]] = field(default_factory=list)  # (work, volume id)
    volumes_deleted: list[VolumeDeleteWork] = field(default_factory=list)


def pv_volume_id(pv: dict) -> str | None:
    """The EBS volume id of a PV: `spec.csi.volumeHandle` (ebs.csi.aws.com) or the last part of
    the in-tree `awsElasticBlockStore.volumeID` (`aws://<az>/<vol>` or `<vol>`)."""
    spec = pv.get("spec") or {}
    csi = spec.get("csi") or {}
    if csi.get("driver") == EBS_DRIVER and csi.get("volumeHandle"):
        return str(csi["volumeHandle"])
    legacy = (spec.get("awsElasticBlockStore") or {}).get("volumeID")
    if legacy:
        return str(legacy).rstrip("/").rsplit("/", 1)[-1]
    return None


def _is_ours(pv: dict) -> bool:
    annotations = (pv.get("metadata") or {}).get("annotations") or {}
    return annotations.get(PROVISIONED_BY) in (EBS_DRIVER, IN_TREE_EBS) and pv_volume_id(pv) is not None


# --------------------------------------------------------------------------------------------
# AWS access


class CloudIO(Protocol):
    def client(self, service: str, region: str, endpoint: str | None = None) -> Any: ...


def _code(err: Exception) -> str:
    if isinstance(err, ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""


def _tags(items: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


class Pending(Exception):
    """Not done yet (e.g. DependencyViolation, VolumeInUse): retried later."""


@dataclass
class _Retry:
    due: float = 0.0
    delay: float = 0.0
    logged: str = ""


@dataclass
class _LbMemo:
    signature: tuple
    hostname: str


@dataclass
class _SgDeletes:
    groups: tuple[str, ...]
    since: float
