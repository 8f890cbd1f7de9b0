"""Benchmark: one big cluster (3 control-plane machines + N workers) created, then rolled twice.

    python -m capt.dev.bench big_cluster [--workers N[,N...]] [--full] [--results DIR]

On Temporal's time-skipping test server with the fake cloud (testkit/fake_cloud.py) under the
latency model (bench/latencies.toml: boot = instance_pending, kubeadm init / join, terminate =
instance_terminate), all in workflow time:

- a ControlPlaneWorkflow of 3 machines and a MachineDeploymentWorkflow of N workers over real
  MachineWorkflows, both owned by a stand-in for the ClusterWorkflow (`OwnerSink` below): it
  receives their `control_plane_changed` / `deployment_changed` status signals exactly as the
  ClusterWorkflow does (so their cost is measured), records each with its workflow time, and
  relays "control plane initialized" to the deployment as the ClusterWorkflow does. The
  ClusterWorkflow itself (network on moto, PKI, health check) is left out: the create of its
  network is benchmark 1's subject, and this one is about the machines;
- the deployment is created (workers start once the first control-plane node is Ready), rolled to
  a new version with maxSurge 1 / maxUnavailable 0, then to another with maxSurge 10 %;
- each phase's time is compared with its bound: the create with CP1 (boot + init) followed by the
  two joining control-plane machines (workers join in parallel meanwhile), a rollout with
  `model.rollout_bound` = ceil(N / surge) × (instance_pending + kubeadm_join);
- every workflow's history is read afterwards (every run of a continue-as-new chain): events and
  bytes per workflow type (largest run and total), runs, and workflow tasks completed.

Defaults are small (N = 20: well under a minute); `--full` runs N = 50 and N = 500 (the issue's
"3 + 500", the size cluster-api's scale tests aim at with one cluster: kubernetes-sigs/cluster-api
#8814, #13305), so the largest histories of N = 50 and N = 500 can be compared: continue-as-new
must keep the owners' runs bounded whatever N.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from capt.contracts.owners import ControlPlaneStatus, DeploymentStatus
from capt.dev.bench import model, results
from capt.dev.paths import REPO_ROOT
from capt.dev.testkit import time_skipping
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.workflows.machine_deployment_models import ControlPlaneInfo

ROOT = REPO_ROOT

CP_VERSION = "v1.30.2"
# The workers start one patch behind and roll twice: to VERSIONS[1] with maxSurge 1, then to
# VERSIONS[2] with maxSurge 10 %.
VERSIONS = ("v1.30.0", "v1.30.1", "v1.30.2")
SURGES: tuple[int | str, ...] = (1, "10%")
DEFAULT_WORKERS = (20,)
# --full: N = 20 with both rollouts, N = 50 and 500 with the 10 % one. Once the deployment has
# continued as new (Temporal suggests it after a few MB of history), the time-skipping test server
# no longer skips time for the machines the earlier run started (temporalio/sdk-java#1540): the
# rest of the run takes real time, 1:1. A maxSurge-1 rollout of 500 (500 waves, ≥ 22,500 s) would
# take over six hours of wall time, 50 waves close to an hour.
FULL_RUNS: tuple[tuple[int, tuple[int | str, ...]], ...] = ((20, SURGES), (50, ("10%",)), (500, ("10%",)))
CONTROL_PLANE = 3
# Wall seconds after which a run stops waiting and reports what it reached.
WALL_LIMIT = 1200.0


class Incomplete(Exception):
    """A phase did not complete within its limits; the message says what was reached."""


# The owners' default: continue-as-new after this many loop turns (or when Temporal suggests it).
DEFAULT_MAX_ITERATIONS = 500


# ---------------------------------------------------------------------------------------------
# The fake cloud, with samples kept cheap
# ---------------------------------------------------------------------------------------------


class BenchCloud(FakeCloud):
    """FakeCloud whose `ready <machine>` sample is kept once per machine: the deployment's node
    checks list every running node each 30 s during a rollout, and FakeCloud samples each Ready
    node each time (O(N²) samples for a 500-machine rollout, all alike)."""

    def __init__(self, lat: model.Latencies, with_init: bool = True) -> None:
        super().__init__(
            boot_seconds=lat.instance_pending,
            join_seconds=lat.kubeadm_join,
            terminate_seconds=lat.instance_terminate,
            init_seconds=lat.kubeadm_init if with_init else None,
        )
        self.ready_seen: set[str] = set()

    def sample(self, event: str) -> None:
        kind, _, machine = event.partition(" ")
        if kind == "ready":
            if machine in self.ready_seen:
                return
            self.ready_seen.add(machine)
        super().sample(event)


# ---------------------------------------------------------------------------------------------
# The ClusterWorkflow's stand-in
# ---------------------------------------------------------------------------------------------


class SinkInput(BaseModel):
    deployment_workflow_id: str


class Point(BaseModel):
    """One `deployment_changed` signal as the owner received it (workflow-clock seconds)."""

    at: float
    revision: str
    version: str
    replicas: int
    up_to_date: int
    available: int
    desired: int
    bytes: int


class SinkView(BaseModel):
    points: list[Point]
    control_plane_initialized_at: float | None
    control_plane_ready_at: float | None
    signals: dict[str, int]
    signal_bytes: dict[str, int]
    largest_signal: dict[str, int]


@workflow.defn(name="BenchOwnerSink", sandboxed=False)
class OwnerSink:
    """Receives the owners' status signals as the ClusterWorkflow does (`deployment_changed`,
    `control_plane_changed`), records them, relays the control plane's initialization to the
    deployment (the ClusterWorkflow's `control_plane_changed` to it), and ends on `finish`."""

    @workflow.init
    def __init__(self, inp: SinkInput) -> None:
        self._md = inp.deployment_workflow_id
        self._points: list[Point] = []
        self._cp_init: float | None = None
        self._cp_ready: float | None = None
        self._relay = False
        self._done = False
        self._signals: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._largest: dict[str, int] = {}

    def _count(self, name: str, size: int) -> None:
        self._signals[name] = self._signals.get(name, 0) + 1
        self._bytes[name] = self._bytes.get(name, 0) + size
        self._largest[name] = max(self._largest.get(name, 0), size)

    @workflow.run
    async def run(self, inp: SinkInput) -> None:
        while not self._done:
            await workflow.wait_condition(lambda: self._relay or self._done)
            if self._relay:
                self._relay = False
                await workflow.get_external_workflow_handle(self._md).signal(
                    "control_plane_changed", ControlPlaneInfo(initialized=True, version=CP_VERSION)
                )

    @workflow.signal
    def deployment_changed(self, status: DeploymentStatus) -> None:
        size = len(status.model_dump_json())
        self._count("deployment_changed", size)
        self._points.append(
            Point(
                at=workflow.now().timestamp(),
                revision=status.revision,
                version=status.version,
                replicas=status.replicas,
                up_to_date=status.up_to_date_replicas,
                available=status.available_replicas,
                desired=status.desired_replicas,
                bytes=size,
            )
        )

    @workflow.signal
    def control_plane_changed(self, status: ControlPlaneStatus) -> None:
        self._count("control_plane_changed", len(status.model_dump_json()))
        now = workflow.now().timestamp()
        if status.initialized and self._cp_init is None:
            self._cp_init = now
            self._relay = True
        if status.ready and self._cp_ready is None:
            self._cp_ready = now

    @workflow.signal
    def finish(self) -> None:
        self._done = True

    @workflow.query
    def view(self, since: int) -> SinkView:
        return SinkView(
            points=self._points[since:],
            control_plane_initialized_at=self._cp_init,
            control_plane_ready_at=self._cp_ready,
            signals=dict(self._signals),
            signal_bytes=dict(self._bytes),
            largest_signal=dict(self._largest),
        )


# ---------------------------------------------------------------------------------------------
# Shared with bench/mttr.py: the test server, skipping time, reading histories
# ---------------------------------------------------------------------------------------------


async def skip(env, seconds: float) -> None:
    """Skip `seconds` of workflow time, with an RPC deadline generous enough for a loaded server
    (while tasks are outstanding the test server's clock runs in real time instead of skipping)."""
    from temporalio.api.testservice.v1 import SleepRequest
    from temporalio.service import RPCError

    target = await env.get_current_time() + timedelta(seconds=seconds)
    while True:
        remaining = target - await env.get_current_time()
        if remaining <= timedelta(0):
            return
        req = SleepRequest()
        req.duration.FromTimedelta(remaining)
        try:
            await env.client.test_service.unlock_time_skipping_with_sleep(
                req, timeout=timedelta(seconds=remaining.total_seconds() + 600)
            )
            return
        except RPCError as err:
            if "deadline" not in str(err).lower() and "timeout" not in str(err).lower():
                raise


@dataclass
class TypeHistory:
    """Histories of one workflow type: every run of every workflow id of that type."""

    workflows: int = 0
    runs: int = 0
    max_events: int = 0
    max_bytes: int = 0
    total_events: int = 0
    total_bytes: int = 0
    workflow_tasks: int = 0
    activities: int = 0
    signals_sent_bytes: int = 0
    largest_event_bytes: int = 0
    largest_event: str = ""
    max_run: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


async def histories(client, workflow_ids: list[str], concurrency: int = 8) -> dict[str, dict[str, Any]]:
    """Per workflow type: runs, the largest run's events and bytes, totals, workflow tasks
    completed and activities scheduled, over every run of each id (following continue-as-new
    back from the latest run)."""
    from temporalio.api.enums.v1 import EventType

    by_type: dict[str, TypeHistory] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(wid: str) -> None:
        async with gate:
            run_id: str | None = (await client.get_workflow_handle(wid).describe()).run_id
            first = True
            while run_id:
                history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
                started = history.events[0].workflow_execution_started_event_attributes
                t = by_type.setdefault(started.workflow_type.name, TypeHistory())
                events, size = len(history.events), sum(e.ByteSize() for e in history.events)
                t.runs += 1
                t.workflows += 1 if first else 0
                t.total_events += events
                t.total_bytes += size
                if (events, size) > (t.max_events, t.max_bytes):
                    t.max_events, t.max_bytes, t.max_run = events, size, f"{wid}@{run_id[:8]}"
                for e in history.events:
                    if (b := e.ByteSize()) > t.largest_event_bytes:
                        t.largest_event_bytes, t.largest_event = b, EventType.Name(e.event_type)
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                        t.workflow_tasks += 1
                    elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                        t.activities += 1
                    elif e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                        t.signals_sent_bytes += e.ByteSize()
                run_id = started.continued_execution_run_id or None
                first = False

    await asyncio.gather(*(one(w) for w in workflow_ids))
    return {k: by_type[k].as_dict() for k in sorted(by_type)}


def quiet_sdk() -> None:
    # Workflows log at warning level when they retry; a benchmark prints its own table.
    logging.getLogger("temporalio").setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------------
# The measurement
# ---------------------------------------------------------------------------------------------


def surge_of(surge: int | str, replicas: int) -> int:
    """maxSurge as a number of machines (a percentage rounds up, as Kubernetes rounds it)."""
    if isinstance(surge, str):
        return math.ceil(replicas * int(surge.rstrip("%")) / 100)
    return surge


def create_bound(lat: model.Latencies, control_plane: int = CONTROL_PLANE) -> float:
    """The machines' create bound: CP1 boots and runs kubeadm init, the other control-plane
    machines join one after the other; the workers join in parallel once CP1 is Ready."""
    cp = lat.first_control_plane + (control_plane - 1) * lat.joining_machine
    return max(cp, lat.first_control_plane + lat.joining_machine)


async def measure(
    workers: int, lat: model.Latencies, surges: tuple[int | str, ...] = SURGES, step: float | None = None
) -> dict[str, Any]:
    from capt.dev.testkit.context import cluster_context, machine_template
    from capt.spec.models import ControlPlaneSpec, KubeadmConfigSpec, MachineDeploymentSpec, RollingUpdate
    from capt.worker import build_worker
    from capt.workflows.control_plane import ControlPlaneInput, ControlPlaneWorkflow
    from capt.workflows.machine import MachineWorkflow
    from capt.workflows.machine_deployment import MachineDeploymentWorkflow
    from capt.workflows.machine_deployment_models import (
        MachineDeploymentInput,
        StrategyRequest,
        TemplateRequest,
    )
    from capt.workflows.machine_models import machine_workflow_id

    step = step or (10.0 if workers <= 50 else 30.0)
    cloud = BenchCloud(lat)
    ctx = cluster_context(f"big-{uuid.uuid4().hex[:6]}")
    md_id = MachineDeploymentWorkflow.workflow_id(ctx.namespace, ctx.name, "md-0")
    cp_id = f"controlplane/{ctx.namespace}/{ctx.name}"
    sink_id = f"bench-owner/{ctx.namespace}/{ctx.name}"
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    env = await time_skipping.start_env()
    wall0 = time.monotonic()
    out: dict[str, Any] = {"workers": workers, "control_plane": CONTROL_PLANE}
    try:
        async with build_worker(
            env.client,
            queue,
            workflows=[OwnerSink, ControlPlaneWorkflow, MachineDeploymentWorkflow, MachineWorkflow],
            activities=cloud.activities(),
        ):
            sink = await env.client.start_workflow(
                OwnerSink.run, SinkInput(deployment_workflow_id=md_id), id=sink_id, task_queue=queue
            )
            points: list[Point] = []
            view: SinkView | None = None

            async def poll() -> SinkView:
                nonlocal view
                view = await sink.query(OwnerSink.view, len(points))
                points.extend(view.points)
                return view

            await env.client.start_workflow(
                ControlPlaneWorkflow.run,
                ControlPlaneInput(
                    cluster=ctx,
                    spec=ControlPlaneSpec(
                        name="cp",
                        replicas=CONTROL_PLANE,
                        version=CP_VERSION,
                        machine_template=machine_template("cp"),
                    ),
                    owner_workflow_id=sink_id,
                ),
                id=cp_id,
                task_queue=queue,
            )
            md = await env.client.start_workflow(
                MachineDeploymentWorkflow.run,
                MachineDeploymentInput(
                    cluster=ctx,
                    spec=MachineDeploymentSpec(
                        name="md-0",
                        replicas=workers,
                        version=VERSIONS[0],
                        machine_template=machine_template("md-0"),
                        bootstrap=KubeadmConfigSpec(),
                        bootstrap_template_name="md-0-bootstrap",
                        rolling_update=RollingUpdate(max_surge=1, max_unavailable=0),
                    ),
                    control_plane_version=CP_VERSION,
                    control_plane_initialized=False,
                    owner_workflow_id=sink_id,
                ),
                id=md_id,
                task_queue=queue,
            )
            t0 = (await md.describe()).start_time.timestamp()

            async def until_complete(version: str, what: str, limit: float) -> float:
                """Skip time until the owner has been told the deployment is complete at `version`;
                the workflow time it was told (seconds after t0)."""
                waited, shown = 0.0, time.monotonic()
                while True:
                    await poll()
                    if time.monotonic() - shown > 30 and points:
                        shown, p = time.monotonic(), points[-1]
                        print(
                            f"    {what}: at {p.at - t0:.0f} s {p.version} {p.up_to_date} up to date,"
                            f" {p.available} available, {p.replicas} machines",
                            flush=True,
                        )
                    done = next(
                        (
                            p
                            for p in points
                            if p.version == version
                            and p.replicas == p.up_to_date == p.available == p.desired == workers
                        ),
                        None,
                    )
                    if done is not None:
                        return done.at - t0
                    if waited > limit or time.monotonic() - wall0 > WALL_LIMIT:
                        last = points[-1] if points else None
                        raise Incomplete(
                            f"{what}: not complete after {waited:.0f} s of workflow time"
                            f" ({time.monotonic() - wall0:.0f} s wall); last status:"
                            + (
                                f" {last.up_to_date} of {workers} up to date, {last.available} available,"
                                f" {last.replicas} machines at {last.at - t0:.0f} s"
                                if last
                                else " none"
                            )
                        )
                    await skip(env, step)
                    waited += step

            # 1. Create: the control plane, then (relayed by the owner) the workers.
            wall = time.monotonic()
            workers_done = await until_complete(VERSIONS[0], "create", 3600)
            while view is None or view.control_plane_ready_at is None:
                await skip(env, step)
                await poll()
            assert view.control_plane_initialized_at is not None and view.control_plane_ready_at is not None
            cp_ready = view.control_plane_ready_at - t0
            create = max(cp_ready, workers_done)
            out["create"] = {
                "seconds": round(create, 1),
                "control_plane_initialized_seconds": round(view.control_plane_initialized_at - t0, 1),
                "control_plane_ready_seconds": round(cp_ready, 1),
                "workers_complete_seconds": round(workers_done, 1),
                "bound_seconds": create_bound(lat),
                "ratio": round(create / create_bound(lat), 3),
                "wall_seconds": round(time.monotonic() - wall, 1),
            }
            print(
                f"  N={workers} create: {create:.0f} s simulated, {out['create']['wall_seconds']} s wall",
                flush=True,
            )

            # 2. Two rollouts: a new version with each surge.
            out["rollouts"] = []
            for surge, version in zip(surges, VERSIONS[1:], strict=False):
                wall = time.monotonic()
                await md.execute_update(
                    MachineDeploymentWorkflow.set_strategy,
                    StrategyRequest(max_surge=surge, max_unavailable=0),
                )
                launched_before = len(cloud.instances)
                # The test server's clock does not skip while no one sleeps: the update is
                # accepted at this instant (give or take the real milliseconds of the call).
                start = (await env.get_current_time()).timestamp() - t0
                await md.execute_update(
                    MachineDeploymentWorkflow.change_template, TemplateRequest(version=version)
                )
                n_surge = surge_of(surge, workers)
                bound = model.rollout_bound(lat, workers, n_surge)
                try:
                    end = await until_complete(version, f"rollout maxSurge {surge}", 4 * bound + 3600)
                except Incomplete as gone:
                    out["incomplete"] = str(gone)
                    print(f"  N={workers}: {gone}", flush=True)
                    break
                replaced = len(cloud.instances) - launched_before
                seconds = end - start
                out["rollouts"].append(
                    {
                        "max_surge": surge,
                        "surge_machines": n_surge,
                        "version": version,
                        "start_seconds": round(start, 1),
                        "seconds": round(seconds, 1),
                        "bound_seconds": bound,
                        "ratio": round(seconds / bound, 3),
                        "waves": math.ceil(workers / n_surge),
                        "seconds_per_wave": round(seconds / math.ceil(workers / n_surge), 1),
                        "machines_launched": replaced,
                        "wall_seconds": round(time.monotonic() - wall, 1),
                    }
                )
                print(
                    f"  N={workers} rollout maxSurge {surge}: {seconds:.0f} s simulated (bound {bound:.0f} s),"
                    f" {out['rollouts'][-1]['wall_seconds']} s wall",
                    flush=True,
                )
            out["wall_seconds"] = round(time.monotonic() - wall0, 1)

            # 3. What it cost: histories, signals, activity calls.
            await poll()
            assert view is not None
            wall = time.monotonic()
            machine_ids = sorted({machine_workflow_id(ctx, i.machine) for i in cloud.instances.values()})
            out["histories"] = await histories(env.client, [md_id, cp_id, *machine_ids])
            out["history_read_wall_seconds"] = round(time.monotonic() - wall, 1)
            out["owner_signals"] = {
                "count": view.signals,
                "bytes": view.signal_bytes,
                "largest_bytes": view.largest_signal,
            }
            out["activity_calls"] = sum(cloud.calls.values())
            out["samples"] = [
                (round(s.at.timestamp() - t0, 1), s.machines, s.ready, s.by_version) for s in cloud.samples
            ]
            await sink.signal(OwnerSink.finish)
    finally:
        await env.shutdown()
    return out


# ---------------------------------------------------------------------------------------------
# CLI, report
# ---------------------------------------------------------------------------------------------


def _workers(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m capt.dev.bench big_cluster", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--workers", type=_workers, default=None, help="worker counts, comma-separated (default 20)"
    )
    p.add_argument(
        "--surges", default=None, help="maxSurge of each rollout, comma-separated (default 1,10%%)"
    )
    p.add_argument("--full", action="store_true", help="N = 20 (both rollouts), 50 and 500 (10 %% only)")
    p.add_argument("--results", type=Path, default=results.RESULTS, help="where to save big_cluster.json")
    args = p.parse_args(argv or [])
    quiet_sdk()
    lat = model.load()
    surges = tuple(int(x) if x.isdigit() else x for x in args.surges.split(",")) if args.surges else SURGES
    plan = (
        FULL_RUNS
        if args.full and not args.workers
        else tuple((n, surges) for n in args.workers or DEFAULT_WORKERS)
    )
    runs = []
    for n, these in plan:
        print(f"3 + {n}:", flush=True)
        runs.append(asyncio.run(measure(n, lat, these)))
    print(table(runs))
    results.save(
        "big_cluster",
        {
            "latencies": {
                "instance_pending": lat.instance_pending,
                "kubeadm_init": lat.kubeadm_init,
                "kubeadm_join": lat.kubeadm_join,
                "instance_terminate": lat.instance_terminate,
            },
            "runs": runs,
        },
        args.results,
    )
    return 0


OWNER_TYPES = ("MachineDeploymentWorkflow", "ControlPlaneWorkflow")


def table(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'N':>5} {'phase':<24} {'simulated':>10} {'bound':>8} {'ratio':>6} {'wall':>7}"]
    for r in runs:
        c = r["create"]
        lines.append(
            f"{r['workers']:>5} {'create 3+N':<24} {c['seconds']:>9.0f}s {c['bound_seconds']:>7.0f}s"
            f" {c['ratio']:>6.2f} {c['wall_seconds']:>6.1f}s"
        )
        for ro in r["rollouts"]:
            lines.append(
                f"{r['workers']:>5} {'rollout maxSurge ' + str(ro['max_surge']):<24} {ro['seconds']:>9.0f}s"
                f" {ro['bound_seconds']:>7.0f}s {ro['ratio']:>6.2f} {ro['wall_seconds']:>6.1f}s"
            )
    lines.append("")
    lines.append(
        f"{'N':>5} {'workflow type':<28} {'runs':>5} {'max events':>10} {'max bytes':>11} {'wf tasks':>9}"
    )
    for r in runs:
        for name, h in r["histories"].items():
            lines.append(
                f"{r['workers']:>5} {name:<28} {h['runs']:>5} {h['max_events']:>10} {h['max_bytes']:>11,}"
                f" {h['workflow_tasks']:>9}"
            )
    return "\n".join(lines)


def section(data: dict[str, Any]) -> str:
    runs = data["runs"]
    lat = data.get("latencies", {})
    lines = [
        '<a id="big-cluster"></a>',
        "## One big cluster: 3 + N machines, created and rolled (simulated time)",
        "",
        "Cluster API's scale work aims at one cluster of 3 control-plane machines + 500 workers"
        " (kubernetes-sigs/cluster-api #8814, #13305). Here a ControlPlaneWorkflow (3 machines) and a"
        " MachineDeploymentWorkflow (N workers) over real MachineWorkflows run on the time-skipping test"
        " server with the fake cloud under the latency model (boot"
        f" {lat.get('instance_pending', '?')} s, kubeadm init {lat.get('kubeadm_init', '?')} s, join"
        f" {lat.get('kubeadm_join', '?')} s, terminate {lat.get('instance_terminate', '?')} s). The"
        " ClusterWorkflow is replaced by a stand-in that receives the owners' status signals as it does"
        " and relays the control plane's initialization to the deployment; the network (benchmark 1)"
        " and the health check are not part of this run. The deployment is created, rolled to a new"
        " version with maxSurge 1, then with maxSurge 10 % (maxUnavailable 0 both times).",
        "",
        "Bounds: the create, CP1 boot + init then two joins (workers join in parallel once CP1 is"
        " Ready); a rollout, `ceil(N / surge) × (instance_pending + kubeadm_join)` (each wave a new"
        " machine booting and joining; the old one's drain and termination overlap the next wave).",
        "",
        "| N | phase | simulated | bound | ratio | per wave | wall |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        c = r["create"]
        lines.append(
            f"| {r['workers']} | create 3+{r['workers']} | {c['seconds']:.0f} s | {c['bound_seconds']:.0f} s"
            f" | **{c['ratio']:.2f}** | | {c['wall_seconds']:.1f} s |"
        )
        for ro in r["rollouts"]:
            lines.append(
                f"| {r['workers']} | rollout, maxSurge {ro['max_surge']} ({ro['surge_machines']}),"
                f" {ro['waves']} waves | {ro['seconds']:.0f} s | {ro['bound_seconds']:.0f} s"
                f" | **{ro['ratio']:.2f}** | {ro['seconds_per_wave']:.1f} s | {ro['wall_seconds']:.1f} s |"
            )
    for r in runs:
        if r.get("incomplete"):
            lines.append(f"| {r['workers']} | not complete | {r['incomplete']} | | | | |")
    lines += [
        "",
        "Histories per workflow type (every run of every workflow; `max` is the largest single run,"
        " which is what Temporal's limits of 51,200 events / 50 MB per run apply to; warnings at"
        " 10,240 events / 10 MB):",
        "",
        "| N | workflow type | workflows | runs | max events | max bytes | total events | total bytes"
        " | workflow tasks | activities |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        for name, h in r["histories"].items():
            lines.append(
                f"| {r['workers']} | {name} | {h['workflows']} | {h['runs']} | {h['max_events']:,}"
                f" | {h['max_bytes']:,} | {h['total_events']:,} | {h['total_bytes']:,}"
                f" | {h['workflow_tasks']:,} | {h['activities']:,} |"
            )
    lines += ["", *_history_comparison(runs), ""]
    sig_rows = []
    for r in runs:
        s = r["owner_signals"]
        for name in sorted(s["count"]):
            sig_rows.append(
                f"| {r['workers']} | {name} | {s['count'][name]:,} | {s['bytes'][name]:,}"
                f" | {s['largest_bytes'][name]:,} |"
            )
    lines += [
        "Status signals to the owner (what the ClusterWorkflow records in its history):",
        "",
        "| N | signal | count | bytes | largest |",
        "|---:|---|---:|---:|---:|",
        *sig_rows,
        "",
    ]
    lines += ["![machines per version during the rollouts](img/bench-big-cluster.png)", ""]
    return "\n".join(lines)


def _history_comparison(runs: list[dict[str, Any]]) -> list[str]:
    """A sentence comparing the owners' largest run across N (continue-as-new keeps it bounded)."""
    if len(runs) < 2:
        return []
    small, big = min(runs, key=lambda r: r["workers"]), max(runs, key=lambda r: r["workers"])
    parts = []
    for t in OWNER_TYPES:
        a, b = small["histories"].get(t), big["histories"].get(t)
        if a and b:
            parts.append(
                f"{t}: largest run {a['max_events']:,} events / {a['max_bytes']:,} B at N={small['workers']}"
                f" ({a['runs']} runs) vs {b['max_events']:,} events / {b['max_bytes']:,} B at"
                f" N={big['workers']} ({b['runs']} runs)"
            )
    return ["Continue-as-new: " + "; ".join(parts) + "."] if parts else []


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.6 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        samples = r["samples"]
        versions = sorted({v for *_, by in samples for v in by})
        ts = [s[0] for s in samples]
        for v in versions:
            ax.step(ts, [s[3].get(v, 0) for s in samples], where="post", label=f"machines at {v}")
        ax.step(
            ts, [s[2] for s in samples], where="post", color="#444444", linestyle=":", label="Ready nodes"
        )
        for ro in r["rollouts"]:
            ax.axvspan(ro["start_seconds"], ro["start_seconds"] + ro["seconds"], color="#dddddd", alpha=0.4)
            ax.text(
                ro["start_seconds"],
                r["workers"] * 1.02,
                f"maxSurge {ro['max_surge']}: {ro['seconds']:.0f} s ({ro['ratio']:.2f}× bound)",
                fontsize=7,
            )
        ax.set_xlabel("seconds (simulated)")
        ax.set_ylabel("machines")
        ax.set_title(f"3 + {r['workers']}: create, rollout maxSurge 1, rollout maxSurge 10 %", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    results.IMAGES.mkdir(parents=True, exist_ok=True)
    path = results.IMAGES / "bench-big-cluster.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
