"""Benchmark: time to repair a vanished instance, in 1 … 1000 clusters at once (simulated time).

    python -m capt.dev.bench mttr [--clusters 1,10] [--full] [--workers W] [--results DIR]

Each cluster is a MachineDeploymentWorkflow of W workers (default 2) over real MachineWorkflows
and a HealthCheckWorkflow (one MachineHealthCheck over the deployment, the default 30 s interval),
all of them on one time-skipping test server and one worker, over one fake cloud
(capt/dev/testkit/fake_cloud.py) under the latency model (capt/dev/bench/latencies.toml). The health workflows are
started over one interval, so their schedules are spread as independent clusters' would be. Then
one worker instance of every cluster vanishes at the same instant T (FakeCloud.vanish: terminated
out of band), and for each cluster:

- detection: from T to the health workflow's `detected` event for that machine;
- repair: from T to the replacement machine's node Ready as its MachineWorkflow sees it;

p50 and p99 over the clusters, in workflow time, twice:

- polling: the health check's scheduled observation (a batched describe + a node list every
  interval) finds the instance gone;
- events: the cluster's EC2 state-change queue is on (`instance_events_queue_url`,
  capt/activities/aws/instance_events.py): between checks the workflow polls the queue (a ≤ 20 s SQS
  long poll), and an event about one of its instances triggers a check at once. The fake queue
  (like HealthFakes') answers at once and never holds a poll open, so the workflow waits out the
  rest of each ≤ 20 s poll itself: an event is seen at the next poll, ≤ 20 s after it is queued.
  A real long poll returns as the message arrives (EventBridge delivers within seconds), so the
  measured figure is this fake's upper bound, not SQS's.

Default: 1 and 10 clusters (well under a minute); `--full`: 1, 100 and 1000. With many clusters
the test server's clock runs in real time while tasks are outstanding (it skips only when idle),
so an overloaded worker shows up as longer simulated times: the wall-time column says how hard
the run was.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio import activity

from capt.activities.aws import instance_events
from capt.activities.aws import instances as ec2
from capt.activities.workload import activities as workload
from capt.activities.workload.objects import NodeCondition, NodeInfo
from capt.dev.bench import model, results
from capt.dev.bench.big_cluster.shared import BenchCloud, quiet_sdk, skip
from capt.dev.paths import REPO_ROOT
from capt.dev.testkit import time_skipping

ROOT = REPO_ROOT

VERSION = "v1.30.2"
DEFAULT_CLUSTERS = (1, 10)
FULL_CLUSTERS = (1, 100, 1000)
MODES = ("polling", "events")
INTERVAL = 30.0
QUEUE = "https://sqs.example/123456789012/{name}-instance-events"


class SharedCloud(BenchCloud):
    """One fake cloud for many clusters: instances are tagged with their cluster (`owner`), the
    health workflow's describe and node list see only their cluster's, and the instance-event
    queue is one per cluster. Samples are only (time, event): counting every instance at every
    change would be quadratic in thousands of machines."""

    def __init__(self, lat: model.Latencies) -> None:
        super().__init__(lat, with_init=False)
        self.hosts: dict[str, str] = {}  # API endpoint host -> cluster name
        self.queues: dict[str, str] = {}  # queue url -> cluster name
        self.events: dict[str, list[tuple[datetime, Any]]] = {}  # cluster -> (visible at, event)
        self.polls = 0
        self.ready_at: dict[str, datetime] = {}  # machine -> when its workflow first saw it Ready
        self.log: list[tuple[datetime, str]] = []

    def sample(self, event: str) -> None:
        kind, _, machine = event.partition(" ")
        now = self.now()
        if kind == "ready":
            if machine in self.ready_at:
                return
            self.ready_at[machine] = now
        self.log.append((now, event))

    def of_cluster(self, cluster: str) -> list:
        return [i for i in self.instances.values() if i.owner == cluster]

    def activities(self) -> list:
        cloud = self
        base = [a for a in super().activities() if a.__name__ != "list_workload_nodes"]

        @activity.defn(name="describe_cluster_instances")
        def describe_cluster_instances(req: ec2.ClusterInstancesRequest) -> ec2.ClusterInstancesResult:
            with cloud.lock:
                cloud._count("describe_cluster_instances")
                now, found = cloud.now(), []
                for inst in cloud.of_cluster(req.owner):
                    state = cloud.state(inst, now)
                    if state == "terminated" and not req.include_terminated:
                        continue
                    found.append(
                        ec2.InstanceInfo(
                            instance_id=inst.id,
                            state=state,
                            machine_name=inst.machine,
                            role=inst.role,
                            availability_zone=inst.az,
                            launch_time=inst.launched_at,
                        )
                    )
                return ec2.ClusterInstancesResult(instances=tuple(found))

        @activity.defn(name="list_workload_nodes")
        def list_workload_nodes(req: workload.ListNodesRequest) -> workload.WorkloadNodes:
            """FakeCloud's node list + HealthFakes' Ready condition, by id or by cluster."""
            with cloud.lock:
                cloud._count("list_workload_nodes")
                now = cloud.now()
                if req.instance_ids:
                    insts = [cloud.instances[i] for i in req.instance_ids if i in cloud.instances]
                else:
                    insts = cloud.of_cluster(cloud.hosts.get(req.access.endpoint_host, ""))
                nodes = []
                for inst in insts:
                    if cloud._terminated(inst, now) or not cloud.node_registered(inst, now):
                        continue
                    ready = cloud.node_ready(inst, now)
                    if ready and req.instance_ids:
                        cloud.sample(f"ready {inst.machine}")
                    since = inst.launched_at + cloud.boot + cloud.join
                    status = "True" if ready else "False"
                    nodes.append(
                        NodeInfo(
                            name=f"ip-{inst.id}",
                            provider_id=f"aws:///{inst.az}/{inst.id}",
                            instance_id=inst.id,
                            availability_zone=inst.az,
                            ready=ready,
                            ready_status=status,
                            ready_since=since,
                            conditions=(
                                NodeCondition(type="MemoryPressure", status="False"),
                                NodeCondition(type="Ready", status=status, since=since),
                            ),
                        )
                    )
                return workload.WorkloadNodes(reachable=True, nodes=tuple(nodes))

        @activity.defn(name="receive_instance_events")
        def receive_instance_events(
            req: instance_events.ReceiveInstanceEventsRequest,
        ) -> instance_events.InstanceEvents:
            # No long poll (as HealthFakes'): the workflow waits out the rest of an empty poll.
            with cloud.lock:
                cloud.polls += 1
                now = cloud.now()
                queued = cloud.events.get(cloud.queues.get(req.queue_url, ""), [])
                taken = tuple(e for at, e in queued if at <= now)
                queued[:] = [(at, e) for at, e in queued if at > now]
            return instance_events.InstanceEvents(events=taken, received=len(taken))

        return [*base, describe_cluster_instances, list_workload_nodes, receive_instance_events]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def measure(clusters: int, mode: str, lat: model.Latencies, workers: int = 2) -> dict[str, Any]:
    from capt.activities.owners import HEALTH_ACTIVITIES
    from capt.contracts.ids import health_workflow_id
    from capt.dev.testkit.context import cluster_context, machine_template
    from capt.spec.models import HealthCheckSpec, KubeadmConfigSpec, MachineDeploymentSpec
    from capt.worker import build_worker
    from capt.workflows.health.models import HealthCheckInput
    from capt.workflows.health.workflow import HealthCheckWorkflow
    from capt.workflows.machine.workflow import MachineWorkflow
    from capt.workflows.machinedeployment.models import MachineDeploymentInput
    from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow

    cloud = SharedCloud(lat)
    tag = uuid.uuid4().hex[:4]
    names = [f"c{i:04d}-{tag}" for i in range(clusters)]
    queue = f"bench-mttr-{tag}"
    env = await time_skipping.start_env()
    wall0 = time.monotonic()
    out: dict[str, Any] = {"clusters": clusters, "mode": mode, "workers_per_cluster": workers}
    try:
        async with build_worker(
            env.client,
            queue,
            workflows=[HealthCheckWorkflow, MachineDeploymentWorkflow, MachineWorkflow],
            activities=[*cloud.activities(), *HEALTH_ACTIVITIES],
        ):
            gate = asyncio.Semaphore(32)

            async def start_cluster(name: str) -> None:
                ctx = cluster_context(name)
                cloud.hosts[ctx.endpoint_host] = name
                cloud.queues[QUEUE.format(name=name)] = name
                cloud.events[name] = []
                async with gate:
                    await env.client.start_workflow(
                        MachineDeploymentWorkflow.run,
                        MachineDeploymentInput(
                            cluster=ctx,
                            spec=MachineDeploymentSpec(
                                name=f"md-{name}",
                                replicas=workers,
                                version=VERSION,
                                machine_template=machine_template("md"),
                                bootstrap=KubeadmConfigSpec(),
                                bootstrap_template_name="md-bootstrap",
                            ),
                            control_plane_initialized=True,
                            control_plane_version=VERSION,
                        ),
                        id=MachineDeploymentWorkflow.workflow_id(ctx.namespace, name, f"md-{name}"),
                        task_queue=queue,
                    )

            await asyncio.gather(*(start_cluster(n) for n in names))
            wall = time.monotonic()
            while len(cloud.ready_at) < clusters * workers:
                await skip(env, 10)
            out["create_wall_seconds"] = round(time.monotonic() - wall, 1)

            # Health checks, started over one interval (up to 30 groups, evenly apart).
            groups = min(30, clusters)
            for g in range(groups):

                async def start_health(name: str) -> None:
                    ctx = cluster_context(name)
                    async with gate:
                        await env.client.start_workflow(
                            HealthCheckWorkflow.run,
                            HealthCheckInput(
                                cluster=ctx,
                                checks=(
                                    HealthCheckSpec(name="workers", machine_deployments=(f"md-{name}",)),
                                ),
                                interval_seconds=INTERVAL,
                                instance_events_queue_url=QUEUE.format(name=name)
                                if mode == "events"
                                else None,
                            ),
                            id=health_workflow_id(ctx.namespace, name),
                            task_queue=queue,
                        )

                await asyncio.gather(*(start_health(n) for n in names[g::groups]))
                await skip(env, INTERVAL / groups)
            # Every check has looked at least once; the half step puts the checks' phases at
            # (k + ½) × interval / groups before the instant below, never on it.
            await skip(env, 2 * INTERVAL + INTERVAL / groups / 2)

            # One instance of every cluster vanishes at T.
            t = await env.get_current_time()
            victims: dict[str, str] = {}
            with cloud.lock:
                for name in names:
                    inst = next(i for i in cloud.of_cluster(name) if i.terminated_at is None)
                    inst.terminated_at = t
                    victims[name] = inst.machine
                    if mode == "events":
                        cloud.events[name].append(
                            (t, instance_events.InstanceEvent(instance_id=inst.id, state="shutting-down"))
                        )
            wall = time.monotonic()
            repaired: dict[str, float] = {}
            waited = 0.0
            while len(repaired) < clusters and waited < 3600:
                await skip(env, 5)
                waited += 5
                with cloud.lock:
                    for name in names:
                        if name in repaired:
                            continue
                        fresh = [
                            cloud.ready_at[i.machine]
                            for i in cloud.of_cluster(name)
                            if i.launched_at >= t and i.machine in cloud.ready_at
                        ]
                        if fresh:
                            repaired[name] = (min(fresh) - t).total_seconds()
            out["repair_wall_seconds"] = round(time.monotonic() - wall, 1)

            # Detection, from each health workflow's events.
            detected: dict[str, float] = {}

            async def detection(name: str) -> None:
                handle = env.client.get_workflow_handle(health_workflow_id("default", name))
                async with gate:
                    status = await handle.query(HealthCheckWorkflow.status)
                hit = next(
                    (e for e in status.events if e.kind == "detected" and e.machine == victims[name]), None
                )
                if hit is not None:
                    detected[name] = (hit.at - t).total_seconds()

            await asyncio.gather(*(detection(n) for n in names))
    finally:
        await env.shutdown()
    det, rep = list(detected.values()), list(repaired.values())
    out.update(
        {
            "detected": len(det),
            "repaired": len(rep),
            "detection_p50": round(percentile(det, 50), 1) if det else None,
            "detection_p99": round(percentile(det, 99), 1) if det else None,
            "detection_max": round(max(det), 1) if det else None,
            "repair_p50": round(percentile(rep, 50), 1) if rep else None,
            "repair_p99": round(percentile(rep, 99), 1) if rep else None,
            "repair_max": round(max(rep), 1) if rep else None,
            "detection_mean": round(statistics.fmean(det), 1) if det else None,
            "detection_seconds": sorted(round(x, 1) for x in det),
            "repair_seconds": sorted(round(x, 1) for x in rep),
            "queue_polls": cloud.polls,
            "wall_seconds": round(time.monotonic() - wall0, 1),
        }
    )
    return out


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m capt.dev.bench mttr", description=__doc__.split("\n")[0])
    p.add_argument(
        "--clusters", type=_ints, default=None, help="cluster counts, comma-separated (default 1,10)"
    )
    p.add_argument("--full", action="store_true", help=f"clusters {', '.join(map(str, FULL_CLUSTERS))}")
    p.add_argument("--workers", type=int, default=2, help="workers per cluster")
    p.add_argument("--modes", default=",".join(MODES), help="polling, events or both (comma-separated)")
    p.add_argument("--results", type=Path, default=results.RESULTS, help="where to save mttr.json")
    args = p.parse_args(argv or [])
    quiet_sdk()
    lat = model.load()
    counts = args.clusters or (FULL_CLUSTERS if args.full else DEFAULT_CLUSTERS)
    modes = [m for m in args.modes.split(",") if m in MODES]
    runs = []
    for n in counts:
        for mode in modes:
            print(f"{n} cluster(s), {mode}:", flush=True)
            r = asyncio.run(measure(n, mode, lat, args.workers))
            runs.append(r)
            print(f"  {_row(r)}", flush=True)
    print(table(runs))
    results.save(
        "mttr",
        {
            "interval_seconds": INTERVAL,
            "event_poll_seconds": 20,
            "replacement_bound_seconds": lat.joining_machine,
            "runs": runs,
        },
        args.results,
    )
    return 0


HEADER = (
    f"{'clusters':>8} {'mode':<8} {'detect p50':>10} {'p99':>6} {'repair p50':>10} {'p99':>6}"
    f" {'repaired':>9} {'wall':>7}"
)


def _row(r: dict[str, Any]) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}s"

    return (
        f"{r['clusters']:>8} {r['mode']:<8} {s(r['detection_p50']):>10} {s(r['detection_p99']):>6}"
        f" {s(r['repair_p50']):>10} {s(r['repair_p99']):>6} {r['repaired']:>4}/{r['clusters']:<4}"
        f" {r['wall_seconds']:>6.1f}s"
    )


def table(runs: list[dict[str, Any]]) -> str:
    return "\n".join([HEADER, *(_row(r) for r in runs)])


def section(data: dict[str, Any]) -> str:
    runs = data["runs"]
    interval = data.get("interval_seconds", INTERVAL)
    bound = data.get("replacement_bound_seconds")
    lines = [
        '<a id="mttr"></a>',
        "## Time to repair a vanished instance, 1 … 1000 clusters (simulated time)",
        "",
        "Each cluster: a MachineDeployment of"
        f" {runs[0]['workers_per_cluster'] if runs else '?'} workers and a HealthCheckWorkflow"
        f" (interval {interval:.0f} s), every cluster on one time-skipping test server and one worker."
        " One worker instance of every cluster is terminated out of band at the same instant; detection"
        " is from then to the health workflow's `detected` event, repair to the replacement's node Ready"
        " (as its MachineWorkflow sees it). *polling*: the scheduled check (one batched describe and one"
        " node list per interval) finds it, so detection ≤ the interval. *events*: the EC2 state-change"
        " queue is on; the fake queue answers at once instead of holding a long poll open, so the event"
        " is seen at the next ≤ 20 s poll — an upper bound for this path (a real SQS long poll returns"
        " when the message arrives). A replacement cannot be Ready sooner than boot + join"
        f" ({bound:.0f} s) after the remediation starts.",
        "",
        "| clusters | detection | detection p50 | p99 | repair p50 | p99 | repaired | wall |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['clusters']} | {r['mode']} | {r['detection_p50']} s | {r['detection_p99']} s"
            f" | {r['repair_p50']} s | {r['repair_p99']} s | {r['repaired']}/{r['clusters']}"
            f" | {r['wall_seconds']:.0f} s |"
        )
    lines += ["", "![detection and repair times](img/bench-mttr.png)", ""]
    return "\n".join(lines)


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in data["runs"] if r["detection_seconds"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        label = f"{r['clusters']} clusters, {r['mode']}"
        for ax, key in ((a, "detection_seconds"), (b, "repair_seconds")):
            xs = r[key]
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
    a.axvline(data.get("interval_seconds", INTERVAL), color="#888888", linestyle=":", linewidth=1)
    a.set_title("detection: instance gone → health workflow's verdict", fontsize=9)
    b.set_title("repair: instance gone → replacement node Ready", fontsize=9)
    for ax in (a, b):
        ax.set_xlabel("seconds (simulated)")
        ax.set_ylabel("share of clusters")
        ax.legend(fontsize=7)
    fig.tight_layout()
    results.IMAGES.mkdir(parents=True, exist_ok=True)
    path = results.IMAGES / "bench-mttr.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
