"""MachineDeploymentWorkflow under the time-skipping test server, over the fake cloud.

Each test runs a Worker (MachineWorkflow + MachineDeploymentWorkflow, FakeCloud's activities) on
its own task queue. The fake models boot, join and termination in workflow time, so a rollout
of minutes costs a second or two of wall time; tests advance time with `env.sleep` and look at
the deployment through its `status` query.

`Recorder` is called by the fake after every change it makes (launch, node Ready, cordon,
terminate) and checks the invariants at that moment — never more than replicas + maxSurge
instances (shutting-down ones included), never fewer than replicas − maxUnavailable Ready and
uncordoned nodes — so a violation in the middle of a rollout fails the test even if the end
state is right. From the same events it derives the sequence of (old, new) machine counts, a
machine leaving its revision's count when its deletion starts (the cordon; CAPI: the MachineSet
is scaled down), which is compared with the step sequences of the issue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from capt.contracts.machines import MachineStatus
from capt.contracts.owners import DeploymentRemediationRequest, DeploymentStatus
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.rules import deployment as rollout
from capt.rules.versions import worker_version_error
from capt.spec.models import KubeadmConfigSpec, MachineDeploymentSpec, MachineTemplate, RollingUpdate
from capt.workflows.machine.models import DeleteOptions, machine_workflow_id
from capt.workflows.machine.workflow import MachineWorkflow
from capt.workflows.machine_owner import revision_of
from capt.workflows.machinedeployment.models import (
    ControlPlaneInfo,
    DeleteMachinesRequest,
    MachineDeploymentInput,
    ScaleRequest,
    StrategyRequest,
    TemplateRequest,
    progress_key,
    strategy_error,
)
from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow
from tests.support.context import AZS, cluster_context, query, running_worker, unique

CP_VERSION = "v1.30.2"
TEMPLATE = MachineTemplate(name="md-0-a", instance_type="t3.large")
NEW_TEMPLATE = MachineTemplate(name="md-0-b", instance_type="t3.xlarge")
# Small boot times keep the file fast: ~35 s from RunInstances to a Ready node the machine sees.
BOOT, JOIN, TERMINATE = 20, 10, 5


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "control_plane", "refused"),
    [
        ("v1.30.2", "v1.30.2", None),
        ("v1.30.1", "v1.30.2", None),
        ("v1.27.9", "v1.30.2", None),  # three minors older: kubelet skew allows it
        ("v1.30.3", "v1.30.2", "newer than the control plane"),
        ("v1.31.0", "v1.30.2", "newer than the control plane"),
        ("v1.26.0", "v1.30.2", "more than 3 minor versions older"),
        ("1.30", "v1.30.2", "not a Kubernetes version"),
        ("v1.40.0", None, None),  # control plane version unknown: only the format is checked
    ],
)
def test_worker_version_error(version: str, control_plane: str | None, refused: str | None) -> None:
    err = worker_version_error(version, control_plane)
    if refused is None:
        assert err is None
    else:
        assert err is not None and refused in err


def _spec(
    replicas: int = 3, surge: int | str = 1, unavailable: int | str = 0, **changes
) -> MachineDeploymentSpec:
    return MachineDeploymentSpec(
        name="md-0",
        replicas=replicas,
        version=CP_VERSION,
        machine_template=TEMPLATE,
        bootstrap=KubeadmConfigSpec(),
        bootstrap_template_name="md-0-bootstrap",
        rolling_update=RollingUpdate(max_surge=surge, max_unavailable=unavailable),
        **changes,
    )


@pytest.mark.parametrize(
    ("request_", "refused"),
    [
        (StrategyRequest(max_surge="25%", max_unavailable=0), None),
        (StrategyRequest(strategy="OnDelete"), None),
        (StrategyRequest(min_ready_seconds=700), "must be greater than minReadySeconds"),
        (StrategyRequest(progress_deadline_seconds=30, min_ready_seconds=30), "must be greater"),
        (StrategyRequest(min_ready_seconds=-1), "must not be negative"),
    ],
)
def test_strategy_error(request_: StrategyRequest, refused: str | None) -> None:
    err = strategy_error(_spec(), request_)
    assert (err is None) if refused is None else (err is not None and refused in err)


def test_strategy_request_refuses_a_string_that_is_not_a_percentage() -> None:
    for bad in ("5", "oops"):
        with pytest.raises(ValueError, match="not a percentage"):
            StrategyRequest(max_surge=bad)


def test_progress_key_moves_with_new_machines_and_old_removals_only() -> None:
    def view(name: str, rev: str, ready: float | None = None, deleting: bool = False, healthy: bool = True):
        return rollout.MachineView(
            name=name,
            revision=rev,
            created=0,
            node_name=f"n-{name}" if ready is not None else None,
            ready_since=ready,
            deleting=deleting,
            healthy=healthy,
        )

    def key(*machines: rollout.MachineView) -> tuple:
        return progress_key(
            rollout.DeploymentState(replicas=3, current_revision="new", machines=machines, now=100)
        )

    base = key(view("o1", "old", 0), view("o2", "old", 0), view("n1", "new"))
    # A new machine failing (unhealthy, never Ready) is no progress.
    assert key(view("o1", "old", 0), view("o2", "old", 0), view("n1", "new", healthy=False)) == base
    # A new machine becoming available, an old one going, a new one created: progress.
    assert key(view("o1", "old", 0), view("o2", "old", 0), view("n1", "new", 50)) != base
    assert key(view("o1", "old", 0), view("n1", "new")) != base
    assert key(view("o1", "old", 0), view("o2", "old", 0), view("n1", "new"), view("n2", "new")) != base


# ---------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------


def revision_name(machine: str) -> str:
    """Machine names are `<deployment>-<revision[:5]>-<suffix>`."""
    return machine.rsplit("-", 2)[1]


class Recorder:
    """Checks the invariants at every change the fake cloud makes, and keeps the event log."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.max_machines: int | None = None
        self.min_ready: int | None = None
        self.violations: list[str] = []
        self.checked = 0
        self.peak_machines = 0
        self.lowest_ready: int | None = None
        # Machines launched while this is set get a node that never becomes Ready.
        self.fail_revision: str | None = None
        cloud.on_change = self._on_change

    def arm(self, max_machines: int, min_ready: int) -> None:
        self.max_machines, self.min_ready = max_machines, min_ready

    def _on_change(self, cloud: FakeCloud, event: str) -> None:
        kind, _, machine = event.partition(" ")
        if kind == "launch" and self.fail_revision and revision_name(machine) == self.fail_revision[:5]:
            cloud.never_ready.add(machine)
        if self.max_machines is None:
            return
        sample = cloud.samples[-1]
        self.checked += 1
        self.peak_machines = max(self.peak_machines, sample.machines)
        self.lowest_ready = (
            sample.ready if self.lowest_ready is None else min(self.lowest_ready, sample.ready)
        )
        if sample.machines > self.max_machines:
            self.violations.append(f"{sample.at} {event}: {sample.machines} machines > {self.max_machines}")
        if self.min_ready is not None and sample.ready < self.min_ready:
            self.violations.append(f"{sample.at} {event}: {sample.ready} ready < {self.min_ready}")

    def assert_held(self) -> None:
        assert self.checked > 0, "no change was sampled while the invariants were armed"
        assert not self.violations, "\n".join(self.violations)


