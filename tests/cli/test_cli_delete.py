"""`capt delete cluster` is retryable and idempotent, whatever state the cluster's workflow is in.

The CLI runs in-process (CliRunner, in a thread with its own event loop and Temporal client)
against the time-skipping test server, with a worker on capt's task queue: the real
ClusterWorkflow and ClusterTeardownWorkflow over moto, machines from the fake cloud.

- running: the `delete` Update, and a second `capt delete` attaches;
- failed or terminated: a ClusterTeardownWorkflow at `cluster/<ns>/<name>`, region and id read
  from the closed run's status; concurrent deletes attach to one run;
- never existed: refused without `--region`, then with it the teardown runs; once it is
  Deleted, `capt delete` says so and exits 0.
"""

from __future__ import annotations

import asyncio
import functools

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from capt import cli
from capt.activities import cluster_tree
from capt.activities import owners as health_activities
from capt.activities.aws import cleanup, instance_events, tags
from capt.activities.aws import secrets as sm
from capt.activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES
from capt.cli import common as cli_common
from capt.client import clusters
from capt.client import delete as delete_mod
from capt.contracts import names
from capt.contracts.ids import cluster_workflow_id
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.dev.testkit.health_fakes import HealthFakes
from capt.spec.loader import load_file
from capt.workflows.cluster.models import ClusterInput, ClusterStatus, InfrastructureSummary
from capt.workflows.cluster.workflow import ClusterWorkflow
from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
from capt.workflows.health.workflow import HealthCheckWorkflow
from capt.workflows.infrastructure.workflow import InfrastructureWorkflow
from capt.workflows.machine.workflow import MachineWorkflow
from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow
from capt.workflows.teardown.workflow import ClusterTeardownWorkflow
from tests.support.context import query, running_worker, wait_for
from tests.support.paths import QUICKSTART
from tests.support.strict_aws import strict_aws

REGION = "ap-northeast-2"
TREE = [
    ClusterWorkflow,
    ClusterTeardownWorkflow,
    InfrastructureWorkflow,
    ControlPlaneWorkflow,
    MachineDeploymentWorkflow,
    MachineWorkflow,
    HealthCheckWorkflow,
]


@pytest.fixture
def moto():
    with mock_aws(), strict_aws(REGION):
        yield


def aws_activities() -> list:
    return [
        *INFRASTRUCTURE_ACTIVITIES,
        *cleanup.CLEANUP_ACTIVITIES,
        *cluster_tree.CLUSTER_TREE_ACTIVITIES,
        sm.ensure_cluster_pki,
        sm.delete_cluster_secrets,
        instance_events.delete_instance_events,
    ]


def activities(cloud: FakeCloud) -> list:
    return [*aws_activities(), *health_activities.HEALTH_ACTIVITIES, *HealthFakes(cloud).activities()]


def small_spec(name: str = "capi-quickstart"):
    spec = load_file(QUICKSTART, env={}).spec
    cp = spec.control_plane.model_copy(update={"replicas": 1})
    mds = tuple(md.model_copy(update={"replicas": 1}) for md in spec.machine_deployments)
    return spec.model_copy(update={"name": name, "control_plane": cp, "machine_deployments": mds})


@functools.cache
def ec2():
    return boto3.client("ec2", region_name=REGION)


def owned_left(cid: str) -> list[str]:
    """What still carries the cluster's owned tag (either key), by plain boto3."""
    tagging = boto3.client("resourcegroupstaggingapi", region_name=REGION)
    out = []
    for key in (tags.cluster_key(cid), tags.cloud_provider_key(cid)):
        for m in tagging.get_resources(TagFilters=[{"Key": key, "Values": ["owned"]}])[
            "ResourceTagMappingList"
        ]:
            arn = m["ResourceARN"]
            if ":natgateway/" in arn:
                nat = ec2().describe_nat_gateways(NatGatewayIds=[arn.rsplit("/", 1)[1]])["NatGateways"]
                if nat and nat[0]["State"] == "deleted":
                    continue
            if ":instance/" in arn:
                i = ec2().describe_instances(InstanceIds=[arn.rsplit("/", 1)[1]])["Reservations"][0][
                    "Instances"
                ][0]
                if i["State"]["Name"] == "terminated":
                    continue
            out.append(arn)
    return sorted(set(out))


