"""HealthCheckWorkflow on the time-skipping server: real owners (ControlPlaneWorkflow,
MachineDeploymentWorkflow), real MachineWorkflows, the real owner-query and remediation
activities (they use the worker's Temporal client), and the fake cloud (instances and nodes in
workflow time) behind the batched describe and the node list.

Detection times are checked against the interval: something that breaks at T is seen at the first
observation after T (≤ one interval later) or, for a timeout, at the first one after T + timeout.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

from capt.activities.aws import instance_events
from capt.activities.owners import HEALTH_ACTIVITIES, RemediationCall, request_remediation
from capt.contracts.ids import health_workflow_id
from capt.contracts.owners import ControlPlaneStatus, DeploymentStatus
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.dev.testkit.health_fakes import HealthFakes
from capt.rules.quorum import etcd_quorum
from capt.spec.models import (
    ControlPlaneSpec,
    HealthCheckSpec,
    KubeadmConfigSpec,
    MachineDeploymentSpec,
    UnhealthyCondition,
)
from capt.workflows.controlplane.models import ControlPlaneInput
from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
from capt.workflows.health.models import HealthCheckInput, HealthEvent, HealthSettings, HealthStatus
from capt.workflows.health.workflow import HealthCheckWorkflow
from capt.workflows.machine.workflow import MachineWorkflow
from capt.workflows.machinedeployment.models import MachineDeploymentInput, ScaleRequest
from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow
from tests.support.context import cluster_context, machine_template, query, running_worker, unique, wait_for

WORKFLOWS = [HealthCheckWorkflow, ControlPlaneWorkflow, MachineDeploymentWorkflow, MachineWorkflow]
VERSION = "v1.30.2"
INTERVAL = 30
# Activities run between the timer firing and the verdict; allow a few seconds of workflow time.
SLACK = 5
NOT_READY_120S = (
    UnhealthyCondition(type="Ready", status="False", timeout_seconds=120),
    UnhealthyCondition(type="Ready", status="Unknown", timeout_seconds=120),
)


class Cluster:
    """One fake cluster: its owners, its health workflow, and shortcuts to their status."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str, terminate_seconds: float = 5) -> None:
        self.env, self.task_queue = env, task_queue
        self.cloud = FakeCloud(boot_seconds=20, join_seconds=10, terminate_seconds=terminate_seconds)
        self.fakes = HealthFakes(self.cloud)
        self.ctx = cluster_context(unique("c"))

    def activities(self) -> list:
        return self.fakes.activities() + HEALTH_ACTIVITIES

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def start_control_plane(self, replicas: int = 3) -> None:
        spec = ControlPlaneSpec(
            name="cp", replicas=replicas, version=VERSION, machine_template=machine_template("cp")
        )
        await self.env.client.start_workflow(
            ControlPlaneWorkflow.run,
            ControlPlaneInput(cluster=self.ctx, spec=spec),
            id=f"controlplane/default/{self.ctx.name}",
            task_queue=self.task_queue,
        )

    async def start_deployment(self, name: str, replicas: int) -> None:
        spec = MachineDeploymentSpec(
            name=name,
            replicas=replicas,
            version=VERSION,
            machine_template=machine_template(name),
            bootstrap=KubeadmConfigSpec(),
            bootstrap_template_name=f"{name}-bootstrap",
        )
        await self.env.client.start_workflow(
            MachineDeploymentWorkflow.run,
            MachineDeploymentInput(
                cluster=self.ctx, spec=spec, control_plane_initialized=True, control_plane_version=VERSION
            ),
            id=MachineDeploymentWorkflow.workflow_id("default", self.ctx.name, name),
            task_queue=self.task_queue,
        )

    async def start_health(
        self, *checks: HealthCheckSpec, max_iterations: int = 100, interval: float = INTERVAL, **inputs
    ):
        return await self.env.client.start_workflow(
            HealthCheckWorkflow.run,
            HealthCheckInput(
                cluster=self.ctx,
                checks=checks,
                interval_seconds=interval,
                max_iterations=max_iterations,
                **inputs,
            ),
            id=health_workflow_id("default", self.ctx.name),
            task_queue=self.task_queue,
        )

    # Handles by workflow id only: queries follow the workflow across continue-as-new.
    def health(self):
        return self.env.client.get_workflow_handle(health_workflow_id("default", self.ctx.name))

    async def health_status(self) -> HealthStatus:
        return await query(self.health(), HealthCheckWorkflow.status)

    def deployment(self, name: str):
        return self.env.client.get_workflow_handle(
            MachineDeploymentWorkflow.workflow_id("default", self.ctx.name, name)
        )

    async def md_status(self, name: str) -> DeploymentStatus:
        return await query(self.deployment(name), MachineDeploymentWorkflow.status)

    async def cp_status(self) -> ControlPlaneStatus:
        handle = self.env.client.get_workflow_handle(f"controlplane/default/{self.ctx.name}")
        return await query(handle, ControlPlaneWorkflow.status)

    async def wait_md(self, name: str, predicate, what: str, limit: float = 1800) -> DeploymentStatus:
        return await wait_for(self.env, lambda: self.md_status(name), predicate, what=what, limit=limit)

    async def wait_health(self, predicate, what: str, limit: float = 1800, step: float = 5) -> HealthStatus:
        return await wait_for(self.env, self.health_status, predicate, what=what, limit=limit, step=step)

    async def wait_event(self, kind: str, machine: str, limit: float = 1800, step: float = 5) -> HealthEvent:
        status = await self.wait_health(
            lambda s: any(e.kind == kind and e.machine == machine for e in s.events),
            what=f"{kind} {machine}",
            limit=limit,
            step=step,
        )
        return next(e for e in status.events if e.kind == kind and e.machine == machine)