def steps(cloud: FakeCloud, old: str, new: str) -> list[tuple[int, int]]:
    """(old, new) machine counts after each burst of changes (events less than 2 s apart, in
    workflow time, are one step), consecutive duplicates dropped. A machine counts from its launch
    until its deletion starts (cordon, or terminate for a machine without a node)."""
    counts = {old[:5]: 0, new[:5]: 0}
    leaving: set[str] = set()
    out: list[tuple[int, int]] = []
    last_at = None
    for sample in cloud.samples:
        kind, _, machine = sample.event.partition(" ")
        if last_at is not None and (sample.at - last_at) >= timedelta(seconds=2):
            out.append((counts[old[:5]], counts[new[:5]]))
        last_at = sample.at
        rev = revision_name(machine)
        if kind == "launch":
            counts[rev] += 1
        elif kind in ("cordon", "terminate") and machine not in leaving:
            leaving.add(machine)
            counts[rev] -= 1
    out.append((counts[old[:5]], counts[new[:5]]))
    return [s for i, s in enumerate(out) if i == 0 or s != out[i - 1]]


@contextlib.asynccontextmanager
async def worker(
    env: WorkflowEnvironment, task_queue: str, cloud: FakeCloud, sticky: bool = True
) -> AsyncIterator[None]:
    """`sticky=False` (no workflow cache) for a worker a test stops: the test server never moves a
    dead worker's sticky tasks back to the normal queue. Every task then replays its history
    from the start, which makes a restart test stricter, not weaker."""
    # Without a cache every task also builds a fresh sandbox; skip the sandbox there (the other
    # tests run sandboxed) to keep replays cheap.
    options = {} if sticky else {"max_cached_workflows": 0, "workflow_runner": UnsandboxedWorkflowRunner()}
    async with running_worker(
        env, task_queue, [MachineWorkflow, MachineDeploymentWorkflow], cloud.activities(), **options
    ):
        yield


async def start(
    env: WorkflowEnvironment, task_queue: str, spec: MachineDeploymentSpec, **inputs
) -> WorkflowHandle:
    cluster = unique("c")
    inputs.setdefault("control_plane_initialized", True)
    inputs.setdefault("control_plane_version", CP_VERSION)
    return await env.client.start_workflow(
        MachineDeploymentWorkflow.run,
        MachineDeploymentInput(cluster=cluster_context(cluster), spec=spec, **inputs),
        id=MachineDeploymentWorkflow.workflow_id("default", cluster, spec.name),
        task_queue=task_queue,
    )


async def status(env: WorkflowEnvironment, handle: WorkflowHandle) -> DeploymentStatus:
    return await query(handle, MachineDeploymentWorkflow.status)