async def capt(env, monkeypatch, *args: str) -> Result:
    """`capt <args>` in-process, in a thread (the CLI runs its own event loop and client)."""
    target = env.client.service_client.config.target_host

    async def connect() -> Client:
        return await Client.connect(
            target, namespace=env.client.namespace, data_converter=pydantic_data_converter
        )

    def leave(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(clusters, "connect", connect)
    monkeypatch.setattr(cli_common, "_exit", leave)
    return await asyncio.to_thread(CliRunner().invoke, cli.main, list(args))


def foreign_interface(name: str) -> tuple[str, str]:
    """An interface outside the cluster in its subnet and node group: blocks the teardown."""
    c = ec2()
    default_subnet = c.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][
        0
    ]
    outsider = c.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=default_subnet["SubnetId"]
    )
    outsider_id = outsider["Instances"][0]["InstanceId"]
    subnet = c.describe_subnets(Filters=[{"Name": "tag:Name", "Values": [f"{name}-subnet-private-*"]}])[
        "Subnets"
    ][0]
    group = c.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{name}-node"]}])[
        "SecurityGroups"
    ][0]
    eni = c.create_network_interface(SubnetId=subnet["SubnetId"], Groups=[group["GroupId"]])[
        "NetworkInterface"
    ]["NetworkInterfaceId"]
    c.attach_network_interface(NetworkInterfaceId=eni, InstanceId=outsider_id, DeviceIndex=1)
    return eni, outsider_id


def remove(eni: str, outsider: str) -> None:
    c = ec2()
    att = c.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]["Attachment"]
    c.detach_network_interface(AttachmentId=att["AttachmentId"], Force=True)
    c.delete_network_interface(NetworkInterfaceId=eni)
    c.terminate_instances(InstanceIds=[outsider])


async def start_cluster(env, spec):
    handle = await env.client.start_workflow(
        ClusterWorkflow.run,
        ClusterInput(spec=spec),
        id=cluster_workflow_id(spec.namespace, spec.name),
        task_queue=clusters.TASK_QUEUE,
    )
    await wait_for(
        env,
        lambda: query(handle, ClusterWorkflow.status),
        lambda s: s.control_plane is not None and s.deployments,
        step=10,
        what="control plane and deployment started",
    )
    return handle


# --- running ----------------------------------------------------------------------------------------


async def test_delete_a_running_cluster_and_a_second_delete_attaches(time_skipping_env, moto, monkeypatch):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = small_spec()
    async with running_worker(env, clusters.TASK_QUEUE, TREE, activities(cloud)):
        handle = await start_cluster(env, spec)
        first = await capt(env, monkeypatch, "delete", "cluster", spec.name, "-n", spec.namespace)
        second = await capt(env, monkeypatch, "delete", "cluster", spec.name, "-n", spec.namespace)
        assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
        assert f"cluster {spec.namespace}/{spec.name}: deleting" in first.output
        assert f"cluster {spec.namespace}/{spec.name}: deleting" in second.output
        refused = await capt(env, monkeypatch, "pause", spec.name, "-n", spec.namespace)
        assert refused.exit_code == 2 and "being deleted" in refused.output
        final = await handle.result()
        assert final.phase == "Deleted"
        again = await capt(env, monkeypatch, "delete", "cluster", spec.name, "-n", spec.namespace, "--wait")
    assert again.exit_code == 0 and "already deleted" in again.output
    assert owned_left(names.cluster_id(spec.namespace, spec.name)) == []


# --- terminated, concurrent ---------------------------------------------------------------------------


