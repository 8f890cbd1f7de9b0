"""ControlPlaneWorkflow on the time-skipping server, with real MachineWorkflows and a fake
cloud whose instances boot in workflow time. Invariants are checked on every sample the
fake takes (each launch, Ready, cordon, etcd removal, termination), not only at the end."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from capt.contracts.owners import ControlPlaneRemediationRequest
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.rules.quorum import etcd_quorum
from capt.spec.models import ControlPlaneSpec
from capt.workflows.controlplane.models import ControlPlaneInput, ScaleRequest, UpgradeRequest
from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
from capt.workflows.machine.models import DeleteOptions, machine_workflow_id
from capt.workflows.machine.workflow import MachineWorkflow
from tests.support.context import (
    AZS,
    cluster_context,
    kubeadm,
    machine_template,
    query,
    running_worker,
    unique,
    wait_for,
)

WORKFLOWS = [ControlPlaneWorkflow, MachineWorkflow]


def cp_spec(replicas: int = 3, version: str = "v1.20.5", max_surge: int = 1) -> ControlPlaneSpec:
    return ControlPlaneSpec(
        name="demo-cp",
        replicas=replicas,
        version=version,
        machine_template=machine_template("demo-cp"),
        kubeadm=kubeadm(),
        max_surge=max_surge,
    )


async def start(env, task_queue, spec, name=None, max_iterations=500):
    cluster = cluster_context(name or unique("c"))
    return await env.client.start_workflow(
        ControlPlaneWorkflow.run,
        ControlPlaneInput(cluster=cluster, spec=spec, max_iterations=max_iterations),
        id=f"controlplane/default/{cluster.name}",
        task_queue=task_queue,
    )


def settled(replicas: int, version: str | None = None):
    def check(s) -> bool:
        return (
            s.ready
            and s.ready_replicas == replicas
            and s.replicas == replicas
            and (version is None or all(m.version == version for m in s.machines))
        )

    return check


def spread(status) -> Counter:
    return Counter(m.availability_zone for m in status.machines)


async def test_init_then_scale_3_to_5_to_3_spreads_over_azs(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(3))
        status = await wait_for(
            env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3), what="3 ready"
        )
        assert status.initialized
        assert spread(status) == Counter(AZS)  # one per AZ
        # One machine at a time: each launch comes after the previous machine's node was Ready.
        events = [s.event for s in cloud.samples if s.event.startswith(("launch", "ready"))]
        launches = [i for i, e in enumerate(events) if e.startswith("launch")]
        assert len(launches) == 3
        for earlier, later in zip(launches, launches[1:], strict=False):
            assert any(e.startswith("ready") for e in events[earlier:later]), events

        await handle.execute_update(ControlPlaneWorkflow.scale, ScaleRequest(replicas=5))
        status = await wait_for(
            env, lambda: query(handle, ControlPlaneWorkflow.status), settled(5), what="5 ready"
        )
        assert sorted(spread(status).values()) == [1, 2, 2]

        await handle.execute_update(ControlPlaneWorkflow.scale, ScaleRequest(replicas=3))
        status = await wait_for(
            env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3), what="back to 3"
        )
        assert spread(status) == Counter(AZS)
        # Scaling adds and removes one machine at a time.
        assert max(s.machines for s in cloud.samples) == 5
        assert cloud.calls["send_etcd_member_removal"] == 2
        assert len(cloud.etcd_members) == 3


@pytest.mark.parametrize("max_surge,max_machines,min_ready", [(1, 4, 3), (0, 3, 2)])
async def test_rolling_upgrade_keeps_bounds_at_every_step(
    time_skipping_env, task_queue, max_surge, max_machines, min_ready
):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(3, max_surge=max_surge))
        await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3), what="3 ready")
        before = len(cloud.samples)
        await handle.execute_update(ControlPlaneWorkflow.upgrade, UpgradeRequest(version="v1.21.2"))
        status = await wait_for(
            env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3, "v1.21.2"), what="upgraded"
        )
        during = cloud.samples[before:]
        assert during, "the upgrade produced no samples"
        assert max(s.machines for s in during) <= max_machines
        assert min(s.ready for s in during) >= min_ready
        assert all(s.etcd_members >= etcd_quorum(3) for s in during)
        # Every machine was replaced, and the new ones are spread over the AZs again.
        assert sum(1 for s in during if s.event.startswith("launch")) == 3
        assert spread(status) == Counter(AZS)
        # Issue 18: kubeadm-config, CoreDNS and kube-proxy moved to the new version once, before
        # the first machine of the new version launched (its join reads kubeadm-config).
        events = [s.event for s in during]
        assert cloud.components_versions == ["v1.21.2"]
        assert events.index("components v1.21.2") < next(
            i for i, e in enumerate(events) if e.startswith("launch")
        )


async def test_remediation_allowed_for_one_of_three_and_refused_for_two(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(3))
        status = await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3))
        first, second, _ = (m.name for m in status.machines)

        # One of three unhealthy: quorum survives its removal — delete, then recreate.
        before = len(cloud.samples)
        cloud.not_ready.add(first)
        answer = await handle.execute_update(
            ControlPlaneWorkflow.remediate,
            ControlPlaneRemediationRequest(machine=first, unhealthy_machines=(first,)),
        )
        assert answer.accepted, answer.reason
        status = await wait_for(
            env,
            lambda: query(handle, ControlPlaneWorkflow.status),
            lambda s: settled(3)(s) and first not in {m.name for m in s.machines},
            what="replacement ready",
        )
        during = cloud.samples[before:]
        assert all(s.etcd_members >= etcd_quorum(3) for s in during)
        # Delete before recreate: the etcd member went before the replacement launched.
        events = [s.event for s in during]
        assert events.index(f"etcd remove {first}") < next(
            i for i, e in enumerate(events) if e.startswith("launch")
        )

        # Two of three unhealthy: removing either would lose etcd quorum — refused, reason kept.
        a, b, _ = (m.name for m in status.machines)
        cloud.not_ready.update({a, b})
        answer = await handle.execute_update(
            ControlPlaneWorkflow.remediate,
            ControlPlaneRemediationRequest(machine=a, unhealthy_machines=(a, b)),
        )
        assert not answer.accepted
        assert "quorum" in answer.reason or "etcd" in answer.reason
        status = await query(handle, ControlPlaneWorkflow.status)
        assert status.last_refusal == answer.reason
        assert status.replicas == 3 and cloud.calls["send_etcd_member_removal"] == 1


async def test_validators_reject_even_replicas_and_minor_skip(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(1))
        await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(1))
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(ControlPlaneWorkflow.scale, ScaleRequest(replicas=4))
        assert "even" in str(info.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(ControlPlaneWorkflow.upgrade, UpgradeRequest(version="v1.22.0"))
        assert "one minor version at a time" in str(info.value.cause)
        assert isinstance(info.value.cause, ApplicationError)
        # A rejected update never entered history: no WorkflowExecutionUpdateAccepted event.
        history = await handle.fetch_history()
        accepted = [
            e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert accepted == []
        status = await query(handle, ControlPlaneWorkflow.status)
        assert status.desired_replicas == 1 and status.version == "v1.20.5"


async def test_worker_restart_mid_upgrade_resumes_without_extra_machine(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    # No workflow cache: every task replays the whole history (no sticky queue to a dead worker).
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities(), max_cached_workflows=0):
        handle = await start(env, task_queue, cp_spec(3))
        await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3))
        await handle.execute_update(ControlPlaneWorkflow.upgrade, UpgradeRequest(version="v1.21.2"))
        await wait_for(
            env,
            lambda: query(handle, ControlPlaneWorkflow.status),
            lambda s: any(m.version == "v1.21.2" for m in s.machines),
            what="the upgrade to start",
        )
    # The worker is gone mid-upgrade. A new one replays the histories and carries on.
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities(), max_cached_workflows=0):
        await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3, "v1.21.2"))
    launches = [s for s in cloud.samples if s.event.startswith("launch")]
    assert len(launches) == 6  # 3 initial + 3 replacements, none twice
    assert cloud.calls["ensure_instance"] == 6


async def test_continue_as_new_keeps_machines_and_pending_updates(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(1), max_iterations=3)
        await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(1))
        await handle.execute_update(ControlPlaneWorkflow.scale, ScaleRequest(replicas=3))
        await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3))
        desc = await env.client.get_workflow_handle(handle.id).describe()
        assert desc.run_id != handle.result_run_id  # it continued as new at least once
        assert cloud.calls["ensure_instance"] == 3


# --- machines that fail or close without a word (issue 15, WP7) ------------------------------------


async def test_first_machine_failing_for_good_shows_and_delete_all_finishes(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    message = "The image id '[ami-00000000000000000]' does not exist"
    cloud.fail_permanently("ensure_instance", "RunInstances", "InvalidAMIID.NotFound", message)
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(3))
        status = await wait_for(
            env,
            lambda: query(handle, ControlPlaneWorkflow.status),
            lambda s: [m.phase for m in s.machines] == ["Failed"],
            step=10,
            what="the init machine Failed",
        )
        assert not status.initialized
        assert status.machines[0].message == f"RunInstances: InvalidAMIID.NotFound: {message}"
        assert cloud.calls["ensure_instance"] == 1
        await handle.signal(ControlPlaneWorkflow.delete_all, DeleteOptions(skip_node_cleanup=True))
        final = await handle.result()
    assert final.operation == "deleted" and final.machines == []
    assert cloud.calls["ensure_instance"] == 1


async def test_a_terminated_machine_workflow_is_seen_failed_and_deleted(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(1))
        status = await wait_for(
            env, lambda: query(handle, ControlPlaneWorkflow.status), settled(1), what="ready"
        )
        [machine] = status.machines
        cluster = handle.id.split("/")[2]
        await env.client.get_workflow_handle(machine_workflow_id(cluster, machine.name)).terminate(
            reason="oops"
        )
        terminated_at = await env.get_current_time()
        status = await wait_for(
            env,
            lambda: query(handle, ControlPlaneWorkflow.status),
            lambda s: s.machines[0].phase == "Failed",
            step=10,
            what="the machine seen Failed",
        )
        assert await env.get_current_time() - terminated_at <= timedelta(minutes=5)
        assert status.machines[0].message == "machine workflow terminated: oops"
        await handle.signal(ControlPlaneWorkflow.delete_all, DeleteOptions(skip_node_cleanup=True))
        final = await handle.result()
    assert final.operation == "deleted" and final.machines == []
    assert cloud.instances[machine.instance_id].terminated_at is not None
    assert not {"cordon_node", "drain_node", "delete_node"} & set(cloud.calls)


async def test_remediation_judges_quorum_on_etcds_own_member_list(time_skipping_env, task_queue):
    """Issue 18 (member-level quorum): the control plane reads etcd's member list through a healthy
    node before deciding. Two of three machines unhealthy plus a fourth member with no machine
    (healthy: etcd reports no alarm for it, as CAPI reads it): removing one unhealthy member
    leaves 2 healthy of 3 members, quorum 2 — allowed, where the machines alone (1 healthy of 2)
    would refuse."""
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(3))
        status = await wait_for(env, lambda: query(handle, ControlPlaneWorkflow.status), settled(3))
        a, b, _ = (m.name for m in status.machines)
        cloud.extra_etcd_members.add("ghost")
        cloud.not_ready.update({a, b})
        answer = await handle.execute_update(
            ControlPlaneWorkflow.remediate,
            ControlPlaneRemediationRequest(machine=a, unhealthy_machines=(a, b)),
        )
        assert answer.accepted, answer.reason
        assert cloud.calls["send_etcd_member_list"] == 1 and cloud.calls["check_etcd_member_list"] >= 1


async def test_remediation_follows_capis_order_not_the_requested_machine(time_skipping_env, task_queue):
    """Issue 18: among the unhealthy machines KCP picks (no node, etcd, components, then the
    oldest): asked about the newer of two unhealthy machines, the control plane remediates the
    older one and says so; the health check books the one it names."""
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, WORKFLOWS, cloud.activities()):
        handle = await start(env, task_queue, cp_spec(5))
        status = await wait_for(
            env, lambda: query(handle, ControlPlaneWorkflow.status), settled(5), limit=7200
        )
        by_age = [m.name for m in status.machines]  # creation order
        older, newer = by_age[0], by_age[3]
        cloud.not_ready.update({older, newer})
        answer = await handle.execute_update(
            ControlPlaneWorkflow.remediate,
            ControlPlaneRemediationRequest(machine=newer, unhealthy_machines=(older, newer)),
        )
        assert answer.accepted and answer.machine == older, answer
        events = [s.event for s in cloud.samples]
        assert f"etcd remove {older}" in events and f"etcd remove {newer}" not in events