async def wait_for(
    env: WorkflowEnvironment,
    handle: WorkflowHandle,
    predicate: Callable[[DeploymentStatus], bool],
    within: float = 1800,
    step: float = 5,
) -> DeploymentStatus:
    """Advance workflow time `step` seconds at a time until the status satisfies `predicate`."""
    deadline = await env.get_current_time() + timedelta(seconds=within)
    while True:
        st = await status(env, handle)
        if predicate(st):
            return st
        if await env.get_current_time() > deadline:
            raise AssertionError(
                f"not reached within {within}s of workflow time: {st.model_dump_json(indent=1)}"
            )
        await env.sleep(step)


def complete(replicas: int, revision: str | None = None) -> Callable[[DeploymentStatus], bool]:
    def check(st: DeploymentStatus) -> bool:
        return (
            (revision is None or st.revision == revision)
            and st.replicas == st.up_to_date_replicas == st.available_replicas == replicas
            and st.desired_replicas == replicas
        )

    return check


def current_revision(spec: MachineDeploymentSpec, **changes) -> str:
    s = spec.model_copy(update=changes)
    return revision_of(s.machine_template, s.bootstrap, s.version, s.failure_domain)


def alive(cloud: FakeCloud) -> list[str]:
    return sorted(i.machine for i in cloud.instances.values() if i.terminated_at is None)


def update_events(history) -> list[str]:
    return [
        EventType.Name(e.event_type)
        for e in history.events
        if e.event_type
        in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
        )
    ]


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


async def test_waits_for_the_control_plane_spreads_over_azs_and_deletes(time_skipping_env, task_queue):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, _spec(), control_plane_initialized=False)
        await env.sleep(600)
        st = await status(env, handle)
        assert st.phase == "WaitingForControlPlane" and st.replicas == 0 and not cloud.instances
        assert st.condition("Progressing").reason == "WaitingForControlPlane"

        # Validators: refused requests change nothing and never reach the history.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                MachineDeploymentWorkflow.change_template, TemplateRequest(version="v1.31.0")
            )
        assert "newer than the control plane" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(MachineDeploymentWorkflow.scale, ScaleRequest(replicas=-1))
        assert "negative" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                MachineDeploymentWorkflow.change_template, TemplateRequest(failure_domain="us-east-1a")
            )
        assert "is not one of the cluster's" in str(refused.value.cause)
        assert update_events(await handle.fetch_history()) == []

        # The control plane comes up (a signal, as the cluster workflow sends it).
        await handle.signal(
            MachineDeploymentWorkflow.control_plane_changed, ControlPlaneInfo(initialized=True)
        )
        st = await wait_for(env, handle, complete(3))
        assert sorted(m.availability_zone for m in st.machines) == sorted(AZS)
        assert {c.type: c.reason for c in st.conditions} == {
            "Available": "MinimumReplicasAvailable",
            "Progressing": "NewMachineSetAvailable",
            "Paused": "NotPaused",
        }
        assert [r.number for r in st.revisions] == [1] and st.revisions[0].machines == 3
        assert len(cloud.instances) == 3

        # The control plane moves to v1.31: the deployment may follow.
        await handle.execute_update(
            MachineDeploymentWorkflow.set_control_plane, ControlPlaneInfo(version="v1.31.0")
        )
        st = await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(version="v1.31.0")
        )
        assert st.version == "v1.31.0"
        assert (
            update_events(await handle.fetch_history())
            == ["EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"] * 2
        )
        await wait_for(env, handle, complete(3, st.revision))
        assert {i.version for i in cloud.instances.values() if i.terminated_at is None} == {"v1.31.0"}

        await handle.signal(MachineDeploymentWorkflow.delete_all)
        final = await handle.result()
        assert final.phase == "Deleted" and final.machines == []
        assert alive(cloud) == []
        assert cloud.calls["terminate_instance"] == 6


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        # new +1 (4 total), old -1, three times
        (3, 1, 0, [(3, 0), (3, 1), (2, 1), (2, 2), (1, 2), (1, 3), (0, 3)]),
        # old -1, new +1, three times
        (3, 0, 1, [(3, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2), (0, 3)]),
        # old 6→5 and new 0→3, then old 5→2 and new 3→4, then old 2→1 and new 4→6, then old 1→0.
        # The fourth new machine comes first, on its own: the surge limit counts the old machine
        # still being deleted, so it is created the moment that deletion ends, before the three
        # new machines are Ready (which is what lets old go 5→2).
        (6, 3, 1, [(6, 0), (5, 3), (5, 4), (2, 4), (1, 6), (0, 6)]),
    ],
    ids=["3-surge1-unavailable0", "3-surge0-unavailable1", "6-surge3-unavailable1"],
)
async def test_rolling_update_steps(time_skipping_env, task_queue, replicas, surge, unavailable, expected):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(replicas, surge, unavailable)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        await wait_for(env, handle, complete(replicas))
        recorder.arm(max_machines=replicas + surge, min_ready=replicas - unavailable)

        new = current_revision(spec, machine_template=NEW_TEMPLATE)
        st = await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(machine_template=NEW_TEMPLATE)
        )
        assert st.revision == new
        st = await wait_for(env, handle, complete(replicas, new))

    recorder.assert_held()
    assert recorder.peak_machines == replicas + surge  # the surge was used...
    assert recorder.lowest_ready == replicas - unavailable  # ...and so was the unavailability budget
    assert steps(cloud, current_revision(spec), new) == expected
    assert len(cloud.instances) == 2 * replicas  # every machine replaced exactly once
    assert [(r.number, r.machine_template, r.machines) for r in st.revisions] == [
        (1, "md-0-a", 0),
        (2, "md-0-b", replicas),
    ]
    assert st.condition("Progressing").reason == "NewMachineSetAvailable"


