"""MachineWorkflow alone, on the time-skipping server with the fake cloud."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from capt.activities.aws import images
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.spec.models import AMISelector
from capt.workflows.machine import policy as machine_wf
from capt.workflows.machine.models import DeleteOptions, MachineInput, machine_workflow_id
from capt.workflows.machine.workflow import MachineWorkflow
from tests.support.context import (
    cluster_context,
    kubeadm,
    machine_template,
    query,
    running_worker,
    unique,
    wait_for,
)


def machine_input(
    name: str, role: str = "worker", kind: str = "join-worker", startup: int = 600, template=None
) -> MachineInput:
    cluster = cluster_context(unique("c"))
    return MachineInput(
        cluster=cluster,
        name=name,
        role=role,  # type: ignore[arg-type]
        bootstrap_kind=kind,  # type: ignore[arg-type]
        failure_domain="ap-northeast-2b",
        version="v1.20.5",
        revision="r1",
        template=template or machine_template(),
        kubeadm=kubeadm(),
        node_startup_timeout_seconds=startup,
    )


async def start(env, task_queue, inp):
    return await env.client.start_workflow(
        MachineWorkflow.run, inp, id=machine_workflow_id(inp.cluster, inp.name), task_queue=task_queue
    )


def phase(p):
    return lambda s: s.phase == p


async def test_happy_path_then_delete(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=40, join_seconds=20)
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("m1", role="control-plane", kind="init"))
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=10)
        assert status.node_ready and status.instance_id and status.node_name == f"ip-{status.instance_id}"
        assert status.failure_domain == "ap-northeast-2b"
        assert (status.running_at - status.created_at) >= timedelta(seconds=60)  # boot + join, workflow time
        # Init needs no join token; the bootstrap secret is deleted once the node joined.
        assert "ensure_bootstrap_token" not in cloud.calls
        assert cloud.calls["delete_bootstrap_data"] == 1
        assert cloud.calls["register_with_load_balancer"] == 1  # control plane behind the API LB

        await handle.signal(MachineWorkflow.request_delete)
        final = await handle.result()
        assert final.phase == "Deleted"
        assert cloud.calls["cordon_node"] == 1 and cloud.calls["drain_node"] == 1
        assert cloud.calls["deregister_from_load_balancer"] == 1
        assert cloud.calls["terminate_instance"] == 1 and cloud.calls["delete_node"] == 1
        assert cloud.instances[status.instance_id].terminated_at is not None


async def test_join_uses_a_token(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("w1"))
        await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=10)
        assert cloud.calls["ensure_bootstrap_token"] == 1
        assert cloud.calls["create_bootstrap_token_secret"] >= 1
        assert "register_with_load_balancer" not in cloud.calls  # workers are not behind the API LB


async def test_node_never_ready_waits_past_node_startup_timeout(time_skipping_env, task_queue):
    """Issue 18, high 2. As in CAPI, the machine itself never fails on nodeStartupTimeout (only
    a MachineHealthCheck remediates): past it the machine keeps waiting, says why, polls less
    and less often (bounded history), and still joins if its node comes late."""
    env, cloud = time_skipping_env, FakeCloud()
    cloud.never_ready.add("w2")
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("w2", startup=900))
        status = await wait_for(
            env,
            lambda: query(handle, MachineWorkflow.status),
            lambda s: "waiting (a Machine" in s.message,
            step=60,
        )
        assert status.phase != "Failed" and status.failure_reason is None
        assert "never registered" in status.message
        polls_at_timeout = cloud.calls["list_workload_nodes"]
        await env.sleep(timedelta(hours=24))
        status = await query(handle, MachineWorkflow.status)
        assert status.phase != "Failed"
        # A day past the timeout: about 50 polls (10 s -> 30 min), not 8,640 (every 10 s).
        assert cloud.calls["list_workload_nodes"] - polls_at_timeout <= 60
        # While it waited, the 15-minute join token was refreshed and republished.
        assert cloud.calls["refresh_bootstrap_token"] >= 2
        assert cloud.calls["create_bootstrap_token_secret"] == 1 + cloud.calls["refresh_bootstrap_token"]
        # The node comes after all: the machine runs.
        cloud.never_ready.discard("w2")
        await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=600)
        await handle.signal(MachineWorkflow.request_delete)
        assert (await handle.result()).phase == "Deleted"


@pytest.mark.parametrize(
    ("past", "previous", "delay"),
    [
        (0, 0.0, machine_wf.NODE_POLL_SECONDS),  # first late poll: the usual 10 s
        (10, 10.0, 20.0),  # then doubling
        (3000, 1280.0, 1800.0),  # capped at 30 minutes
        (86399, 1800.0, 1800.0),
        (86400, 1800.0, 6 * 3600.0),  # after a day: every 6 hours
    ],
)
def test_late_node_poll(past, previous, delay) -> None:
    assert machine_wf.late_node_poll(past, previous) == delay


async def test_instance_gone_while_provisioning_fails(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=120)
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("w3"))
        status = await wait_for(
            env, lambda: query(handle, MachineWorkflow.status), lambda s: s.instance_id, step=2
        )
        cloud.vanish("w3", at=status.created_at)
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Failed"), step=10)
        assert "while provisioning" in status.failure_reason


async def test_delete_during_provisioning(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=300)
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("w4"))
        await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Provisioning"), step=2)
        await handle.signal(MachineWorkflow.request_delete)
        final = await handle.result()
        assert final.phase == "Deleted" and final.node_name is None
        assert cloud.calls["terminate_instance"] == 1
        assert "cordon_node" not in cloud.calls  # there was never a node


async def test_worker_restart_does_not_run_instances_twice(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=60)
    inp = machine_input("w5")
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities(), max_cached_workflows=0):
        handle = await start(env, task_queue, inp)
        await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Provisioned"), step=10)
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities(), max_cached_workflows=0):
        await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=10)
    assert cloud.calls["ensure_instance"] == 1
    assert len(cloud.instances) == 1


# --- permanent failures, delete options, delete mode (issue 15, WP7) ------------------------------


async def test_permanent_run_instances_error_fails_the_machine_after_one_attempt(
    time_skipping_env, task_queue
):
    env, cloud = time_skipping_env, FakeCloud()
    message = "The image id '[ami-00000000000000000]' does not exist"
    cloud.fail_permanently("ensure_instance", "RunInstances", "InvalidAMIID.NotFound", message)
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("w6"))
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Failed"), step=10)
        assert status.failure_reason == f"RunInstances: InvalidAMIID.NotFound: {message}"
        assert status.message == status.failure_reason and status.instance_id is None
        assert cloud.calls["ensure_instance"] == 1  # non-retryable: exactly one attempt
        # The workflow did not fail: it waits, Failed, until its owner deletes the machine.
        await env.sleep(3600)
        assert (await handle.describe()).status.name == "RUNNING"
        assert cloud.calls["ensure_instance"] == 1
        await handle.signal(MachineWorkflow.request_delete)
        final = await handle.result()
        assert final.phase == "Deleted" and final.failure_reason == status.failure_reason
        assert "terminate_instance" not in cloud.calls  # there never was an instance
        assert cloud.calls["delete_bootstrap_data"] == 1
        # The new branch (patched machine-permanent-failure) replays deterministically.
        history = await handle.fetch_history()
        assert any(e.HasField("marker_recorded_event_attributes") for e in history.events)
        await Replayer(workflows=[MachineWorkflow], data_converter=pydantic_data_converter).replay_workflow(
            history
        )


async def test_image_that_does_not_exist_fails_the_machine_with_aws_message(
    time_skipping_env, task_queue, aws
):
    """The real lookup_image against moto: an AMI id that does not exist."""
    env, cloud = time_skipping_env, FakeCloud()
    attempts: list[str] = []

    @activity.defn(name="lookup_image")
    def lookup_image(req: images.ImageLookupRequest) -> images.ImageLookupResult:
        attempts.append(req.ami.id or "")
        return images.lookup_image(req)

    fakes = [a for a in cloud.activities() if a.__name__ != "lookup_image"]
    template = machine_template().model_copy(update={"ami": AMISelector(id="ami-00000000000000000")})
    async with running_worker(env, task_queue, [MachineWorkflow], [*fakes, lookup_image]):
        handle = await start(env, task_queue, machine_input("w7", template=template))
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Failed"), step=10)
    assert attempts == ["ami-00000000000000000"]
    assert status.failure_reason.startswith("DescribeImages: InvalidAMIID.NotFound: "), status.failure_reason
    assert "ami-00000000000000000" in status.failure_reason
    assert "ensure_instance" not in cloud.calls


async def test_skip_node_cleanup_deletes_without_cordon_drain_or_node_deletion(time_skipping_env, task_queue):
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, machine_input("w8"))
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=10)
        assert status.node_name
        await handle.signal(MachineWorkflow.request_delete, DeleteOptions(skip_node_cleanup=True))
        final = await handle.result()
    assert final.phase == "Deleted"
    assert cloud.calls["terminate_instance"] == 1
    assert cloud.instances[status.instance_id].terminated_at is not None
    assert not {"cordon_node", "drain_node", "delete_node"} & set(cloud.calls)


async def test_delete_mode_finds_the_instance_by_its_tags(time_skipping_env, task_queue):
    """A machine workflow terminated while Running left its instance; the same workflow id,
    started again in delete mode without the instance id, finds it by tag and terminates it."""
    env, cloud = time_skipping_env, FakeCloud()
    inp = machine_input("w9")
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        handle = await start(env, task_queue, inp)
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=10)
        await handle.terminate(reason="test")
        again = await start(env, task_queue, inp.model_copy(update={"mode": "delete"}))
        final = await again.result()
    assert final.phase == "Deleted" and final.instance_id == status.instance_id
    assert cloud.calls["lookup_machine_instance"] == 1
    assert cloud.instances[status.instance_id].terminated_at is not None
    assert "ensure_instance" in cloud.calls and cloud.calls["ensure_instance"] == 1  # nothing launched
    history = await again.fetch_history()
    await Replayer(workflows=[MachineWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        history
    )


@pytest.mark.parametrize(
    ("previous", "seconds"), [(0.0, 60.0), (60.0, 120.0), (480.0, 600.0), (600.0, 600.0)]
)
def test_drain_attempts_without_a_timeout_grow_to_ten_minutes(previous, seconds) -> None:
    assert machine_wf.drain_attempt_seconds(previous) == seconds


@pytest.mark.parametrize(("timeout", "gives_up"), [(0, False), (300, True)])
async def test_node_drain_timeout_as_given(time_skipping_env, task_queue, timeout, gives_up):
    """Issue 18: nodeDrainTimeout 0 (or unset) drains until it succeeds, as CAPI; 300 gives up
    on a drain a disruption budget blocks after 300 s and deletes the machine anyway."""
    env, cloud = time_skipping_env, FakeCloud()
    async with running_worker(env, task_queue, [MachineWorkflow], cloud.activities()):
        inp = machine_input(f"d{timeout}").model_copy(update={"node_drain_timeout_seconds": timeout})
        handle = await start(env, task_queue, inp)
        status = await wait_for(env, lambda: query(handle, MachineWorkflow.status), phase("Running"), step=10)
        cloud.drain_blocked_until = await env.get_current_time() + timedelta(hours=2)
        await handle.signal(MachineWorkflow.request_delete)
        await env.sleep(timedelta(hours=1))
        terminated = cloud.instances[status.instance_id].terminated_at
        if gives_up:
            assert terminated is not None  # gave up after 300 s and deleted the machine
        else:
            assert terminated is None  # still draining an hour later
            assert "no nodeDrainTimeout" in (await query(handle, MachineWorkflow.status)).message
            # Attempts grew to 10 minutes: about a dozen calls in an hour, not 60.
            assert cloud.calls["drain_node"] <= 12
        assert (await handle.result()).phase == "Deleted"
        assert cloud.instances[status.instance_id].terminated_at >= cloud.drain_blocked_until or gives_up
