"""The workload simulator on the local stack: real activities, real client, real TLS.

`capt dev up` (as `python -m capt.dev.stack up`, on free ports, in a temporary state dir) starts the
Temporal dev server, moto with CAPA-style images, the simulator and the worker. The test builds
what a machine needs with boto3 against moto (VPC, subnet, security group, a classic ELB whose
DNS name is the cluster endpoint) and the cluster PKI, then runs a `MachineWorkflow`:

1. an `init` control-plane machine: bootstrap data to Secrets Manager, AMI lookup, RunInstances
   with the boothook user data, load balancer registration; the simulator boots the instance
   (boothook → cloud-init jinja → kubeadm init) and the workflow's real client sees the Node
   Ready over mutual TLS, through the `CAPT_RESOLVE` mapping `capt dev up` configures;
2. a worker whose bootstrap data pins a wrong CA hash: the simulator refuses the join with the
   reason logged, and past its (short) nodeStartupTimeout the workflow keeps waiting, saying why.

The MachineWorkflow runs on the stack's own worker (task queue `capt`) when capt/workflows/registry.py
registers it; until then on a worker in this test process with the same environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from capt.activities.aws import secrets as sm
from capt.activities.kubeadm import pki as kpki
from capt.activities.workload import activities as wa
from capt.activities.workload import client as wc
from capt.activities.workload import etcd as we
from capt.activities.workload import transport
from capt.client import codec
from capt.contracts.machines import MachineStatus
from capt.dev.stack.config import DevConfig
from capt.spec.models import KubeadmConfigSpec, MachineTemplate
from capt.workflows.machine.models import ClusterContext, LoadBalancerRef, MachineInput, machine_workflow_id
from capt.workflows.machine.workflow import MachineWorkflow

pytestmark = pytest.mark.e2e

REGION = "ap-northeast-2"
AZ = "ap-northeast-2a"
VERSION = "v1.31.2"
NODE_REGISTRATION = {
    "name": "{{ ds.meta_data.local_hostname }}",
    "kubeletExtraArgs": {"cloud-provider": "external"},
}


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def dev(state_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPT_")}
    return subprocess.run(
        [sys.executable, "-m", "capt.dev.stack", *args, "--state-dir", str(state_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def sim_state(cfg: DevConfig) -> dict:
    with urllib.request.urlopen(f"{cfg.sim_url}/sim/state", timeout=5) as resp:
        return json.loads(resp.read())


@dataclass
class Stack:
    cfg: DevConfig
    state_dir: Path
    client: Client
    task_queue: str
    cluster: ClusterContext


@contextlib.contextmanager
def stack_environ(cfg: DevConfig) -> Iterator[None]:
    """This process as a client of the stack: the same variables the stack's worker gets."""
    saved = dict(os.environ)
    os.environ.update(cfg.client_env())
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_cluster(name: str) -> ClusterContext:
    """Network, load balancer and PKI for one cluster, made directly against moto."""
    ec2 = boto3.client("ec2", region_name=REGION)
    elb = boto3.client("elb", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=AZ)["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName=f"{name}-controlplane", Description="cp", VpcId=vpc)["GroupId"]
    lb = f"{name}-apiserver"
    dns = elb.create_load_balancer(
        LoadBalancerName=lb,
        Listeners=[
            {"Protocol": "TCP", "LoadBalancerPort": 6443, "InstanceProtocol": "TCP", "InstancePort": 6443}
        ],
        Subnets=[subnet],
        Scheme="internet-facing",
    )["DNSName"]
    refs = sm.ensure_pki(
        sm.client(REGION),
        sm.ClusterPKIRequest(cluster_name=name, namespace="default", region=REGION, endpoint_host=dns),
    )
    return ClusterContext(
        name=name,
        namespace="default",
        region=REGION,
        endpoint_host=dns,
        pki=refs,
        pod_cidrs=("192.168.0.0/16",),
        service_cidrs=("10.96.0.0/12",),
        private_subnets=((AZ, subnet),),
        security_groups=(("controlplane", sg), ("node", sg)),
        load_balancer=LoadBalancerRef(type="classic", name=lb, dns_name=dns),
    )


def machine_input(cluster: ClusterContext, name: str, kind: str, timeout: int) -> MachineInput:
    role = "worker" if kind == "join-worker" else "control-plane"
    profile = "nodes" if role == "worker" else "control-plane"
    return MachineInput(
        cluster=cluster,
        name=name,
        role=role,
        bootstrap_kind=kind,
        failure_domain=AZ,
        version=VERSION,
        revision="r1",
        template=MachineTemplate(
            name=f"{name}-template",
            instance_type="t3.large",
            iam_instance_profile=f"{profile}.cluster-api-provider-aws.sigs.k8s.io",
        ),
        kubeadm=KubeadmConfigSpec(
            init_configuration={"nodeRegistration": NODE_REGISTRATION},
            join_configuration={"nodeRegistration": NODE_REGISTRATION},
        ),
        node_startup_timeout_seconds=timeout,
        deployment="md-0" if role == "worker" else None,
    )


def stack_worker_runs_machines() -> bool:
    from capt.workflows.registry import WORKFLOWS

    return any(getattr(w, "__name__", "") == "MachineWorkflow" for w in WORKFLOWS)


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    state_dir = tmp_path_factory.mktemp("simstack")
    grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
    up = dev(
        state_dir,
        "up",
        *("--temporal-port", str(grpc), "--ui-port", str(ui), "--moto-port", str(moto)),
        *("--codec-port", str(codec_port)),
        *("--sim-api-port", str(sim_api), "--sim-port", str(sim)),
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "simulator" in up.stdout
        cfg = DevConfig(
            state_dir=state_dir,
            temporal_port=grpc,
            ui_port=ui,
            moto_port=moto,
            codec_port=codec_port,
            sim_api_port=sim_api,
            sim_port=sim,
        )
        with stack_environ(cfg):
            from capt.activities.aws import session

            session.reset_clients()
            transport.CONTEXTS.clear()
            client = await Client.connect(
                cfg.temporal_address,
                namespace=cfg.namespace,
                data_converter=codec.converter_from_env(cfg.client_env()),
            )
            cluster = build_cluster(f"e2e{uuid.uuid4().hex[:6]}")
            async with contextlib.AsyncExitStack() as exits:
                task_queue = cfg.task_queue
                if not stack_worker_runs_machines():
                    from capt.activities.registry import ACTIVITIES
                    from capt.worker import build_worker

                    task_queue = f"sim-e2e-{uuid.uuid4().hex[:8]}"
                    worker = build_worker(
                        client, task_queue, workflows=[MachineWorkflow], activities=ACTIVITIES
                    )
                    await exits.enter_async_context(worker)
                yield Stack(cfg, state_dir, client, task_queue, cluster)
            session.reset_clients()
    finally:
        dev(state_dir, "down", "--timeout", "5")


@pytest.fixture(autouse=True)
def _stack_env(stack: Stack, _aws_test_credentials: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and the in-process worker's activities) talks to the stack: the conftest's
    autouse fixture removes AWS endpoints, this one, running after it, sets the stack's."""
    for key, value in stack.cfg.client_env().items():
        monkeypatch.setenv(key, value)


async def wait_for(handle: WorkflowHandle, done, timeout: float) -> MachineStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await handle.query(MachineWorkflow.status)
        if done(status) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(1.0)


async def start_machine(stack: Stack, inp: MachineInput) -> WorkflowHandle:
    return await stack.client.start_workflow(
        MachineWorkflow.run,
        inp,
        id=machine_workflow_id(inp.cluster, inp.name),
        task_queue=stack.task_queue,
    )


async def test_control_plane_instance_boots_and_its_node_is_ready_over_mtls(stack: Stack) -> None:
    cluster = stack.cluster
    t0 = time.monotonic()
    handle = await start_machine(stack, machine_input(cluster, f"{cluster.name}-cp-0", "init", timeout=60))
    status = await wait_for(handle, lambda s: (s.phase == "Running" and s.node_ready) or s.terminal, 50)
    assert status.phase == "Running" and status.node_ready, status
    elapsed = time.monotonic() - t0

    ec2 = boto3.client("ec2", region_name=REGION)
    instance = ec2.describe_instances(InstanceIds=[status.instance_id])["Reservations"][0]["Instances"][0]
    # The node is named as cloud-init rendered `{{ ds.meta_data.local_hostname }}` on that instance.
    assert status.node_name == instance["PrivateDnsName"]

    # The worker's real client, as the workflow used it: TLS to the load balancer's name (mapped
    # to the simulator by CAPT_RESOLVE), server verified against the cluster CA, admin client cert.
    access = wa.WorkloadAccess(region=REGION, endpoint_host=cluster.endpoint_host, pki=cluster.pki)
    with wa.connect(access) as client:
        assert client.connect_to == ("127.0.0.1", stack.cfg.sim_api_port)
        ready, code, _ = client.readyz()
        nodes = client.list_nodes("node-role.kubernetes.io/control-plane")
    assert (ready, code) == (True, 200)
    assert [n["metadata"]["name"] for n in nodes] == [status.node_name]
    node = nodes[0]
    assert node["spec"]["providerID"] == f"aws:///{AZ}/{status.instance_id}"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == VERSION
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]

    # Client-certificate authentication: an admin certificate from another CA is refused.
    ca_cert, _ = sm.read_admin_credentials(sm.client(REGION), cluster.pki)
    stranger = kpki.issue_admin_cert(kpki.new_ca("kubernetes"))
    tls = transport.tls_context(ca_cert, stranger.cert, stranger.key)
    with (
        pytest.raises(transport.WorkloadAuthError),
        wc.WorkloadClient.for_endpoint(cluster.endpoint_host, 6443, tls) as intruder,
    ):
        intruder.list_nodes()

    # The boothook deleted what it fetched; the user data never held key material.
    leftovers = list(sm.list_by_name_prefix(sm.client(REGION), f"capt/default/{cluster.name}/bootstrap/"))
    assert leftovers == []
    user_data = ec2.describe_instance_attribute(InstanceId=status.instance_id, Attribute="userData")
    import base64

    text = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert "#cloud-boothook" in text and "PRIVATE KEY" not in text

    # etcd membership through SSM Run Command (AWS_ENDPOINT_URL_SSM → the simulator).
    command = we.send_script(REGION, status.instance_id, we.list_script(), "capt e2e: list", 60)
    for _ in range(20):
        st, _details, stdout, _stderr = we.invocation(REGION, command, status.instance_id)
        state, members = we.list_state(st, stdout)
        if state != "pending":
            break
        await asyncio.sleep(0.5)
    assert state == "listed"
    assert [m.name for m in members] == [status.node_name]
    print(f"control-plane machine Running with a Ready node {elapsed:.1f}s after the workflow started")


async def test_wrong_ca_hash_leaves_the_worker_unjoined_with_the_reason_logged(stack: Stack) -> None:
    cluster = stack.cluster
    # The init machine of the first test must be up: the join needs an API to talk to.
    assert any(c["tag_cluster"] == cluster.name and c["api_up"] for c in sim_state(stack.cfg)["clusters"])
    wrong = "sha256:" + "0" * 64
    corrupted = cluster.model_copy(update={"pki": cluster.pki.model_copy(update={"ca_cert_hash": wrong})})
    name = f"{cluster.name}-md-0-bad"
    handle = await start_machine(stack, machine_input(corrupted, name, "join-worker", timeout=8))

    # The simulator fetched the bootstrap data, ran kubeadm join and refused it, saying why.
    machine = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        machine = next((m for m in sim_state(stack.cfg)["machines"] if m["machine"] == name), None)
        if machine is not None and machine["phase"] == "failed":
            break
        await asyncio.sleep(0.5)
    assert machine is not None and machine["phase"] == "failed", machine
    assert "none of the public keys" in machine["reason"] and wrong in machine["reason"]
    log = (stack.state_dir / "simulator.log").read_text()
    refusal = [line for line in log.splitlines() if name in line and "kubeadm join refused" in line]
    assert refusal and "cluster CA found in cluster-info ConfigMap is invalid" in refusal[0], log[-2000:]
    assert "will not join" in refusal[0]

    # The workflow waits for a Node that never comes; past nodeStartupTimeout it keeps waiting
    # and says so (as in CAPI, only a MachineHealthCheck would remediate it).
    status = await wait_for(handle, lambda s: "nodeStartupTimeout remediates" in s.message, 40)
    assert status.phase != "Failed" and "never registered" in status.message, status
    access = wa.WorkloadAccess(region=REGION, endpoint_host=cluster.endpoint_host, pki=cluster.pki)
    with wa.connect(access) as client:
        provider_ids = [n["spec"]["providerID"] for n in client.list_nodes()]
    assert not [p for p in provider_ids if p.endswith(status.instance_id)]