async def test_percentages_round_surge_up_and_unavailable_down(time_skipping_env, task_queue):
    """10 replicas, 25 %: maxSurge 2.5 → 3, maxUnavailable 2.5 → 2; minReadySeconds 15 counts."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(10, "25%", "25%", min_ready_seconds=15)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        await wait_for(env, handle, complete(10))
        recorder.arm(max_machines=13, min_ready=8)
        new = current_revision(spec, version="v1.30.1")
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(version="v1.30.1")
        )
        # A new machine is Ready but not yet available for its first 15 s.
        st = await wait_for(
            env,
            handle,
            lambda s: any(m.node_ready and not (m.available or m.deleting) for m in s.machines),
            step=2,
        )
        assert st.available_replicas < st.ready_replicas
        await wait_for(env, handle, complete(10, new))
    recorder.assert_held()
    assert (recorder.peak_machines, recorder.lowest_ready) == (13, 8)
    assert len(cloud.instances) == 20


async def test_scaling_3_to_10_during_a_rollout_is_proportional(time_skipping_env, task_queue):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(3, 1, 0)
    old, new = current_revision(spec), current_revision(spec, version="v1.30.1")
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        await wait_for(env, handle, complete(3))
        recorder.arm(max_machines=4, min_ready=3)
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(version="v1.30.1")
        )
        # Mid-rollout: one new machine available, two old ones left and the third still being
        # deleted (while it is, the surge limit keeps the second new machine from being created).
        st = await wait_for(
            env,
            handle,
            lambda s: (
                [(m.revision, m.available, m.deleting) for m in s.machines if m.revision == new]
                == [(new, True, False)]
                and sum(m.revision == old and not m.deleting for m in s.machines) == 2
            ),
            step=1,
        )
        (deleting,) = [m.name for m in st.machines if m.deleting]
        launched_before = len(cloud.instances)
        recorder.arm(max_machines=11, min_ready=3)  # the floor rises to 10 once 10 are available
        st = await handle.execute_update(MachineDeploymentWorkflow.scale, ScaleRequest(replicas=10))
        assert st.desired_replicas == 10
        st = await wait_for(env, handle, lambda s: s.available_replicas >= 10, step=2)
        recorder.arm(max_machines=11, min_ready=10)
        st = await wait_for(env, handle, complete(10, new))

    recorder.assert_held()
    assert recorder.peak_machines == 11
    assert st.condition("Available").reason == "MinimumReplicasAvailable"
    # CAPI's proportional scaling (scale / GetProportion): the revisions were sized for 3 + 1 surge
    # = 4 machines and hold old 2, new 1; 10 + 1 = 11 allows 8 more. Old gets round(2 * 11 / 4) - 2
    # = 4, new round(1 * 11 / 4) - 1 = 2, and the 2 left over go to the biggest revision: old +6,
    # new +2. It waits until the machine being deleted is gone, so 11 machines are never exceeded.
    launched_after = list(cloud.instances.values())[launched_before:]
    first_burst = [
        i for i in launched_after if i.launched_at - launched_after[0].launched_at < timedelta(seconds=2)
    ]
    assert sorted(revision_name(i.machine) for i in first_burst) == sorted([old[:5]] * 6 + [new[:5]] * 2)
    # Machines of the old revision are made from the old revision's template, not the current one.
    assert {(revision_name(i.machine), i.version) for i in cloud.instances.values()} == {
        (old[:5], CP_VERSION),
        (new[:5], "v1.30.1"),
    }
    (gone,) = [i for i in cloud.instances.values() if i.machine == deleting]
    assert gone.terminated_at + timedelta(seconds=TERMINATE) <= first_burst[0].launched_at
    # The final 10 are spread over the three AZs (4-3-3).
    final_azs = sorted(i.az for i in cloud.instances.values() if i.terminated_at is None)
    assert sorted(final_azs.count(az) for az in AZS) == [3, 3, 4]


async def test_rollout_whose_new_machines_never_become_ready(time_skipping_env, task_queue):
    """Stalls within maxSurge/maxUnavailable, reports ProgressDeadlineExceeded, keeps the floor;
    once the failing machines are remediated and boot, the rollout finishes."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(3, 1, 1, progress_deadline_seconds=300)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec, node_startup_timeout_seconds=120)
        await wait_for(env, handle, complete(3))
        recorder.arm(max_machines=4, min_ready=2)
        new = current_revision(spec, version="v1.30.1")
        recorder.fail_revision = new
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(version="v1.30.1")
        )

        st = await wait_for(
            env, handle, lambda s: s.condition("Progressing").reason == "ProgressDeadlineExceeded", step=30
        )
        assert st.condition("Progressing").status is False
        # Stalled within the budget: one old machine went (maxUnavailable 1), two new ones failed.
        await env.sleep(1800)
        st = await status(env, handle)
        assert st.condition("Progressing").reason == "ProgressDeadlineExceeded"
        assert st.available_replicas == 2 and st.replicas == 4
        failed = [m.name for m in st.machines if m.revision == new]
        # Their nodes never came: they wait (only a health check remediates them, as in CAPI).
        assert len(failed) == 2 and all(
            m.phase != "Failed" and "nodeStartupTimeout remediates" in m.message
            for m in st.machines
            if m.revision == new
        )
        assert len(cloud.instances) == 5  # no retry storm: 3 + 2 launches

        # Keeps trying: the health check asks for the failed machines to be replaced.
        recorder.fail_revision = None
        answer = await handle.execute_update(
            MachineDeploymentWorkflow.remediate,
            DeploymentRemediationRequest(machines=tuple(failed), reason="NodeStartupTimeout"),
        )
        assert sorted(answer.remediated) == sorted(failed)
        st = await wait_for(env, handle, complete(3, new))
        assert st.condition("Progressing").reason == "NewMachineSetAvailable"
    recorder.assert_held()
    assert recorder.lowest_ready == 2


