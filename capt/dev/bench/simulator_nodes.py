"""CPU and memory of the workload simulator with N simulated nodes.

    .venv/bin/python -m capt.dev.bench.simulator_nodes [--clusters 4] [--workers 24] [--duration 60]

Starts moto (with the CAPA images, as `capt dev up` does) and the simulator as processes on free
ports, builds `--clusters` clusters (VPC, subnet, classic ELB, cluster PKI) and, per cluster, one
`kubeadm init` control-plane machine and `--workers` worker machines with capt's real bootstrap
data (Secrets Manager chunks + boothook user data, bootstrap tokens published through the
simulated API with the worker's client), launched with RunInstances. Default: 4 × (1 + 24) = 100
nodes. Once every node is Ready it samples the simulator process (/proc/<pid>/stat utime+stime,
/proc/<pid>/status VmRSS) for `--duration` seconds twice: idle (only its own DescribeInstances
poll) and under a worker-like load (every node polled by instance id through the API every 10 s,
as each MachineWorkflow does while it waits, i.e. N/10 requests per second over mTLS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

REGION = "ap-northeast-2"
VERSION = "v1.31.2"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(pids: dict[str, int], duration: float) -> dict[str, dict[str, float]]:
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    peak = {name: rss_mib(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    while time.monotonic() - t0 < duration:
        time.sleep(1)
        for name, pid in pids.items():
            peak[name] = max(peak[name], rss_mib(pid))
    wall = time.monotonic() - t0
    return {
        name: {
            "cpu_percent": round(100 * (cpu_seconds(pid) - start[name]) / wall, 1),
            "rss_mib": round(rss_mib(pid), 1),
            "peak_rss_mib": round(peak[name], 1),
        }
        for name, pid in pids.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=4)
    parser.add_argument("--workers", type=int, default=24, help="workers per cluster")
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    total = args.clusters * (1 + args.workers)

    state = Path(tempfile.mkdtemp(prefix="capt-simbench-"))
    moto_port, api_port, sim_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CAPT_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        PYTHONUNBUFFERED="1",
    )
    py = sys.executable
    moto = subprocess.Popen(
        [py, "-m", "capt.dev.simulator.motoserver", "--amis", str(state / "amis.json"), "--region", REGION]
        + ["-H", "127.0.0.1", "-p", str(moto_port)],
        env=env,
        cwd=ROOT,
        stdout=(state / "moto.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{moto_port}"
    wait_http(f"{env['AWS_ENDPOINT_URL']}/moto-api/")
    sim = subprocess.Popen(
        [
            py,
            "-m",
            "capt.dev.simulator",
            "--api-port",
            str(api_port),
            "--port",
            str(sim_port),
            "--region",
            REGION,
        ],
        env=env,
        cwd=ROOT,
        stdout=(state / "simulator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    sim_url = f"http://127.0.0.1:{sim_port}"
    wait_http(f"{sim_url}/healthz")
    os.environ.update(env)
    os.environ["CAPT_RESOLVE"] = f"*:*=127.0.0.1:{api_port}"
    os.environ["AWS_ENDPOINT_URL_SSM"] = sim_url
    try:
        result = run(args, total, sim_url, {"simulator": sim.pid, "moto": moto.pid})
        result["logs"] = str(state)
        print(json.dumps(result, indent=2))
    finally:
        sim.terminate()
        moto.terminate()
        sim.wait(10)
        moto.wait(10)


def run(args: argparse.Namespace, total: int, sim_url: str, pids: dict[str, int]) -> dict:
    import boto3

    from capt.activities.aws import bootstrap_data, iam_bootstrap, images, instances
    from capt.activities.aws import secrets as sm
    from capt.activities.kubeadm import cloud_init, documents
    from capt.activities.kubeadm import tokens as kt
    from capt.activities.workload import activities as wa
    from capt.spec.models import AMISelector, KubeadmConfigSpec, MachineTemplate

    ec2, elb, smc = boto3.client("ec2"), boto3.client("elb"), sm.client(REGION)
    nr = {"name": "{{ ds.meta_data.local_hostname }}", "kubeletExtraArgs": {"cloud-provider": "external"}}
    spec = KubeadmConfigSpec(
        init_configuration={"nodeRegistration": nr}, join_configuration={"nodeRegistration": nr}
    )
    iam_bootstrap.bootstrap_iam()  # the instance profiles RunInstances names, as `capt dev up` makes them
    image = images.resolve_image(ec2, AMISelector(), VERSION, "t3.large")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/18", AvailabilityZone=f"{REGION}a")["Subnet"][
        "SubnetId"
    ]

    def launch(cluster: str, refs, dns: str, machine: str, kind: str, token=None) -> str:
        rendered = cloud_init.render_cloud_config(
            cloud_init.RenderInput(
                kind=kind,
                kubeadm=spec,
                pki=sm.read_cluster_pki(smc, refs) if kind == "init" else None,
                inputs=documents.KubeadmInputs(
                    cluster_name=cluster,
                    kubernetes_version=VERSION,
                    endpoint_host=dns,
                    endpoint_port=6443,
                    pod_cidrs=("192.168.0.0/16",),
                    service_cidrs=("10.96.0.0/12",),
                    service_domain="cluster.local",
                    ca_cert_hash=refs.ca_cert_hash,
                    token=token,
                ),
            )
        )
        stored = bootstrap_data.store_bootstrap_data(
            smc,
            namespace="default",
            cluster_name=cluster,
            machine_name=machine,
            data=cloud_init.compress(rendered),
            rendered_bytes=len(rendered),
        )
        req = instances.InstanceRequest(
            region=REGION,
            cluster_name=cluster,
            machine_name=machine,
            role="control-plane" if kind == "init" else "worker",
            subnet_id=subnet,
            security_group_ids=(),
            template=MachineTemplate(name="bench", instance_type="t3.large"),
            kubernetes_version=VERSION,
            image_id=image.image_id,
            bootstrap_secret_prefix=stored.secret_prefix,
            bootstrap_chunks=len(stored.secret_arns),
        )
        return ec2.run_instances(**instances.run_instances_params(req, image))["Instances"][0]["InstanceId"]

    t_start = time.monotonic()
    clusters = []
    for c in range(args.clusters):
        name = f"bench{c}"
        dns = elb.create_load_balancer(
            LoadBalancerName=f"{name}-apiserver",
            Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 6443, "InstancePort": 6443}],
            Subnets=[subnet],
        )["DNSName"]
        refs = sm.ensure_pki(smc, sm.ClusterPKIRequest(cluster_name=name, region=REGION, endpoint_host=dns))
        launch(name, refs, dns, f"{name}-cp-0", "init")
        clusters.append((name, dns, refs))

    def state() -> dict:
        with urllib.request.urlopen(f"{sim_url}/sim/state", timeout=10) as resp:
            return json.loads(resp.read())

    def ready_nodes() -> int:
        return sum(1 for c in state()["clusters"] for n in c["nodes"] if n["ready"] == "True")

    while ready_nodes() < args.clusters:
        time.sleep(0.5)
    instance_ids: dict[str, list[str]] = {}
    for name, dns, refs in clusters:
        access = wa.WorkloadAccess(region=REGION, endpoint_host=dns, pki=refs)
        ids = []
        for w in range(args.workers):
            machine = f"{name}-md-{w}"
            token = kt.new_token(dt.datetime.now(dt.UTC), dt.timedelta(minutes=30))
            with wa.connect(access) as client:
                client.create_or_replace_secret(kt.bootstrap_token_secret(token))
            ids.append(launch(name, refs, dns, machine, "join-worker", token))
        instance_ids[name] = ids
    launched = time.monotonic()
    while (n := ready_nodes()) < total:
        if time.monotonic() - launched > 300:
            raise SystemExit(f"only {n}/{total} nodes Ready after 300 s; see the simulator log")
        time.sleep(1)
    all_ready = time.monotonic()
    failed = [m for m in state()["machines"] if m["phase"] != "joined"]

    idle = sample(pids, args.duration)

    stop = threading.Event()
    requests = [0]

    def poller(name: str, dns: str, refs, ids: list[str]) -> None:
        access = wa.WorkloadAccess(region=REGION, endpoint_host=dns, pki=refs)
        per_node = 10.0 / max(1, len(ids) + 1)
        while not stop.is_set():
            for _ in ids + ["cp"]:
                t = time.monotonic()
                # What list_workload_nodes does for one machine: a new client, list, filter by id.
                with wa.connect(access) as client:
                    client.list_nodes()
                requests[0] += 1
                stop.wait(max(0.0, per_node - (time.monotonic() - t)))
                if stop.is_set():
                    return

    threads = [
        threading.Thread(target=poller, args=(n, d, r, instance_ids[n]), daemon=True) for n, d, r in clusters
    ]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    loaded = sample(pids, args.duration)
    stop.set()
    rate = requests[0] / (time.monotonic() - t0)
    for t in threads:
        t.join(15)
    final = state()
    return {
        "nodes": total,
        "nodes_ready": sum(1 for c in final["clusters"] for n in c["nodes"] if n["ready"] == "True"),
        "machines_not_joined": failed,
        "setup_seconds_until_all_ready": round(all_ready - t_start, 1),
        "workers_ready_seconds_after_last_launch": round(all_ready - launched, 1),
        "simulator_polls": final["polls"],
        "idle": idle,
        "under_load": {**loaded, "api_requests_per_second": round(rate, 1)},
    }


if __name__ == "__main__":
    main()