def settled(replicas: int, without: tuple[str, ...] = ()):
    def check(s: DeploymentStatus) -> bool:
        names = {m.name for m in s.machines}
        return (
            s.available_replicas == replicas == s.replicas
            and all(m.phase == "Running" for m in s.machines)
            and not names & set(without)
        )

    return check


def events_for(status: HealthStatus, machine: str) -> list[str]:
    return [e.kind for e in status.events if e.machine == machine]


async def test_terminated_instance_and_not_ready_node_are_replaced(time_skipping_env, task_queue):
    """A worker's instance terminated out of band is seen within one interval and replaced (the
    deployment back at 3); a node NotReady past its condition timeout is replaced, not before;
    a deployment the check does not select is left alone even with a NotReady node."""
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 3)
        await c.start_deployment("md-1", 1)
        await c.start_health(
            HealthCheckSpec(
                name="workers", machine_deployments=("md-0",), unhealthy_conditions=NOT_READY_120S
            )
        )
        before = await c.wait_md("md-0", settled(3), "md-0 ready")
        (other,) = (await c.wait_md("md-1", settled(1), "md-1 ready")).machines
        await c.wait_health(lambda s: s.check("workers").healthy == 3, "3 healthy")

        # 1. The instance is terminated behind capt's back.
        victim = before.machines[0].name
        vanished_at = await c.now()
        c.cloud.vanish(victim, vanished_at)
        detected = await c.wait_event("detected", victim, step=2)
        assert "InstanceGone" in detected.message
        assert detected.at - vanished_at <= timedelta(seconds=INTERVAL + SLACK)
        accepted = await c.wait_event("accepted", victim, step=2)
        assert accepted.at - detected.at <= timedelta(seconds=SLACK)
        after = await c.wait_md("md-0", settled(3, without=(victim,)), "md-0 restored")
        await c.wait_event("finished", victim)
        assert after.desired_replicas == 3

        # 2. A node goes NotReady: replaced after its 120 s, not before. md-1's goes too: untouched.
        victim2 = after.machines[-1].name
        broke_at = await c.now()
        c.fakes.node_not_ready(victim2, broke_at)
        c.fakes.node_not_ready(other.name, broke_at)
        detected = await c.wait_event("detected", victim2, step=5)
        assert "UnhealthyNodeCondition" in detected.message and "Ready=False" in detected.message
        assert timedelta(seconds=120) < detected.at - broke_at <= timedelta(seconds=120 + INTERVAL + SLACK)
        await c.wait_md("md-0", settled(3, without=(victim2,)), "md-0 restored again")

        status = await c.health_status()
        assert events_for(status, other.name) == []
        assert other.name not in {m.machine for m in status.check("workers").machines}
        md1 = await c.md_status("md-1")
        assert [m.name for m in md1.machines] == [other.name] and md1.last_remediation == ""
        # One batched describe per interval (an interval may be in progress as we look).
        assert status.iterations <= c.cloud.calls["describe_cluster_instances"] <= status.iterations + 1
        # The health workflow only observes and asks: it never terminates anything itself.
        history = await c.health().fetch_history()
        scheduled = {
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        assert scheduled == {
            "query_machine_owners",
            "describe_cluster_instances",
            "list_workload_nodes",
            "request_remediation",
        }
        # A worker restart replays this history: the workflow code must make the same decisions.
        await Replayer(
            workflows=[HealthCheckWorkflow], data_converter=pydantic_data_converter
        ).replay_workflow(history)


async def test_node_startup_timeout_replaces_a_machine_that_never_gets_ready(time_skipping_env, task_queue):
    """A new machine whose node never becomes Ready is replaced once nodeStartupTimeout (120 s,
    counted from its creation) has passed (the MachineWorkflow itself waits: only the check remediates)."""
    c = Cluster(time_skipping_env, task_queue)
    broken: list[str] = []

    def never_ready_once(cloud: FakeCloud, event: str) -> None:
        kind, _, machine = event.partition(" ")
        if kind == "launch" and armed and not broken:
            broken.append(machine)
            cloud.never_ready.add(machine)

    armed = False
    c.cloud.on_change = never_ready_once
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 2)
        await c.start_health(
            HealthCheckSpec(name="workers", machine_deployments=("md-0",), node_startup_timeout_seconds=120)
        )
        await c.wait_md("md-0", settled(2), "2 ready")
        armed = True
        await c.deployment("md-0").execute_update(MachineDeploymentWorkflow.scale, ScaleRequest(replicas=3))
        await c.wait_md(
            "md-0", lambda s: bool(broken) and broken[0] in {m.name for m in s.machines}, "scaled"
        )
        launched = next(i.launched_at for i in c.cloud.instances.values() if i.machine == broken[0])
        detected = await c.wait_event("detected", broken[0], step=5)
        assert detected.message.startswith("NodeStartupTimeout: no node")
        # Created just before its launch: detected at the first interval after 120 s.
        assert timedelta(seconds=120) < detected.at - launched <= timedelta(seconds=120 + INTERVAL + SLACK)
        await c.wait_event("accepted", broken[0], step=2)
        await c.wait_md("md-0", settled(3, without=(broken[0],)), "replaced")
        # The replacement booted normally and nothing else was touched.
        status = await c.health_status()
        assert [e.machine for e in status.events if e.kind == "detected"] == broken