async def test_on_delete_replaces_only_what_the_user_deletes(time_skipping_env, task_queue):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(3, strategy="OnDelete")
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(3))
        recorder.arm(max_machines=3, min_ready=2)  # OnDelete never surges; users delete one at a time here
        old_machines = [m.name for m in st.machines]
        new = current_revision(spec, machine_template=NEW_TEMPLATE)
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(machine_template=NEW_TEMPLATE)
        )
        await env.sleep(900)
        st = await status(env, handle)
        assert st.up_to_date_replicas == 0 and [m.name for m in st.machines] == old_machines
        assert len(cloud.instances) == 3

        for i, victim in enumerate(old_machines, start=1):
            await handle.execute_update(
                MachineDeploymentWorkflow.delete_machines, DeleteMachinesRequest(machines=(victim,))
            )
            st = await wait_for(
                env, handle, lambda s, i=i: s.up_to_date_replicas == i and s.available_replicas == 3, step=2
            )
            assert victim not in [m.name for m in st.machines]
            assert len(cloud.instances) == 3 + i
        assert complete(3, new)(st)
    recorder.assert_held()


async def test_on_delete_apply_with_new_template_and_more_replicas_creates_from_the_new_template(
    time_skipping_env, task_queue
):
    """Issue 18, high 3: one apply changes the template and raises replicas 2 -> 4 under OnDelete.
    The two new machines come from the new revision (they came from the old template); the old
    two stay until someone deletes them."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    spec = _spec(2, strategy="OnDelete")
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(2))
        old = {m.name for m in st.machines}
        changed = spec.model_copy(update={"machine_template": NEW_TEMPLATE, "replicas": 4})
        await handle.signal(MachineDeploymentWorkflow.apply_spec, changed)
        new = current_revision(spec, machine_template=NEW_TEMPLATE)
        st = await wait_for(env, handle, lambda s: s.available_replicas == 4 and s.replicas == 4)
        added = [m for m in st.machines if m.name not in old]
        assert len(added) == 2 and {m.revision for m in added} == {new}
        assert {m.name for m in st.machines if m.revision != new} == old
        assert st.up_to_date_replicas == 2


async def test_renaming_the_bootstrap_template_rolls_the_machines(time_skipping_env, task_queue):
    """Issue 18: the KubeadmConfigTemplate's name is part of the revision (CAPI rolls a
    MachineDeployment whose bootstrap configRef changes), even with identical contents."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    spec = _spec(2)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(2))
        before, old_revision = {m.name for m in st.machines}, st.revision
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template,
            TemplateRequest(bootstrap_template_name="md-0-bootstrap-v2"),
        )
        st = await wait_for(env, handle, lambda s: complete(2)(s) and s.revision != old_revision)
        assert not before & {m.name for m in st.machines}


