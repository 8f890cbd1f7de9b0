"""`Scale`: one local stack and one worker, clusters added in cumulative steps, with the
measurements of each step (time to Ready, idle CPU, health rounds, history sizes)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from capt.dev.bench.scale.metrics import _r, counters_delta, cpu_seconds, histogram_delta, percentile, rss_mib
from capt.dev.bench.scale.settings import EXAMPLE, HEALTH_SAMPLE, SERVICES

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