async def test_too_many_unhealthy_short_circuits_remediation(time_skipping_env, task_queue):
    """3 of 6 unhealthy with maxUnhealthy 40% (2): nothing is remediated and the check reports
    TooManyUnhealthy; when one recovers (2 of 6), the other two are replaced."""
    c = Cluster(time_skipping_env, task_queue)
    check = HealthCheckSpec(
        name="workers",
        machine_deployments=("md-0",),
        max_unhealthy="40%",
        unhealthy_conditions=(UnhealthyCondition(type="Ready", status="False", timeout_seconds=60),),
    )
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 6)
        await c.start_health(check)
        before = await c.wait_md("md-0", settled(6), "6 ready")
        names = [m.name for m in before.machines]
        broke_at = await c.now()
        for name in names[:3]:
            c.fakes.node_not_ready(name, broke_at)
        status = await c.wait_health(
            lambda s: s.check("workers").unhealthy == 3 and not s.check("workers").remediation_allowed,
            "short-circuit",
            step=10,
        )
        report = status.check("workers")
        assert report.reason.startswith("TooManyUnhealthy")
        assert "total: 6, unhealthy: 3, maxUnhealthy: 40%" in report.reason
        assert (report.expected, report.healthy, report.unhealthy) == (6, 3, 3)
        # Ten more intervals: still nothing remediated, the decision recorded once.
        await c.env.sleep(10 * INTERVAL)
        status = await c.health_status()
        md = await c.md_status("md-0")
        assert [m.name for m in md.machines] == names and md.last_remediation == ""
        # (Booting machines are not healthy either, as in CAPI: the check may short-circuit while
        # the deployment first comes up. Only what happened since the nodes broke counts here.)
        since = [e.kind for e in status.events if e.at > broke_at]
        assert since.count("short-circuit") == 1 and since.count("detected") == 3
        assert not any(e.kind == "accepted" for e in status.events)
        assert all(m.state == "unhealthy" for m in report.machines if m.machine in names[:3])

        # One recovers: 2 of 6 is within 40% — the two left are replaced.
        c.fakes.node_ready_again(names[0])
        recovered_at = await c.now()
        await c.wait_health(
            lambda s: any(e.kind == "allowed" and e.at > recovered_at for e in s.events), "allowed again"
        )
        await c.wait_md("md-0", settled(6, without=tuple(names[1:3])), "two replaced")
        status = await c.health_status()
        assert sorted(e.machine for e in status.events if e.kind == "accepted") == sorted(names[1:3])
        assert events_for(status, names[0]) == ["detected", "recovered"]
        kept = {m.name for m in (await c.md_status("md-0")).machines}
        assert {names[0], *names[3:]} <= kept


