"""The whole product on the local stack, driven through the CLI as a user would.

`capt dev up` (Temporal dev server, moto, the workload simulator, the worker) → `capt apply
-f examples/capi-quickstart.yaml --wait` → Ready with 3 control-plane and 3 worker machines
over 3 AZs → scale the workers 3 → 5 → 2 → upgrade the version (every machine replaced; etcd membership
sampled throughout; kubeadm-config, CoreDNS and kube-proxy follow)
→ delete, and nothing tagged for the cluster is left in the emulated AWS. Plus: the
Temporal workflow list can be filtered by capt's search attributes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import boto3
import pytest

from tests.e2e.test_devstack import dev, free_ports
from tests.support.paths import QUICKSTART

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
CLUSTER = ["capi-quickstart", "-n", "capi-quickstart"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("stack")
    grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
    up = dev(
        state_dir,
        "up",
        *("--temporal-port", str(grpc), "--ui-port", str(ui), "--moto-port", str(moto)),
        *("--codec-port", str(codec_port)),
        *("--sim-api-port", str(sim_api), "--sim-port", str(sim)),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    os.environ["CAPT_E2E_SIM_URL"] = f"http://127.0.0.1:{sim}"
    exports = dev(state_dir, "env").stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
    for line in exports.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'\"")
    try:
        yield env, state_dir
    finally:
        dev(state_dir, "down", "--timeout", "5")


def capt(env, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / "capt"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return done


def describe(env) -> dict:
    done = capt(env, "describe", "cluster", *CLUSTER, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PEM = re.compile(rb"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----")
TOKEN = re.compile(rb"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


def _payload_bytes(node) -> list[bytes]:
    """Every payload's decoded data in a history event (as a dict from MessageToDict)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "data" and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    found.append(base64.b64decode(value))
            else:
                found += _payload_bytes(value)
    elif isinstance(node, list):
        for item in node:
            found += _payload_bytes(item)
    return found


async def scan_histories(address: str) -> tuple[int, list[str]]:
    from google.protobuf.json_format import MessageToDict
    from temporalio.client import Client

    client = await Client.connect(address)
    scanned, leaks = 0, []
    async for wf in client.list_workflows():
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        scanned += 1
        for event in history.events:
            for data in _payload_bytes(MessageToDict(event)):
                if PEM.search(data) or TOKEN.search(data):
                    leaks.append(f"{wf.id} event {event.event_id}")
    return scanned, leaks


def workload_state() -> dict:
    """The simulator's view of the quickstart's workload cluster (its /sim/state)."""
    with urllib.request.urlopen(f"{os.environ['CAPT_E2E_SIM_URL']}/sim/state", timeout=5) as resp:
        clusters = json.loads(resp.read())["clusters"]
    return next(c for c in clusters if "capi-quickstart" in f"{c['name']} {c['tag_cluster']}")


def membership(cluster: dict) -> tuple[set[str], set[str]]:
    """(etcd member names, control-plane node names)."""
    return {m["name"] for m in cluster["etcd_members"]}, {
        n["name"] for n in cluster["nodes"] if n["control_plane"]
    }


