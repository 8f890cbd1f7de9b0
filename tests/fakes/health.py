"""The health workflow's view of the fake cloud: the batched describe and a richer node list.

`HealthFakes` wraps a `FakeCloud` and adds, under the real activity names:
- `describe_cluster_instances` — every instance of the model (terminated ones included when
  asked) with its state and launch time, as one call;
- `list_workload_nodes` — FakeCloud's own (it also serves the MachineWorkflows' filtered polls),
  with each node's Ready condition and its lastTransitionTime filled in: Ready since the node
  joined, or NotReady since `node_not_ready(machine, at)` — optionally without a transition
  time, as a node that reports none, to exercise the health workflow's own first-seen clock.

- `receive_instance_events` — the optional EventBridge queue: events a test puts there with
  `instance_event(machine, state)` (moto emits none).

`activities()` is FakeCloud's list with `list_workload_nodes` replaced, the describe and the
queue added.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities import health
from activities.aws import instance_events
from activities.aws import instances as ec2
from activities.workload import activities as workload
from activities.workload.objects import NodeCondition, NodeInfo
from tests.fakes.cloud import FakeCloud


class HealthFakes:
    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.not_ready_since: dict[str, datetime | None] = {}  # machine -> NotReady since (None: unreported)
        self.queued_events: list[instance_events.InstanceEvent] = []  # the EventBridge queue
        self.polls = 0
        self.api_down = False  # the workload API server does not answer (list = reachable False)

    def node_not_ready(self, machine: str, at: datetime, *, report_transition_time: bool = True) -> None:
        """The machine's node turns NotReady at `at` (workflow time)."""
        with self.cloud.lock:
            self.cloud.not_ready.add(machine)
            self.not_ready_since[machine] = at if report_transition_time else None

    def node_ready_again(self, machine: str) -> None:
        with self.cloud.lock:
            self.cloud.not_ready.discard(machine)
            self.not_ready_since.pop(machine, None)

    def instance_event(self, machine: str, state: str = "terminated") -> None:
        """EventBridge delivers an EC2 state change of the machine's instance to the queue."""
        inst = self.cloud.instance_of(machine) or next(
            i for i in reversed(self.cloud.instances.values()) if i.machine == machine
        )
        with self.cloud.lock:
            self.queued_events.append(instance_events.InstanceEvent(instance_id=inst.id, state=state))

    def machine_of_instance(self, instance_id: str | None) -> str | None:
        inst = self.cloud.instances.get(instance_id or "")
        return inst.machine if inst else None

    def activities(self) -> list:
        cloud, fakes = self.cloud, self
        base = cloud.activities()
        listed = next(a for a in base if a.__name__ == "list_workload_nodes")

        @activity.defn(name="describe_cluster_instances")
        def describe_cluster_instances(req: ec2.ClusterInstancesRequest) -> ec2.ClusterInstancesResult:
            with cloud.lock:
                cloud._count("describe_cluster_instances")
                now = cloud.now()
                found = []
                for inst in cloud.instances.values():
                    state = cloud.state(inst, now)
                    if state == "terminated" and not req.include_terminated:
                        continue
                    found.append(
                        ec2.InstanceInfo(
                            instance_id=inst.id,
                            state=state,
                            machine_name=inst.machine,
                            role=inst.role,
                            availability_zone=inst.az,
                            launch_time=inst.launched_at,
                        )
                    )
                return ec2.ClusterInstancesResult(instances=tuple(found))

        @activity.defn(name="list_workload_nodes")
        def list_workload_nodes(req: workload.ListNodesRequest) -> workload.WorkloadNodes:
            if fakes.api_down:
                return workload.WorkloadNodes(reachable=False, detail="connection refused (fake)")
            result = listed(req)
            with cloud.lock:
                nodes = []
                for node in result.nodes:
                    inst = cloud.instances[node.instance_id or ""]
                    if node.ready:
                        since: datetime | None = inst.launched_at + cloud.boot + cloud.join
                    elif inst.machine in fakes.not_ready_since:
                        since = fakes.not_ready_since[inst.machine]
                    else:  # registered, not Ready yet
                        since = inst.launched_at + cloud.boot + cloud.join
                    status = "True" if node.ready else "False"
                    nodes.append(
                        node.model_copy(
                            update={
                                "ready_status": status,
                                "ready_since": since,
                                "conditions": (
                                    NodeCondition(type="MemoryPressure", status="False"),
                                    NodeCondition(type="Ready", status=status, since=since),
                                ),
                            }
                        )
                    )
            return result.model_copy(update={"nodes": tuple(nodes)})

        @activity.defn(name="receive_instance_events")
        def receive_instance_events(
            req: instance_events.ReceiveInstanceEventsRequest,
        ) -> instance_events.InstanceEvents:
            # No long poll: the workflow waits out the rest of an empty poll itself.
            with cloud.lock:
                fakes.polls += 1
                taken, fakes.queued_events = tuple(fakes.queued_events), []
            return instance_events.InstanceEvents(events=taken, received=len(taken))

        return [a for a in base if a.__name__ != "list_workload_nodes"] + [
            describe_cluster_instances,
            list_workload_nodes,
            receive_instance_events,
        ]


class SteadyCluster:
    """A healthy cluster in steady state for counting AWS calls: its instances are real (moto,
    tagged as capt tags them) and described by the real `describe_cluster_instances`; its owners
    and nodes are fakes that report every machine Running with a Ready node.

    Create it inside `mock_aws()`; `activities()` replaces `query_machine_owners` and
    `list_workload_nodes` and leaves `describe_cluster_instances` real."""

    def __init__(self, cluster: str, region: str, control_plane: int, workers: int) -> None:
        from activities.aws import session
        from activities.aws import tags as aws_tags

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

    from spec.models import HealthCheckSpec
    from tests.fakes.context import cluster_context, running_worker, unique
    from workflows.health import HealthCheckInput, HealthCheckWorkflow, health_workflow_id

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
