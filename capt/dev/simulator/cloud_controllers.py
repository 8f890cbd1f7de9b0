"""The cloud controllers of every simulated cluster, against the emulated AWS (moto): the AWS
cloud-controller-manager's service controller (classic ELBs) and the EBS CSI driver's controller
(with its external-provisioner and external-attacher), with upstream's names, tags and order.

Cloud-controller-manager (kubernetes/cloud-provider-aws `pkg/providers/v1`)
- Cluster id: from the control-plane instance's one `kubernetes.io/cluster/<id>` tag (or legacy
  `KubernetesCluster=<id>`), as the CCM reads it from the instance it runs on; its VPC likewise.
  Two different cluster tags, or none: the CCM does not start (logged; no load balancer is made).
- A Service of `type: LoadBalancer` (no `loadBalancerClass`, not `aws-load-balancer-type:
  external`/`nlb`): the finalizer `service.kubernetes.io/load-balancer-cleanup` first, then
  - the security group `k8s-elb-<lb>` in the VPC, described `Security group for Kubernetes ELB
    <lb> (<ns>/<name>)`, tagged `kubernetes.io/cluster/<id>=owned` at creation; ingress from
    `loadBalancerSourceRanges` (default 0.0.0.0/0) on every port, and ICMP 3-4 (path MTU);
  - the classic ELB `<lb>` = `a` + the Service UID without dashes, cut to 32 characters, one
    public subnet per AZ (subnets of the VPC tagged for the cluster, or without any cluster tag;
    public = routed to an internet gateway; ties broken by `kubernetes.io/role/elb`, then the
    cluster tag, then the smaller id), TCP listeners to the node ports, tagged
    `kubernetes.io/service-name=<ns>/<name>` and `kubernetes.io/cluster/<id>=owned`, with a TCP
    health check on the first node port;
  - on each target instance's security group (the one tagged for the cluster, else its only
    group; several: refused as the CCM does) an ingress rule for all traffic from the ELB's
    group — the rule that blocks deleting that group;
  - the nodes' instances registered (not those labelled
    `node.kubernetes.io/exclude-from-external-load-balancers`, which kubeadm's control planes are);
  - `status.loadBalancer.ingress[0].hostname` = the ELB's DNS name.
  Deleting the Service (or changing its type) undoes it in the CCM's order: the rules referencing
  the ELB's group, the ELB, then the group (a `DependencyViolation` is retried for 10 minutes and
  then given up, leaking the group as the CCM does), and finally the finalizer.
- Knob `ccm-down <cluster>`: nothing is made or removed; deleted Services stay Terminating.

EBS CSI driver (kubernetes-sigs/aws-ebs-csi-driver, `ebs.csi.aws.com`)
- A PVC whose StorageClass (its `storageClassName`, else the default class) has the provisioner
  `ebs.csi.aws.com` (or in-tree `kubernetes.io/aws-ebs`, migrated to it): `CreateVolume` (a
  ClientToken of sha256(PV name); the simulator also looks the volume up by its `CSIVolumeName`
  tag, since moto ignores ClientToken) in the zone of the node of a pod that uses it
  (`WaitForFirstConsumer`) or of the first Ready node (`Immediate`), type/encryption/iops from the
  class parameters, tags `CSIVolumeName=<pv>`, `ebs.csi.aws.com/cluster=true`; with
  `--extra-create-metadata` `kubernetes.io/created-for/pvc/name|namespace` and
  `kubernetes.io/created-for/pv/name`; with `--k8s-tag-cluster-id=<id>`
  `kubernetes.io/cluster/<id>=owned`, `Name=<id>-dynamic-<pv>`, `KubernetesCluster=<id>`,
  `ebs.csi.aws.com/cluster-name=<id>`. Then the PV `pvc-<pvc uid>` (`spec.csi.volumeHandle` = the
  volume id, or in-tree `awsElasticBlockStore.volumeID` = `aws://<az>/<vol>`; node affinity to the
  zone; reclaim policy from the class, default Delete) bound to the PVC.
  The driver's flags come from the cluster's applied EBS CSI controller Deployment (a container
  whose image is `…aws-ebs-csi-driver…`: `--k8s-tag-cluster-id=`, `--extra-tags=`; the
  csi-provisioner's `--extra-create-metadata`), else from `CloudOptions` (the simulator's
  `--csi-tag-cluster-id` = tag with the cluster id learned from the instances).
- Attach/detach: a volume is attached (`AttachVolume`) to the instance of the node where a pod
  that mounts its PVC runs, and detached once no such pod is left.
- A PV with reclaim policy Delete whose claim is gone (`Released`): `DeleteVolume` (retried while
  `VolumeInUse`), then the PV is removed.
- Knob `csi-down <cluster>`: nothing is provisioned, attached, detached or deleted.

The kube-controller-manager parts without AWS (pvc-protection, pv-protection, Released) are in
simulator.storage. `reconcile` runs every `cloud_interval`: it takes a snapshot under the world's
lock, does its AWS calls outside it, and writes the results back under the lock (checking the
object's uid). What is done is remembered, so a steady state costs no AWS call; a failure is
retried with backoff (5 s doubling to 60 s), its reason logged once.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from capt.dev.simulator import storage
from capt.dev.simulator.world.core import World
from capt.dev.simulator.world.state import Cluster, Machine, rfc3339

log = logging.getLogger("capt.simulator")

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


# --------------------------------------------------------------------------------------------
# the controllers


class CloudControllers:
    def __init__(self, world: World, aws: CloudIO, options: CloudOptions | None = None) -> None:
        self.world = world
        self.aws = aws
        self.options = options or CloudOptions()
        self._lbs: dict[tuple[str, str], _LbMemo] = {}  # (cluster key, service uid)
        self._sg_deletes: dict[tuple[str, str], _SgDeletes] = {}
        self._attached: dict[tuple[str, str], str] = {}  # (cluster key, volume id) -> instance id
        self._retry: dict[tuple, _Retry] = {}
        self._context_logged: dict[str, str] = {}

    # -- one round -------------------------------------------------------------------------

    def reconcile(self) -> None:
        with self.world.lock:
            works = [w for c in list(self.world.clusters.values()) if (w := self._snapshot(c)) is not None]
        for work in works:
            results = self._act(work)
            with self.world.lock:
                cluster = self.world.clusters.get(work.context.cluster_key)
                if cluster is not None:
                    self._write_back(cluster, work, results)

    # -- snapshot (under the lock) -----------------------------------------------------------

    def _self_instance(self, cluster: Cluster) -> Machine | None:
        candidates = sorted(
            (
                m
                for m in self.world.machines.values()
                if m.cluster_key == cluster.key and m.control_plane and m.alive
            ),
            key=lambda m: m.instance_id,
        )
        return candidates[0] if candidates else None

    def _context(self, cluster: Cluster) -> CloudContext | None:
        me = self._self_instance(cluster)
        if me is None:
            return None  # no control plane runs: neither does the CCM nor the CSI controller
        v = me.view
        tagging, error = cluster_id_from_tags(v.cloud_cluster_ids, v.legacy_cloud_cluster_id)
        if error and self._context_logged.get(cluster.key) != error:
            self._context_logged[cluster.key] = error
            log.warning(
                "cluster %s: the cloud-controller-manager does not start (instance %s): %s",
                cluster.name,
                v.instance_id,
                error,
            )
        return CloudContext(
            cluster_key=cluster.key,
            cluster_name=cluster.name,
            region=v.region,
            vpc_id=v.vpc_id,
            subnet_id=v.subnet_id,
            tagging=tagging,
            error=error,
        )

    def _due(self, key: tuple) -> bool:
        r = self._retry.get(key)
        return r is None or self.world.clock() >= r.due

    def _snapshot(self, cluster: Cluster) -> ClusterWork | None:
        ctx = self._context(cluster)
        if ctx is None:
            return None
        cid = ctx.tagging.cluster_id if ctx.tagging else None
        work = ClusterWork(
            context=ctx,
            ccm=ctx.tagging is not None and not self.world.controller_down(cluster, "ccm", cid),
            csi=not self.world.controller_down(cluster, "csi", cid),
        )
        if work.ccm:
            self._snapshot_services(cluster, work)
        if work.csi:
            self._snapshot_volumes(cluster, work)
        return work

    def _targets(self, cluster: Cluster) -> tuple[Target, ...]:
        out = []
        for node in cluster.nodes.values():
            m = self.world.machines.get(node.instance_id)
            if m is None or not m.alive or EXCLUDE_LB_LABEL in node.labels:
                continue
            out.append(Target(instance_id=m.instance_id, security_groups=m.view.security_groups))
        return tuple(sorted(out, key=lambda t: t.instance_id))

    def _snapshot_services(self, cluster: Cluster, work: ClusterWork) -> None:
        targets = self._targets(cluster)
        for key, svc in storage.items(cluster, storage.SERVICES):
            m, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            uid, ns, name = str(m.get("uid")), key[2], key[3]
            annotations = m.get("annotations") or {}
            lb_type = annotations.get(LB_TYPE_ANNOTATION, "").lower()
            wants = (
                spec.get("type") == "LoadBalancer"
                and not spec.get("loadBalancerClass")
                and lb_type != "external"
                and not storage.deleting(svc)
            )
            lb = load_balancer_name(uid)
            if wants:
                if lb_type == "nlb":
                    self._note(("svc", cluster.key, uid), f"service {ns}/{name}: NLBs are not simulated")
                    continue
                storage.add_finalizer(cluster, svc, SERVICE_FINALIZER)  # before any cloud call
                ranges = tuple(spec.get("loadBalancerSourceRanges") or ()) or tuple(
                    r.strip() for r in annotations.get(SOURCE_RANGES_ANNOTATION, "").split(",") if r.strip()
                )
                item = ServiceWork(
                    key=key,
                    uid=uid,
                    namespace=ns,
                    name=name,
                    action="ensure",
                    lb_name=lb,
                    ports=tuple(
                        (str(p.get("protocol", "TCP")), int(p.get("port", 0)), int(p.get("nodePort") or 0))
                        for p in spec.get("ports") or []
                    ),
                    source_ranges=ranges or ("0.0.0.0/0",),
                    internal=annotations.get(INTERNAL_ANNOTATION, "false").lower() not in ("", "false"),
                    additional_tags=tuple(
                        sorted(_key_values(annotations.get(ADDITIONAL_TAGS_ANNOTATION, "")).items())
                    ),
                    targets=targets,
                )
                memo = self._lbs.get((cluster.key, uid))
                ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                if memo is not None and memo.signature == item.signature and ingress:
                    continue
                if self._due(("svc", cluster.key, uid)):
                    work.services.append(item)
            elif SERVICE_FINALIZER in storage.finalizers(svc) and self._due(("svc", cluster.key, uid)):
                work.services.append(
                    ServiceWork(key=key, uid=uid, namespace=ns, name=name, action="delete", lb_name=lb)
                )

    def _zone_for(self, cluster: Cluster, pvc_key: tuple, sc: dict) -> str | None:
        ns, claim = pvc_key[2], pvc_key[3]
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            for (pns, _), pod in sorted(cluster.pods.items()):
                if pns == ns and pod.node_name and claim in storage.claims_of(pod.volumes):
                    node = cluster.nodes.get(pod.node_name)
                    if node is not None:
                        return node.labels.get(ZONE_LABEL)
            return None  # waits for a consumer
        for topo in sc.get("allowedTopologies") or []:
            for expr in topo.get("matchLabelExpressions") or []:
                if expr.get("key") in (ZONE_LABEL, "topology.ebs.csi.aws.com/zone") and expr.get("values"):
                    return str(expr["values"][0])
        nodes = sorted(
            cluster.nodes.values(), key=lambda n: (n.ready_status != "True", n.control_plane, n.name)
        )
        for node in nodes:
            if node.labels.get(ZONE_LABEL):
                return node.labels[ZONE_LABEL]
        return None

    def _snapshot_volumes(self, cluster: Cluster, work: ClusterWork) -> None:
        ctx = work.context
        config = csi_config(cluster, ctx.tagging, self.options)
        classes = {k[3]: o for k, o in storage.items(cluster, storage.STORAGE_CLASSES)}
        pvs = {k[3]: o for k, o in storage.items(cluster, storage.PVS)}
        default = storage.default_storage_class(cluster)
        for key, pvc in storage.items(cluster, storage.PVCS):
            m, spec = pvc.get("metadata") or {}, pvc.get("spec") or {}
            if storage.deleting(pvc) or spec.get("volumeName"):
                continue
            class_name = spec.get("storageClassName")
            if class_name is None:  # null: the default class, assigned retroactively
                class_name = default
            sc = classes.get(class_name or "")
            if not class_name or sc is None or sc.get("provisioner") not in (EBS_DRIVER, IN_TREE_EBS):
                continue
            uid = str(m.get("uid"))
            pv = pv_name(uid)
            if pv in pvs:
                work.binds.append(BindWork(pvc_key=key, pvc_uid=uid, pv=pv))
                continue
            zone = self._zone_for(cluster, key, sc)
            if zone is None or not self._due(("pvc", cluster.key, uid)):
                continue
            params = {str(k).lower(): str(v) for k, v in (sc.get("parameters") or {}).items()}
            in_tree = sc.get("provisioner") == IN_TREE_EBS
            work.provisions.append(
                ProvisionWork(
                    pvc_key=key,
                    pvc_uid=uid,
                    pv=pv,
                    zone=zone,
                    size_gib=size_gib(((spec.get("resources") or {}).get("requests") or {}).get("storage")),
                    volume_type=params.get("type") or ("gp2" if in_tree else "gp3"),
                    encrypted=params.get("encrypted", "false").lower() == "true",
                    kms_key_id=params.get("kmskeyid") or None,
                    iops=int(params["iops"]) if params.get("iops", "").isdigit() else None,
                    throughput=int(params["throughput"]) if params.get("throughput", "").isdigit() else None,
                    tags=tuple(sorted(volume_tags(config, pv, key[2], key[3]).items())),
                    in_tree=in_tree,
                    fs_type=params.get("csi.storage.k8s.io/fstype") or params.get("fstype") or "ext4",
                    reclaim_policy=sc.get("reclaimPolicy") or "Delete",
                    class_name=class_name,
                    access_modes=tuple(spec.get("accessModes") or ("ReadWriteOnce",)),
                    volume_mode=spec.get("volumeMode") or "Filesystem",
                )
            )
        for name, pv in pvs.items():
            if not _is_ours(pv):
                continue
            pv_spec, status = pv.get("spec") or {}, pv.get("status") or {}
            if (
                pv_spec.get("persistentVolumeReclaimPolicy") == "Delete"
                and status.get("phase") == "Released"
                and self._due(("pv", cluster.key, name))
            ):
                work.volume_deletes.append(
                    VolumeDeleteWork(
                        pv=name,
                        pv_uid=str((pv.get("metadata") or {}).get("uid")),
                        volume_id=pv_volume_id(pv) or "",
                    )
                )
        for (ns, _), pod in sorted(cluster.pods.items()):
            node = cluster.nodes.get(pod.node_name or "")
            m = self.world.machines.get(node.instance_id) if node else None
            if m is None or not m.alive:
                continue
            for claim in storage.claims_of(pod.volumes):
                pvc = cluster.objects.get(storage.key_of(storage.PVCS, ns, claim))
                volume = ((pvc or {}).get("spec") or {}).get("volumeName")
                pv = pvs.get(volume or "")
                if pv is not None and _is_ours(pv):
                    work.attachments.setdefault(pv_volume_id(pv) or "", m.instance_id)

    # -- AWS (outside the lock) ------------------------------------------------------------------

    def _act(self, work: ClusterWork) -> Results:
        results = Results()
        ctx = work.context
        for item in work.services:
            retry_key = ("svc", ctx.cluster_key, item.uid)
            try:
                if item.action == "ensure":
                    hostname = self._ensure_load_balancer(ctx, item)
                    self._lbs[(ctx.cluster_key, item.uid)] = _LbMemo(item.signature, hostname)
                    results.hostnames[item.key] = (item.uid, hostname)
                else:
                    self._delete_load_balancer(ctx, item)
                    self._lbs.pop((ctx.cluster_key, item.uid), None)
                    results.lbs_deleted[item.key] = item.uid
                self._succeeded(retry_key)
            except (ClientError, BotoCoreError, Pending, ValueError) as err:
                self._failed(
                    retry_key,
                    f"service {item.namespace}/{item.name}: {item.action} {item.lb_name}: {err}",
                    ctx,
                )
        if work.csi:
            self._act_volumes(work, results)
        return results

    def _act_volumes(self, work: ClusterWork, results: Results) -> None:
        ctx = work.context
        for item in work.provisions:
            retry_key = ("pvc", ctx.cluster_key, item.pvc_uid)
            try:
                volume_id = self._create_volume(ctx, item)
                results.provisioned.append((item, volume_id))
                self._succeeded(retry_key)
            except (ClientError, BotoCoreError) as err:
                self._failed(
                    retry_key, f"provisioning {item.pv} for {item.pvc_key[2]}/{item.pvc_key[3]}: {err}", ctx
                )
        self._attach_detach(work)
        for item in work.volume_deletes:
            retry_key = ("pv", ctx.cluster_key, item.pv)
            try:
                self._delete_volume(ctx, item)
                results.volumes_deleted.append(item)
                self._succeeded(retry_key)
            except (ClientError, BotoCoreError, Pending) as err:
                self._failed(retry_key, f"deleting {item.volume_id} of {item.pv}: {err}", ctx)

    def _succeeded(self, key: tuple) -> None:
        self._retry.pop(key, None)

    def _failed(self, key: tuple, message: str, ctx: CloudContext) -> None:
        r = self._retry.setdefault(key, _Retry())
        r.delay = min(RETRY_MAX, r.delay * 2 if r.delay else RETRY_FIRST)
        r.due = self.world.clock() + r.delay
        if r.logged != message:
            r.logged = message
            log.warning("cluster %s: %s (retrying)", ctx.cluster_name, message)

    def _note(self, key: tuple, message: str) -> None:
        r = self._retry.setdefault(key, _Retry())
        if r.logged != message:
            r.logged = message
            log.warning("%s", message)

    # -- CCM: classic ELB ----------------------------------------------------------------------

    def _ec2(self, ctx: CloudContext) -> Any:
        return self.aws.client("ec2", ctx.region)

    def _elb(self, ctx: CloudContext) -> Any:
        return self.aws.client("elb", ctx.region)

    def _describe_lb(self, ctx: CloudContext, name: str) -> dict | None:
        try:
            found = self._elb(ctx).describe_load_balancers(LoadBalancerNames=[name])[
                "LoadBalancerDescriptions"
            ]
        except ClientError as err:
            if _code(err) in ("LoadBalancerNotFound", "AccessPointNotFound"):
                return None
            raise
        return found[0] if found else None

    def _elb_subnets(self, ctx: CloudContext, tagging: Tagging, internal: bool) -> list[str]:
        ec2 = self._ec2(ctx)
        vpc = [{"Name": "vpc-id", "Values": [ctx.vpc_id]}]
        subnets = [
            s
            for s in ec2.describe_subnets(Filters=vpc)["Subnets"]
            if tagging.has_cluster_tag(_tags(s.get("Tags")))
            or tagging.has_no_cluster_prefix_tag(_tags(s.get("Tags")))
        ]
        if not subnets and ctx.subnet_id:
            subnets = ec2.describe_subnets(SubnetIds=[ctx.subnet_id])["Subnets"]
        tables = ec2.describe_route_tables(Filters=vpc)["RouteTables"]
        role = INTERNAL_ELB_ROLE_TAG if internal else ELB_ROLE_TAG
        by_az: dict[str, dict] = {}
        for s in subnets:
            az, sid = s.get("AvailabilityZone", ""), s.get("SubnetId", "")
            if not az or not sid or (not internal and not _is_public(tables, sid)):
                continue
            old = by_az.get(az)
            if old is None:
                by_az[az] = s
                continue
            old_tags, new_tags = _tags(old.get("Tags")), _tags(s.get("Tags"))
            if (role in old_tags) != (role in new_tags):
                if role in new_tags:
                    by_az[az] = s
                continue
            if tagging.has_cluster_tag(old_tags) != tagging.has_cluster_tag(new_tags):
                if tagging.has_cluster_tag(new_tags):
                    by_az[az] = s
                continue
            if old["SubnetId"] > sid:
                by_az[az] = s
        return [by_az[az]["SubnetId"] for az in sorted(by_az)]

    def _ensure_security_group(
        self, ctx: CloudContext, name: str, description: str, tags: dict[str, str]
    ) -> str:
        ec2 = self._ec2(ctx)
        for _ in range(2):
            found = ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [ctx.vpc_id]}]
            )["SecurityGroups"]
            if found:
                return found[0]["GroupId"]
            try:
                return ec2.create_security_group(
                    GroupName=name,
                    Description=description,
                    VpcId=ctx.vpc_id,
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
                )["GroupId"]
            except ClientError as err:
                if _code(err) != "InvalidGroup.Duplicate":
                    raise
        raise Pending(f"security group {name} was created concurrently and is not visible yet")

    def _set_ingress(self, ctx: CloudContext, group_id: str, desired: list[dict]) -> None:
        """setSecurityGroupIngress: exactly these CIDR permissions."""
        ec2 = self._ec2(ctx)
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]

        def flat(perms: list[dict]) -> set[tuple]:
            return {
                (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"), r.get("CidrIp"))
                for p in perms
                for r in p.get("IpRanges") or []
            }

        want, have = flat(desired), flat(group.get("IpPermissions") or [])

        def perms(rules: set[tuple]) -> list[dict]:
            return [
                {"IpProtocol": proto, "FromPort": lo, "ToPort": hi, "IpRanges": [{"CidrIp": cidr}]}
                for proto, lo, hi, cidr in sorted(rules, key=str)
            ]

        if want - have:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=perms(want - have))
        if have - want:
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=perms(have - want))

    def _instance_group_rules(
        self, ctx: CloudContext, tagging: Tagging, lb_group: str, targets: tuple[Target, ...], deleting: bool
    ) -> None:
        """updateInstanceSecurityGroupsForLoadBalancer: allow all traffic from the ELB's group on
        each target's group; remove the rule from groups no target needs (cluster-tagged ones, or
        any while the ELB's group is being deleted)."""
        ec2 = self._ec2(ctx)
        tagged = {
            g["GroupId"]
            for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [ctx.vpc_id]}])[
                "SecurityGroups"
            ]
            if tagging.has_cluster_tag(_tags(g.get("Tags")))
        }
        wanted: dict[str, bool] = {}
        for t in targets:
            group = _group_for_instance(t, tagged)
            if group is not None:
                wanted[group] = True
        actual = ec2.describe_security_groups(
            Filters=[{"Name": "ip-permission.group-id", "Values": [lb_group]}]
        )["SecurityGroups"]
        for g in actual:
            if wanted.get(g["GroupId"]):
                del wanted[g["GroupId"]]
            elif g["GroupId"] in tagged or deleting:
                wanted[g["GroupId"]] = False
        rule = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": lb_group}]}]
        for group, add in sorted(wanted.items()):
            try:
                if add:
                    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rule)
                    log.info(
                        "cluster %s: %s allows all traffic from the ELB group %s",
                        ctx.cluster_name,
                        group,
                        lb_group,
                    )
                else:
                    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=rule)
                    log.info(
                        "cluster %s: %s no longer allows traffic from %s", ctx.cluster_name, group, lb_group
                    )
            except ClientError as err:
                if _code(err) not in ("InvalidPermission.Duplicate", "InvalidPermission.NotFound"):
                    raise

    def _ensure_load_balancer(self, ctx: CloudContext, item: ServiceWork) -> str:
        tagging = ctx.tagging
        assert tagging is not None
        for protocol, _, node_port in item.ports:
            if protocol.upper() != "TCP":
                raise ValueError("Only TCP LoadBalancer is supported for AWS ELB")
            if not node_port:
                raise ValueError("the Service has no node port")
        if not item.ports:
            raise ValueError("requested load balancer with no ports")
        subnets = self._elb_subnets(ctx, tagging, item.internal)
        if not subnets:
            raise ValueError("could not find any suitable subnets for creating the ELB")
        additional = dict(item.additional_tags)
        group = self._ensure_security_group(
            ctx,
            elb_security_group_name(item.lb_name),
            elb_security_group_description(item.lb_name, item.namespace, item.name),
            tagging.build(additional),
        )
        ranges = [{"CidrIp": r} for r in item.source_ranges]
        desired = [
            {"IpProtocol": p.lower(), "FromPort": port, "ToPort": port, "IpRanges": ranges}
            for p, port, _ in item.ports
        ]
        desired.append({"IpProtocol": "icmp", "FromPort": 3, "ToPort": 4, "IpRanges": ranges})
        self._set_ingress(ctx, group, desired)
        listeners = [
            {
                "Protocol": "TCP",
                "LoadBalancerPort": port,
                "InstanceProtocol": "TCP",
                "InstancePort": node_port,
            }
            for _, port, node_port in item.ports
        ]
        elb = self._elb(ctx)
        lb = self._describe_lb(ctx, item.lb_name)
        if lb is None:
            params: dict[str, Any] = {
                "LoadBalancerName": item.lb_name,
                "Listeners": listeners,
                "Subnets": subnets,
                "SecurityGroups": [group],
                "Tags": _tag_list(elb_tags(tagging, item.namespace, item.name, additional)),
            }
            if item.internal:
                params["Scheme"] = "internal"
            elb.create_load_balancer(**params)
            log.info(
                "cluster %s: service %s/%s: created ELB %s in %s with security group %s",
                ctx.cluster_name,
                item.namespace,
                item.name,
                item.lb_name,
                ",".join(subnets),
                group,
            )
            lb = self._describe_lb(ctx, item.lb_name)
            if lb is None:
                raise Pending(f"ELB {item.lb_name} is not visible yet")
        else:
            have = {
                d["Listener"]["LoadBalancerPort"]: d["Listener"] for d in lb.get("ListenerDescriptions") or []
            }
            want = {listener["LoadBalancerPort"]: listener for listener in listeners}
            stale = [port for port, listener in have.items() if want.get(port) != listener]
            if stale:
                elb.delete_load_balancer_listeners(LoadBalancerName=item.lb_name, LoadBalancerPorts=stale)
            missing = [listener for port, listener in want.items() if have.get(port) != listener]
            if missing:
                elb.create_load_balancer_listeners(LoadBalancerName=item.lb_name, Listeners=missing)
        elb.configure_health_check(
            LoadBalancerName=item.lb_name,
            HealthCheck={
                "Target": f"TCP:{item.ports[0][2]}",
                "Interval": 10,
                "Timeout": 5,
                "UnhealthyThreshold": 6,
                "HealthyThreshold": 2,
            },
        )
        self._instance_group_rules(
            ctx, tagging, (lb.get("SecurityGroups") or [group])[0], item.targets, deleting=False
        )
        registered = {i["InstanceId"] for i in lb.get("Instances") or []}
        wanted = {t.instance_id for t in item.targets}
        if wanted - registered:
            elb.register_instances_with_load_balancer(
                LoadBalancerName=item.lb_name,
                Instances=[{"InstanceId": i} for i in sorted(wanted - registered)],
            )
        if registered - wanted:
            elb.deregister_instances_from_load_balancer(
                LoadBalancerName=item.lb_name,
                Instances=[{"InstanceId": i} for i in sorted(registered - wanted)],
            )
        return str(lb.get("DNSName") or "")

    def _delete_load_balancer(self, ctx: CloudContext, item: ServiceWork) -> None:
        """EnsureLoadBalancerDeleted (classic)."""
        tagging = ctx.tagging
        assert tagging is not None
        ec2 = self._ec2(ctx)
        memo_key = (ctx.cluster_key, item.uid)
        lb = self._describe_lb(ctx, item.lb_name)
        if lb is not None:
            groups = list(lb.get("SecurityGroups") or [])
            owned = []
            if groups:
                described = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": groups}])[
                    "SecurityGroups"
                ]
                owned = [g["GroupId"] for g in described if tagging.has_cluster_tag(_tags(g.get("Tags")))]
                self._instance_group_rules(ctx, tagging, groups[0], (), deleting=groups[0] in owned)
            self._elb(ctx).delete_load_balancer(LoadBalancerName=item.lb_name)
            log.info(
                "cluster %s: service %s/%s: deleted ELB %s",
                ctx.cluster_name,
                item.namespace,
                item.name,
                item.lb_name,
            )
            self._sg_deletes[memo_key] = _SgDeletes(tuple(owned), self.world.clock())
        pending = self._sg_deletes.get(memo_key)
        if pending is None:
            return  # "Load balancer already deleted"
        left = []
        for group in pending.groups:
            try:
                ec2.delete_security_group(GroupId=group)
                log.info("cluster %s: deleted ELB security group %s", ctx.cluster_name, group)
            except ClientError as err:
                if _code(err) == "InvalidGroup.NotFound":
                    continue
                if _code(err) != "DependencyViolation":
                    raise
                left.append(group)
        if left and self.world.clock() - pending.since < SG_DELETE_GIVE_UP_SECONDS:
            self._sg_deletes[memo_key] = _SgDeletes(tuple(left), pending.since)
            raise Pending(f"security group(s) {', '.join(left)} still in use (DependencyViolation)")
        if left:
            log.warning(
                "cluster %s: gave up deleting ELB security group(s) %s after %gs: left behind",
                ctx.cluster_name,
                ", ".join(left),
                SG_DELETE_GIVE_UP_SECONDS,
            )
        self._sg_deletes.pop(memo_key, None)

    # -- EBS CSI ------------------------------------------------------------------------------

    def _create_volume(self, ctx: CloudContext, item: ProvisionWork) -> str:
        ec2 = self._ec2(ctx)
        found = ec2.describe_volumes(Filters=[{"Name": f"tag:{CSI_VOLUME_NAME_TAG}", "Values": [item.pv]}])[
            "Volumes"
        ]
        if found:  # what AWS answers to a repeated ClientToken: the same volume
            return found[0]["VolumeId"]
        params: dict[str, Any] = {
            "AvailabilityZone": item.zone,
            "Size": item.size_gib,
            "VolumeType": item.volume_type,
            "Encrypted": item.encrypted,
            "ClientToken": volume_client_token(item.pv),
            "TagSpecifications": [{"ResourceType": "volume", "Tags": _tag_list(dict(item.tags))}],
        }
        if item.kms_key_id:
            params["KmsKeyId"] = item.kms_key_id
        if item.iops:
            params["Iops"] = item.iops
        if item.throughput:
            params["Throughput"] = item.throughput
        volume_id = ec2.create_volume(**params)["VolumeId"]
        log.info(
            "cluster %s: EBS CSI: created %s (%d GiB %s in %s) for %s/%s as %s",
            ctx.cluster_name,
            volume_id,
            item.size_gib,
            item.volume_type,
            item.zone,
            item.pvc_key[2],
            item.pvc_key[3],
            item.pv,
        )
        return volume_id

    def _attach_detach(self, work: ClusterWork) -> None:
        ctx = work.context
        ec2 = self._ec2(ctx)
        memo = {v: i for (k, v), i in self._attached.items() if k == ctx.cluster_key}
        for volume in sorted(set(work.attachments) | set(memo)):
            want = work.attachments.get(volume)
            if memo.get(volume) == want:
                continue
            retry_key = ("attach", ctx.cluster_key, volume)
            if not self._due(retry_key):
                continue
            try:
                described = ec2.describe_volumes(VolumeIds=[volume])["Volumes"]
                attached = (
                    {a["InstanceId"] for a in (described[0].get("Attachments") or [])} if described else set()
                )
                for instance in sorted(attached - {want}):
                    ec2.detach_volume(VolumeId=volume, InstanceId=instance)
                    log.info("cluster %s: EBS CSI: detached %s from %s", ctx.cluster_name, volume, instance)
                if want and want not in attached:
                    ec2.attach_volume(VolumeId=volume, InstanceId=want, Device=_device(volume))
                    log.info("cluster %s: EBS CSI: attached %s to %s", ctx.cluster_name, volume, want)
                if want:
                    self._attached[(ctx.cluster_key, volume)] = want
                else:
                    self._attached.pop((ctx.cluster_key, volume), None)
                self._succeeded(retry_key)
            except ClientError as err:
                if _code(err).startswith("InvalidVolume.NotFound"):
                    self._attached.pop((ctx.cluster_key, volume), None)
                    continue
                self._failed(retry_key, f"attach/detach of {volume}: {err}", ctx)
            except BotoCoreError as err:
                self._failed(retry_key, f"attach/detach of {volume}: {err}", ctx)

    def _delete_volume(self, ctx: CloudContext, item: VolumeDeleteWork) -> None:
        try:
            self._ec2(ctx).delete_volume(VolumeId=item.volume_id)
        except ClientError as err:
            if _code(err).startswith("InvalidVolume.NotFound"):
                return
            if _code(err) != "VolumeInUse":
                raise
            # Still attached though no pod uses it (e.g. the simulator restarted and forgot the
            # attachment): the external-attacher detaches it; deleting is retried next round.
            for volume in self._ec2(ctx).describe_volumes(VolumeIds=[item.volume_id])["Volumes"]:
                for attachment in volume.get("Attachments") or []:
                    self._ec2(ctx).detach_volume(VolumeId=item.volume_id, InstanceId=attachment["InstanceId"])
                    log.info(
                        "cluster %s: EBS CSI: detached %s from %s",
                        ctx.cluster_name,
                        item.volume_id,
                        attachment["InstanceId"],
                    )
            self._attached.pop((ctx.cluster_key, item.volume_id), None)
            raise Pending(f"{item.volume_id} was still attached (VolumeInUse)") from None
        log.info("cluster %s: EBS CSI: deleted %s (%s)", ctx.cluster_name, item.volume_id, item.pv)
        self._attached.pop((ctx.cluster_key, item.volume_id), None)

    # -- write back (under the lock) -------------------------------------------------------------

    def _write_back(self, cluster: Cluster, work: ClusterWork, results: Results) -> None:
        now = rfc3339(self.world.now())
        for key, (uid, hostname) in results.hostnames.items():
            svc = cluster.objects.get(key)
            if svc is None or str((svc.get("metadata") or {}).get("uid")) != uid or storage.deleting(svc):
                continue
            ingress = [{"hostname": hostname}] if hostname else []
            status = svc.setdefault("status", {})
            if (status.get("loadBalancer") or {}).get("ingress") != ingress:
                status["loadBalancer"] = {"ingress": ingress}
                storage.touch(cluster, svc)
        for key, uid in results.lbs_deleted.items():
            svc = cluster.objects.get(key)
            if svc is None or str((svc.get("metadata") or {}).get("uid")) != uid:
                continue
            if not storage.deleting(svc):
                svc["status"] = {"loadBalancer": {}}
            storage.remove_finalizer(cluster, key, SERVICE_FINALIZER)
        for item in work.binds:
            self._bind(cluster, item.pvc_key, item.pvc_uid, item.pv)
        for item, volume_id in results.provisioned:
            self._create_pv(cluster, item, volume_id, now)
            self._bind(cluster, item.pvc_key, item.pvc_uid, item.pv)
        for item in results.volumes_deleted:
            key = storage.key_of(storage.PVS, "", item.pv)
            pv = cluster.objects.get(key)
            if pv is not None and str((pv.get("metadata") or {}).get("uid")) == item.pv_uid:
                del cluster.objects[key]  # the external-provisioner deletes the PV once the volume is gone
        self._status(cluster, work)

    def _create_pv(self, cluster: Cluster, item: ProvisionWork, volume_id: str, now: str | None) -> None:
        key = storage.key_of(storage.PVS, "", item.pv)
        if key in cluster.objects:
            return
        pvc = cluster.objects.get(item.pvc_key) or {}
        annotations = {PROVISIONED_BY: IN_TREE_EBS if item.in_tree else EBS_DRIVER}
        spec: dict[str, Any] = {
            "accessModes": list(item.access_modes),
            "capacity": {"storage": f"{item.size_gib}Gi"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": item.pvc_key[2],
                "name": item.pvc_key[3],
                "uid": item.pvc_uid,
                "resourceVersion": (pvc.get("metadata") or {}).get("resourceVersion", ""),
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [item.zone]}]}
                    ]
                }
            },
            "persistentVolumeReclaimPolicy": item.reclaim_policy,
            "storageClassName": item.class_name,
            "volumeMode": item.volume_mode,
        }
        if item.in_tree:
            annotations[MIGRATED_TO] = EBS_DRIVER
            spec["awsElasticBlockStore"] = {
                "volumeID": f"aws://{item.zone}/{volume_id}",
                "fsType": item.fs_type,
            }
        else:
            spec["csi"] = {
                "driver": EBS_DRIVER,
                "fsType": item.fs_type,
                "volumeHandle": volume_id,
                "volumeAttributes": {
                    "storage.kubernetes.io/csiProvisionerIdentity": f"1700000000000-8081-{EBS_DRIVER}"
                },
            }
        cluster.objects[key] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": item.pv,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now,
                "resourceVersion": str(cluster.next_rv()),
                "annotations": annotations,
                "finalizers": [storage.PV_PROTECTION, PROVISIONER_FINALIZER],
            },
            "spec": spec,
            "status": {"phase": "Bound"},
        }

    def _bind(self, cluster: Cluster, pvc_key: tuple, pvc_uid: str, pv_name_: str) -> None:
        """The PV controller binds the claim to the PV provisioned for it."""
        pvc = cluster.objects.get(pvc_key)
        pv = cluster.objects.get(storage.key_of(storage.PVS, "", pv_name_))
        if pvc is None or pv is None or str((pvc.get("metadata") or {}).get("uid")) != pvc_uid:
            return
        if (pvc.get("spec") or {}).get("volumeName") == pv_name_:
            return
        pv_spec = pv.get("spec") or {}
        provisioner = ((pv.get("metadata") or {}).get("annotations") or {}).get(PROVISIONED_BY, EBS_DRIVER)
        pvc.setdefault("spec", {})["volumeName"] = pv_name_
        annotations = storage.meta(pvc).setdefault("annotations", {})
        annotations.update(
            {
                "pv.kubernetes.io/bind-completed": "yes",
                "pv.kubernetes.io/bound-by-controller": "yes",
                "volume.kubernetes.io/storage-provisioner": EBS_DRIVER
                if provisioner == IN_TREE_EBS
                else provisioner,
                "volume.beta.kubernetes.io/storage-provisioner": provisioner,
            }
        )
        pvc["status"] = {
            "phase": "Bound",
            "accessModes": list(pv_spec.get("accessModes") or []),
            "capacity": copy.deepcopy(pv_spec.get("capacity") or {}),
        }
        storage.touch(cluster, pvc)
        log.info("cluster %s: %s/%s bound to %s", cluster.name, pvc_key[2], pvc_key[3], pv_name_)

    def _status(self, cluster: Cluster, work: ClusterWork) -> None:
        ctx = work.context
        lbs = {}
        for key, svc in storage.items(cluster, storage.SERVICES):
            if SERVICE_FINALIZER in storage.finalizers(svc):
                lbs[f"{key[2]}/{key[3]}"] = load_balancer_name(str((svc.get("metadata") or {}).get("uid")))
        volumes = {
            key[3]: pv_volume_id(pv) for key, pv in storage.items(cluster, storage.PVS) if _is_ours(pv)
        }
        cluster.cloud = {
            "cluster_id": ctx.tagging.cluster_id if ctx.tagging else None,
            "vpc_id": ctx.vpc_id,
            "region": ctx.region,
            "error": ctx.error,
            "ccm": "up" if work.ccm else ("down" if ctx.tagging else "not started"),
            "csi": "up" if work.csi else "down",
            "load_balancers": lbs,
            "volumes": volumes,
        }