def test_quickstart_lifecycle(stack):
    env, _ = stack
    t0 = time.monotonic()
    applied = capt(env, "apply", "-f", str(QUICKSTART), "--wait", "--timeout", "15m")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    print(f"apply --wait: {time.monotonic() - t0:.0f}s")
    state = describe(env)
    assert state["phase"] == "Ready"
    assert state["controlPlane"]["ready"] == 3 and state["controlPlane"]["initialized"]
    assert state["deployments"][0]["ready"] == 3
    machines = state["machines"]
    assert len(machines) == 6 and all(m["nodeReady"] for m in machines)
    for role in ("control-plane", "worker"):
        assert Counter(m["availabilityZone"] for m in machines if m["role"] == role) == Counter(
            ["ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"]
        )
    tree = capt(env, "describe", "cluster", *CLUSTER)
    assert "KubeadmControlPlane/capi-quickstart-control-plane" in tree.stdout
    # No secret in any history: every workflow of the create, every payload decoded.
    scanned, leaks = asyncio.run(scan_histories(env["TEMPORAL_ADDRESS"]))
    assert scanned >= 9 and leaks == [], leaks

    # The Web UI's list is filterable by capt's search attributes.
    query = 'CaptCluster = "capi-quickstart" AND CaptPhase = "Ready"'
    listed = subprocess.run(
        [str(BIN / "temporal"), "workflow", "list", "--query", query, "-o", "json"],
        env={**env, "TEMPORAL_ADDRESS": env["TEMPORAL_ADDRESS"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "cluster/capi-quickstart/capi-quickstart" in listed.stdout

    # Self-healing: a worker's instance terminated out of band is detected by the health check
    # (one DescribeInstances per interval) and the deployment replaces the machine.
    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="ap-northeast-2")
    victim = next(m for m in machines if m["role"] == "worker")
    t0 = time.monotonic()
    ec2.terminate_instances(InstanceIds=[victim["instanceId"]])
    detected = replaced = None
    while time.monotonic() - t0 < 240 and replaced is None:
        workers = [m for m in describe(env)["machines"] if m["role"] == "worker"]
        mine = [m for m in workers if m["name"] == victim["name"]]
        if detected is None and (not mine or mine[0]["phase"] != "Running"):
            detected = time.monotonic() - t0
        if not mine and len(workers) == 3 and all(m["nodeReady"] for m in workers):
            replaced = time.monotonic() - t0
        time.sleep(1)
    assert detected is not None and replaced is not None, describe(env)
    print(f"terminated worker: detected after {detected:.0f}s, replacement Ready after {replaced:.0f}s")

    md = state["deployments"][0]["name"]
    for replicas in (5, 2):
        done = capt(
            env,
            "scale",
            "machinedeployment",
            *CLUSTER[:1],
            md,
            "--replicas",
            str(replicas),
            "-n",
            "capi-quickstart",
            "--wait",
            "--timeout",
            "10m",
        )
        assert done.returncode == 0, done.stderr
        assert describe(env)["deployments"][0]["ready"] == replicas

    # A rejected request: one clear line, non-zero exit, nothing changes.
    bad = capt(env, "scale", "controlplane", *CLUSTER[:1], "--replicas", "4", "-n", "capi-quickstart")
    assert bad.returncode != 0 and "even" in bad.stderr and "Traceback" not in bad.stderr

    # Upgrade the 3+2 cluster one minor version (issue 18): sample the workload's etcd membership
    # against its control-plane nodes all along; afterwards every node, kubeadm-config, CoreDNS
    # and kube-proxy report the new version.
    before = {m["instanceId"] for m in describe(env)["machines"]}
    upgrading = subprocess.Popen(
        [str(BIN / "capt"), "upgrade", *CLUSTER[:1], "--version", "v1.21.2", "-n", "capi-quickstart"]
        + ["--wait", "--timeout", "15m"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    samples = []
    while upgrading.poll() is None:
        samples.append(membership(workload_state()))
        time.sleep(0.5)
    out, err = upgrading.communicate()
    assert upgrading.returncode == 0, out + err
    assert len(samples) > 20
    for members, cp_nodes in samples:
        # A member is always a control-plane node; at most one control-plane node is between
        # its member's removal and its own deletion (CAPI's order); quorum of 3 never lost.
        assert members <= cp_nodes and len(cp_nodes - members) <= 1 and len(members) >= 2, (members, cp_nodes)
    after = describe(env)
    assert all(m["version"] == "v1.21.2" for m in after["machines"])
    assert not before & {m["instanceId"] for m in after["machines"]}  # every machine replaced
    final = workload_state()
    members, cp_nodes = membership(final)
    assert members == cp_nodes and len(members) == 3
    assert {n["kubelet_version"] for n in final["nodes"]} == {"v1.21.2"} and len(final["nodes"]) == 5
    assert final["kube_system"] == {
        "kubeadm_config_version": "v1.21.2",
        "coredns_image": "registry.k8s.io/coredns/coredns:v1.8.0",
        "kube_proxy_image": "registry.k8s.io/kube-proxy:v1.21.2",
    }

    # The cluster's id in AWS: <namespace>.<name> (README, cluster ids).
    assert after["clusterId"] == "capi-quickstart.capi-quickstart"
    done = capt(env, "delete", "cluster", *CLUSTER, "--wait", "--timeout", "10m")
    assert done.returncode == 0, done.stderr
    tagging = boto3.client(
        "resourcegroupstaggingapi", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="ap-northeast-2"
    )
    owned = tagging.get_resources(
        TagFilters=[
            {
                "Key": f"sigs.k8s.io/cluster-api-provider-aws/cluster/{after['clusterId']}",
                "Values": ["owned"],
            }
        ]
    )["ResourceTagMappingList"]
    ec2 = boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="ap-northeast-2")
    live = [
        i["InstanceId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    # As on AWS, deleted NAT gateways and terminated instances stay listed for a while: they
    # must be in those final states; anything else still tagged is a leak.
    arns = [r["ResourceARN"] for r in owned]
    nat_ids = [a.rsplit("/", 1)[1] for a in arns if ":natgateway/" in a]
    if nat_ids:
        assert {n["State"] for n in ec2.describe_nat_gateways(NatGatewayIds=nat_ids)["NatGateways"]} == {
            "deleted"
        }
    instance_ids = [a.rsplit("/", 1)[1] for a in arns if ":instance/" in a]
    if instance_ids:
        described = ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
        assert {i["State"]["Name"] for r in described for i in r["Instances"]} == {"terminated"}
    owned = [a for a in arns if ":natgateway/" not in a and ":instance/" not in a]
    assert owned == [] and live == []


def test_temporal_down_is_one_line(tmp_path):
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    done = capt(env, "get", "clusters", timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
