"""Benchmark 3: many clusters on one worker process and one Temporal dev server, on the local stack.

    python -m capt.dev.bench scale [--clusters 3] [--workers 0|1] [--idle 15] [--deadline S] [--full]

One local stack on free ports in a temporary directory (Temporal dev server on SQLite, moto server,
the workload simulator with short boot/ready delays, ONE `capt-worker` serving its Prometheus
metrics), torn down at the end (also on an error or Ctrl-C). `--clusters` takes cumulative sizes:
`--clusters 20,50` creates 20 clusters, then 30 more. At each size the new clusters (1
control-plane machine + `--workers` workers, each cluster named and namespaced on its own) are
applied at once, and the benchmark measures:

- wall time until all are Ready (visibility: `CaptPhase = "Ready"`), and per cluster the time
  from its apply to its Ready transition (ClusterStatus.phase_since), p50/p99;
- CPU-seconds spent meanwhile (utime+stime of the process and its descendants, /proc) by the
  worker and the dev server, per new cluster; moto's and the simulator's (they stand in for AWS
  and the clusters' nodes, on the same cores); peak RSS (VmHWM);
- then `--idle` seconds of steady state: worker and server CPU as % of one core, RSS, the
  worker's workflow-task schedule-to-start and execution latency p50/p99 (the SDK's Prometheus
  histograms, in ms: bucket upper bounds), and the health rounds' duration (from the health
  workflows' histories: timer fired → the next interval's timer started; HealthStatus carries
  no round timing);
- afterwards (≤ 200 clusters), from every workflow history: workflow tasks, activities and
  timers per cluster during each window, by workflow type and activity.

A size whose clusters are not all Ready within the deadline (`--deadline`, by default 300 s or
1.8 s per new cluster, whichever is more) is reported as reached (how many were Ready after how
long) and larger sizes are not attempted: no number is extrapolated.

`--full` runs the issue's sizes: 1,000 single-node clusters (1 CP, no worker) applied at once to
Ready on one stack, then on a fresh stack steady state at 100, 300 and 1,000 clusters of 1 CP +
1 worker (60 s idle each), with the worker's sticky cache sized for them (FULL_CACHE; about 6
workflows run per cluster, and the default cache of 1000 holds ~160 clusters' worth).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from capt.dev.bench import results
from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

EXAMPLE = ROOT / "examples" / "capi-quickstart.yaml"
TICKS = os.sysconf("SC_CLK_TCK")
SERVICES = ("worker", "temporal", "moto", "simulator")
DEFAULT_SIZES = [3]
DEFAULT_IDLE = 15.0
FULL_CREATE = 1000
FULL_STEADY = [100, 300, 1000]
FULL_IDLE = 60.0
# The worker's sticky cache for --full: room for every running workflow of 1,000 clusters (~6 each).
# Measured at 50 clusters of 1+1 (300 running workflows) with a cache of 100: the worker spent 2.2
# instead of ~1.0 CPU-s per cluster creating them and 28.8 % instead of ~5.7 % of a core idle.
FULL_CACHE = 8000
HISTORY_LIMIT = 200  # clusters; beyond, histories are not counted (minutes of fetching)
HEALTH_SAMPLE = 30  # health workflows whose rounds are timed per idle window
# The anchors of the issue (docs/BENCHMARKS.md quotes them beside capt's figures).
BASELINE = {
    "clusters": 20,
    "workers_per_cluster": 1,
    "ready_seconds": 73,
    "worker_cpu_s_per_cluster": 1.2,
    "server_cpu_s_per_cluster": 1.4,
    "idle_worker_pct": 2.5,
    "idle_server_pct": 5.3,
}
METAL3 = {"clusters": 1000, "minutes": 15, "cores": 14}
# Where the CPU goes: measured once by hand (2026-12-05, 2 cores, 50 clusters of 1+1 applied at once),
# py-spy on the worker (all threads, 50 Hz) and the SDK's request counters; not re-measured by a run.
PROFILE_NOTE = (
    "Where the CPU goes (profiled by hand once: 50 clusters of 1+1 applied at once, py-spy on the worker,"
    " the SDK's request counters): the worker's largest single cost is the cluster PKI (5 RSA-2048 keys and"
    " 4 certificates per cluster, 0.27 CPU-s measured alone, about a quarter of its CPU per cluster; CAPI makes"
    " the same keys), then the boto3 client side of ~52 AWS calls per cluster (every call a new connection:"
    " moto's server closes each one), then creating sandboxed workflow instances (~6 workflows per cluster)"
    " and their activations; payload encryption is < 1 %. Per cluster, creating it takes ~83 workflow tasks"
    " (machines ~26, infrastructure ~18, cluster ~16, deployment ~10, control plane ~9) and ~52 activities,"
    " and the dev server spends ~8 ms of CPU per task (workflow or activity; about a third of it in the"
    " kernel: SQLite and sockets), the same rate idle. Idle, each cluster costs ~8 workflow tasks, 6"
    " activities and 4 queries a minute: two health rounds of 30 s (query the machine owners, describe the"
    " instances, list the nodes). About 6 workflows per cluster stay running: the worker's default sticky cache"
    " (1000) holds ~160 clusters; with a cache of 100 at 50 clusters (300 running) the worker spent 2.2 instead"
    " of ~1.0 CPU-s per cluster creating them and 28.8 % instead of ~5.7 % of a core idle (health round p99 30 s"
    " instead of 2–5 s), so `--full` sizes the cache (`--max-cached-workflows`)."
)
SDK_BENCH = {"workflows_per_second": 86, "what": "trivial sandboxed workflows/s on a CI runner"}


# --------------------------------------------------------------------------------------------
# /proc


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children[int(fields[1])].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int | None) -> float:
    """utime + stime (+ the waited-for children's) of a process and its live descendants."""
    if not pid:
        return 0.0
    total = 0
    for p in descendants(pid):
        fields = _stat(p)
        if fields:
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int | None, key: str = "VmRSS") -> float:
    """Resident set (VmRSS) or its peak (VmHWM) of a process and its descendants, MiB."""
    if not pid:
        return 0.0
    return sum(_status_kib(p, key) for p in descendants(pid)) / 1024


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


