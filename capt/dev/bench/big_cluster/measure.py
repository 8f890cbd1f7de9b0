"""The measurement: the cluster created and rolled twice on the time-skipping server, against
the latency model's lower bounds."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from capt.dev.bench import model
from capt.dev.bench.big_cluster.settings import (
    CONTROL_PLANE,
    CP_VERSION,
    SURGES,
    VERSIONS,
    WALL_LIMIT,
    Incomplete,
)
from capt.dev.bench.big_cluster.shared import BenchCloud, histories, skip
from capt.dev.bench.big_cluster.sink import OwnerSink, Point, SinkInput, SinkView
from capt.dev.testkit import time_skipping

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
    from capt.workflows.controlplane.models import ControlPlaneInput
    from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
    from capt.workflows.machine.models import machine_workflow_id
    from capt.workflows.machine.workflow import MachineWorkflow
    from capt.workflows.machinedeployment.models import (
        MachineDeploymentInput,
        StrategyRequest,
        TemplateRequest,
    )
    from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow

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