def _is_public(tables: list[dict], subnet_id: str) -> bool:
    """isSubnetPublic: the subnet's route table (explicit, else the VPC's main one) routes to an
    internet gateway."""
    table = next(
        (t for t in tables if any(a.get("SubnetId") == subnet_id for a in t.get("Associations") or [])), None
    )
    if table is None:
        table = next((t for t in tables if any(a.get("Main") for a in t.get("Associations") or [])), None)
    if table is None:
        return False
    return any(str(r.get("GatewayId", "")).startswith("igw") for r in table.get("Routes") or [])


def _group_for_instance(target: Target, tagged: set[str]) -> str | None:
    """findSecurityGroupForInstance: the one cluster-tagged group, else the only group."""
    groups = list(target.security_groups)
    hits = [g for g in groups if g in tagged]
    if hits:
        if len(hits) != 1:
            raise ValueError(
                f"Multiple tagged security groups found for instance {target.instance_id}; ensure only the k8s "
                f"security group is tagged; the tagged groups were {' '.join(hits)}"
            )
        return hits[0]
    if groups:
        if len(groups) != 1:
            raise ValueError(
                f"Multiple untagged security groups found for instance {target.instance_id}; ensure the k8s "
                "security group is tagged"
            )
        return groups[0]
    log.warning("Ignoring instance without security group: %s", target.instance_id)
    return None


def _device(volume_id: str) -> str:
    """A device name in the driver's /dev/xvdaa../dev/xvdzz range."""
    digest = hashlib.sha256(volume_id.encode()).digest()
    return "/dev/xvd" + chr(ord("a") + digest[0] % 26) + chr(ord("a") + digest[1] % 26)
