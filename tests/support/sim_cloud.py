"""A simulated cluster whose instances live in (in-process) moto, tagged as capt tags them, with
the simulator's cloud controllers (CCM, EBS CSI) reconciling against that same moto.

Use inside `mock_aws()` (the `aws` fixture). The network is capt's shape: a VPC, public subnets
(routed to an internet gateway, `kubernetes.io/role/elb=1`) and private ones in two zones, all
`kubernetes.io/cluster/<id>=shared`; the `<id>-controlplane`, `<id>-node` and `<id>-lb` groups (only
`-lb` cluster-tagged, as capt and CAPA do); one control-plane instance and workers with capt's
instance tags (`activities.aws.tags.build`: owned by the id, `kubernetes.io/cluster/<id>=owned`,
role, `capt/machine`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

from capt.activities.aws import tags as capt_tags
from capt.activities.kubeadm import pki
from capt.activities.workload import client as wc
from capt.activities.workload import transport
from capt.dev.simulator import kubeapi
from capt.dev.simulator.aws import Aws
from capt.dev.simulator.cloud_controllers.core import CloudControllers
from capt.dev.simulator.cloud_controllers.names import CloudOptions
from capt.dev.simulator.server import KubeServer, serve_in_thread
from capt.dev.simulator.world.state import InstanceView, _issue_serving_cert
from capt.dev.testkit import bootstrap_reference as ref
from tests.support.sim_helpers import REGION, Sim

MASTERS = ("system:masters",)
APPLY = "application/apply-patch+yaml"
ZONES = (f"{REGION}a", f"{REGION}c")


@dataclass
class Network:
    vpc_id: str
    public: dict[str, str] = field(default_factory=dict)  # zone -> subnet id
    private: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # role (controlplane, node, lb) -> group id


def build_network(ec2: Any, cluster_id: str) -> Network:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    net = Network(vpc_id=vpc)
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    private_rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for i, zone in enumerate(ZONES):
        for public, cidr in ((True, f"10.0.{i}.0/24"), (False, f"10.0.{100 + i}.0/24")):
            role = capt_tags.ROLE_PUBLIC if public else capt_tags.ROLE_PRIVATE
            name = f"{cluster_id}-subnet-{role}-{zone}"
            elb_tag = capt_tags.ELB_SUBNET_TAG if public else capt_tags.INTERNAL_ELB_SUBNET_TAG
            subnet_tags = capt_tags.build(
                cluster_id, name, role, cloud_provider=capt_tags.SHARED, extra={elb_tag: "1"}
            )
            subnet = ec2.create_subnet(
                VpcId=vpc,
                CidrBlock=cidr,
                AvailabilityZone=zone,
                TagSpecifications=capt_tags.specification("subnet", subnet_tags),
            )["Subnet"]["SubnetId"]
            ec2.associate_route_table(RouteTableId=public_rt if public else private_rt, SubnetId=subnet)
            (net.public if public else net.private)[zone] = subnet
    for role in ("controlplane", "node", "lb"):
        name = f"{cluster_id}-{role}"
        group_tags = capt_tags.build(
            cluster_id, name, role, cloud_provider=capt_tags.OWNED if role == "lb" else None
        )
        net.groups[role] = ec2.create_security_group(
            GroupName=name,
            Description=f"{cluster_id} {role}",
            VpcId=vpc,
            TagSpecifications=capt_tags.specification("security-group", group_tags),
        )["GroupId"]
    return net


class CloudSim:
    """A running simulated cluster (1 control plane, `workers` workers over the two zones) plus
    its cloud controllers, all against in-process moto."""

    def __init__(
        self, cluster_id: str = "capi-quickstart", workers: int = 2, options: CloudOptions | None = None
    ) -> None:
        self.cluster_id = cluster_id
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.elb = boto3.client("elb", region_name=REGION)
        self.net = build_network(self.ec2, cluster_id)
        self.image = self.ec2.describe_images()["Images"][0]["ImageId"]
        self.sim = Sim(boot_delay=1.0, ready_delay=1.0, pod_grace=1.0)
        self.aws = Aws([REGION])
        self.controllers = CloudControllers(self.sim.world, self.aws, options)
        self.cp = self.launch("cp-0", "control-plane", ZONES[0], "init")
        self.run(3)
        token = self.sim.new_token()
        self.sim.token_secret(token)
        self.workers = [
            self.launch(f"md-0-{i}", "node", ZONES[i % 2], "join-worker", token=token) for i in range(workers)
        ]
        self.run(4)
        assert {n.ready_status for n in self.cluster.nodes.values()} == {"True"}

    # -- instances ---------------------------------------------------------------------------

    def run_instance(self, machine: str, role: str, zone: str, extra_tags: dict | None = None) -> str:
        group = self.net.groups["controlplane" if role == "control-plane" else "node"]
        instance_tags = capt_tags.build(
            self.cluster_id, machine, role, extra={capt_tags.MACHINE_TAG: machine, **(extra_tags or {})}
        )
        return self.ec2.run_instances(
            ImageId=self.image,
            InstanceType="t3.large",
            MinCount=1,
            MaxCount=1,
            SubnetId=self.net.private[zone],
            SecurityGroupIds=[group],
            TagSpecifications=capt_tags.specification("instance", instance_tags),
        )["Instances"][0]["InstanceId"]

    def view(self, instance_id: str) -> InstanceView:
        return next(v for v in self.aws.describe_instances() if v.instance_id == instance_id)

    def launch(self, machine: str, role: str, zone: str, kind: str, **kw: Any) -> InstanceView:
        v = self.view(self.run_instance(machine, role, zone))
        self.sim.bootstrap(v, kind, **kw)
        self.sim.views[v.instance_id] = v
        return v

    # -- time --------------------------------------------------------------------------------

    def step(self, seconds: float = 0.5) -> None:
        """Time passes, a simulator round, then a cloud-controller round."""
        self.sim.step(seconds)
        self.controllers.reconcile()

    def run(self, seconds: float, step: float = 0.5) -> None:
        for _ in range(int(seconds / step)):
            self.step(step)

    @property
    def cluster(self):
        return self.sim.world.clusters[ref.ENDPOINT.lower()]

    # -- the cluster's API -------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, ctype: str = "application/json"):
        data = json.dumps(body).encode() if body is not None else b""
        return kubeapi.handle(self.sim.world, self.cluster, method, path, data, ctype, MASTERS)

    def apply(self, obj: dict) -> dict:
        api = obj["apiVersion"]
        plural = {
            "Service": "services",
            "PersistentVolumeClaim": "persistentvolumeclaims",
            "StorageClass": "storageclasses",
            "Deployment": "deployments",
            "Pod": "pods",
            "Namespace": "namespaces",
        }[obj["kind"]]
        base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        ns = obj["metadata"].get("namespace")
        path = (
            f"{base}/namespaces/{ns}/{plural}/{obj['metadata']['name']}"
            if ns
            else f"{base}/{plural}/{obj['metadata']['name']}"
        )
        reply = self.call("PATCH", path + "?fieldManager=test", obj, APPLY)
        assert reply.status in (200, 201), reply.body
        return reply.body

    def get(self, path: str) -> dict | None:
        reply = self.call("GET", path)
        return reply.body if reply.status == 200 else None

    # -- over mutual TLS, as the worker reaches it ---------------------------------------------

    @contextlib.contextmanager
    def served(self) -> Iterator[int]:
        """The cluster's API on a local port (TLS by SNI, client certificates from its CA)."""
        cluster = self.cluster
        cluster.serving = _issue_serving_cert(cluster.ca_cert, cluster.ca_key, cluster.key)
        cluster.tls = None
        server = KubeServer(("127.0.0.1", 0), self.sim.world)
        serve_in_thread(server, "kube-cloud-test")
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            server.server_close()

    @staticmethod
    def client(port: int) -> wc.WorkloadClient:
        """capt's workload client with an admin certificate from the reference cluster's CA."""
        ca = ref.cluster_pki().ca
        admin = pki.issue_admin_cert(ca)
        return wc.WorkloadClient.for_endpoint(
            ref.ENDPOINT,
            6443,
            transport.tls_context(ca.cert, admin.cert, admin.key),
            resolve=f"*:*=127.0.0.1:{port}",
            timeout=5,
        )


