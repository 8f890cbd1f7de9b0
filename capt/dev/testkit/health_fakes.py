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

from capt.activities.aws import instance_events
from capt.activities.aws import instances as ec2
from capt.activities.workload import activities as workload
from capt.activities.workload.objects import NodeCondition
from capt.dev.testkit.fake_cloud import FakeCloud


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