async def test_lost_control_plane_machine_is_replaced_with_quorum_held(time_skipping_env, task_queue):
    """A control-plane machine's instance vanishes in a 3-machine control plane: the control plane
    is asked (with the full unhealthy set), removes the etcd member, then replaces the machine;
    etcd never drops below quorum."""
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_control_plane(3)
        await c.start_health(
            HealthCheckSpec(name="cp", control_plane=True, unhealthy_conditions=NOT_READY_120S)
        )
        cp = await wait_for(
            c.env, c.cp_status, lambda s: s.ready and s.ready_replicas == 3, what="3 control-plane machines"
        )
        await c.wait_health(lambda s: s.check("cp").healthy == 3, "3 healthy")
        victim = cp.machines[1].name
        first_sample = len(c.cloud.samples)
        vanished_at = await c.now()
        c.cloud.vanish(victim, vanished_at)
        detected = await c.wait_event("detected", victim, step=2)
        assert detected.at - vanished_at <= timedelta(seconds=INTERVAL + SLACK)
        await c.wait_event("accepted", victim, step=2)
        cp = await wait_for(
            c.env,
            c.cp_status,
            lambda s: s.ready and s.ready_replicas == 3 and victim not in {m.name for m in s.machines},
            what="control plane restored",
        )
        during = c.cloud.samples[first_sample:]
        assert during and all(s.etcd_members >= etcd_quorum(3) for s in during)
        events = [s.event for s in during]
        assert events.index(f"etcd remove {victim}") < next(
            i for i, e in enumerate(events) if e.startswith("launch")
        )
        assert len(c.cloud.etcd_members) == 3 and c.cloud.calls["send_etcd_member_removal"] == 1
        finished = await c.wait_event("finished", victim)
        assert finished.check == "cp"


