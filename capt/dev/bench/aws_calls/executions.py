"""Part 2b, how often the workflows run each activity per machine: a counting fake cloud under
time-skipping runs of a cluster create and of a MachineDeployment's create, rollout and delete."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections import Counter
from typing import Any

from capt.dev.bench.aws_calls.activities import NOT_AWS
from capt.dev.bench.aws_calls.ops import NEW_VERSION_TEMPLATE, VERSION
from capt.dev.testkit import time_skipping

# ---------------------------------------------------------------------------------------------
# 2b. how often the workflows run each activity, per machine


def counting_cloud_class():
    """A FakeCloud that also records, per machine, which activity (in which case) ran: the
    labels of `activity_costs`."""
    from temporalio import activity

    from capt.dev.testkit.fake_cloud import FakeCloud

    class CountingCloud(FakeCloud):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.per_machine: dict[str, Counter] = {}
            self.kind: dict[str, str] = {}
            self.ran: dict[str, Counter] = {}  # machine -> activity name -> executions
            self._record_lock = threading.Lock()

        def machine_of(self, arg: Any) -> str | None:
            name = getattr(arg, "machine_name", None)
            if name:
                return name
            arn = getattr(arg, "token_secret_arn", None) or getattr(arg, "secret_arn", None)
            if arn:  # the fake's token ARNs end in the machine's name
                return arn.rsplit("/", 1)[-1]
            iid = getattr(arg, "instance_id", None) or getattr(arg, "departing_instance_id", None)
            inst = self.instances.get(iid or "")
            return inst.machine if inst else None

        def label(self, name: str, arg: Any, machine: str, again: bool) -> str:
            if name == "prepare_bootstrap_data":
                self.kind[machine] = arg.kind
                return f"prepare_bootstrap_data ({arg.kind})"
            if name == "ensure_instance" and again:
                return "ensure_instance (found)"
            if name == "delete_bootstrap_data" and again:
                return "delete_bootstrap_data (nothing left)"
            if name == "register_with_load_balancer" and again:
                return "register_with_load_balancer (already registered)"
            return name

        def activities(self) -> list:
            wrapped = []
            for fn in super().activities():
                name = activity._Definition.must_from_callable(fn).name
                if name in NOT_AWS or asyncio.iscoroutinefunction(fn):
                    wrapped.append(fn)
                    continue
                wrapped.append(self._wrap(fn, name))
            return wrapped

        def _wrap(self, fn: Any, name: str) -> Any:
            cloud = self

            def recorded(arg: Any) -> Any:
                result = fn(arg)  # a refused call raises: not counted, as the fake does not count it
                machine = cloud.machine_of(arg) or "(cluster)"
                with cloud._record_lock:
                    ran = cloud.ran.setdefault(machine, Counter())
                    label = cloud.label(name, arg, machine, again=ran[name] > 0)
                    ran[name] += 1
                    cloud.per_machine.setdefault(machine, Counter())[label] += 1
                return result

            functools.update_wrapper(recorded, fn, updated=())
            return activity.defn(name=name)(recorded)

        def snapshot(self) -> dict[str, Counter]:
            with self._record_lock:
                return {m: Counter(c) for m, c in self.per_machine.items()}

        def role_of(self, machine: str) -> str:
            for inst in self.instances.values():
                if inst.machine == machine:
                    return "control-plane" if inst.role == "control-plane" else "worker"
            return "control-plane" if "control-plane" in machine else "worker"

    return CountingCloud


def diff(after: dict[str, Counter], before: dict[str, Counter]) -> dict[str, Counter]:
    out = {}
    for m, c in after.items():
        d = c - before.get(m, Counter())
        if d:
            out[m] = d
    return out


def cost_of(executions: dict[str, float], costs: dict[str, dict[str, int]]) -> dict[str, float]:
    """AWS calls per operation of activity executions (label -> count), and what is not measured."""
    out: Counter = Counter()
    for label, n in executions.items():
        for op, c in costs.get(label, {}).items():
            out[op] += n * c
    return dict(sorted(out.items()))


def launched(phase: dict[str, Counter]) -> list[str]:
    """The machines whose instance was launched in this phase."""
    return sorted(m for m, c in phase.items() if c.get("ensure_instance") and m != "(cluster)")


def mean_executions(phase: dict[str, Counter], machines: list[str]) -> dict[str, float]:
    """Mean executions per machine of `machines`. Executions that name no machine (lookup_image:
    one per launch) are shared out over the machines launched in the phase."""
    total: Counter = Counter()
    for m in machines:
        total.update(phase.get(m, Counter()))
    shared = phase.get("(cluster)", Counter())
    launches = launched(phase)
    if shared and launches:
        ours = sum(1 for m in machines if m in launches)
        for label, n in shared.items():
            total[label] += n * ours / len(launches)
    return {k: round(v / len(machines), 2) for k, v in sorted(total.items())} if machines else {}


async def measure_cluster_create() -> dict[str, Any]:
    """A 3+3 ClusterWorkflow create under the latency model (bench.critical_path.measure), with
    the fake cloud recording each machine's activity executions."""
    import capt.dev.testkit.fake_cloud as fake_cloud
    from capt.dev.bench import critical_path, model

    clouds = []
    base = counting_cloud_class()

    class Kept(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            clouds.append(self)

    original = fake_cloud.FakeCloud
    fake_cloud.FakeCloud = Kept  # critical_path.measure builds its cloud from this name
    try:
        run = await critical_path.measure(critical_path.QUICKSTART, "classic", model.load())
    finally:
        fake_cloud.FakeCloud = original
    [cloud] = clouds
    per_machine = cloud.snapshot()
    by_role: dict[str, list[str]] = {"control-plane": [], "worker": []}
    for m in per_machine:
        if m != "(cluster)":
            by_role[cloud.role_of(m)].append(m)
    first = [m for m in by_role["control-plane"] if cloud.kind.get(m) == "init"]
    joining = [m for m in by_role["control-plane"] if m not in first]
    return {
        "create_seconds": run["create_seconds"],
        "machines": {r: len(ms) for r, ms in by_role.items()},
        "executions": {
            "first control-plane machine": mean_executions(per_machine, first),
            "joining control-plane machine": mean_executions(per_machine, joining),
            "worker": mean_executions(per_machine, by_role["worker"]),
        },
    }


async def measure_rollout(workers: int) -> dict[str, Any]:
    """A MachineDeployment of `workers` on the fake cloud (latency model's boot, join and
    terminate times): created, rolled to a new template (maxSurge 1, maxUnavailable 0), deleted.
    Per phase, each machine's activity executions."""
    from datetime import timedelta

    from capt.dev.bench import model
    from capt.dev.testkit.context import cluster_context, running_worker, unique
    from capt.spec.models import KubeadmConfigSpec, MachineDeploymentSpec, MachineTemplate, RollingUpdate
    from capt.workflows.machine.workflow import MachineWorkflow
    from capt.workflows.machinedeployment.models import MachineDeploymentInput, TemplateRequest
    from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow

    lat = model.load()
    cloud = counting_cloud_class()(
        boot_seconds=lat.instance_pending,
        join_seconds=lat.kubeadm_join,
        terminate_seconds=lat.instance_terminate,
    )
    spec = MachineDeploymentSpec(
        name="md-0",
        replicas=workers,
        version=VERSION,
        machine_template=MachineTemplate(name="md-0-a", instance_type="t3.large"),
        bootstrap=KubeadmConfigSpec(),
        bootstrap_template_name="md-0-bootstrap",
        rolling_update=RollingUpdate(max_surge=1, max_unavailable=0),
    )
    env = await time_skipping.start_env()
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    cluster = unique("calls")
    try:
        async with running_worker(
            env, queue, [MachineWorkflow, MachineDeploymentWorkflow], cloud.activities()
        ):
            handle = await env.client.start_workflow(
                MachineDeploymentWorkflow.run,
                MachineDeploymentInput(
                    cluster=cluster_context(cluster),
                    spec=spec,
                    control_plane_initialized=True,
                    control_plane_version=VERSION,
                ),
                id=MachineDeploymentWorkflow.workflow_id("default", cluster, spec.name),
                task_queue=queue,
            )

            async def settle(revision: str | None = None) -> float:
                started = await env.get_current_time()
                for _ in range(20 * workers + 200):
                    st = await handle.query(MachineDeploymentWorkflow.status)
                    if (
                        (revision is None or st.revision != revision)
                        and st.replicas == st.up_to_date_replicas == st.available_replicas == workers
                        and st.desired_replicas == workers
                    ):
                        return (await env.get_current_time() - started).total_seconds()
                    await env.sleep(timedelta(seconds=10))
                raise RuntimeError(f"deployment did not settle: {st.phase}")

            await settle()
            created = cloud.snapshot()
            old_revision = (await handle.query(MachineDeploymentWorkflow.status)).revision
            await handle.execute_update(
                MachineDeploymentWorkflow.change_template,
                TemplateRequest(
                    machine_template=MachineTemplate(name=NEW_VERSION_TEMPLATE, instance_type="t3.xlarge")
                ),
            )
            rollout_seconds = await settle(old_revision)
            rolled = cloud.snapshot()
            await handle.signal(MachineDeploymentWorkflow.delete_all)
            await handle.result()
            deleted = cloud.snapshot()
    finally:
        await env.shutdown()
    rollout = diff(rolled, created)
    first = launched(created)
    new = launched(rollout)
    return {
        "workers": workers,
        "rollout_seconds": rollout_seconds,
        "replaced": len(new),
        "create": created,
        "rollout": rollout,
        "delete": diff(deleted, rolled),
        "first_machines": first,
        "new_machines": new,
    }