async def test_availability_follows_the_nodes_current_state_during_a_rollout(time_skipping_env, task_queue):
    """Issue 18: availability is re-evaluated from the node, not latched when the machine ran.
    An old machine's node is NotReady when a rollout (maxSurge 1, maxUnavailable 0) starts: it
    no longer counts as available, so it is the first old machine the rollout removes (CAPI
    cleans up unavailable old machines first) and no Ready old machine goes before the new ones
    are available; the rollout completes."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    spec = _spec(3, min_ready_seconds=60)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(3), step=10)
        old = {m.name for m in st.machines}
        sick = sorted(old)[1]
        cloud.not_ready.add(sick)
        first = len(cloud.samples)
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(machine_template=NEW_TEMPLATE)
        )
        # The surge machine is created; the sick node already counts as unavailable (2, not 3).
        st = await wait_for(env, handle, lambda s: s.replicas == 4, step=1)
        assert st.available_replicas == 2, st
        new = current_revision(spec, machine_template=NEW_TEMPLATE)
        await wait_for(env, handle, complete(3, new), step=10)
        terminated = [s.event.split()[1] for s in cloud.samples[first:] if s.event.startswith("terminate ")]
        assert terminated[0] == sick and set(terminated) == old


async def test_the_deployments_own_max_in_flight_limits_remediation(time_skipping_env, task_queue):
    """Issue 18: CAPI reads maxInFlight from the MachineDeployment (spec.strategy.remediation):
    with 1 there, a request for two machines (and no limit from the check) replaces one now and
    defers the other."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    spec = _spec(3, remediation_max_in_flight=1)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(3))
        a, b = sorted(m.name for m in st.machines)[:2]
        answer = await handle.execute_update(
            MachineDeploymentWorkflow.remediate, DeploymentRemediationRequest(machines=(a, b), reason="test")
        )
        assert len(answer.remediated) == 1 and len(answer.deferred) == 1, answer