async def test_marks_of_machines_that_recovered_are_cleared_and_scale_up_proceeds(
    time_skipping_env, task_queue
):
    """Issue 18, high 1: two of three control-plane nodes go NotReady past their timeout; the
    control plane refuses to remediate either (one removal would leave 1 healthy of 2 members,
    below quorum) and marks both unhealthy. The nodes recover: the next rounds clear the marks,
    and a scale-up to 5 (whose preflight needs every machine healthy) proceeds instead of
    waiting on the stale marks for good."""
    from capt.workflows.controlplane.models import ScaleRequest as CpScale

    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_control_plane(3)
        await c.start_health(
            HealthCheckSpec(name="cp", control_plane=True, unhealthy_conditions=NOT_READY_120S)
        )
        cp = await wait_for(c.env, c.cp_status, lambda s: s.ready and s.ready_replicas == 3, what="3 ready")
        await c.wait_health(lambda s: s.check("cp").healthy == 3, "3 healthy")
        sick = [cp.machines[0].name, cp.machines[1].name]
        broke_at = await c.now()
        for name in sick:
            c.fakes.node_not_ready(name, broke_at)
        await c.wait_health(
            lambda s: any(e.kind == "refused" and e.machine in sick for e in s.events),
            "a refused remediation",
        )
        marked = await wait_for(
            c.env,
            c.cp_status,
            lambda s: {m.name for m in s.machines if m.unhealthy} == set(sick),
            what="both marked unhealthy",
        )
        assert len(marked.machines) == 3  # nothing was removed: quorum held
        for name in sick:
            c.fakes.node_ready_again(name)
        for name in sick:
            await c.wait_event("healthy-again", name, step=5)
        await wait_for(
            c.env, c.cp_status, lambda s: not any(m.unhealthy for m in s.machines), what="marks cleared"
        )
        await c.env.client.get_workflow_handle(f"controlplane/default/{c.ctx.name}").execute_update(
            ControlPlaneWorkflow.scale, CpScale(replicas=5)
        )
        grown = await wait_for(
            c.env, c.cp_status, lambda s: s.ready_replicas == 5, what="scaled to 5", limit=3600
        )
        assert set(sick) <= {m.name for m in grown.machines}


async def test_a_first_control_plane_machine_that_never_comes_up_is_replaced(time_skipping_env, task_queue):
    """Issue 18: KCP remediates during provisioning too. The init machine's node never registers;
    the health check (nodeStartupTimeout 300 s) asks the control plane, which deletes the machine
    and creates a new init machine (the cluster's PKI is in Secrets Manager, not on the machine,
    so the new `kubeadm init` serves the same CA); the control plane initializes and reaches 3."""
    c = Cluster(time_skipping_env, task_queue)
    first: list[str] = []

    def break_the_first_launch(cloud, event: str) -> None:
        if event.startswith("launch ") and not first:
            first.append(event.split()[1])
            cloud.never_ready.add(first[0])

    c.cloud.on_change = break_the_first_launch
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_control_plane(3)
        await c.start_health(HealthCheckSpec(name="cp", control_plane=True, node_startup_timeout_seconds=300))
        status = await c.wait_health(
            lambda s: (
                any(e.kind == "accepted" and e.machine == first[0] for e in s.events) if first else False
            ),
            "the init machine's remediation",
            step=10,
        )
        assert "NodeStartupTimeout" in next(
            e.message for e in status.events if e.kind == "detected" and e.machine == first[0]
        )
        cp = await wait_for(
            c.env,
            c.cp_status,
            lambda s: s.initialized and s.ready_replicas == 3,
            what="initialized by a new init machine, then 3",
            limit=3600,
        )
        assert first[0] not in {m.name for m in cp.machines}
        assert sum(1 for s in c.cloud.samples if s.event.startswith("launch")) == 4


async def test_five_control_plane_machines_with_two_failed_are_remediated_one_at_a_time(
    time_skipping_env, task_queue
):
    """Issue 18: a 5-machine control plane loses two instances at once. 5 members, 2 unhealthy:
    removing one leaves 4 with 1 unhealthy (3 healthy >= quorum 3), so the first is remediated;
    once its replacement joins, the second is (the same arithmetic). No deadlock, quorum held
    throughout, one etcd member removal per failed machine."""
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_control_plane(5)
        await c.start_health(
            HealthCheckSpec(name="cp", control_plane=True, unhealthy_conditions=NOT_READY_120S)
        )
        cp = await wait_for(
            c.env, c.cp_status, lambda s: s.ready and s.ready_replicas == 5, what="5 ready", limit=3600
        )
        await c.wait_health(lambda s: s.check("cp").healthy == 5, "5 healthy")
        victims = {cp.machines[1].name, cp.machines[3].name}
        first_sample = len(c.cloud.samples)
        at = await c.now()
        for name in victims:
            c.cloud.vanish(name, at)
        restored = await wait_for(
            c.env,
            c.cp_status,
            lambda s: s.ready and s.ready_replicas == 5 and not victims & {m.name for m in s.machines},
            what="both replaced",
            limit=3600,
        )
        assert len(restored.machines) == 5
        during = c.cloud.samples[first_sample:]
        assert during and all(s.etcd_members >= etcd_quorum(5) for s in during)
        removals = [s.event for s in during if s.event.startswith("etcd remove")]
        assert sorted(removals) == sorted(f"etcd remove {v}" for v in victims)
        assert len(c.cloud.etcd_members) == 5