# --------------------------------------------------------------------------------------------
# Prometheus text


def _buckets(text: str, metric: str) -> dict[float, float]:
    """Cumulative `_bucket` counts of `metric` by upper bound, summed over label sets."""
    out: dict[float, float] = {}
    prefix = f"{metric}_bucket"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        le = re.search(r'le="([^"]+)"', line)
        if not le:
            continue
        bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
        out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram_delta(before: str, after: str, metric: str) -> dict[str, float] | None:
    """p50/p99 (the upper bound of the bucket the quantile falls in, in the metric's unit: the
    SDK exports durations in ms) and count of what `metric` recorded between two scrapes."""
    b, a = _buckets(before, metric), _buckets(after, metric)
    delta = {k: v - b.get(k, 0.0) for k, v in a.items()}
    if not delta or max(delta.values()) <= 0:
        return None
    total = delta[max(delta)]
    out: dict[str, float] = {}
    for q in (0.5, 0.99):
        out[f"p{round(q * 100)}"] = next(k for k in sorted(delta) if delta[k] >= q * total)
    out["count"] = total
    return out


def counters(text: str) -> dict[str, float]:
    """Every counter and histogram count of the SDK (`temporal_*`), summed over label sets."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line.startswith("temporal_") or "_bucket" in line.split("{")[0].split(" ")[0]:
            continue
        name = line.split("{")[0].split(" ")[0]
        if name.endswith("_sum"):
            continue
        with contextlib.suppress(ValueError):
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def counters_delta(before: str, after: str) -> dict[str, float]:
    b, a = counters(before), counters(after)
    keep = (
        "temporal_workflow_task_execution_latency_count",
        "temporal_workflow_task_replay_latency_count",
        "temporal_workflow_task_schedule_to_start_latency_count",
        "temporal_activity_execution_latency_count",
        "temporal_sticky_cache_hit",
        "temporal_sticky_cache_miss",
        "temporal_sticky_cache_total_forced_eviction",
        "temporal_workflow_completed",
        "temporal_workflow_continue_as_new",
        "temporal_request",
        "temporal_long_request",
    )
    return {k.removeprefix("temporal_"): round(a.get(k, 0.0) - b.get(k, 0.0)) for k in keep if k in a}


# --------------------------------------------------------------------------------------------
# the run


class Scale:
    """One stack, one worker; clusters added in cumulative steps."""

    def __init__(self, state_dir: Path, workers: int, worker_env: dict[str, str] | None = None) -> None:
        from capt.dev.testkit.chaos.cli import client_environ
        from capt.dev.testkit.chaos.stack import ChaosStack, free_ports

        self.stack = ChaosStack.on_free_ports(state_dir)
        [self.metrics_port] = free_ports(1)
        self.stack.worker_env = {"CAPT_METRICS_PORT": str(self.metrics_port), **(worker_env or {})}
        client_environ(self.stack.cfg)
        self.workers = workers
        self.client = None
        self.created = 0
        self.windows: list[dict[str, Any]] = []  # [start, end] wall clock of each measurement
        self.idle_rate: dict[str, float] = {}  # CPU-s per second, last idle window

    async def connect(self):
        from temporalio.client import Client

        from capt.client import codec

        if self.client is None:
            cfg = self.stack.cfg
            self.client = await Client.connect(
                cfg.temporal_address,
                namespace=cfg.namespace,
                data_converter=codec.converter_from_env(cfg.client_env()),
            )
        return self.client

    def pids(self) -> dict[str, int | None]:
        return {name: self.stack.pid(name) for name in SERVICES}

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids().items()}

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
                return r.read().decode()
        except OSError:
            return ""

    def spec(self, i: int):
        from capt.spec.loader import load_manifest

        name = f"scale-{i:04d}"
        text = EXAMPLE.read_text().replace("capi-quickstart", name)  # the name and the namespace
        spec = load_manifest(text, env={}).spec
        return spec.model_copy(
            update={
                "control_plane": spec.control_plane.model_copy(update={"replicas": 1}),
                "machine_deployments": tuple(
                    md.model_copy(update={"replicas": self.workers}) for md in spec.machine_deployments
                ),
            }
        )

    async def ready_count(self) -> int:
        client = await self.connect()
        counted = await client.count_workflows(
            'WorkflowType = "ClusterWorkflow" AND ExecutionStatus = "Running" AND CaptPhase = "Ready"'
        )
        return counted.count

    async def grow(self, size: int, deadline: float) -> dict[str, Any]:
        """Apply clusters up to `size` at once; wait until all are Ready (or the deadline)."""
        from capt.client import clusters

        client = await self.connect()
        new = [self.spec(i) for i in range(self.created, size)]
        n = len(new)
        metrics_before, before = self.metrics(), self.cpu()
        t0, wall0 = time.monotonic(), time.time()
        applied_at: dict[str, float] = {}
        limit = asyncio.Semaphore(32)

        async def apply(spec) -> None:
            async with limit:
                await clusters.apply(client, spec)
                applied_at[spec.name] = time.time()

        await asyncio.gather(*(apply(s) for s in new))
        apply_seconds = time.monotonic() - t0
        ready, timeline = 0, [(0.0, self.created)]
        while True:
            with contextlib.suppress(Exception):
                ready = await self.ready_count()
            timeline.append((round(time.monotonic() - t0, 1), ready))
            if ready >= size or time.monotonic() - t0 >= deadline:
                break
            await asyncio.sleep(2 if size <= 100 else 5)
        wall = time.monotonic() - t0
        after, metrics_after = self.cpu(), self.metrics()
        peak = {name: round(rss_mib(pid, "VmHWM")) for name, pid in self.pids().items()}
        self.windows.append(
            {"label": f"create {size}", "start": wall0, "end": time.time(), "clusters": [s.name for s in new]}
        )
        self.created = size
        per_cluster = await self._times_to_ready(new, applied_at)
        spent = {name: round(after[name] - before[name], 1) for name in SERVICES}
        # What the clusters that already existed cost meanwhile, at the last idle window's rate.
        steady = {name: round(self.idle_rate.get(name, 0.0) * wall, 1) for name in SERVICES}
        wft = counters_delta(metrics_before, metrics_after)
        return {
            "size": size,
            "new_clusters": n,
            "ready": ready,
            "all_ready": ready >= size,
            "deadline_seconds": round(deadline),
            "apply_seconds": round(apply_seconds, 1),
            "wall_seconds": round(wall, 1),
            "time_to_ready_p50": _r(percentile(per_cluster, 0.5)),
            "time_to_ready_p99": _r(percentile(per_cluster, 0.99)),
            "time_to_ready_max": _r(max(per_cluster) if per_cluster else None),
            "cpu_seconds": spent,
            "worker_cpu_s_per_cluster": round(spent["worker"] / n, 2),
            "server_cpu_s_per_cluster": round(spent["temporal"] / n, 2),
            "emulation_cpu_s_per_cluster": round((spent["moto"] + spent["simulator"]) / n, 2),
            "existing_clusters_steady_cpu_seconds": steady,
            "worker_cpu_s_per_cluster_net": round((spent["worker"] - steady["worker"]) / n, 2),
            "server_cpu_s_per_cluster_net": round((spent["temporal"] - steady["temporal"]) / n, 2),
            "cores_busy": round(sum(spent.values()) / wall, 2),
            "peak_rss_mib": peak,
            "worker_counters": wft,
            "workflow_tasks_per_second": round(wft.get("workflow_task_execution_latency_count", 0) / wall, 1),
            "timeline": timeline,
        }

    async def _times_to_ready(self, specs, applied_at: dict[str, float]) -> list[float]:
        """Apply → Ready per cluster, from each ClusterStatus (asked after the measurement)."""
        from capt.client import clusters

        client = await self.connect()
        limit = asyncio.Semaphore(16)

        async def one(spec) -> float | None:
            async with limit:
                with contextlib.suppress(Exception):
                    st = await clusters.status(client, spec.namespace, spec.name)
                    if st.phase == "Ready" and st.phase_since is not None and spec.name in applied_at:
                        return st.phase_since.timestamp() - applied_at[spec.name]
            return None

        got = await asyncio.gather(*(one(s) for s in specs))
        return [t for t in got if t is not None]

    async def idle(self, size: int, seconds: float) -> dict[str, Any]:
        metrics_before, before = self.metrics(), self.cpu()
        t0, wall0 = time.monotonic(), time.time()
        rss_peak = {name: 0.0 for name in SERVICES}
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(min(5.0, seconds - (time.monotonic() - t0)) if seconds else 0)
            for name, pid in self.pids().items():
                rss_peak[name] = max(rss_peak[name], rss_mib(pid))
        wall = time.monotonic() - t0
        after, metrics_after = self.cpu(), self.metrics()
        wall1 = time.time()
        self.windows.append(
            {
                "label": f"idle {size}",
                "start": wall0,
                "end": wall1,
                "clusters": [self.spec(i).name for i in range(size)],
            }
        )
        self.idle_rate = {name: (after[name] - before[name]) / wall for name in SERVICES}
        pct = {name: round(100 * (after[name] - before[name]) / wall, 1) for name in SERVICES}
        rounds = await self.health_rounds(size, wall0, wall1)
        client = await self.connect()
        running = (await client.count_workflows('ExecutionStatus = "Running"')).count
        return {
            "size": size,
            "seconds": round(wall, 1),
            "cpu_pct_of_a_core": pct,
            "rss_mib": {k: round(v) for k, v in rss_peak.items()},
            "running_workflows": running,
            "workflow_task_schedule_to_start_ms": histogram_delta(
                metrics_before, metrics_after, "temporal_workflow_task_schedule_to_start_latency"
            ),
            "workflow_task_execution_ms": histogram_delta(
                metrics_before, metrics_after, "temporal_workflow_task_execution_latency"
            ),
            "activity_execution_ms": histogram_delta(
                metrics_before, metrics_after, "temporal_activity_execution_latency"
            ),
            "worker_counters": counters_delta(metrics_before, metrics_after),
            "health_rounds": rounds,
        }

    async def health_rounds(self, size: int, start: float, end: float) -> dict[str, Any]:
        """Durations of the health rounds that began in [start, end] in a sample of clusters'
        health workflows: TIMER_FIRED → the next TIMER_STARTED (or the run's end)."""
        from temporalio.api.enums.v1 import EventType

        from capt.contracts.ids import health_workflow_id

        client = await self.connect()
        step = max(1, size // HEALTH_SAMPLE)
        sample = [self.spec(i) for i in range(0, size, step)][:HEALTH_SAMPLE]
        ends = {
            EventType.EVENT_TYPE_TIMER_STARTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        }
        durations: list[float] = []
        for spec in sample:
            with contextlib.suppress(Exception):
                history = await client.get_workflow_handle(
                    health_workflow_id(spec.namespace, spec.name)
                ).fetch_history(rpc_timeout=timedelta(seconds=10))
                fired = None
                for e in history.events:
                    t = e.event_time.ToDatetime().timestamp() if e.HasField("event_time") else 0.0
                    if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED and start <= t <= end:
                        fired = t
                    elif fired is not None and e.event_type in ends:
                        durations.append(t - fired)
                        fired = None
        if not durations:
            return {"sampled": len(sample), "rounds": 0, "note": "no health round ended in the window"}
        return {
            "sampled": len(sample),
            "rounds": len(durations),
            "p50_s": _r(percentile(durations, 0.5), 2),
            "p99_s": _r(percentile(durations, 0.99), 2),
        }

    async def history_counts(self) -> list[dict[str, Any]]:
        """Per window, per new (create) or existing (idle) cluster: workflow tasks, activities,
        timers, by workflow type; activities by type."""
        from temporalio.api.enums.v1 import EventType

        client = await self.connect()
        runs = [(wf.id, wf.run_id, wf.workflow_type) async for wf in client.list_workflows("")]
        limit = asyncio.Semaphore(8)

        async def fetch(wf_id: str, run_id: str):
            async with limit:
                with contextlib.suppress(Exception):
                    return await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history(
                        rpc_timeout=timedelta(seconds=30)
                    )
            return None

        histories = await asyncio.gather(*(fetch(i, r) for i, r, _ in runs))
        kinds = {
            EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: "workflow_tasks",
            EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
            EventType.EVENT_TYPE_TIMER_STARTED: "timers",
            EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "children",
        }
        out = []
        for w in self.windows:
            by_type: dict[str, Counter] = defaultdict(Counter)
            activities: Counter = Counter()
            names = w["clusters"]
            for (wf_id, _, wf_type), history in zip(runs, histories, strict=True):
                if history is None or not any(name in wf_id for name in names):
                    continue
                for e in history.events:
                    t = e.event_time.ToDatetime().timestamp()
                    if not w["start"] <= t <= w["end"]:
                        continue
                    by_type[wf_type]["events"] += 1
                    kind = kinds.get(e.event_type)
                    if kind:
                        by_type[wf_type][kind] += 1
                    if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                        activities[e.activity_task_scheduled_event_attributes.activity_type.name] += 1
            n = max(1, len(names))
            total = sum(by_type.values(), Counter())
            out.append(
                {
                    "window": w["label"],
                    "seconds": round(w["end"] - w["start"], 1),
                    "clusters": len(names),
                    "per_cluster": {k: round(v / n, 1) for k, v in sorted(total.items())},
                    "by_workflow_type": {
                        t: {k: round(v / n, 1) for k, v in sorted(c.items())}
                        for t, c in sorted(by_type.items(), key=lambda kv: -kv[1]["workflow_tasks"])
                    },
                    "activities_per_cluster": {a: round(c / n, 2) for a, c in activities.most_common(15)},
                }
            )
        return out


async def run_stack(
    label: str,
    sizes: list[int],
    workers: int,
    idle_seconds: float,
    deadline: float | None,
    keep: bool,
    worker_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from capt.dev.testkit.chaos.scenarios import SIM_SETTINGS

    state_dir = Path(tempfile.mkdtemp(prefix="capt-bench-scale-"))
    environ = dict(os.environ)
    scale = Scale(state_dir, workers, worker_env)
    creates: list[dict[str, Any]] = []
    idles: list[dict[str, Any]] = []
    histories: list[dict[str, Any]] | None = None
    stopped = None
    try:
        scale.stack.up()
        scale.stack.sim_settings(SIM_SETTINGS)
        for size in sizes:
            if size <= scale.created:
                continue
            limit = deadline or max(300.0, 1.8 * (size - scale.created))
            grown = await scale.grow(size, limit)
            creates.append(grown)
            print(_create_line(grown), flush=True)
            if not grown["all_ready"]:
                stopped = (
                    f"{label}: at {size} clusters only {grown['ready']} were Ready after"
                    f" {grown['wall_seconds']:.0f} s (deadline {limit:.0f} s); larger sizes not attempted"
                )
                print(stopped, flush=True)
                break
            if idle_seconds:
                steady = await scale.idle(size, idle_seconds)
                idles.append(steady)
                print(_idle_line(steady), flush=True)
        if scale.created <= HISTORY_LIMIT:
            histories = await scale.history_counts()
    finally:
        if not keep:
            scale.stack.down()
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            print(f"stack kept in {state_dir}: {scale.stack.cfg.temporal_address}")
        os.environ.clear()
        os.environ.update(environ)
    return {
        "label": label,
        "workers_per_cluster": workers,
        "control_plane_per_cluster": 1,
        "worker_env": worker_env or {},
        "creates": creates,
        "idle": idles,
        "histories": histories,
        "stopped": stopped,
    }


def _create_line(c: dict[str, Any]) -> str:
    return (
        f"{c['size']:>5} clusters: +{c['new_clusters']} Ready {c['ready']}/{c['size']} in {c['wall_seconds']:.0f} s"
        f" (apply→Ready p50 {c['time_to_ready_p50']} s, p99 {c['time_to_ready_p99']} s); per new cluster"
        f" worker {c['worker_cpu_s_per_cluster']} CPU-s, server {c['server_cpu_s_per_cluster']} CPU-s,"
        f" moto+simulator {c['emulation_cpu_s_per_cluster']} CPU-s; peak RSS worker {c['peak_rss_mib']['worker']}"
        f" MiB, server {c['peak_rss_mib']['temporal']} MiB"
    )


def _idle_line(s: dict[str, Any]) -> str:
    sts, ex = s["workflow_task_schedule_to_start_ms"] or {}, s["workflow_task_execution_ms"] or {}
    hr = s["health_rounds"]
    return (
        f"{s['size']:>5} clusters idle {s['seconds']:.0f} s: worker {s['cpu_pct_of_a_core']['worker']} %,"
        f" server {s['cpu_pct_of_a_core']['temporal']} % of a core; RSS worker {s['rss_mib']['worker']} MiB,"
        f" server {s['rss_mib']['temporal']} MiB; WFT schedule-to-start p50/p99 {sts.get('p50', '–')}/"
        f"{sts.get('p99', '–')} ms, execution {ex.get('p50', '–')}/{ex.get('p99', '–')} ms; health round p99"
        f" {hr.get('p99_s', '–')} s ({hr['rounds']} rounds)"
    )


def print_table(data: dict[str, Any]) -> None:
    print()
    print(section(data))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m capt.dev.bench scale", description=__doc__.split("\n")[0])
    p.add_argument(
        "--clusters",
        action="append",
        default=[],
        help="cumulative cluster counts, e.g. 20,50 (repeatable) [3]",
    )
    p.add_argument("--workers", type=int, choices=(0, 1), default=0, help="worker machines per cluster [0]")
    p.add_argument(
        "--idle", type=float, default=None, help=f"seconds of steady state after each size [{DEFAULT_IDLE:g}]"
    )
    p.add_argument("--deadline", type=float, default=None, help="seconds a size may take to be all Ready")
    p.add_argument(
        "--full",
        action="store_true",
        help=f"{FULL_CREATE} single-node clusters to Ready, then steady state at {FULL_STEADY} (1 CP + 1 worker)",
    )
    p.add_argument(
        "--max-cached-workflows",
        type=int,
        help=f"the worker's sticky cache size (CAPT_MAX_CACHED_WORKFLOWS) [the worker's default, 1000; {FULL_CACHE} with --full]",
    )
    p.add_argument("--keep-stack", action="store_true", help="leave the stack running (debugging)")
    p.add_argument("--results", type=Path, default=results.RESULTS, help="directory of the JSON result")
    args = p.parse_args(argv or [])
    sizes = sorted({int(s) for arg in args.clusters for s in arg.split(",") if s.strip()}) or DEFAULT_SIZES
    cache = args.max_cached_workflows
    if args.full and cache is None:
        # ~6 workflows run per cluster: the worker's default cache (1000) holds ~160 clusters; past
        # that every task of an evicted workflow replays its history (see FULL_CACHE).
        cache = FULL_CACHE
    env = {"CAPT_MAX_CACHED_WORKFLOWS": str(cache)} if cache else {}
    runs = []
    if args.full:
        runs.append(
            asyncio.run(
                run_stack(f"create {FULL_CREATE}", [FULL_CREATE], 0, 0.0, args.deadline, args.keep_stack, env)
            )
        )
        idle = FULL_IDLE if args.idle is None else args.idle
        runs.append(
            asyncio.run(run_stack("steady state", FULL_STEADY, 1, idle, args.deadline, args.keep_stack, env))
        )
    else:
        idle = DEFAULT_IDLE if args.idle is None else args.idle
        runs.append(
            asyncio.run(run_stack("run", sizes, args.workers, idle, args.deadline, args.keep_stack, env))
        )
    from capt.dev.testkit.chaos.scenarios import SIM_SETTINGS

    data = {
        "full": args.full,
        "simulator_settings": SIM_SETTINGS,
        "runs": runs,
        "baseline": BASELINE,
        "metal3": METAL3,
        "sdk_benchmark": SDK_BENCH,
    }
    path = results.save("scale", data, args.results)
    print_table(data)
    print(f"\nsaved {path}")
    return 0 if all(r["creates"] and r["creates"][-1]["all_ready"] for r in runs) else 1


# --------------------------------------------------------------------------------------------
# the report


def _ms(q: dict | None, key: str) -> str:
    v = (q or {}).get(key)
    if v is None:
        return "–"
    return "> 60 s" if v == float("inf") else f"{v:g} ms"


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v} s"


def _settings(r: dict[str, Any]) -> str:
    env = r.get("worker_env") or {}
    return "".join(f", {k.removeprefix('CAPT_').lower()}={v}" for k, v in sorted(env.items()))


def _net(c: dict[str, Any], who: str) -> float:
    return c.get(f"{who}_cpu_s_per_cluster_net", c[f"{who}_cpu_s_per_cluster"])


def _cpu(c: dict[str, Any], who: str) -> str:
    gross, net = c[f"{who}_cpu_s_per_cluster"], _net(c, who)
    return f"{gross}" if c["size"] == c["new_clusters"] else f"{gross} (net {net})"


def _ratio(capt: float | None, anchor: float) -> str:
    if not capt:
        return "–"
    return f"{anchor / capt:.1f}× less" if capt <= anchor else f"{capt / anchor:.1f}× more"


def section(data: dict[str, Any]) -> str:
    lines = [
        "## 3. Many clusters on one worker and one dev server (local stack)",
        "",
        "Clusters of 1 control-plane machine (+ 0 or 1 worker machine), each in a namespace of its own, applied"
        " at once in cumulative steps on one local stack with ONE worker process; the simulator's delays are"
        f" {data['simulator_settings']} (seconds), so the figures measure capt, Temporal and the emulated AWS more"
        " than waiting. CPU is /proc utime+stime of each process and its descendants; moto and the simulator"
        " stand in for AWS and the clusters' nodes and share the same cores. Apply→Ready is per cluster (its"
        " ClusterStatus.phase_since); latencies are the SDK's Prometheus histograms (bucket upper bounds).",
        "",
        "| run | clusters | new (CP+W) | all Ready after | apply→Ready p50 / p99 | worker CPU-s / cluster |"
        " server CPU-s / cluster | moto+sim CPU-s / cluster | cores busy | peak RSS worker / server |"
        " workflow tasks/s |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in data["runs"]:
        for c in r["creates"]:
            ready = (
                f"{c['wall_seconds']:.0f} s"
                if c["all_ready"]
                else f"**{c['ready']}/{c['size']} Ready after {c['wall_seconds']:.0f} s**"
            )
            lines.append(
                f"| {r['label']}{_settings(r)} | {c['size']} | {c['new_clusters']} (1+{r['workers_per_cluster']}) | {ready}"
                f" | {_s(c['time_to_ready_p50'])} / {_s(c['time_to_ready_p99'])} | {_cpu(c, 'worker')}"
                f" | {_cpu(c, 'server')} | {c['emulation_cpu_s_per_cluster']} | {c['cores_busy']}"
                f" | {c['peak_rss_mib']['worker']} / {c['peak_rss_mib']['temporal']} MiB"
                f" | {c['workflow_tasks_per_second']} |"
            )
    if any(c["size"] > c["new_clusters"] for r in data["runs"] for c in r["creates"]):
        lines += [
            "",
            "A step's CPU includes what the clusters that already existed cost meanwhile; (net …) takes that out at"
            " the previous steady state's rate.",
        ]
    idles = [(r, s) for r in data["runs"] for s in r["idle"]]
    if idles:
        lines += [
            "",
            "Steady state (nothing changing: the health rounds, the owners' rechecks, continue-as-new):",
            "",
            "| clusters | running workflows | seconds | worker % of a core | server % of a core | per cluster (worker + server) |"
            " RSS worker / server | WFT schedule-to-start p50 / p99 | WFT execution p50 / p99 | health round p50 / p99 |",
            "|---:|---:|---:|---:|---:|---:|---|---|---|---|",
        ]
        for r, s in idles:
            pct = s["cpu_pct_of_a_core"]
            hr = s["health_rounds"]
            rounds = (
                f"{hr['p50_s']} s / {hr['p99_s']} s ({hr['rounds']} rounds in {hr['sampled']} clusters)"
                if hr.get("rounds")
                else f"– ({hr.get('note', '')})"
            )
            lines.append(
                f"| {s['size']} (1+{r['workers_per_cluster']}) | {s.get('running_workflows', '–')} | {s['seconds']:.0f} | {pct['worker']} | {pct['temporal']}"
                f" | {(pct['worker'] + pct['temporal']) / s['size']:.3f} % | {s['rss_mib']['worker']} / {s['rss_mib']['temporal']} MiB"
                f" | {_ms(s['workflow_task_schedule_to_start_ms'], 'p50')} / {_ms(s['workflow_task_schedule_to_start_ms'], 'p99')}"
                f" | {_ms(s['workflow_task_execution_ms'], 'p50')} / {_ms(s['workflow_task_execution_ms'], 'p99')}"
                f" | {rounds} |"
            )
        lines += [
            "",
            "A health round is the health workflow's timer firing → its next interval's timer started (the"
            " observation activities and the verdict in between), from a sample of the health workflows' histories;"
            " HealthStatus itself exposes no round timing.",
        ]
    lines += ["", "**Against the anchors**", ""]
    lines += _anchor_lines(data)
    for r in data["runs"]:
        for h in r.get("histories") or []:
            if not h["window"].startswith("create"):
                continue
            pc = h["per_cluster"]
            top = ", ".join(f"{a} {n:g}" for a, n in list(h["activities_per_cluster"].items())[:6])
            types = ", ".join(f"{t} {c.get('workflow_tasks', 0):g}" for t, c in h["by_workflow_type"].items())
            lines.append(
                f"- History of {h['window']} (1+{r['workers_per_cluster']}), per new cluster:"
                f" {pc.get('workflow_tasks', 0):g} workflow tasks ({types}), {pc.get('activities', 0):g} activities"
                f" (most: {top}), {pc.get('timers', 0):g} timers, {pc.get('events', 0):g} events."
            )
    if data.get("note"):
        lines += ["", f"_Note on this run:_ {data['note']}"]
    lines += ["", PROFILE_NOTE]
    stopped = [r["stopped"] for r in data["runs"] if r.get("stopped")]
    if stopped:
        lines += ["", *(f"**Not reached:** {s}." for s in stopped)]
    if not data.get("full"):
        lines += [
            "",
            f"These are not the issue's full sizes (`python -m capt.dev.bench scale --full`: {FULL_CREATE:,} single-node"
            f" clusters, then steady state at {', '.join(map(str, FULL_STEADY))} clusters of 1+1).",
        ]
    lines += ["", "![scale: cost](img/bench-scale-cost.png) ![scale: time](img/bench-scale-time.png)"]
    return "\n".join(lines)


def _anchor_lines(data: dict[str, Any]) -> list[str]:
    b, m, sdk = data["baseline"], data["metal3"], data["sdk_benchmark"]
    out = []
    creates = [(r, c) for r in data["runs"] for c in r["creates"]]
    idles = [(r, s) for r in data["runs"] for s in r["idle"]]
    # Before this wave: 20 clusters of 1+1 applied at once.
    like = [(r, c) for r, c in creates if r["workers_per_cluster"] == b["workers_per_cluster"]]
    out.append(
        f"- Before this wave (the old code): {b['clusters']} clusters of 1 CP + 1 worker applied at once were all"
        f" Ready in {b['ready_seconds']} s, costing the worker {b['worker_cpu_s_per_cluster']} CPU-s and the"
        f" Temporal dev server {b['server_cpu_s_per_cluster']} CPU-s per cluster; idle, {b['clusters']} clusters kept"
        f" the worker at {b['idle_worker_pct']} % and the server at {b['idle_server_pct']} % of a core."
    )
    for r, c in like or creates[:1]:
        if not c["all_ready"]:
            out.append(
                f"  - now, {c['new_clusters']} new clusters of 1+{r['workers_per_cluster']}: {c['ready']} of {c['size']}"
                f" Ready after {c['wall_seconds']:.0f} s (cut off: no cost per cluster to compare)."
            )
            continue
        shape = f"1+{r['workers_per_cluster']}"
        wall = (
            f"all Ready in {c['wall_seconds']:.0f} s"
            + (
                f" ({_ratio(c['wall_seconds'], b['ready_seconds'])} than 73 s)"
                if c["new_clusters"] == b["clusters"]
                else ""
            )
            if c["all_ready"]
            else f"{c['ready']} Ready after {c['wall_seconds']:.0f} s"
        )
        w, sv = _net(c, "worker"), _net(c, "server")
        net = " net of the existing clusters' steady state" if c["size"] > c["new_clusters"] else ""
        out.append(
            f"  - now, {c['new_clusters']} new clusters of {shape}: {wall}; per cluster{net}, worker {w} CPU-s"
            f" ({_ratio(w, b['worker_cpu_s_per_cluster'])}), server {sv} ({_ratio(sv, b['server_cpu_s_per_cluster'])})."
        )
    for r, s in idles:
        pct = s["cpu_pct_of_a_core"]
        bw, bs = b["idle_worker_pct"] / b["clusters"], b["idle_server_pct"] / b["clusters"]
        w, sv = pct["worker"] / s["size"], pct["temporal"] / s["size"]
        out.append(
            f"  - idle at {s['size']} clusters of 1+{r['workers_per_cluster']}: worker {pct['worker']} %, server"
            f" {pct['temporal']} % of a core, i.e. {w:.3f} % and {sv:.3f} % per cluster against {bw:.3f} % and"
            f" {bs:.3f} % before ({_ratio(w, bw)}, {_ratio(sv, bs)})."
        )
    rate = m["clusters"] / (m["minutes"] * 60)
    core_s = m["cores"] * m["minutes"] * 60 / m["clusters"]
    out.append(
        f"- metal3: {m['clusters']:,} single-node in-memory clusters in ~{m['minutes']} min on a {m['cores']}-core"
        f" laptop, i.e. {rate * 60:.0f} clusters/min and at most {core_s:.1f} core-s per cluster (if every core was busy)."
    )
    for r, c in creates:
        if not c["all_ready"] or c["new_clusters"] < 10:
            continue
        capt_rate = c["new_clusters"] / c["wall_seconds"]
        cost = sum(c["cpu_seconds"].values()) / c["new_clusters"]
        out.append(
            f"  - capt, {c['new_clusters']} new clusters of 1+{r['workers_per_cluster']} on {data.get('machine', {}).get('cores', 2)} cores"
            f" (AWS and nodes emulated on the same cores): {capt_rate * 60:.0f} clusters/min ({capt_rate / rate:.2f}× metal3's rate),"
            f" {cost:.2f} CPU-s per cluster all processes included ({_ratio(cost, core_s)} than metal3's bound)."
        )
    out.append(
        f"- Temporal Python SDK benchmark: ~{sdk['workflows_per_second']} {sdk['what']}. capt's single worker"
        " sustained "
        + (
            ", ".join(
                f"{c['workflow_tasks_per_second']} workflow tasks/s creating {c['new_clusters']}"
                for _, c in creates
            )
            or "–"
        )
        + " (each task a real one: replaying, deciding, encoding payloads; a trivial workflow is 1–2 tasks)."
    )
    return out


def summary(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    b = data["baseline"]
    creates = [
        (r, c) for r in data["runs"] for c in r["creates"] if r["workers_per_cluster"] == 1 and c["all_ready"]
    ]
    if creates:
        same = [(r, c) for r, c in creates if c["new_clusters"] == b["clusters"]]
        r, c = (same or creates)[-1]
        per = _net(c, "worker") + _net(c, "server")
        base = b["worker_cpu_s_per_cluster"] + b["server_cpu_s_per_cluster"]
        rows.append(
            (
                f"create cost, {c['new_clusters']} clusters of 1+1 at once (worker + server CPU-s per cluster)",
                f"{base:g} before this wave (20 clusters)",
                f"{per:.2f}",
                _ratio(per, base),
            )
        )
    idles = [(r, s) for r in data["runs"] for s in r["idle"] if r["workers_per_cluster"] == 1]
    if idles:
        r, s = idles[-1]
        pct = s["cpu_pct_of_a_core"]["worker"] + s["cpu_pct_of_a_core"]["temporal"]
        base_per = (b["idle_worker_pct"] + b["idle_server_pct"]) / b["clusters"]
        per = pct / s["size"]
        rows.append(
            (
                f"idle cost at {s['size']} clusters of 1+1 (worker + server, % of a core per cluster)",
                f"{base_per:.3f} before this wave (20 clusters)",
                f"{per:.3f}",
                _ratio(per, base_per),
            )
        )
    return rows


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.IMAGES.mkdir(parents=True, exist_ok=True)
    b = data["baseline"]
    paths = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, r in enumerate(data["runs"]):
        cs = [c for c in r["creates"] if c["all_ready"]]  # a step cut off by its deadline has no cost
        if not cs:
            continue
        x = [c["size"] for c in cs]
        tag = f" (1+{r['workers_per_cluster']})"
        ax1.plot(
            x,
            [_net(c, "worker") for c in cs],
            "o-",
            color="C0",
            alpha=1 - 0.4 * i,
            label="worker" + tag,
        )
        ax1.plot(
            x,
            [_net(c, "server") for c in cs],
            "s-",
            color="C1",
            alpha=1 - 0.4 * i,
            label="dev server" + tag,
        )
        ax1.plot(
            x,
            [c["emulation_cpu_s_per_cluster"] for c in cs],
            "^--",
            color="C2",
            alpha=1 - 0.4 * i,
            label="moto+sim" + tag,
        )
    ax1.axhline(b["worker_cpu_s_per_cluster"], color="C0", linestyle=":", linewidth=1)
    ax1.axhline(b["server_cpu_s_per_cluster"], color="C1", linestyle=":", linewidth=1)
    ax1.set_xlabel("clusters")
    ax1.set_ylabel("CPU-s per new cluster, net (dotted: before)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=7)
    ax1.set_title("create cost", fontsize=9)
    idles = [(r, s) for r in data["runs"] for s in r["idle"]]
    if idles:
        x = [s["size"] for _, s in idles]
        ax2.plot(x, [s["cpu_pct_of_a_core"]["worker"] for _, s in idles], "o-", label="worker")
        ax2.plot(x, [s["cpu_pct_of_a_core"]["temporal"] for _, s in idles], "s-", label="dev server")
        ax2.plot([b["clusters"]], [b["idle_worker_pct"]], "o", mfc="none", color="C0", label="worker before")
        ax2.plot([b["clusters"]], [b["idle_server_pct"]], "s", mfc="none", color="C1", label="server before")
        ax2.set_xlabel("clusters")
        ax2.set_ylabel("% of a core, idle")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "no steady state measured", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_title("steady-state cost", fontsize=9)
    fig.tight_layout()
    path = results.IMAGES / "bench-scale-cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, r in enumerate(data["runs"]):
        cs = [c for c in r["creates"] if c["all_ready"]]
        if not r["creates"]:
            continue
        x = [c["size"] for c in cs]
        tag = f" (1+{r['workers_per_cluster']})"
        ax1.plot(x, [c["wall_seconds"] for c in cs], "o-", color=f"C{3 * i}", label="all Ready" + tag)
        ax1.plot(
            x,
            [c["time_to_ready_p99"] or 0 for c in cs],
            "s--",
            color=f"C{3 * i + 1}",
            label="apply→Ready p99" + tag,
        )
        ax1.plot(
            x,
            [c["time_to_ready_p50"] or 0 for c in cs],
            "^:",
            color=f"C{3 * i + 2}",
            label="apply→Ready p50" + tag,
        )
        for c in r["creates"]:
            t = [p[0] for p in c["timeline"]]
            cut = "" if c["all_ready"] else " (cut off)"
            ax2.plot(t, [p[1] for p in c["timeline"]], label=f"{c['size']} clusters{tag}{cut}")
    ax1.plot([b["clusters"]], [b["ready_seconds"]], "*", color="k", label="before (20 × 1+1)")
    ax1.set_xlabel("clusters")
    ax1.set_ylabel("seconds")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=7)
    ax1.set_title("time to Ready", fontsize=9)
    ax2.set_xlabel("seconds since the step's apply")
    ax2.set_ylabel("clusters Ready")
    ax2.legend(fontsize=7)
    ax2.set_title("Ready over time", fontsize=9)
    fig.tight_layout()
    path = results.IMAGES / "bench-scale-time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