async def test_rollout_after_rolls_every_machine_once_it_passes(time_skipping_env, task_queue):
    """Issue 18: a MachineDeployment's rolloutAfter (CAPI): nothing happens before it; once it
    passes, every machine made before it is replaced (a new revision, same template)."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    spec = _spec(2)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(2))
        before, revision = {m.name for m in st.machines}, st.revision
        at = await env.get_current_time() + timedelta(minutes=30)
        await handle.signal(
            MachineDeploymentWorkflow.apply_spec,
            spec.model_copy(update={"rollout_after": at.isoformat().replace("+00:00", "Z")}),
        )
        await env.sleep(20 * 60)
        st = await status(env, handle)
        assert {m.name for m in st.machines} == before and st.revision == revision
        st = await wait_for(env, handle, lambda s: complete(2)(s) and s.revision != revision, step=30)
        assert not before & {m.name for m in st.machines}
        # A rolloutAfter already past when the machines were made rolls nothing (CAPI compares it
        # with the MachineSet's creation).
        rolled, revision = {m.name for m in st.machines}, st.revision
        await handle.signal(
            MachineDeploymentWorkflow.apply_spec,
            spec.model_copy(update={"rollout_after": "2020-01-01T00:00:00Z"}),
        )
        await env.sleep(15 * 60)
        st = await status(env, handle)
        assert {m.name for m in st.machines} == rolled


async def test_remediation_current_revision_newest_first_within_max_in_flight(time_skipping_env, task_queue):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(3)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec)
        st = await wait_for(env, handle, complete(3))
        first = {m.name: m.availability_zone for m in st.machines}

        # Scale to 4: the fourth machine is the newest.
        await handle.execute_update(MachineDeploymentWorkflow.scale, ScaleRequest(replicas=4))
        st = await wait_for(env, handle, complete(4))
        # Remediation is bounded by maxInFlight (1 here), not by maxUnavailable: 3 stay Ready.
        recorder.arm(max_machines=5, min_ready=3)
        (newest,) = [m.name for m in st.machines if m.name not in first]
        a_first = sorted(first)[0]

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                MachineDeploymentWorkflow.remediate, DeploymentRemediationRequest(machine="nope-12345")
            )
        assert "nope-12345" in str(refused.value.cause)

        answer = await handle.execute_update(
            MachineDeploymentWorkflow.remediate,
            DeploymentRemediationRequest(machines=(a_first, newest), reason="NodeNotReady", max_in_flight=1),
        )
        assert (answer.remediated, answer.deferred) == ((newest,), (a_first,))
        assert "too many remediations in progress" in answer.reason
        st = await wait_for(
            env, handle, lambda s: newest not in [m.name for m in s.machines] and complete(4)(s)
        )
        assert len(cloud.instances) == 5

        # The health check asks again for the deferred one: there is room now.
        answer = await handle.execute_update(
            MachineDeploymentWorkflow.remediate,
            DeploymentRemediationRequest(machine=a_first, max_in_flight=1),
        )
        assert answer.remediated == (a_first,)
        st = await wait_for(
            env, handle, lambda s: a_first not in [m.name for m in s.machines] and complete(4)(s)
        )
        replacement = [m for m in st.machines if m.name not in first and m.name != newest]
        assert len(replacement) == 2 and first[a_first] in {m.availability_zone for m in replacement}

        # Old revisions are left to the rollout (paused here, so it does not run yet).
        await handle.execute_update(MachineDeploymentWorkflow.pause)
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(version="v1.30.1")
        )
        await env.sleep(300)
        st = await status(env, handle)
        assert st.paused and st.up_to_date_replicas == 0 and st.condition("Paused").status
        old_one = st.machines[0].name
        answer = await handle.execute_update(
            MachineDeploymentWorkflow.remediate, DeploymentRemediationRequest(machine=old_one)
        )
        assert not answer.accepted and answer.skipped == (old_one,) and "rollout" in answer.reason
        assert "left to the rollout" in (await status(env, handle)).last_remediation

        recorder.arm(max_machines=5, min_ready=4)
        await handle.execute_update(MachineDeploymentWorkflow.resume)
        st = await wait_for(env, handle, complete(4, current_revision(spec, version="v1.30.1")))
    recorder.assert_held()
    assert len(cloud.instances) == 3 + 1 + 2 + 4


async def test_worker_restart_mid_rollout_creates_no_extra_machine(time_skipping_env, task_queue):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    recorder = Recorder(cloud)
    spec = _spec(3, 1, 0)
    new = current_revision(spec, machine_template=NEW_TEMPLATE)
    async with worker(env, task_queue, cloud, sticky=False):
        handle = await start(env, task_queue, spec)
        await wait_for(env, handle, complete(3))
        recorder.arm(max_machines=4, min_ready=3)
        await handle.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(machine_template=NEW_TEMPLATE)
        )
        await wait_for(env, handle, lambda s: s.up_to_date_replicas == 2, step=1)
    # The worker is gone (its workflow cache with it); a new one replays the histories.
    launched = len(cloud.instances)
    async with worker(env, task_queue, cloud):
        st = await wait_for(env, handle, complete(3, new))
    recorder.assert_held()
    assert launched < 6
    assert len(cloud.instances) == 6  # 3 + 3 replacements, none launched twice
    assert steps(cloud, current_revision(spec), new) == [
        (3, 0),
        (3, 1),
        (2, 1),
        (2, 2),
        (1, 2),
        (1, 3),
        (0, 3),
    ]
    assert st.condition("Progressing").reason == "NewMachineSetAvailable"


async def test_continue_as_new_keeps_state_and_pending_updates(time_skipping_env, task_queue):
    """max_iterations=2: nearly every machine signal ends the run, while Updates keep arriving.

    The machines boot, join and terminate instantly here: the test server stops skipping time
    for the children of a workflow that continued as new (temporalio/sdk-java#1540), so any
    timer a machine waits on would cost real time."""
    env = time_skipping_env
    cloud = FakeCloud(0, 0, 0)
    recorder = Recorder(cloud)
    spec = _spec(3, 1, 0)
    new = current_revision(spec, machine_template=NEW_TEMPLATE)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, spec, max_iterations=2)
        await wait_for(env, handle, complete(3))
        latest = env.client.get_workflow_handle(handle.id)
        recorder.arm(max_machines=4 + 2, min_ready=3)  # the requests below raise replicas and surge
        await latest.execute_update(
            MachineDeploymentWorkflow.change_template, TemplateRequest(machine_template=NEW_TEMPLATE)
        )
        # The rollout runs (one run per loop turn) while these arrive.
        surge, scale = await asyncio.gather(
            latest.execute_update(MachineDeploymentWorkflow.set_strategy, StrategyRequest(max_surge=2)),
            latest.execute_update(MachineDeploymentWorkflow.scale, ScaleRequest(replicas=4)),
        )
        assert "maxSurge=2" in surge.strategy and scale.desired_replicas == 4
        # Small steps: once the children's timers stop skipping, a 5 s step is 5 s of real time.
        st = await wait_for(env, handle, complete(4, new), step=0.5)

    recorder.assert_held()
    assert "maxSurge=2" in st.strategy and st.desired_replicas == 4
    assert [(r.number, r.machine_template) for r in st.revisions] == [(1, "md-0-a"), (2, "md-0-b")]
    first_run = await env.client.get_workflow_handle(
        handle.id, run_id=handle.first_execution_run_id
    ).fetch_history()
    assert first_run.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert (await latest.describe()).run_id != handle.first_execution_run_id
    # No machine was forgotten across runs (an orphan would still be running) or launched twice.
    assert alive(cloud) == sorted(m.name for m in st.machines)
    assert len(cloud.instances) == len({i.machine for i in cloud.instances.values()})


# ---------------------------------------------------------------------------------------------
# Machines that fail or close without a word (issue 15, WP7)
# ---------------------------------------------------------------------------------------------


async def event_kinds(handle: WorkflowHandle) -> list[str]:
    """The owner's history, one "KIND detail" per event (activity type, child workflow id)."""
    out = []
    for e in (await handle.fetch_history()).events:
        kind = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
        if e.HasField("activity_task_scheduled_event_attributes"):
            kind += " " + e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.HasField("start_child_workflow_execution_initiated_event_attributes"):
            kind += " " + e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        elif e.HasField("signal_external_workflow_execution_failed_event_attributes"):
            kind += (
                " "
                + e.signal_external_workflow_execution_failed_event_attributes.workflow_execution.workflow_id
            )
        out.append(kind)
    return out


def machine_handle(env: WorkflowEnvironment, handle: WorkflowHandle, name: str) -> WorkflowHandle:
    cluster = handle.id.split("/")[2]
    return env.client.get_workflow_handle(machine_workflow_id(cluster, name), result_type=MachineStatus)


async def test_a_permanent_aws_error_shows_in_the_status_and_delete_all_finishes(
    time_skipping_env, task_queue
):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    message = "The image id '[ami-00000000000000000]' does not exist"
    cloud.fail_permanently("ensure_instance", "RunInstances", "InvalidAMIID.NotFound", message)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, _spec(1))
        st = await wait_for(env, handle, lambda s: [m.phase for m in s.machines] == ["Failed"], within=600)
        assert st.machines[0].message == f"RunInstances: InvalidAMIID.NotFound: {message}"
        assert cloud.calls["ensure_instance"] == 1
        await handle.signal(MachineDeploymentWorkflow.delete_all)
        final = await handle.result()
    assert final.phase == "Deleted" and final.machines == []
    assert cloud.calls["ensure_instance"] == 1 and not cloud.instances