async def test_control_plane_remediation_reports_each_retry(time_skipping_env, task_queue):
    """Issue 18: KCP remediation retries (remediationStrategy maxRetry 1): the first two init
    machines never get a node; the second replacement is retry 1 of 1 and says so; the third
    machine initializes the control plane."""
    c = Cluster(time_skipping_env, task_queue)
    broken: list[str] = []

    def break_two_launches(cloud, event: str) -> None:
        if event.startswith("launch ") and len(broken) < 2:
            broken.append(event.split()[1])
            cloud.never_ready.add(broken[-1])

    c.cloud.on_change = break_two_launches
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        spec = ControlPlaneSpec(
            name="cp",
            replicas=1,
            version=VERSION,
            machine_template=machine_template("cp"),
            remediation_max_retry=1,
        )
        await c.env.client.start_workflow(
            ControlPlaneWorkflow.run,
            ControlPlaneInput(cluster=c.ctx, spec=spec),
            id=f"controlplane/default/{c.ctx.name}",
            task_queue=c.task_queue,
        )
        await c.start_health(HealthCheckSpec(name="cp", control_plane=True, node_startup_timeout_seconds=300))
        retried = await wait_for(
            c.env,
            c.cp_status,
            lambda s: "(retry 1 of 1)" in s.last_remediation,
            what="retry 1 reported",
            limit=7200,
        )
        assert broken[1] in retried.last_remediation
        done = await wait_for(
            c.env, c.cp_status, lambda s: s.initialized and s.ready_replicas == 1, limit=7200
        )
        assert not set(broken) & {m.name for m in done.machines}


async def test_settings_change_and_continue_as_new_keep_detections(time_skipping_env, task_queue):
    """The health workflow continues-as-new every 3 intervals (90 s). A node that turns NotReady
    without reporting a transition time is timed from the health check's first sighting, which must
    survive every continue-as-new: with a 150 s timeout it is only ever detected if it does. The
    timeout is lowered from 1 h to 150 s by `configure` mid-way; it applies at the next interval."""
    c = Cluster(time_skipping_env, task_queue)
    slow = HealthCheckSpec(
        name="workers",
        machine_deployments=("md-0",),
        unhealthy_conditions=(UnhealthyCondition(type="Ready", status="False", timeout_seconds=3600),),
    )
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 2)
        await c.start_health(slow, max_iterations=3)
        before = await c.wait_md("md-0", settled(2), "2 ready")
        victim = before.machines[0].name
        broke_at = await c.now()
        c.fakes.node_not_ready(victim, broke_at, report_transition_time=False)
        await c.env.sleep(200)
        status = await c.health_status()
        assert status.runs >= 3, status.runs  # continued as new at least twice since
        assert events_for(status, victim) == []  # 1 h timeout: not yet

        # A rejected change never enters history; an accepted one waits for the next interval.
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await c.health().execute_update(HealthCheckWorkflow.configure, HealthSettings(interval_seconds=0))
        assert "interval must be at least" in str(err.value.cause)
        # The cluster workflow's way (a signal) is checked by the health workflow itself.
        await c.health().signal(HealthCheckWorkflow.apply_settings, HealthSettings(interval_seconds=0))
        fast = slow.model_copy(
            update={
                "unhealthy_conditions": (
                    UnhealthyCondition(type="Ready", status="False", timeout_seconds=150),
                )
            }
        )
        configured_at = await c.now()
        answer = await c.health().execute_update(
            HealthCheckWorkflow.configure, HealthSettings(checks=(fast,))
        )
        assert answer.pending_settings
        detected = await c.wait_event("detected", victim, step=2)
        # First seen ≤ one interval after it broke (more than 150 s ago): detected at the very
        # interval that applied the new settings.
        assert detected.at - configured_at <= timedelta(seconds=INTERVAL + SLACK)
        assert "for more than 150s" in detected.message
        await c.wait_md("md-0", settled(2, without=(victim,)), "replaced")
        await c.wait_event("finished", victim)
        status = await c.health_status()
        kinds = [e.kind for e in status.events]
        assert (
            kinds.index("settings")
            < kinds.index("detected")
            < kinds.index("accepted")
            < kinds.index("finished")
        )
        assert status.runs >= 4 and status.iterations >= 3 * (status.runs - 1)


