"""ClusterWorkflow end to end on the time-skipping server.

The whole workflow tree runs for real: ClusterWorkflow → InfrastructureWorkflow (its AWS
activities against in-process moto), cluster PKI in moto's Secrets Manager,
ControlPlaneWorkflow and MachineDeploymentWorkflow over real MachineWorkflows, and the
HealthCheckWorkflow. Only the machines' own activities (instances booting, nodes joining)
are the fake cloud, in workflow time.
"""

from __future__ import annotations

from collections import Counter

import boto3
import pytest
from moto import mock_aws
from temporalio.client import WorkflowUpdateFailedError

from activities import health as health_activities
from activities.aws import secrets as sm
from activities.aws import tags
from activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES
from spec.loader import load_file
from tests.fakes.cloud import FakeCloud
from tests.fakes.context import running_worker, wait_for
from tests.fakes.health import HealthFakes
from tests.paths import QUICKSTART
from workflows.cluster import (
    ClusterInput,
    ClusterWorkflow,
    ScaleDeploymentRequest,
    UpgradeRequest,
    cluster_workflow_id,
)
from workflows.control_plane import ControlPlaneWorkflow
from workflows.health import HealthCheckWorkflow
from workflows.infrastructure import InfrastructureWorkflow
from workflows.machine import MachineWorkflow
from workflows.machine_deployment import MachineDeploymentWorkflow

WORKFLOWS = [
    ClusterWorkflow,
    InfrastructureWorkflow,
    ControlPlaneWorkflow,
    MachineDeploymentWorkflow,
    MachineWorkflow,
    HealthCheckWorkflow,
]
AZS = ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")


@pytest.fixture
def moto():
    with mock_aws():
        yield


def activities(cloud: FakeCloud) -> list:
    return [
        *INFRASTRUCTURE_ACTIVITIES,
        sm.ensure_cluster_pki,
        sm.delete_cluster_secrets,
        *health_activities.HEALTH_ACTIVITIES,
        *HealthFakes(cloud).activities(),
    ]


def ready(s) -> bool:
    return s.phase == "Ready"


async def test_create_scale_upgrade_delete(time_skipping_env, task_queue, moto):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = load_file(QUICKSTART, env={}).spec
    async with running_worker(env, task_queue, WORKFLOWS, activities(cloud)):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        status = await wait_for(
            env, lambda: handle.query(ClusterWorkflow.status), ready, what="cluster Ready"
        )
        assert status.ready_machines == status.desired_machines == 6
        assert status.endpoint and status.endpoint.endswith(":6443")
        assert status.infrastructure.availability_zones == AZS
        cp, [md] = status.control_plane, status.deployments
        assert Counter(m.availability_zone for m in cp.machines) == Counter(AZS)
        assert Counter(m.availability_zone for m in md.machines) == Counter(AZS)

        # Scale the workers 3 → 5 → 2.
        for replicas in (5, 2):
            await handle.execute_update(
                ClusterWorkflow.scale_deployment,
                ScaleDeploymentRequest(deployment=md.name, replicas=replicas),
            )
            status = await wait_for(
                env,
                lambda: handle.query(ClusterWorkflow.status),
                lambda s, r=replicas: ready(s) and s.deployments[0].ready_replicas == r,
                what=f"{replicas} workers",
            )
        assert status.ready_machines == 5

        # A request the control plane's rules refuse never gets in.
        with pytest.raises(WorkflowUpdateFailedError, match="Workflow update failed"):
            await handle.execute_update(ClusterWorkflow.upgrade, UpgradeRequest(version="v1.22.0"))

        # Upgrade: control plane first, workers only after every control-plane machine runs it.
        before = len(cloud.samples)
        await handle.execute_update(ClusterWorkflow.upgrade, UpgradeRequest(version="v1.21.2"))
        status = await wait_for(
            env,
            lambda: handle.query(ClusterWorkflow.status),
            lambda s: ready(s) and s.deployments[0].version == "v1.21.2",
            what="upgraded",
        )
        assert all(m.version == "v1.21.2" for m in status.control_plane.machines)
        launches = [cloud.instances[i] for i in cloud.instances if cloud.instances[i].version == "v1.21.2"]
        first_worker = min(i.launched_at for i in launches if i.role == "worker")
        last_cp = max(i.launched_at for i in launches if i.role == "control-plane")
        assert last_cp < first_worker
        assert len([s for s in cloud.samples[before:] if s.event.startswith("launch")]) == 5

        # Delete: machines, then the network; the workflow ends when AWS holds nothing of it.
        await handle.execute_update(ClusterWorkflow.delete)
        final = await handle.result()
        assert final.phase == "Deleted"
    assert all(i.terminated_at is not None for i in cloud.instances.values())
    tagging = boto3.client("resourcegroupstaggingapi", region_name=spec.region)
    owned = tagging.get_resources(TagFilters=[{"Key": tags.cluster_key(spec.name), "Values": ["owned"]}])
    arns = [r["ResourceARN"] for r in owned["ResourceTagMappingList"]]
    # AWS (and moto) keep deleted NAT gateways visible, in state "deleted", for a while.
    nat_ids = [a.rsplit("/", 1)[1] for a in arns if ":natgateway/" in a]
    if nat_ids:
        nats = boto3.client("ec2", region_name=spec.region).describe_nat_gateways(NatGatewayIds=nat_ids)
        assert {n["State"] for n in nats["NatGateways"]} == {"deleted"}
    assert [a for a in arns if ":natgateway/" not in a] == []
    secrets = boto3.client("secretsmanager", region_name=spec.region).list_secrets()["SecretList"]
    assert secrets == []


async def test_immutable_change_is_rejected_and_nothing_moves(time_skipping_env, task_queue, moto):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = load_file(QUICKSTART, env={}).spec
    async with running_worker(env, task_queue, WORKFLOWS, activities(cloud)):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        await wait_for(env, lambda: handle.query(ClusterWorkflow.status), ready, what="cluster Ready")
        from workflows.cluster import ApplyRequest

        moved = spec.model_copy(update={"region": "us-east-1"})
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(ClusterWorkflow.apply, ApplyRequest(spec=moved))
        assert "region cannot be changed" in str(info.value.cause)
        launches = cloud.calls["ensure_instance"]
        await env.sleep(600)
        assert cloud.calls["ensure_instance"] == launches