# --------------------------------------------------------------------------------------------
# objects


def lb_service(name: str, ns: str = "default", ports: tuple[int, ...] = (80,), **annotations: str) -> dict:
    meta: dict = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [{"name": f"p{p}", "port": p, "targetPort": 8080, "protocol": "TCP"} for p in ports],
        },
    }


def storage_class(
    name: str,
    provisioner: str = "ebs.csi.aws.com",
    *,
    default: bool = False,
    wait: bool = False,
    **params: str,
) -> dict:
    meta: dict = {"name": name}
    if default:
        meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": meta,
        "provisioner": provisioner,
        "parameters": dict(params),
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer" if wait else "Immediate",
    }


def pvc(name: str, ns: str = "default", size: str = "4Gi", storage_class_name: str | None = None) -> dict:
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class_name is not None:
        spec["storageClassName"] = storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def pod_with_claim(name: str, claim: str, ns: str = "default") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "containers": [
                {"name": "app", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }


def ebs_csi_controller(*args: str, extra_create_metadata: bool = True) -> dict:
    """The EBS CSI controller Deployment as CAPA's template has it, with extra driver args."""
    provisioner_args = ["--csi-address=$(ADDRESS)", "--v=2"]
    if extra_create_metadata:
        provisioner_args.append("--extra-create-metadata")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ebs-csi-controller", "namespace": "kube-system"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "ebs-plugin",
                            "image": "registry.k8s.io/provider-aws/aws-ebs-csi-driver:v1.25.0",
                            "args": ["--endpoint=$(CSI_ENDPOINT)", "--logtostderr", "--v=2", *args],
                        },
                        {
                            "name": "csi-provisioner",
                            "image": "registry.k8s.io/sig-storage/csi-provisioner:v3.6.2",
                            "args": provisioner_args,
                        },
                    ]
                }
            }
        },
    }