async def test_max_in_flight_holds_across_continue_as_new(time_skipping_env, task_queue):
    """Two instances vanish together with maxInFlight 1: one replacement at a time. The first
    machine takes ~200 s to go (its instance shuts down slowly) while the workflow continues-as-new
    every 2 intervals; the remediation in flight is carried, so the second is asked for exactly
    once, after the first machine is gone."""
    c = Cluster(time_skipping_env, task_queue, terminate_seconds=200)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 3)
        first_run = await c.start_health(
            HealthCheckSpec(name="workers", machine_deployments=("md-0",), max_in_flight=1), max_iterations=2
        )
        before = await c.wait_md("md-0", settled(3), "3 ready")
        a, b = before.machines[0].name, before.machines[1].name
        vanished_at = await c.now()
        c.cloud.vanish(a, vanished_at)
        c.cloud.vanish(b, vanished_at)
        await c.wait_md("md-0", settled(3, without=(a, b)), "both replaced")
        status = await c.wait_event("finished", b)
        status = await c.health_status()
        by_kind = {(e.kind, e.machine): e.at for e in status.events}
        first, second = sorted((a, b), key=lambda n: by_kind[("accepted", n)])
        assert by_kind[("detected", first)] - vanished_at <= timedelta(seconds=INTERVAL + SLACK)
        assert ("deferred", second) in by_kind  # waited for the slot
        assert by_kind[("finished", first)] <= by_kind[("accepted", second)]
        assert by_kind[("finished", first)] - by_kind[("accepted", first)] >= timedelta(seconds=150)

        # Across every run of the workflow: exactly two remediation requests, one per machine.
        requests, runs, run_id = [], 0, first_run.first_execution_run_id
        while run_id:
            history = await c.env.client.get_workflow_handle(first_run.id, run_id=run_id).fetch_history()
            runs += 1
            run_id = None
            for e in history.events:
                if e.HasField("activity_task_scheduled_event_attributes"):
                    attrs = e.activity_task_scheduled_event_attributes
                    if attrs.activity_type.name == "request_remediation":
                        requests.append(attrs.activity_id)
                if e.HasField("workflow_execution_continued_as_new_event_attributes"):
                    run_id = e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        assert len(requests) == 2, requests
        assert runs >= 4  # ≥ 3 continue-as-new while the first was in flight (~200 s, one every 60 s)