async def test_delete_a_terminated_cluster_and_concurrent_deletes_attach(
    time_skipping_env, moto, monkeypatch
):
    """Terminated mid-life (machines and owners still running): `capt delete` reads the region
    and id from the closed run, runs a teardown at `cluster/<ns>/<name>`; two concurrent deletes
    get the same run, a later one attaches with the Update, `capt apply` is refused."""
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = small_spec("term")
    ns, name = spec.namespace, spec.name
    cid = names.cluster_id(ns, name)
    async with running_worker(env, clusters.TASK_QUEUE, TREE, activities(cloud)):
        handle = await start_cluster(env, spec)
        await handle.terminate(reason="test: the cluster's workflow is gone")
        eni, outsider = foreign_interface(cid)  # keeps the teardown busy while the deletes race

        client = env.client
        a, b = await asyncio.gather(delete_mod.delete(client, ns, name), delete_mod.delete(client, ns, name))
        assert a.action == b.action == "teardown" and a.run_id == b.run_id
        assert "its workflow is terminated" in a.message and f"({REGION}, id {cid})" in a.message
        third = await capt(env, monkeypatch, "delete", "cluster", name, "-n", ns)
        assert third.exit_code == 0 and "deletion under way (attached)" in third.output, third.output
        with pytest.raises(clusters.Rejected, match="being deleted"):
            await clusters.apply(client, spec)

        remove(eni, outsider)
        teardown = client.get_workflow_handle(cluster_workflow_id(ns, name), run_id=a.run_id)
        final = ClusterStatus.model_validate(await teardown.result())
        assert final.phase == "Deleted"
        # The owners and their machines that outlived the cluster's workflow were stopped.
        for wf_id in (f"controlplane/{ns}/{name}", f"md/{ns}/{name}/{spec.machine_deployments[0].name}"):
            desc = await client.get_workflow_handle(wf_id).describe()
            assert desc.status.name == "TERMINATED", wf_id
    assert owned_left(cid) == []


# --- failed -------------------------------------------------------------------------------------------


@workflow.defn(name="ClusterWorkflow", sandboxed=False)
class FailedClusterWorkflow:
    """A ClusterWorkflow that failed (as a pre-teardown-v2 deletion did with ResourcesRemain):
    closed, but its status query still answers."""

    @workflow.init
    def __init__(self, inp: ClusterInput) -> None:
        self._spec = inp.spec

    @workflow.query
    def status(self) -> ClusterStatus:
        s = self._spec
        return ClusterStatus(
            name=s.name,
            namespace=s.namespace,
            region=s.region,
            phase="Deleting",
            message="deleting network",
            paused=False,
            version=s.control_plane.version,
            endpoint=None,
            infrastructure=InfrastructureSummary(),
            control_plane=None,
            deployments=[],
            ready_machines=0,
            desired_machines=0,
            events=[],
            cluster_id=f"{s.name}-aws",
        )

    @workflow.run
    async def run(self, inp: ClusterInput) -> ClusterStatus:
        raise ApplicationError(
            "resources still owned by cluster: vpc-1", type="ResourcesRemain", non_retryable=True
        )


