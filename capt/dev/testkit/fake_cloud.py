"""A fake AWS + workload cluster for time-skipping workflow tests.

Every activity the MachineWorkflow calls is implemented here under its real name, over an
in-memory model of instances, nodes and etcd members. Time is the workflow's: each call
reads `activity.info().current_attempt_scheduled_time`, which the time-skipping test server
advances when workflows sleep — so "boots in 60 s" costs no wall time.

Knobs model what goes wrong: a machine whose node never becomes Ready, an instance that
vanishes, a node that goes NotReady, an etcd member that is unhealthy, an activity that AWS
refuses for good (`fail_permanently`: raised exactly as the real activities raise it). `samples` records the
machine set after every change so tests can assert invariants at every step, not only at
the end.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from botocore.exceptions import ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from capt.activities.aws import bootstrap_data, images, lb_membership, token_secrets
from capt.activities.aws import instances as ec2
from capt.activities.aws import secrets as sm
from capt.activities.aws.errors import to_application_error
from capt.activities.kubeadm import bootstrap as kb
from capt.activities.temporal_tree import describe_machine_workflows
from capt.activities.workload import activities as workload
from capt.activities.workload import components, etcd
from capt.activities.workload.objects import NodeInfo


@dataclass
class FakeInstance:
    id: str
    machine: str
    role: str
    az: str | None
    launched_at: datetime
    client_token: str
    version: str
    terminated_at: datetime | None = None
    owner: str = ""  # the cluster id the instance is tagged as owned by (InstanceRequest.owner)


@dataclass
class Sample:
    at: datetime
    event: str
    machines: int  # instances not terminated (deleting ones included)
    ready: int  # nodes Ready and not cordoned
    etcd_members: int
    by_version: dict[str, int] = field(default_factory=dict)


class FakeCloud:
    def __init__(
        self,
        boot_seconds: float = 30,
        join_seconds: float = 30,
        terminate_seconds: float = 10,
        init_seconds: float | None = None,
    ):
        self.boot = timedelta(seconds=boot_seconds)
        self.join = timedelta(seconds=join_seconds)
        # The first control-plane machine runs `kubeadm init` (this long, when given) instead of
        # a join; `node_not_before` holds any node back further (e.g. until the API server's
        # load balancer is active: kubeadm init uploads its config through the endpoint).
        self.init = timedelta(seconds=init_seconds) if init_seconds is not None else None
        self.node_not_before: Callable[[FakeInstance], datetime | None] | None = None
        self.terminate_delay = timedelta(seconds=terminate_seconds)
        self.instances: dict[str, FakeInstance] = {}
        self.cordoned: set[str] = set()
        self.etcd_members: set[str] = set()  # machine names
        self.extra_etcd_members: set[str] = set()  # members with no machine (names)
        self.calls: dict[str, int] = {}
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        # knobs
        self.never_ready: set[str] = set()  # machine names whose node never becomes Ready
        self.not_ready: set[str] = set()  # machine names whose node went NotReady
        self.slow_boot: dict[str, float] = {}  # machine name -> extra seconds
        self.on_change: Callable[[FakeCloud, str], None] | None = None
        self.drain_blocked_until: datetime | None = None
        # Versions kubeadm-config/CoreDNS/kube-proxy were moved to (upgrade_cluster_components).
        self.components_versions: list[str] = []  # a PodDisruptionBudget blocks drains until then
        # activity name -> (AWS operation, error code, message, machine names or None for all)
        self.permanent_errors: dict[str, tuple[str, str, str, frozenset[str] | None]] = {}

    def fail_permanently(
        self, activity_name: str, operation: str, code: str, message: str, machines: set[str] | None = None
    ) -> None:
        """`activity_name` fails with AWS's `code` for `machines` (every machine by default), as a
        ClientError that the real activities turn into Temporal's error (capt/activities/aws/errors.py)."""
        self.permanent_errors[activity_name] = (
            operation,
            code,
            message,
            frozenset(machines) if machines is not None else None,
        )

    def _refuse(self, activity_name: str, machine: str | None) -> None:
        spec = self.permanent_errors.get(activity_name)
        if spec is None:
            return
        operation, code, message, machines = spec
        if machines is None or machine is None or machine in machines:
            raise to_application_error(ClientError({"Error": {"Code": code, "Message": message}}, operation))

    # --- model --------------------------------------------------------------------------
    @staticmethod
    def now() -> datetime:
        return activity.info().current_attempt_scheduled_time

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _alive(self, now: datetime) -> list[FakeInstance]:
        return [i for i in self.instances.values() if not self._terminated(i, now)]

    def _terminated(self, inst: FakeInstance, now: datetime) -> bool:
        return inst.terminated_at is not None and now >= inst.terminated_at + self.terminate_delay

    def state(self, inst: FakeInstance, now: datetime) -> str:
        if inst.terminated_at is not None:
            return "terminated" if self._terminated(inst, now) else "shutting-down"
        return "running" if now >= inst.launched_at + self.boot else "pending"

    def node_ready(self, inst: FakeInstance, now: datetime) -> bool:
        if (
            inst.terminated_at is not None
            or inst.machine in self.never_ready
            or inst.machine in self.not_ready
        ):
            return False
        extra = timedelta(seconds=self.slow_boot.get(inst.machine, 0))
        return now >= self.node_up_at(inst) + extra

    def node_registered(self, inst: FakeInstance, now: datetime) -> bool:
        if inst.machine in self.never_ready:
            return False
        return inst.terminated_at is None and now >= self.node_up_at(inst)

    def node_up_at(self, inst: FakeInstance) -> datetime:
        """When the instance's node registers Ready: boot, then kubeadm init or join."""
        first = self.init is not None and inst.role == "control-plane" and inst is self._first_control_plane()
        at = inst.launched_at + self.boot + (self.init if first and self.init is not None else self.join)
        not_before = self.node_not_before(inst) if self.node_not_before else None
        return max(at, not_before) if not_before else at

    def _first_control_plane(self) -> FakeInstance | None:
        return next((i for i in self.instances.values() if i.role == "control-plane"), None)

    def ready_count(self, now: datetime) -> int:
        return sum(1 for i in self._alive(now) if self.node_ready(i, now) and i.machine not in self.cordoned)

    def sample(self, event: str) -> None:
        now = self.now()
        alive = self._alive(now)
        by_version: dict[str, int] = {}
        for i in alive:
            by_version[i.version] = by_version.get(i.version, 0) + 1
        self.samples.append(
            Sample(now, event, len(alive), self.ready_count(now), len(self.etcd_members), by_version)
        )
        if self.on_change:
            self.on_change(self, event)

    def instance_of(self, machine: str) -> FakeInstance | None:
        live = [i for i in self.instances.values() if i.machine == machine and i.terminated_at is None]
        return live[-1] if live else None

    def vanish(self, machine: str, at: datetime) -> None:
        """Terminate a machine's instance out of band (as a user or AWS would)."""
        inst = self.instance_of(machine)
        if inst:
            inst.terminated_at = at

    # --- activities -----------------------------------------------------------------------
    def activities(self) -> list:
        cloud = self

        @activity.defn(name="ensure_bootstrap_token")
        def ensure_bootstrap_token(
            req: token_secrets.BootstrapTokenRequest,
        ) -> token_secrets.BootstrapTokenRef:
            cloud._count("ensure_bootstrap_token")
            return token_secrets.BootstrapTokenRef(
                secret_arn=f"arn:aws:secretsmanager:fake:token/{req.machine_name}",
                token_id="abcdef",
                expiration=cloud.now() + timedelta(minutes=15),
                created=True,
            )

        @activity.defn(name="refresh_bootstrap_token")
        def refresh_bootstrap_token(
            req: token_secrets.BootstrapTokenRefreshRequest,
        ) -> token_secrets.BootstrapTokenRef:
            cloud._count("refresh_bootstrap_token")
            return token_secrets.BootstrapTokenRef(
                secret_arn=req.secret_arn, token_id="abcdef", expiration=cloud.now() + timedelta(minutes=15)
            )

        @activity.defn(name="create_bootstrap_token_secret")
        def create_bootstrap_token_secret(
            req: workload.BootstrapTokenSecretRequest,
        ) -> workload.BootstrapTokenSecretResult:
            cloud._count("create_bootstrap_token_secret")
            return workload.BootstrapTokenSecretResult(
                secret_name="bootstrap-token-abcdef",
                token_id="abcdef",
                expiration=cloud.now() + timedelta(minutes=15),
                action="created",
            )

        @activity.defn(name="lookup_image")
        def lookup_image(req: images.ImageLookupRequest) -> images.ImageLookupResult:
            cloud._count("lookup_image")
            cloud._refuse("lookup_image", None)  # the request names no machine
            return images.ImageLookupResult(
                image=images.ImageChoice(
                    image_id=f"ami-{req.kubernetes_version.replace('.', '')}",
                    name=f"capa-ami-{req.kubernetes_version}",
                )
            )

        @activity.defn(name="prepare_bootstrap_data")
        def prepare_bootstrap_data(req: kb.BootstrapRequest) -> kb.BootstrapRefs:
            cloud._count("prepare_bootstrap_data")
            return kb.BootstrapRefs(
                secret_prefix=f"capt/{req.namespace}/{req.cluster_name}/bootstrap/{req.machine_name}/x",
                secret_arns=("arn:fake",),
                chunks=1,
                rendered_bytes=1000,
                stored_bytes=500,
                user_data_bytes=400,
            )

        @activity.defn(name="ensure_instance")
        def ensure_instance(req: ec2.InstanceRequest) -> ec2.InstanceResult:
            with cloud.lock:
                cloud._count("ensure_instance")
                cloud._refuse("ensure_instance", req.machine_name)
                # Found by owner and machine, as the real activity finds it by tags: a same-named
                # machine of a same-named cluster in another namespace is another instance.
                token = f"{req.owner}/{req.machine_name}/{req.incarnation}"
                for inst in cloud.instances.values():
                    if inst.client_token == token:
                        return ec2.InstanceResult(instance_id=inst.id, state=cloud.state(inst, cloud.now()))
                inst = FakeInstance(
                    id=f"i-{next(cloud._ids):08x}",
                    machine=req.machine_name,
                    role=req.role,
                    az=req.availability_zone,
                    launched_at=cloud.now(),
                    client_token=token,
                    version=req.kubernetes_version,
                    owner=req.owner,
                )
                cloud.instances[inst.id] = inst
                cloud.sample(f"launch {req.machine_name}")
                return ec2.InstanceResult(instance_id=inst.id, state="pending")

        @activity.defn(name="describe_instance")
        def describe_instance(req: ec2.DescribeInstanceRequest) -> ec2.DescribeInstanceResult:
            with cloud.lock:
                cloud._count("describe_instance")
                inst = cloud.instances.get(req.instance_id or "")
                if inst is None:
                    return ec2.DescribeInstanceResult(instance_id=req.instance_id, found=False, state="gone")
                now = cloud.now()
                if inst.role == "control-plane" and cloud.node_registered(inst, now):
                    cloud.etcd_members.add(inst.machine)
                state = cloud.state(inst, now)
                return ec2.DescribeInstanceResult(
                    instance_id=inst.id,
                    found=True,
                    state=state,
                    instance=ec2.InstanceInfo(
                        instance_id=inst.id, state=state, availability_zone=inst.az, private_ip="10.0.64.10"
                    ),
                )

        @activity.defn(name="lookup_machine_instance")
        def lookup_machine_instance(req: ec2.MachineInstanceLookup) -> ec2.MachineInstanceResult:
            with cloud.lock:
                cloud._count("lookup_machine_instance")
                inst = cloud.instance_of(req.machine_name)
                if inst is None:
                    return ec2.MachineInstanceResult()
                state = cloud.state(inst, cloud.now())
                return ec2.MachineInstanceResult(
                    instance=ec2.InstanceInfo(
                        instance_id=inst.id, state=state, machine_name=inst.machine, availability_zone=inst.az
                    )
                )

        @activity.defn(name="register_with_load_balancer")
        def register_with_load_balancer(
            req: lb_membership.LoadBalancerRegistration,
        ) -> lb_membership.LoadBalancerRegistrationResult:
            cloud._count("register_with_load_balancer")
            return lb_membership.LoadBalancerRegistrationResult(
                instance_id=req.instance_id, registered=True, changed=True
            )

        @activity.defn(name="deregister_from_load_balancer")
        def deregister_from_load_balancer(
            req: lb_membership.LoadBalancerRegistration,
        ) -> lb_membership.LoadBalancerRegistrationResult:
            cloud._count("deregister_from_load_balancer")
            return lb_membership.LoadBalancerRegistrationResult(
                instance_id=req.instance_id, registered=False, changed=True
            )

        @activity.defn(name="list_workload_nodes")
        def list_workload_nodes(req: workload.ListNodesRequest) -> workload.WorkloadNodes:
            with cloud.lock:
                cloud._count("list_workload_nodes")
                now = cloud.now()
                nodes = []
                for inst in cloud._alive(now):
                    if req.instance_ids and inst.id not in req.instance_ids:
                        continue
                    if not cloud.node_registered(inst, now):
                        continue
                    if inst.role == "control-plane":
                        cloud.etcd_members.add(inst.machine)
                    ready = cloud.node_ready(inst, now)
                    if ready and req.instance_ids:
                        cloud.sample(f"ready {inst.machine}")
                    nodes.append(
                        NodeInfo(
                            name=f"ip-{inst.id}",
                            provider_id=f"aws:///{inst.az}/{inst.id}",
                            instance_id=inst.id,
                            availability_zone=inst.az,
                            ready=ready,
                        )
                    )
                return workload.WorkloadNodes(reachable=True, nodes=tuple(nodes))

        @activity.defn(name="cordon_node")
        def cordon_node(req: workload.CordonRequest) -> workload.NodeChange:
            with cloud.lock:
                cloud._count("cordon_node")
                machine = _machine_of_node(cloud, req.node_name)
                if machine:
                    cloud.cordoned.add(machine)
                    cloud.sample(f"cordon {machine}")
                return workload.NodeChange(node_name=req.node_name, found=machine is not None)

        @activity.defn(name="drain_node")
        def drain_node(req: workload.DrainRequest) -> workload.DrainResult:
            cloud._count("drain_node")
            if cloud.drain_blocked_until is not None and cloud.now() < cloud.drain_blocked_until:
                return workload.DrainResult(
                    node_name=req.node_name,
                    node_found=True,
                    drained=False,
                    timed_out=True,
                    passes=1,
                    blocked=(workload.BlockedPod(pod="default/guarded", reason="429: disruption budget"),),
                )
            return workload.DrainResult(
                node_name=req.node_name, node_found=True, drained=True, timed_out=False, passes=1
            )

        @activity.defn(name="delete_node")
        def delete_node(req: workload.NodeRequest) -> workload.NodeChange:
            cloud._count("delete_node")
            return workload.NodeChange(node_name=req.node_name, found=True)

        @activity.defn(name="send_etcd_member_removal")
        def send_etcd_member_removal(req: etcd.EtcdMemberRemovalRequest) -> etcd.SsmCommandRef:
            with cloud.lock:
                cloud._count("send_etcd_member_removal")
                assert req.via_instance_id != req.departing_instance_id
                inst = cloud.instances.get(req.departing_instance_id)
                if inst:
                    cloud.etcd_members.discard(inst.machine)
                    cloud.sample(f"etcd remove {inst.machine}")
                return etcd.SsmCommandRef(
                    command_id=f"cmd-{req.departing_instance_id}", instance_id=req.via_instance_id
                )

        @activity.defn(name="send_etcd_member_list")
        def send_etcd_member_list(req: etcd.EtcdMemberListRequest) -> etcd.SsmCommandRef:
            cloud._count("send_etcd_member_list")
            return etcd.SsmCommandRef(
                command_id=f"list-{req.via_instance_id}", instance_id=req.via_instance_id
            )

        @activity.defn(name="check_etcd_member_list")
        def check_etcd_member_list(req: etcd.EtcdMemberListCheck) -> etcd.EtcdMembers:
            """etcd's own member list: members are named after their node (kubeadm), and a member
            outlives its instance until it is removed."""
            with cloud.lock:
                cloud._count("check_etcd_member_list")
                names = []
                for machine in sorted(cloud.etcd_members):
                    ids = [i.id for i in cloud.instances.values() if i.machine == machine]
                    names.append(f"ip-{ids[-1]}" if ids else machine)
                names += sorted(cloud.extra_etcd_members)
            members = tuple(
                etcd.EtcdMember(id=f"{n:x}", name=name, started=True) for n, name in enumerate(names)
            )
            return etcd.EtcdMembers(state="listed", members=members)

        @activity.defn(name="check_etcd_member_removal")
        def check_etcd_member_removal(req: etcd.EtcdMemberRemovalCheck) -> etcd.EtcdMemberRemovalStatus:
            cloud._count("check_etcd_member_removal")
            return etcd.EtcdMemberRemovalStatus(state="removed", confirmed=True)

        @activity.defn(name="terminate_instance")
        def terminate_instance(req: ec2.TerminateInstanceRequest) -> ec2.TerminateInstanceResult:
            with cloud.lock:
                cloud._count("terminate_instance")
                inst = cloud.instances.get(req.instance_id)
                if inst and req.owner and inst.owner and inst.owner != req.owner:
                    # The real activity refuses what the cluster does not own (NotOwnedError).
                    raise ApplicationError(
                        f"instance {inst.id} is owned by {inst.owner}, not {req.owner}", non_retryable=True
                    )
                if inst and inst.terminated_at is None:
                    inst.terminated_at = cloud.now()
                    cloud.sample(f"terminate {inst.machine}")
                return ec2.TerminateInstanceResult(instance_id=req.instance_id, state="shutting-down")

        @activity.defn(name="delete_bootstrap_data")
        def delete_bootstrap_data(req: bootstrap_data.DeleteBootstrapDataRequest) -> sm.DeleteSecretsResult:
            cloud._count("delete_bootstrap_data")
            return sm.DeleteSecretsResult(deleted=1)

        @activity.defn(name="upgrade_cluster_components")
        def upgrade_cluster_components(req: components.ComponentsRequest) -> components.ComponentsResult:
            cloud._count("upgrade_cluster_components")
            cloud.components_versions.append(req.version)
            cloud.sample(f"components {req.version}")
            return components.ComponentsResult(
                kubeadm_config="updated",
                coredns="updated",
                kube_proxy="updated",
                kube_proxy_image=f"registry.k8s.io/kube-proxy:{req.version}",
            )

        return [
            upgrade_cluster_components,
            ensure_bootstrap_token,
            refresh_bootstrap_token,
            create_bootstrap_token_secret,
            prepare_bootstrap_data,
            lookup_image,
            ensure_instance,
            describe_instance,
            lookup_machine_instance,
            register_with_load_balancer,
            deregister_from_load_balancer,
            list_workload_nodes,
            cordon_node,
            drain_node,
            delete_node,
            send_etcd_member_removal,
            check_etcd_member_removal,
            send_etcd_member_list,
            check_etcd_member_list,
            terminate_instance,
            delete_bootstrap_data,
            # The real one: owners describe their machine workflows on the test server.
            describe_machine_workflows,
        ]


def _machine_of_node(cloud: FakeCloud, node_name: str) -> str | None:
    inst = cloud.instances.get(node_name.removeprefix("ip-"))
    return inst.machine if inst else None