async def test_a_terminated_machine_workflow_is_seen_failed_within_minutes(time_skipping_env, task_queue):
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, _spec(2))
        st = await wait_for(env, handle, complete(2))
        gone = st.machines[0]
        await machine_handle(env, handle, gone.name).terminate(reason="operator says so")
        terminated_at = await env.get_current_time()
        st = await wait_for(
            env,
            handle,
            lambda s: any(m.name == gone.name and m.phase == "Failed" for m in s.machines),
            within=600,
            step=10,
        )
        seen_after = await env.get_current_time() - terminated_at
        assert seen_after <= timedelta(minutes=5), seen_after
        [failed] = [m for m in st.machines if m.name == gone.name]
        assert failed.message == "machine workflow terminated: operator says so"
        assert not failed.available and cloud.instances[gone.instance_id].terminated_at is None

        # Deleting it restarts its workflow id in delete mode, which terminates the instance.
        await handle.signal(MachineDeploymentWorkflow.delete_all)
        final = await handle.result()
    assert final.phase == "Deleted" and final.machines == []
    assert alive(cloud) == []
    assert "lookup_machine_instance" not in cloud.calls  # the owner knew the instance id
    restarted = await machine_handle(env, handle, gone.name).result()
    assert restarted.phase == "Deleted" and restarted.instance_id == gone.instance_id


async def test_delete_all_skipping_node_cleanup_with_a_closed_machine(time_skipping_env, task_queue):
    """delete_all(skip_node_cleanup) right after a machine workflow was terminated: the signal
    finds no workflow, the machine is restarted in delete mode, nothing is cordoned or drained."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, TERMINATE)
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, _spec(2))
        st = await wait_for(env, handle, complete(2))
        gone = st.machines[1]
        await machine_handle(env, handle, gone.name).terminate(reason="test")
        await handle.signal(MachineDeploymentWorkflow.delete_all, DeleteOptions(skip_node_cleanup=True))
        final = await handle.result()
    assert final.phase == "Deleted" and final.machines == []
    assert alive(cloud) == [] and cloud.calls["terminate_instance"] == 2
    assert not {"cordon_node", "drain_node", "delete_node"} & set(cloud.calls)
    wf_id = machine_handle(env, handle, gone.name).id
    events = await event_kinds(handle)
    assert events.count(f"SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED {wf_id}") == 1
    assert events.count(f"START_CHILD_WORKFLOW_EXECUTION_INITIATED {wf_id}") == 2  # created, then deleted


async def test_a_machine_workflow_that_dies_while_deleting_is_deleted_again(time_skipping_env, task_queue):
    """The wait for machines to go is a bounded poll: a machine workflow terminated in the middle
    of its deletion is noticed and restarted in delete mode, and delete_all still finishes."""
    env = time_skipping_env
    cloud = FakeCloud(BOOT, JOIN, terminate_seconds=600)  # instances take 10 minutes to go
    async with worker(env, task_queue, cloud):
        handle = await start(env, task_queue, _spec(1))
        st = await wait_for(env, handle, complete(1))
        [machine] = st.machines
        await handle.signal(MachineDeploymentWorkflow.delete_all)
        await wait_for(env, handle, lambda s: s.machines[0].phase == "Deleting", within=300)
        await env.sleep(60)
        await machine_handle(env, handle, machine.name).terminate(reason="while deleting")
        final = await handle.result()
    assert final.phase == "Deleted" and final.machines == []
    assert alive(cloud) == []
    assert cloud.calls["terminate_instance"] == 2  # once by each run of the machine's workflow
    events = await event_kinds(handle)
    assert "ACTIVITY_TASK_SCHEDULED describe_machine_workflows" in events
    # The new branch (patched owners-see-closed-machines) replays deterministically.
    await Replayer(
        workflows=[MachineDeploymentWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(await handle.fetch_history())
    assert (
        events.count(
            f"START_CHILD_WORKFLOW_EXECUTION_INITIATED {machine_handle(env, handle, machine.name).id}"
        )
        == 2
    )
