"""The simulated instances and their workload clusters.

One `World` holds every instance the simulator watches (`Machine`, keyed by instance id) and
every workload cluster that a `kubeadm init` brought up (`Cluster`, keyed by its endpoint host:
the load balancer DNS name the worker connects to, and the TLS server name the API is picked by).

Life of an instance
1. Seen running in the emulated EC2 (owned by a cluster, role control-plane or node): `waiting`.
2. After its boot delay, the boothook runs (`boot_step`, the only part doing I/O, through a
   `BootIO`): read the user data, fetch the bootstrap chunks from Secrets Manager (retrying as
   the boothook does), delete them, write the file. cloud-init renders the jinja header with the
   instance's data and runs kubeadm: `joining`.
3. kubeadm init or join (`simulator.kubeadm`): success registers a Node (NotReady until its CNI
   comes up after `ready_delay`), an etcd member for control-plane nodes and the static pods;
   init creates the cluster with its API. A permanent refusal ends in `failed` with the reason
   logged; a transient one (no API at the endpoint yet, unknown or expired token) is retried until
   `join_timeout`, as kubeadm's discovery does.
4. Instance stopped, terminated or gone: its Node turns Unknown (NodeStatusUnknown) and, after
   `node_gone_delay`, is deleted with its pods (the cloud node lifecycle controller). Back to
   running: the kubelet posts Ready again (re-registering a deleted Node).

Thread-safety: every public method takes `lock` itself; `boot_step` does its I/O outside it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from capt.dev.simulator import cloudinit, kube_system, kubeadm, storage
from capt.dev.simulator.etcd import EtcdCluster, Member, ScriptResult, run_script
from capt.dev.simulator.ssm import SsmService

log = logging.getLogger("capt.simulator")

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
# the world


class World:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = utcnow,
        issue_serving_cert: Callable[[str, str, str], tuple[str, str]] | None = None,
        new_ca: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.clock = clock
        self.now = now
        self.lock = threading.RLock()
        self.machines: dict[str, Machine] = {}
        self.clusters: dict[str, Cluster] = {}
        self.faults = Faults()
        self._issue_serving_cert = issue_serving_cert or _issue_serving_cert
        self._new_ca = new_ca or _new_ca
        self.ssm = SsmService(
            self._run_ssm, self._ssm_managed, delay=lambda: self.settings.ssm_delay, clock=clock, now=now
        )
        self.polls = 0

    # -- observation -----------------------------------------------------------------------

    def observe(self, views: list[InstanceView]) -> None:
        """The result of one DescribeInstances (all regions): new instances, state changes, and
        instances no longer listed (deleted)."""
        with self.lock:
            self.polls += 1
            now = self.clock()
            seen = set()
            for v in views:
                seen.add(v.instance_id)
                m = self.machines.get(v.instance_id)
                if m is None:
                    m = self.machines[v.instance_id] = Machine(view=v, first_seen=now)
                    log.info(
                        "instance %s (cluster %s, machine %s, %s) seen %s",
                        v.instance_id,
                        v.cluster,
                        v.machine or "-",
                        v.role,
                        v.state,
                    )
                elif m.view.state != v.state:
                    log.info(
                        "instance %s (machine %s): %s -> %s",
                        v.instance_id,
                        v.machine or "-",
                        m.view.state,
                        v.state,
                    )
                    m.view = v
                else:
                    m.view = v
                self._liveness(m, now)
            for m in list(self.machines.values()):
                if m.instance_id not in seen and m.view.state != "gone":
                    log.info(
                        "instance %s (machine %s) is no longer listed", m.instance_id, m.view.machine or "-"
                    )
                    m.view = _replace_state(m.view, "gone")
                    self._liveness(m, now)
                if (
                    m.instance_id not in seen
                    and m.gone_since is not None
                    and now - m.gone_since > max(60.0, 3 * self.settings.node_gone_delay)
                    and self._node_of(m) is None
                ):
                    del self.machines[m.instance_id]  # long gone, its Node too: forget it

    def _liveness(self, m: Machine, now: float) -> None:
        if m.alive:
            if m.running_since is None:
                m.running_since = now
            if m.gone_since is not None:
                m.gone_since = None
                node = self._node_of(m)
                if node is not None:
                    node.ready_due = now + self.settings.ready_delay
                    log.info("node %s: instance %s runs again; kubelet back", node.name, m.instance_id)
        else:
            m.running_since = None if m.phase == "waiting" else m.running_since
            if m.gone_since is None:
                m.gone_since = now
                node = self._node_of(m)
                if node is not None:
                    self._set_ready(
                        node, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."
                    )
                    log.info("node %s: instance %s is %s: NotReady", node.name, m.instance_id, m.view.state)

    # -- boot --------------------------------------------------------------------------------

    def boot_delay(self, m: Machine) -> float:
        for name in m.names():
            if name in self.faults.slow_boot:
                return self.faults.slow_boot[name]
        return self.settings.boot_delay

    def due_boots(self) -> list[Machine]:
        with self.lock:
            now = self.clock()
            return [
                m
                for m in self.machines.values()
                if m.phase == "waiting"
                and m.alive
                and m.running_since is not None
                and now >= m.running_since + self.boot_delay(m)
                and now >= m.next_try
            ]

    def boot_step(self, m: Machine, io: BootIO) -> None:
        """Run the boothook (I/O, outside the lock), then cloud-init and kubeadm."""
        v = m.view
        try:
            if m.boothook is None and m.bootstrap is None:
                text = io.user_data(v)
                if not text:
                    with self.lock:
                        self._finish(m, "ignored", "no user data: not a capt node")
                    return
                parsed = cloudinit.parse_user_data(text)
                m.boothook, m.bootstrap = parsed.boothook, parsed.cloud_config
            if m.image is None:
                m.image = io.image(v) or ImageInfo(name="", architecture="x86_64")
            if m.bootstrap is None:
                assert m.boothook is not None
                hook = m.boothook
                chunks = []
                for i, name in enumerate(cloudinit.chunk_names(hook)):
                    data = io.read_secret(hook.region, hook.endpoint, name)
                    if data is None:
                        self._chunk_missing(m, i)
                        return
                    chunks.append(data)
                m.bootstrap = cloudinit.reassemble(chunks)
                for name in cloudinit.chunk_names(hook):
                    try:
                        io.delete_secret(hook.region, hook.endpoint, name)
                    except Exception as err:  # noqa: BLE001 - the boothook only logs this too
                        log.warning("%s: boothook could not delete %s: %s", _who(m), name, err)
                log.info(
                    "%s: boothook fetched %d chunk(s) of bootstrap data and deleted them",
                    _who(m),
                    hook.chunks,
                )
        except cloudinit.BootstrapFormatError as err:
            with self.lock:
                self._finish(m, "failed", f"cloud-init: {err}")
            return
        except Exception as err:  # noqa: BLE001 - an AWS hiccup: the boothook would retry
            log.warning("%s: boot step failed, retrying: %s", _who(m), err)
            m.next_try = self.clock() + JOIN_RETRY_SECONDS
            return
        with self.lock:
            m.booted = True
            self._cloud_init(m)

    def _chunk_missing(self, m: Machine, index: int) -> None:
        hook = m.boothook
        assert hook is not None
        with self.lock:
            m.fetch_attempts += 1
            delays = cloudinit.boothook_retry_delays(hook)
            if m.fetch_attempts >= hook.attempts:
                self._finish(
                    m,
                    "failed",
                    f"boothook: could not read chunk {index} of {hook.chunks} ({hook.prefix}-{index})",
                )
                return
            m.next_try = self.clock() + delays[m.fetch_attempts - 1]
            self._log_reason(m, f"boothook: chunk {index} of {hook.chunks} not readable yet; retrying")

    def _cloud_init(self, m: Machine) -> None:
        v = m.view
        assert m.bootstrap is not None and m.image is not None
        data = cloudinit.ec2_instance_data(
            instance_id=v.instance_id,
            local_hostname=v.private_dns,
            local_ipv4=v.private_ip,
            availability_zone=v.availability_zone,
            region=v.region,
            instance_type=v.instance_type,
            image_id=v.image_id,
            architecture=m.image.architecture,
        )
        try:
            rendered, missing = cloudinit.render_cloud_config(m.bootstrap, data)
            if missing:
                log.warning("%s: cloud-init could not render jinja variables %s", _who(m), ", ".join(missing))
            m.task = cloudinit.parse_cloud_config(rendered)
        except cloudinit.BootstrapFormatError as err:
            self._finish(m, "failed", f"cloud-init: {err}")
            return
        # The EC2 hostname is the first label of the private DNS name.
        m.hostname = (v.private_dns or v.instance_id).split(".")[0]
        m.phase = "joining"
        m.join_deadline = self.clock() + self.settings.join_timeout
        self._kubeadm(m)

    def _kubeadm(self, m: Machine) -> None:
        assert m.task is not None
        image_version = kubeadm.version_from_image_name(m.image.name if m.image else None)
        try:
            if m.task.action == "init":
                plan = kubeadm.plan_init(
                    m.task, hostname=m.hostname, image_version=image_version, now=self.now()
                )
                self._init(m, plan)
            else:
                join = kubeadm.plan_join(
                    m.task,
                    hostname=m.hostname,
                    provider_id=m.provider_id,
                    peer_host=m.view.private_ip,
                    image_version=image_version,
                    find_cluster=self._cluster_facts,
                    now=self.now(),
                )
                self._join(m, join)
        except kubeadm.Refused as refusal:
            if refusal.permanent:
                self._finish(m, "failed", f"kubeadm {m.task.action} refused: {refusal.reason}")
            elif self.clock() >= m.join_deadline:
                self._finish(
                    m,
                    "failed",
                    f"kubeadm {m.task.action} gave up after {self.settings.join_timeout:g}s: {refusal.reason}",
                )
            else:
                m.next_try = self.clock() + JOIN_RETRY_SECONDS
                self._log_reason(m, f"kubeadm {m.task.action} waiting: {refusal.reason}")

    def _finish(self, m: Machine, phase: str, reason: str) -> None:
        m.phase, m.reason = phase, reason
        if phase == "failed":
            log.warning("%s: %s — the node will not join", _who(m), reason)
        else:
            log.info("%s: %s", _who(m), reason)

    def _log_reason(self, m: Machine, reason: str) -> None:
        m.reason = reason
        if reason != m.logged:
            m.logged = reason
            log.warning("%s: %s", _who(m), reason)

    # -- kubeadm init / join ----------------------------------------------------------------------

    def _init(self, m: Machine, plan: kubeadm.InitPlan) -> None:
        existing = self.clusters.get(plan.endpoint_host)
        if existing is not None and self._api_up(existing):
            raise kubeadm.Refused(
                f"a control plane already answers at {plan.endpoint_host}:{existing.endpoint_port} "
                f"(cluster {existing.name}): a second `kubeadm init` would start a separate cluster"
            )
        for w in plan.warnings:
            log.warning("%s: kubeadm init: %s", _who(m), w)
        ca_cert, ca_key = (plan.ca_cert, plan.ca_key) if plan.ca_cert and plan.ca_key else self._new_ca()
        now = self.now()
        cluster = Cluster(
            key=plan.endpoint_host,
            name=plan.cluster_name,
            tag_cluster=m.view.cluster,
            endpoint_port=plan.endpoint_port,
            version=plan.version,
            ca_cert=ca_cert,
            ca_key=ca_key,
            created=now,
        )
        cluster.serving = self._issue_serving_cert(ca_cert, ca_key, plan.endpoint_host)
        cluster.objects.update(
            kube_system.initial_objects(cluster.name, cluster.version, rfc3339(now) or "", cluster.next_rv)
        )
        self.clusters[cluster.key] = cluster
        for token in plan.tokens:
            secret = kubeadm.token_secret(token, "created by kubeadm init")
            self._store_secret(cluster, secret)
        for i in range(2):
            self._add_pod(
                cluster,
                Pod(
                    namespace="kube-system",
                    name=f"coredns-{_suffix(cluster.name, 'rs')}-{_suffix(cluster.name, str(i), 5)}",
                    node_name=None,
                    created=now,
                    owner_kind="ReplicaSet",
                    owner_name=f"coredns-{_suffix(cluster.name, 'rs')}",
                    tolerations=({"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"},),
                    labels={"k8s-app": "kube-dns"},
                ),
            )
        self._register(m, cluster, plan.node, plan.kubelet_version, control_plane=True)
        log.info(
            "%s: kubeadm init: cluster %s (%s) at https://%s:%d, node %s",
            _who(m),
            cluster.name,
            cluster.version,
            cluster.key,
            cluster.endpoint_port,
            plan.node.name,
        )

    def _join(self, m: Machine, plan: kubeadm.JoinPlan) -> None:
        cluster = self.clusters[plan.cluster.endpoint_host]
        for w in plan.warnings:
            log.warning("%s: kubeadm join: %s", _who(m), w)
        if m.view.cluster != cluster.tag_cluster:
            log.warning(
                "%s: instance of cluster %s joins cluster %s at %s",
                _who(m),
                m.view.cluster,
                cluster.tag_cluster,
                cluster.key,
            )
        if plan.bumps_version_to:
            log.info(
                "cluster %s: kubeadm-config kubernetesVersion %s -> %s",
                cluster.name,
                cluster.version,
                plan.bumps_version_to,
            )
            cluster.version = plan.bumps_version_to
            if (config := cluster.objects.get(kube_system.KUBEADM_CONFIG)) is not None:
                kube_system.set_kubernetes_version(config, cluster.version)
        self._register(m, cluster, plan.node, plan.kubelet_version, control_plane=plan.control_plane)
        log.info(
            "%s: kubeadm join%s: node %s joined cluster %s with token %s",
            _who(m),
            " --control-plane" if plan.control_plane else "",
            plan.node.name,
            cluster.name,
            plan.token_id,
        )

    def _register(
        self,
        m: Machine,
        cluster: Cluster,
        reg: kubeadm.NodeRegistration,
        kubelet: str,
        *,
        control_plane: bool,
    ) -> None:
        m.phase, m.reason = "joined", ""
        m.cluster_key, m.node_name, m.control_plane = cluster.key, reg.name, control_plane
        m.task = None  # the kubeadm config (token, keys) is no longer needed
        if reg.name in cluster.nodes:
            # A NotReady namesake (its instance gone, its IP reused): the new kubelet takes it over.
            self._delete_node(cluster, reg.name, f"taken over by {m.instance_id}")
        if control_plane:
            cluster.control_plane_instances.add(m.instance_id)
            member = cluster.etcd.add(reg.name, m.view.private_ip or m.view.instance_id)
            cluster.member_instances[member.id] = m.instance_id
        self._create_node(m, cluster, reg, kubelet)

    def _create_node(self, m: Machine, cluster: Cluster, reg: kubeadm.NodeRegistration, kubelet: str) -> None:
        v = m.view
        arch = "arm64" if m.image and m.image.architecture == "arm64" else "amd64"
        labels = {
            "kubernetes.io/hostname": reg.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "node.kubernetes.io/instance-type": v.instance_type,
            "topology.kubernetes.io/region": v.region,
            "topology.kubernetes.io/zone": v.availability_zone,
            **reg.labels,
        }
        if m.control_plane:
            labels[CONTROL_PLANE_LABEL] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        if reg.taints is not None:
            taints = [dict(t) for t in reg.taints]
        else:
            taints = [dict(CONTROL_PLANE_TAINT)] if m.control_plane else []
        addresses = [{"type": "InternalIP", "address": v.private_ip}] if v.private_ip else []
        addresses += [{"type": "Hostname", "address": reg.name}]
        if v.private_dns:
            addresses += [{"type": "InternalDNS", "address": v.private_dns}]
        node = Node(
            name=reg.name,
            instance_id=v.instance_id,
            provider_id=m.provider_id,
            control_plane=m.control_plane,
            kubelet_version=kubelet,
            labels=labels,
            taints=taints,
            addresses=addresses,
            architecture=arch,
            created=self.now(),
            ready_since=self.now(),
            ready_due=self.clock() + self.settings.ready_delay,
            resource_version=cluster.next_rv(),
        )
        cluster.nodes[node.name] = node
        now = self.now()
        self._add_pod(
            cluster,
            Pod(
                namespace="kube-system",
                name=f"kube-proxy-{_suffix(node.name, 'kube-proxy', 5)}",
                node_name=node.name,
                created=now,
                owner_kind="DaemonSet",
                owner_name="kube-proxy",
                labels={"k8s-app": "kube-proxy"},
            ),
        )
        if m.control_plane:
            for component in STATIC_PODS:
                self._add_pod(
                    cluster,
                    Pod(
                        namespace="kube-system",
                        name=f"{component}-{node.name}",
                        node_name=node.name,
                        created=now,
                        owner_kind="Node",
                        owner_name=node.name,
                        mirror=True,
                        labels={"component": component, "tier": "control-plane"},
                    ),
                )

    # -- cluster facts for joins -----------------------------------------------------------------

    def _cluster_facts(self, host: str, port: int) -> kubeadm.ClusterFacts | None:
        cluster = self.clusters.get(host.lower())
        if cluster is None or cluster.endpoint_port != port or not self._api_up(cluster):
            return None
        tokens: dict[str, kubeadm.TokenFacts] = {}
        for (ns, _), secret in cluster.secrets.items():
            if ns == "kube-system":
                token = kubeadm.token_from_secret(secret)
                if token is not None:
                    tokens[token.id] = token

        def owner(name: str) -> tuple[str, bool] | None:
            node = cluster.nodes.get(name)
            return (node.provider_id, node.ready_status == "True") if node is not None else None

        def etcd_peer(host: str) -> str | None:
            member = cluster.etcd.by_peer(host)
            return member.name if member is not None else None

        return kubeadm.ClusterFacts(
            name=cluster.name,
            endpoint_host=cluster.key,
            endpoint_port=cluster.endpoint_port,
            ca_cert=cluster.ca_cert,
            version=cluster.version,
            tokens=tokens,
            node_owner=owner,
            etcd_peer=etcd_peer,
        )

    # -- the passing of time ----------------------------------------------------------------------

    def tick(self) -> None:
        """Everything time moves on: join retries, Ready transitions, Node deletion, pod
        termination and scheduling, the token cleaner, kubelet re-registration."""
        with self.lock:
            now = self.clock()
            for m in list(self.machines.values()):
                if m.phase == "joining" and m.task is not None and m.alive and now >= m.next_try:
                    self._kubeadm(m)
            for cluster in self.clusters.values():
                self._tick_nodes(cluster, now)
                self._tick_pods(cluster, now)
                storage.tick(cluster)
                self._clean_tokens(cluster)
            for m in self.machines.values():
                if (
                    m.phase == "joined"
                    and m.alive
                    and m.cluster_key in self.clusters
                    and m.node_name is not None
                    and m.node_name not in self.clusters[m.cluster_key].nodes
                    and now >= m.next_try
                ):
                    cluster = self.clusters[m.cluster_key]
                    log.info(
                        "node %s: its kubelet still runs on %s: registering again", m.node_name, m.instance_id
                    )
                    reg = kubeadm.NodeRegistration(name=m.node_name)
                    self._create_node(m, cluster, reg, self._kubelet_of(m, cluster))

    def _kubelet_of(self, m: Machine, cluster: Cluster) -> str:
        return kubeadm.version_from_image_name(m.image.name if m.image else None) or cluster.version

    def _tick_nodes(self, cluster: Cluster, now: float) -> None:
        for node in list(cluster.nodes.values()):
            m = self.machines.get(node.instance_id)
            names = {node.name, node.instance_id} | (m.names() if m else set())
            if m is None or not m.alive:
                gone_since = m.gone_since if m else None
                if gone_since is None or now - gone_since >= self.settings.node_gone_delay:
                    self._delete_node(cluster, node.name, "its instance is gone")
                continue
            if names & self.faults.not_ready:
                self._set_ready(
                    node, "False", "KubeletNotReady", "simulated fault: the kubelet reports NotReady"
                )
            elif names & self.faults.never_ready:
                self._set_ready(node, "False", "KubeletNotReady", NOT_READY_CNI)
            elif node.ready_due is not None and now >= node.ready_due:
                self._set_ready(node, "True", "KubeletReady", "kubelet is posting ready status")
            elif node.ready_due is None and node.ready_status != "True":
                # Back from a fault: Ready again after the kubelet's delay.
                node.ready_due = now + self.settings.ready_delay

    def _set_ready(self, node: Node, status: str, reason: str, message: str) -> None:
        if (node.ready_status, node.ready_reason) == (status, reason):
            return
        if status != node.ready_status:
            node.ready_since = self.now()
        node.ready_status, node.ready_reason, node.ready_message = status, reason, message
        if status == "True":
            node.ready_due = None
        log.info("node %s: Ready=%s (%s)", node.name, status, reason)

    def _delete_node(self, cluster: Cluster, name: str, why: str) -> bool:
        node = cluster.nodes.pop(name, None)
        if node is None:
            return False
        log.info("cluster %s: node %s deleted (%s)", cluster.name, name, why)
        for key, pod in list(cluster.pods.items()):
            if pod.node_name == name:
                del cluster.pods[key]
                self._replace_pod(cluster, pod)
        m = self.machines.get(node.instance_id)
        if m is not None:
            m.next_try = self.clock() + self.settings.reregister_delay
        return True

    def _tick_pods(self, cluster: Cluster, now: float) -> None:
        for key, pod in list(cluster.pods.items()):
            if pod.delete_due is not None and now >= pod.delete_due:
                del cluster.pods[key]
        for pod in cluster.pods.values():
            if pod.node_name is None and pod.deletion is None:
                target = self._schedule(cluster, pod)
                if target is not None:
                    pod.node_name = target
                    pod.resource_version = cluster.next_rv()

    def _schedule(self, cluster: Cluster, pod: Pod) -> str | None:
        # Volume binding: every claim must exist and not be deleting; a bound volume's zone limits
        # the nodes (an EBS volume attaches only in its availability zone).
        ok, zones = storage.schedulable_claims(cluster, pod.namespace, storage.claims_of(pod.volumes))
        if not ok:
            return None

        def fits(node: Node) -> bool:
            if node.ready_status != "True" or node.unschedulable:
                return False
            if zones and node.labels.get("topology.kubernetes.io/zone") not in zones:
                return False
            tolerated = {(t.get("key"), t.get("effect")) for t in pod.tolerations}
            return all(
                t.get("effect") not in ("NoSchedule", "NoExecute")
                or (t.get("key"), t.get("effect")) in tolerated
                for t in node.taints
            )

        load: dict[str, int] = {}
        for p in cluster.pods.values():
            if p.node_name:
                load[p.node_name] = load.get(p.node_name, 0) + 1
        candidates = sorted((load.get(n.name, 0), n.name) for n in cluster.nodes.values() if fits(n))
        return candidates[0][1] if candidates else None

    def _add_pod(self, cluster: Cluster, pod: Pod) -> None:
        pod.resource_version = cluster.next_rv()
        cluster.pods[(pod.namespace, pod.name)] = pod

    def _replace_pod(self, cluster: Cluster, gone: Pod) -> None:
        """A ReplicaSet replaces a pod that is being deleted (it stops counting it at once)."""
        if gone.owner_kind != "ReplicaSet" or gone.owner_name is None:
            return
        for i in range(1000):
            name = f"{gone.owner_name}-{_suffix(gone.name, str(i), 5)}"
            if (gone.namespace, name) not in cluster.pods:
                break
        self._add_pod(
            cluster,
            Pod(
                namespace=gone.namespace,
                name=name,
                node_name=None,
                created=self.now(),
                owner_kind="ReplicaSet",
                owner_name=gone.owner_name,
                tolerations=gone.tolerations,
                labels=dict(gone.labels),
                volumes=gone.volumes,
                containers=gone.containers,
            ),
        )

    def _clean_tokens(self, cluster: Cluster) -> None:
        now = self.now()
        for key, secret in list(cluster.secrets.items()):
            token = kubeadm.token_from_secret(secret) if key[0] == "kube-system" else None
            if token is not None and token.expiration is not None and token.expiration <= now:
                del cluster.secrets[key]
                log.info("cluster %s: token cleaner deleted expired %s", cluster.name, key[1])

    # -- API helpers used by simulator.kubeapi ---------------------------------------------------

    def _node_of(self, m: Machine) -> Node | None:
        cluster = self.clusters.get(m.cluster_key or "")
        return cluster.nodes.get(m.node_name or "") if cluster else None

    def _api_up(self, cluster: Cluster) -> bool:
        return any(
            (m := self.machines.get(i)) is not None and m.alive for i in cluster.control_plane_instances
        )

    def api_cluster(self, server_name: str | None) -> Cluster | None:
        """The cluster whose API answers for this TLS server name (None: nothing listens there)."""
        with self.lock:
            cluster = self.clusters.get((server_name or "").lower())
            return cluster if cluster is not None and self._api_up(cluster) else None

    def member_healthy(self, cluster: Cluster, member: Member) -> bool:
        m = self.machines.get(cluster.member_instances.get(member.id, ""))
        if m is None or not m.alive:
            return False
        return not (m.names() | {member.name}) & self.faults.etcd_unhealthy

    def etcd_quorum(self, cluster: Cluster) -> bool:
        return cluster.etcd.has_quorum(lambda member: self.member_healthy(cluster, member))

    def api_fault(self, cluster: Cluster) -> bool:
        """True if this request gets a simulated 5xx (consumes one from a counted fault)."""
        for target in (cluster.name, cluster.tag_cluster, cluster.key):
            remaining = self.faults.api_5xx.get(target)
            if remaining is None:
                continue
            if remaining > 0:
                if remaining == 1:
                    del self.faults.api_5xx[target]
                else:
                    self.faults.api_5xx[target] = remaining - 1
            return True
        return False

    def controller_down(self, cluster: Cluster, kind: str, cloud_id: str | None = None) -> bool:
        """Is the cluster's `ccm` or `csi` controller stopped by a knob (target: the cluster's
        name, its instances' cluster tag, its endpoint host or its cloud cluster id)?"""
        bucket = self.faults.ccm_down if kind == "ccm" else self.faults.csi_down
        return bool({cluster.name, cluster.tag_cluster, cluster.key, cloud_id or cluster.name} & bucket)

    def add_pod(self, cluster: Cluster, pod: Pod) -> None:
        """A pod created through the API (the scheduler places it at the next tick)."""
        with self.lock:
            self._add_pod(cluster, pod)

    def _store_secret(self, cluster: Cluster, secret: dict) -> dict:
        meta = secret.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339(self.now()))
        meta["resourceVersion"] = str(cluster.next_rv())
        cluster.secrets[(meta["namespace"], meta["name"])] = secret
        return secret

    def store_secret(self, cluster: Cluster, secret: dict) -> dict:
        with self.lock:
            return self._store_secret(cluster, secret)

    def evict(self, cluster: Cluster, pod: Pod) -> None:
        with self.lock:
            if pod.deletion is None:
                pod.deletion = self.now()
                pod.delete_due = self.clock() + self.settings.pod_grace
                pod.resource_version = cluster.next_rv()
                self._replace_pod(cluster, pod)

    def delete_node(self, cluster: Cluster, name: str) -> bool:
        with self.lock:
            return self._delete_node(cluster, name, "deleted through the API")

    # -- SSM ---------------------------------------------------------------------------------------

    def _ssm_managed(self, instance_id: str) -> bool:
        m = self.machines.get(instance_id)
        return m is not None and m.alive and m.booted

    def _run_ssm(self, instance_id: str, commands: list[str]) -> ScriptResult:
        m = self.machines.get(instance_id)
        if m is None or not m.alive:
            return ScriptResult(1, "", "simulator: the instance is no longer running\n")
        cluster = self.clusters.get(m.cluster_key or "")
        member = cluster.etcd.by_name(m.node_name or "") if cluster and m.control_plane else None
        result = run_script(
            commands,
            etcd=cluster.etcd if cluster else None,
            local_member=member,
            healthy=(lambda mem: self.member_healthy(cluster, mem)) if cluster else (lambda _m: False),
        )
        for line in result.stdout.splitlines():
            if line.startswith("capt-etcd: removed"):
                log.info(
                    "cluster %s: etcd %s (via %s)",
                    cluster.name if cluster else "-",
                    line[len("capt-etcd: ") :],
                    m.node_name,
                )
        if result.exit_code != 0:
            log.info(
                "ssm on %s exited %d: %s",
                instance_id,
                result.exit_code,
                result.stderr.strip().splitlines()[-1:] or "",
            )
        return result

    # -- faults ------------------------------------------------------------------------------------

    def set_fault(
        self,
        kind: str,
        target: str,
        *,
        enabled: bool = True,
        seconds: float | None = None,
        count: int | None = None,
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
        if not target:
            raise ValueError(
                "a fault needs a target (machine, node, instance id or, for api-5xx, ccm-down and "
                "csi-down, cluster)"
            )
        with self.lock:
            f = self.faults
            if kind == "slow-boot":
                if enabled:
                    if seconds is None or seconds < 0:
                        raise ValueError("slow-boot needs --seconds")
                    f.slow_boot[target] = float(seconds)
                else:
                    f.slow_boot.pop(target, None)
            elif kind == "api-5xx":
                if enabled:
                    f.api_5xx[target] = -1 if not count else int(count)
                else:
                    f.api_5xx.pop(target, None)
            else:
                bucket = {
                    "never-ready": f.never_ready,
                    "not-ready": f.not_ready,
                    "etcd-unhealthy": f.etcd_unhealthy,
                    "ccm-down": f.ccm_down,
                    "csi-down": f.csi_down,
                }[kind]
                (bucket.add if enabled else bucket.discard)(target)
            log.info("fault %s %s %s", kind, target, "on" if enabled else "off")

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = Faults()
            log.info("faults cleared")

    # -- state for the admin endpoint ------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.lock:
            machines = [
                {
                    "instance_id": m.instance_id,
                    "cluster": m.view.cluster,
                    "machine": m.view.machine,
                    "role": m.view.role,
                    "state": m.view.state,
                    "phase": m.phase,
                    "reason": m.reason,
                    "node": m.node_name,
                    "private_dns": m.view.private_dns,
                }
                for m in sorted(
                    self.machines.values(), key=lambda m: (m.view.cluster, m.view.machine, m.instance_id)
                )
            ]
            clusters = []
            for c in sorted(self.clusters.values(), key=lambda c: c.name):
                clusters.append(
                    {
                        "name": c.name,
                        "tag_cluster": c.tag_cluster,
                        "endpoint": f"{c.key}:{c.endpoint_port}",
                        "version": c.version,
                        "api_up": self._api_up(c),
                        "etcd_quorum": self.etcd_quorum(c),
                        "nodes": [
                            {
                                "name": n.name,
                                "instance_id": n.instance_id,
                                "control_plane": n.control_plane,
                                "ready": n.ready_status,
                                "reason": n.ready_reason,
                                "unschedulable": n.unschedulable,
                                "kubelet_version": n.kubelet_version,
                            }
                            for n in sorted(c.nodes.values(), key=lambda n: n.name)
                        ],
                        "etcd_members": [
                            {"id": mem.id, "name": mem.name, "healthy": self.member_healthy(c, mem)}
                            for mem in sorted(c.etcd.members.values(), key=lambda mem: mem.name)
                        ],
                        "pods": len(c.pods),
                        "kube_system": kube_system.summary(c.objects),
                        "cloud": dict(c.cloud),
                        "bootstrap_tokens": sorted(
                            name
                            for (ns, name) in c.secrets
                            if ns == "kube-system" and name.startswith("bootstrap-token-")
                        ),
                    }
                )
            return {
                "settings": dict(vars(self.settings)),
                "faults": self.faults.to_dict(),
                "polls": self.polls,
                "machines": machines,
                "clusters": clusters,
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