async def test_remediation_request_is_idempotent_and_refusals_are_answers(time_skipping_env, task_queue):
    """`request_remediation` against a real deployment: a retried attempt (same update id) gets the
    first answer back instead of a second remediation; an unknown machine or a missing owner is a
    refusal, not an error."""
    c = Cluster(time_skipping_env, task_queue)
    act = ActivityEnvironment(client=c.env.client)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 2)
        before = await c.wait_md("md-0", settled(2), "2 ready")
        target = before.machines[0].name
        call = RemediationCall(
            owner="machine-deployment",
            owner_workflow_id=c.deployment("md-0").id,
            machines=(target,),
            reason="test",
            update_id="health-test-1",
        )
        first = await act.run(request_remediation, call)
        again = await act.run(request_remediation, call)
        assert first.accepted and first.remediated == (target,)
        assert again == first
        history = await c.deployment("md-0").fetch_history()
        accepted = [
            e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert len(accepted) == 1

        unknown = await act.run(
            request_remediation, call.model_copy(update={"machines": ("nope",), "update_id": "u2"})
        )
        assert unknown.rejected and not unknown.accepted and "nope" in unknown.reason
        missing = await act.run(
            request_remediation,
            call.model_copy(update={"owner_workflow_id": "md/default/none/md-0", "update_id": "u3"}),
        )
        assert missing.rejected and "not running" in missing.reason
        await c.wait_md("md-0", settled(2, without=(target,)), "replaced once")
        assert sum(1 for s in c.cloud.samples if s.event.startswith("launch")) == 3


async def test_instance_event_triggers_a_check_within_seconds(time_skipping_env, task_queue):
    """Event-driven detection on (an EventBridge queue): with a 10-minute interval, a terminated
    worker instance is seen within one long poll (≤ 20 s) of its event; an event about an instance
    that is not the cluster's triggers nothing; the queue is polled about once per 20 s."""
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 2)
        await c.start_health(
            HealthCheckSpec(name="workers", machine_deployments=("md-0",)),
            interval=600,
            instance_events_queue_url="https://sqs.example/123456789012/capt-default-demo-instance-events",
        )
        before = await c.wait_md("md-0", settled(2), "2 ready")
        status = await c.wait_health(
            lambda s: s.check("workers") and s.check("workers").healthy == 2, "healthy"
        )
        checks, polls, started = status.iterations, c.fakes.polls, await c.now()

        # Someone else's instance: nothing happens.
        with c.cloud.lock:
            c.fakes.queued_events.append(
                instance_events.InstanceEvent(instance_id="i-0fffffffffffffff0", state="terminated")
            )
        await c.env.sleep(60)
        assert (await c.health_status()).iterations == checks

        victim = before.machines[0].name
        vanished_at = await c.now()
        c.cloud.vanish(victim, vanished_at)
        c.fakes.instance_event(victim, "shutting-down")
        detected = await c.wait_event("detected", victim, step=1)
        assert detected.at - vanished_at <= timedelta(seconds=instance_events.MAX_WAIT_SECONDS + SLACK)
        status = await c.health_status()
        kinds = [e.kind for e in status.events if e.machine == victim]
        assert kinds[:2] == ["instance-event", "detected"]
        await c.wait_md("md-0", settled(2, without=(victim,)), "replaced")
        elapsed = (await c.now() - started).total_seconds()
        assert c.fakes.polls - polls <= elapsed / instance_events.MAX_WAIT_SECONDS + 3


async def test_unreachable_api_server_judges_no_node_but_still_sees_instances(time_skipping_env, task_queue):
    """With the workload API down, no node looks "gone" (no mass remediation from an outage of
    the API server): node checks are skipped and said so, once; instance checks go on."""
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 3)
        await c.start_health(
            HealthCheckSpec(
                name="workers", machine_deployments=("md-0",), unhealthy_conditions=NOT_READY_120S
            )
        )
        before = await c.wait_md("md-0", settled(3), "3 ready")
        await c.wait_health(lambda s: s.check("workers").healthy == 3, "3 healthy")
        c.fakes.api_down = True
        down_at = await c.now()
        await c.env.sleep(5 * INTERVAL)
        status = await c.health_status()
        assert [e.kind for e in status.events if e.at > down_at] == ["api-unreachable"]
        assert "nodes not listed" in status.observation
        assert status.check("workers").healthy == 3  # their owners still report their nodes

        victim = before.machines[2].name
        vanished_at = await c.now()
        c.cloud.vanish(victim, vanished_at)
        detected = await c.wait_event("detected", victim, step=2)
        assert detected.message.startswith("InstanceGone") and "NodeNotFound" not in detected.message
        assert detected.at - vanished_at <= timedelta(seconds=INTERVAL + SLACK)
        await c.wait_event("accepted", victim, step=2)
        status = await c.health_status()
        assert [e.machine for e in status.events if e.kind == "detected"] == [victim]