async def test_delete_a_failed_cluster_uses_the_id_its_status_reports(time_skipping_env, moto, monkeypatch):
    env, spec = time_skipping_env, small_spec("failed")
    ns, name, cid = spec.namespace, spec.name, "failed-aws"
    volume = ec2().create_volume(
        AvailabilityZone=f"{REGION}a",
        Size=8,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": tags.cloud_provider_key(cid), "Value": "owned"}]}
        ],
    )["VolumeId"]
    survivor = ec2().create_volume(
        AvailabilityZone=f"{REGION}a",
        Size=8,
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": tags.cloud_provider_key(name), "Value": "owned"}]}
        ],
    )["VolumeId"]
    async with running_worker(
        env, clusters.TASK_QUEUE, [FailedClusterWorkflow, ClusterTeardownWorkflow], aws_activities()
    ):
        handle = await env.client.start_workflow(
            "ClusterWorkflow",
            ClusterInput(spec=spec),
            id=cluster_workflow_id(ns, name),
            task_queue=clusters.TASK_QUEUE,
        )
        with pytest.raises(Exception):  # noqa: B017 - it fails, as designed
            await handle.result()
        result = await capt(env, monkeypatch, "delete", "cluster", name, "-n", ns)
        assert result.exit_code == 0, result.output
        assert f"its workflow is failed: deleting what it has in AWS ({REGION}, id {cid})" in result.output
        final = ClusterStatus.model_validate(
            await env.client.get_workflow_handle(cluster_workflow_id(ns, name)).result()
        )
        assert final.phase == "Deleted" and final.cluster_id == cid
    volumes = {v["VolumeId"] for v in ec2().describe_volumes()["Volumes"]}
    assert volume not in volumes and survivor in volumes  # the id, not the name, decides


# --- never existed, then deleted ------------------------------------------------------------------


async def test_delete_without_a_workflow_needs_the_region_then_says_already_deleted(
    time_skipping_env, moto, monkeypatch
):
    env, ns, name = time_skipping_env, "team-a", "ghost"
    left = ec2().create_volume(
        AvailabilityZone=f"{REGION}a",
        Size=8,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": [{"Key": tags.cloud_provider_key("ghost-id"), "Value": "owned"}],
            }
        ],
    )["VolumeId"]
    async with running_worker(env, clusters.TASK_QUEUE, [ClusterTeardownWorkflow], aws_activities()):
        refused = await capt(env, monkeypatch, "delete", "cluster", name, "-n", ns)
        assert refused.exit_code == 3 and "pass --region" in refused.output, refused.output

        started = await capt(
            env,
            monkeypatch,
            "delete",
            "cluster",
            name,
            "-n",
            ns,
            "--region",
            REGION,
            "--cluster-id",
            "ghost-id",
        )
        assert started.exit_code == 0 and "it has no workflow: deleting what it has in AWS" in started.output
        final = ClusterStatus.model_validate(
            await env.client.get_workflow_handle(cluster_workflow_id(ns, name)).result()
        )
        assert final.phase == "Deleted"

        again = await capt(env, monkeypatch, "delete", "cluster", name, "-n", ns)
        assert again.exit_code == 0 and "already deleted" in again.output
        described = await capt(env, monkeypatch, "describe", "cluster", name, "-n", ns, "-o", "json")
        assert described.exit_code == 0 and '"clusterId": "ghost-id"' in described.output
    assert left not in {v["VolumeId"] for v in ec2().describe_volumes()["Volumes"]}


def test_describe_shows_the_id_and_what_blocks_the_deletion() -> None:
    from capt.activities.aws.models import Blocker
    from capt.client import describe

    blocker = Blocker(
        resource_kind="security-group",
        resource_id="sg-1",
        resource_name="k8s-elb-a1b2",
        blocker_kind="network-interface",
        blocker_id="eni-9",
        blocker_type="interface",
        description="in-use, 'ELB a1b2'",
    )
    status = ClusterStatus(
        name="prod",
        namespace="team-a",
        region=REGION,
        phase="Failed",
        message="deletion failed: blocked; run `capt delete` again",
        paused=False,
        version="v1.21.2",
        endpoint=None,
        infrastructure=InfrastructureSummary(),
        control_plane=None,
        deployments=[],
        ready_machines=0,
        desired_machines=0,
        events=[],
        cluster_id="team-a.prod",
        blocked=[blocker],
    )
    text = describe.tree(status)
    assert "└─Blocked/sg-1" in text
    assert (
        "security-group sg-1 (k8s-elb-a1b2) blocked by network-interface eni-9 (interface, in-use, 'ELB a1b2')"
        in text
    )
    out = describe.as_json(status)
    assert out["clusterId"] == "team-a.prod" and out["blocked"][0]["blocker_id"] == "eni-9"
