"""The cloud controllers' constants and pure rules: upstream's names and tags for ELBs, security
groups, volumes and PVs, the CCM's cluster id, the EBS CSI controller's flags, storage sizes."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

from capt.dev.simulator import storage
from capt.dev.simulator.world.state import Cluster

SERVICE_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
LEGACY_CLUSTER_TAG = "KubernetesCluster"
SERVICE_NAME_TAG = "kubernetes.io/service-name"
ELB_ROLE_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"
ANNOTATION_PREFIX = "service.beta.kubernetes.io/"
INTERNAL_ANNOTATION = ANNOTATION_PREFIX + "aws-load-balancer-internal"
LB_TYPE_ANNOTATION = ANNOTATION_PREFIX + "aws-load-balancer-type"
ADDITIONAL_TAGS_ANNOTATION = ANNOTATION_PREFIX + "aws-load-balancer-additional-resource-tags"
SOURCE_RANGES_ANNOTATION = ANNOTATION_PREFIX + "load-balancer-source-ranges"
SG_DELETE_GIVE_UP_SECONDS = 600.0  # deleteSecurityGroupsWithBackoff's 10 minutes

EBS_DRIVER = "ebs.csi.aws.com"
IN_TREE_EBS = "kubernetes.io/aws-ebs"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
MIGRATED_TO = "pv.kubernetes.io/migrated-to"
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
ZONE_LABEL = "topology.kubernetes.io/zone"
CSI_VOLUME_NAME_TAG = "CSIVolumeName"
CSI_MANAGED_TAG = "ebs.csi.aws.com/cluster"
CSI_CLUSTER_NAME_TAG = "ebs.csi.aws.com/cluster-name"
PVC_NAME_TAG = "kubernetes.io/created-for/pvc/name"
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
PV_NAME_TAG = "kubernetes.io/created-for/pv/name"

RETRY_FIRST, RETRY_MAX = 5.0, 60.0


# --------------------------------------------------------------------------------------------
# names and tags (pure)


def load_balancer_name(uid: str) -> str:
    """cloudprovider.DefaultLoadBalancerName: "a" + the UID without dashes, cut to 32."""
    return ("a" + uid.replace("-", ""))[:32]


def elb_security_group_name(lb: str) -> str:
    return f"k8s-elb-{lb}"


def elb_security_group_description(lb: str, namespace: str, name: str) -> str:
    return f"Security group for Kubernetes ELB {lb} ({namespace}/{name})"


def pv_name(pvc_uid: str) -> str:
    return f"pvc-{pvc_uid}"


def volume_client_token(pv: str) -> str:
    return hashlib.sha256(pv.encode()).hexdigest()


@dataclass(frozen=True)
class Tagging:
    """The CCM's awsTagging: one cluster id, legacy or not."""

    cluster_id: str
    legacy: bool = False

    @property
    def key(self) -> str:
        return CLUSTER_TAG_PREFIX + self.cluster_id

    def has_cluster_tag(self, tags: dict[str, str]) -> bool:
        return self.key in tags or tags.get(LEGACY_CLUSTER_TAG) == self.cluster_id

    @staticmethod
    def has_no_cluster_prefix_tag(tags: dict[str, str]) -> bool:
        return not any(k.startswith(CLUSTER_TAG_PREFIX) for k in tags)

    def build(self, additional: dict[str, str] | None = None) -> dict[str, str]:
        tags = dict(additional or {})
        if self.legacy:
            tags[LEGACY_CLUSTER_TAG] = self.cluster_id
        tags[self.key] = "owned"
        return tags


def cluster_id_from_tags(new_ids: tuple[str, ...], legacy_id: str) -> tuple[Tagging | None, str]:
    """The CCM's findClusterIDs + init: (tagging, "") or (None, why it does not start)."""
    if len(new_ids) > 1:
        return None, f"Found multiple cluster tags with prefix {CLUSTER_TAG_PREFIX} ({', '.join(new_ids)})"
    new = new_ids[0] if new_ids else ""
    if legacy_id:
        if new and new != legacy_id:
            return None, f"clusterID tags did not match: {new!r} vs {legacy_id!r}"
        return Tagging(legacy_id, legacy=True), ""
    if not new:
        return None, "AWS cloud failed to find ClusterID"
    return Tagging(new), ""


