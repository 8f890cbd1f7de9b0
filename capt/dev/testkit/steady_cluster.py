"""A cluster whose every machine is healthy, for measuring the health check's steady-state AWS calls.

Shared by tests/workflows/test_health_calls.py and capt/dev/bench/health_aws_calls.py (bench imports
nothing under tests/).
"""

from __future__ import annotations

from temporalio import activity

from capt.activities import owners as health
from capt.activities.aws import instances as ec2
from capt.activities.workload import activities as workload
from capt.activities.workload.objects import NodeInfo


class SteadyCluster:
    """A healthy cluster in steady state for counting AWS calls: its instances are real (moto,
    tagged as capt tags them) and described by the real `describe_cluster_instances`; its owners
    and nodes are fakes that report every machine Running with a Ready node.

    Create it inside `mock_aws()`; `activities()` replaces `query_machine_owners` and
    `list_workload_nodes` and leaves `describe_cluster_instances` real."""

    def __init__(self, cluster: str, region: str, control_plane: int, workers: int) -> None:
        from capt.activities.aws import session
        from capt.activities.aws import tags as aws_tags

        self.cluster = cluster
        ec2_client = session.client("ec2", region)
        image = ec2_client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.machines: list[tuple[str, str, str]] = []  # (name, role, instance id)
        for role, prefix, count in (("control-plane", "cp", control_plane), ("node", "md-0", workers)):
            if not count:
                continue
            launched = ec2_client.run_instances(
                ImageId=image,
                MinCount=count,
                MaxCount=count,
                InstanceType="t3.large",
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [
                            {"Key": aws_tags.cluster_key(cluster), "Value": aws_tags.OWNED},
                            {"Key": aws_tags.ROLE_TAG, "Value": role},
                        ],
                    }
                ],
            )["Instances"]
            for i, inst in enumerate(launched):
                name = f"{prefix}-{i:03d}"
                ec2_client.create_tags(
                    Resources=[inst["InstanceId"]], Tags=[{"Key": aws_tags.MACHINE_TAG, "Value": name}]
                )
                self.machines.append((name, role, inst["InstanceId"]))
        # Creating them is not part of the steady state.
        session.reset_clients()

    def activities(self) -> list:
        steady = self

        def watched(owner: str, owner_name: str, role: str) -> tuple[health.WatchedMachine, ...]:
            return tuple(
                health.WatchedMachine(
                    name=name,
                    owner=owner,
                    owner_name=owner_name,
                    role="control-plane" if r == "control-plane" else "worker",
                    phase="Running",
                    instance_id=iid,
                    node_name=f"ip-{iid}",
                    node_ready=True,
                )
                for name, r, iid in steady.machines
                if r == role
            )

        @activity.defn(name="query_machine_owners")
        async def query_machine_owners(req: health.OwnersRequest) -> health.OwnersResult:
            return health.OwnersResult(
                owners=(
                    health.OwnerSnapshot(
                        kind="control-plane",
                        name="cp",
                        workflow_id=f"controlplane/{req.namespace}/{req.cluster}",
                        found=True,
                        control_plane_initialized=True,
                        machines=watched("control-plane", "cp", "control-plane"),
                    ),
                    health.OwnerSnapshot(
                        kind="machine-deployment",
                        name="md-0",
                        workflow_id=f"md/{req.namespace}/{req.cluster}/md-0",
                        found=True,
                        control_plane_initialized=True,
                        machines=watched("machine-deployment", "md-0", "node"),
                    ),
                )
            )

        @activity.defn(name="list_workload_nodes")
        def list_workload_nodes(req: workload.ListNodesRequest) -> workload.WorkloadNodes:
            return workload.WorkloadNodes(
                reachable=True,
                nodes=tuple(
                    NodeInfo(name=f"ip-{iid}", instance_id=iid, ready=True, ready_status="True")
                    for _, _, iid in steady.machines
                ),
            )

        return [
            query_machine_owners,
            ec2.describe_cluster_instances,
            list_workload_nodes,
            health.request_remediation,
        ]


async def measure_steady_state(env, task_queue: str, control_plane: int, workers: int, hours: float = 1.0):
    """Run a HealthCheckWorkflow over a `SteadyCluster` for `hours` of workflow time (inside
    `mock_aws()`); return its final status, whose `aws_calls` are the AWS requests the health
    check sent, as counted by the real activities' botocore hooks."""
    from datetime import timedelta

    from capt.contracts.ids import health_workflow_id
    from capt.dev.testkit.context import cluster_context, running_worker, unique
    from capt.spec.models import HealthCheckSpec
    from capt.workflows.health.models import HealthCheckInput
    from capt.workflows.health.workflow import HealthCheckWorkflow

    ctx = cluster_context(unique("steady"))
    steady = SteadyCluster(ctx.name, ctx.region, control_plane, workers)
    checks = (
        HealthCheckSpec(name="cp", control_plane=True),
        HealthCheckSpec(name="workers", machine_deployments=("md-0",)),
    )
    async with running_worker(env, task_queue, [HealthCheckWorkflow], steady.activities()):
        handle = await env.client.start_workflow(
            HealthCheckWorkflow.run,
            HealthCheckInput(cluster=ctx, checks=checks),
            id=health_workflow_id(ctx.namespace, ctx.name),
            task_queue=task_queue,
        )
        # In 5-minute steps (one long skip is a single RPC that may time out on a busy machine),
        # ending half an interval past the hour, so the hour's last check has surely finished.
        for _ in range(round(hours * 12)):
            await env.sleep(timedelta(minutes=5))
        await env.sleep(timedelta(seconds=15))
        status = await env.client.get_workflow_handle(handle.id).query(HealthCheckWorkflow.status)
        await handle.signal(HealthCheckWorkflow.stop)
        await env.client.get_workflow_handle(handle.id).result()
    return status
