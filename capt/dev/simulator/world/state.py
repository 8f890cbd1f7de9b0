"""The world's data: settings, tags and constants, what DescribeInstances shows (`InstanceView`),
the boot I/O protocol, the state of instances, Nodes, pods, clusters and faults, and the small
helpers (names, certificates) the rest of the world shares."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from capt.dev.simulator import cloudinit
from capt.dev.simulator.etcd import EtcdCluster

CLUSTER_TAG_PREFIX = "sigs.k8s.io/cluster-api-provider-aws/cluster/"
# The in-cluster AWS cloud provider's tags: its cluster id is the <id> of the instance's one
# `kubernetes.io/cluster/<id>` tag (or, legacy, the value of `KubernetesCluster`).
CLOUD_CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"
LEGACY_CLOUD_CLUSTER_TAG = "KubernetesCluster"
ROLE_TAG = "sigs.k8s.io/cluster-api-provider-aws/role"
MACHINE_TAG = "capt/machine"
WATCHED_ROLES = ("control-plane", "node")
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
CONTROL_PLANE_TAINT = {"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"}
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
STATIC_PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NOT_READY_CNI = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)
FAULT_KINDS = ("never-ready", "not-ready", "slow-boot", "etcd-unhealthy", "api-5xx", "ccm-down", "csi-down")
JOIN_RETRY_SECONDS = 5.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rfc3339(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


@dataclass
class Settings:
    boot_delay: float = 3.0  # instance running → boothook + kubeadm
    ready_delay: float = 3.0  # node registered → Ready (CNI up)
    node_gone_delay: float = 20.0  # instance gone → Node deleted
    join_timeout: float = 300.0  # kubeadm discovery timeout for transient failures
    pod_grace: float = 1.0  # an evicted/deleted pod's termination
    ssm_delay: float = 1.0  # SSM command delivery
    poll_interval: float = 2.0  # DescribeInstances period
    cloud_interval: float = 2.0  # the cloud controllers' (CCM, EBS CSI) reconcile period
    reregister_delay: float = 10.0  # a deleted Node whose kubelet still runs comes back

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if not hasattr(self, key) or key.startswith("_"):
                raise ValueError(f"unknown setting {key!r}")
            value = float(value)
            if value < 0:
                raise ValueError(f"{key} must not be negative")
            setattr(self, key, value)


# --------------------------------------------------------------------------------------------
# observations and I/O


@dataclass(frozen=True)
class InstanceView:
    """One instance as DescribeInstances shows it."""

    instance_id: str
    state: str
    cluster: str
    machine: str
    role: str
    private_dns: str
    private_ip: str
    availability_zone: str
    image_id: str
    instance_type: str
    region: str
    # For the cloud controllers (simulator.cloud_controllers): the in-cluster cloud provider's
    # cluster ids from the instance's tags, and where the instance lives.
    cloud_cluster_ids: tuple[str, ...] = ()
    legacy_cloud_cluster_id: str = ""
    vpc_id: str = ""
    subnet_id: str = ""
    security_groups: tuple[str, ...] = ()  # group ids

    @staticmethod
    def from_ec2(instance: dict, region: str) -> InstanceView | None:
        """None unless the instance is a capt machine (owned by a cluster, role control-plane/node)."""
        tags = {t["Key"]: t.get("Value", "") for t in instance.get("Tags") or []}
        clusters = [
            k[len(CLUSTER_TAG_PREFIX) :]
            for k, v in tags.items()
            if k.startswith(CLUSTER_TAG_PREFIX) and v == "owned"
        ]
        if not clusters or tags.get(ROLE_TAG) not in WATCHED_ROLES:
            return None
        return InstanceView(
            instance_id=instance["InstanceId"],
            state=(instance.get("State") or {}).get("Name", "unknown"),
            cluster=clusters[0],
            machine=tags.get(MACHINE_TAG, ""),
            role=tags[ROLE_TAG],
            private_dns=instance.get("PrivateDnsName") or "",
            private_ip=instance.get("PrivateIpAddress") or "",
            availability_zone=(instance.get("Placement") or {}).get("AvailabilityZone", ""),
            image_id=instance.get("ImageId") or "",
            instance_type=instance.get("InstanceType") or "",
            region=region,
            cloud_cluster_ids=tuple(
                sorted(
                    k[len(CLOUD_CLUSTER_TAG_PREFIX) :] for k in tags if k.startswith(CLOUD_CLUSTER_TAG_PREFIX)
                )
            ),
            legacy_cloud_cluster_id=tags.get(LEGACY_CLOUD_CLUSTER_TAG, ""),
            vpc_id=instance.get("VpcId") or "",
            subnet_id=instance.get("SubnetId") or "",
            security_groups=tuple(
                g["GroupId"] for g in instance.get("SecurityGroups") or [] if g.get("GroupId")
            ),
        )


@dataclass(frozen=True)
class ImageInfo:
    name: str
    architecture: str


class BootIO(Protocol):
    def user_data(self, view: InstanceView) -> str | None: ...
    def image(self, view: InstanceView) -> ImageInfo | None: ...
    def read_secret(self, region: str, endpoint: str, name: str) -> bytes | None: ...
    def delete_secret(self, region: str, endpoint: str, name: str) -> None: ...


# --------------------------------------------------------------------------------------------
# state


@dataclass
class Machine:
    view: InstanceView
    first_seen: float
    running_since: float | None = None
    phase: str = "waiting"  # waiting | joining | joined | failed | ignored
    reason: str = ""
    next_try: float = 0.0
    fetch_attempts: int = 0
    boothook: cloudinit.Boothook | None = None
    bootstrap: str | None = None  # the boothook's file (rendered later, like cloud-init)
    booted: bool = False  # the boothook ran: the instance's agents (SSM) are up
    task: cloudinit.KubeadmTask | None = None
    hostname: str = ""
    image: ImageInfo | None = None
    join_deadline: float = 0.0
    cluster_key: str | None = None
    node_name: str | None = None
    control_plane: bool = False
    gone_since: float | None = None
    logged: str = ""  # the last reason logged (a transient reason is logged once)

    @property
    def instance_id(self) -> str:
        return self.view.instance_id

    @property
    def alive(self) -> bool:
        return self.view.state == "running"

    @property
    def provider_id(self) -> str:
        return f"aws:///{self.view.availability_zone}/{self.view.instance_id}"

    def names(self) -> set[str]:
        return {n for n in (self.view.machine, self.view.instance_id, self.node_name) if n}


@dataclass
class Node:
    name: str
    instance_id: str
    provider_id: str
    control_plane: bool
    kubelet_version: str
    labels: dict[str, str]
    taints: list[dict]
    addresses: list[dict]
    architecture: str
    created: dt.datetime
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    annotations: dict[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    ready_status: str = "False"
    ready_reason: str = "KubeletNotReady"
    ready_message: str = NOT_READY_CNI
    ready_since: dt.datetime | None = None
    ready_due: float | None = None
    resource_version: int = 0


@dataclass
class Pod:
    namespace: str
    name: str
    node_name: str | None
    created: dt.datetime
    owner_kind: str | None = None
    owner_name: str | None = None
    mirror: bool = False
    tolerations: tuple[dict, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    volumes: tuple[dict, ...] = ()  # spec.volumes (PVC-backed ones are what the CSI driver attaches)
    containers: tuple[dict, ...] = ()  # spec.containers of a pod created through the API
    deletion: dt.datetime | None = None
    delete_due: float | None = None
    resource_version: int = 0


@dataclass
class Cluster:
    key: str  # endpoint host, lowercase
    name: str
    tag_cluster: str  # the cluster name in the instances' owned tag
    endpoint_port: int
    version: str  # kubeadm-config's kubernetesVersion
    ca_cert: str
    ca_key: str
    created: dt.datetime
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: dict[tuple[str, str], Pod] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict] = field(default_factory=dict)
    # Applied objects (simulator.resources): (apiVersion, plural, namespace or "", name) -> object.
    objects: dict[tuple[str, str, str, str], dict] = field(default_factory=dict)
    etcd: EtcdCluster = field(default_factory=EtcdCluster)
    member_instances: dict[str, str] = field(default_factory=dict)  # member id -> instance id
    control_plane_instances: set[str] = field(default_factory=set)
    serving: tuple[str, str] | None = None  # (cert, key) for the endpoint name
    tls: Any = None  # the server's SSLContext, built by simulator.server
    resource_version: int = 0
    # What the cloud controllers learned and made (simulator.cloud_controllers): cluster id, VPC,
    # load balancers by Service, volumes by PV; shown by `capt dev sim status`.
    cloud: dict[str, Any] = field(default_factory=dict)

    def next_rv(self) -> int:
        self.resource_version += 1
        return self.resource_version


@dataclass
class Faults:
    never_ready: set[str] = field(default_factory=set)
    not_ready: set[str] = field(default_factory=set)
    slow_boot: dict[str, float] = field(default_factory=dict)
    etcd_unhealthy: set[str] = field(default_factory=set)
    api_5xx: dict[str, int] = field(default_factory=dict)  # target -> remaining answers (-1: until cleared)
    ccm_down: set[str] = field(default_factory=set)  # clusters whose cloud-controller-manager is down
    csi_down: set[str] = field(default_factory=set)  # clusters whose EBS CSI controller is down

    def to_dict(self) -> dict:
        return {
            "never-ready": sorted(self.never_ready),
            "not-ready": sorted(self.not_ready),
            "slow-boot": dict(sorted(self.slow_boot.items())),
            "etcd-unhealthy": sorted(self.etcd_unhealthy),
            "api-5xx": dict(sorted(self.api_5xx.items())),
            "ccm-down": sorted(self.ccm_down),
            "csi-down": sorted(self.csi_down),
        }


# --------------------------------------------------------------------------------------------
# helpers


def _who(m: Machine) -> str:
    v = m.view
    return f"instance {v.instance_id} (cluster {v.cluster}, machine {v.machine or '-'})"


def _replace_state(v: InstanceView, state: str) -> InstanceView:
    from dataclasses import replace

    return replace(v, state=state)


def _suffix(seed: str, salt: str, length: int = 10) -> str:
    import hashlib

    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(f"{seed}/{salt}".encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _issue_serving_cert(ca_cert: str, ca_key: str, host: str) -> tuple[str, str]:
    """The API server's certificate, from the cluster CA, for the endpoint name (kubeadm's SANs)."""
    from capt.activities.kubeadm import pki

    names = (
        host,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
    )
    kp = pki.issue_serving_cert(
        pki.KeyPair(cert=ca_cert, key=ca_key), "kube-apiserver", dns_names=names, ip_addresses=("127.0.0.1",)
    )
    return kp.cert, kp.key


def _new_ca() -> tuple[str, str]:
    from capt.activities.kubeadm import pki

    kp = pki.new_ca(pki.CLUSTER_CA_CN)
    return kp.cert, kp.key