def elb_tags(tagging: Tagging, namespace: str, name: str, additional: dict[str, str]) -> dict[str, str]:
    return tagging.build({**additional, SERVICE_NAME_TAG: f"{namespace}/{name}"})


@dataclass(frozen=True)
class CsiConfig:
    """The EBS CSI controller's flags that change what it creates."""

    cluster_id: str | None = None  # --k8s-tag-cluster-id
    extra_create_metadata: bool = True  # the csi-provisioner's --extra-create-metadata
    extra_tags: tuple[tuple[str, str], ...] = ()  # --extra-tags


def volume_tags(config: CsiConfig, pv: str, pvc_namespace: str, pvc_name: str) -> dict[str, str]:
    """driver/controller.go CreateVolume's tags."""
    tags = {CSI_VOLUME_NAME_TAG: pv, CSI_MANAGED_TAG: "true"}
    if config.extra_create_metadata:
        tags[PVC_NAME_TAG] = pvc_name
        tags[PVC_NAMESPACE_TAG] = pvc_namespace
        tags[PV_NAME_TAG] = pv
    tags.update(dict(config.extra_tags))
    if config.cluster_id:
        tags[CLUSTER_TAG_PREFIX + config.cluster_id] = "owned"
        tags["Name"] = f"{config.cluster_id}-dynamic-{pv}"
        tags[LEGACY_CLUSTER_TAG] = config.cluster_id
        tags[CSI_CLUSTER_NAME_TAG] = config.cluster_id
    return tags


@dataclass(frozen=True)
class CloudOptions:
    """The simulator's defaults for a cluster without an applied EBS CSI controller Deployment."""

    csi_tag_cluster_id: bool = False  # as if --k8s-tag-cluster-id=<the id from the instances' tags>
    csi_extra_create_metadata: bool = True


def _args(container: dict) -> list[str]:
    return [str(a) for a in (container.get("args") or []) + (container.get("command") or [])]


def _flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a == name:
            return "true"
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _key_values(text: str) -> dict[str, str]:
    out = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def csi_config(cluster: Cluster, tagging: Tagging | None, options: CloudOptions) -> CsiConfig:
    """The flags of the cluster's EBS CSI controller (an applied Deployment), else the defaults."""
    for _, dep in storage.items(cluster, storage.DEPLOYMENTS):
        pod_spec = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = pod_spec.get("containers") or []
        driver = next((c for c in containers if "aws-ebs-csi-driver" in str(c.get("image", ""))), None)
        if driver is None:
            continue
        args = _args(driver)
        extra = any(
            (_flag(_args(c), "--extra-create-metadata") or "false").lower() == "true" for c in containers
        )
        return CsiConfig(
            cluster_id=_flag(args, "--k8s-tag-cluster-id") or None,
            extra_create_metadata=extra,
            extra_tags=tuple(sorted(_key_values(_flag(args, "--extra-tags") or "").items())),
        )
    return CsiConfig(
        cluster_id=tagging.cluster_id if (options.csi_tag_cluster_id and tagging) else None,
        extra_create_metadata=options.csi_extra_create_metadata,
    )


_QUANTITY = re.compile(r"^([0-9.]+)([KMGTPE]i?|[kmgtpe])?$")
_FACTORS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def size_gib(quantity: str | None) -> int:
    """A storage request rounded up to whole GiB, as the driver sizes EBS volumes (at least 1)."""
    m = _QUANTITY.match(str(quantity or "").strip())
    if not m:
        return 1
    factor = _FACTORS.get(m.group(2), 1)
    return max(1, math.ceil(float(m.group(1)) * factor / 2**30))
