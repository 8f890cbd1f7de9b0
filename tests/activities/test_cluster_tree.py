"""The cluster's workflow tree through a real dev server's visibility (the time-skipping test
server has none: the teardown tests exercise the fallback there).

- `terminate_cluster_workflows` finds the tree with `WorkflowId STARTS_WITH` and terminates what
  runs -- and nothing of a cluster whose name merely starts the same, nor excluded ids;
- `find_clusters_sharing_id` sees another running cluster with the same legacy id.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import workflow
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from capt.activities import cluster_tree as tree


@workflow.defn(name="TreeProbeWorkflow", sandboxed=False)
class Idle:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


@workflow.defn(name="ClusterWorkflow", sandboxed=False)
class ProbeCluster:
    """Answers `status` as a ClusterWorkflow does, with the id it was started with."""

    @workflow.init
    def __init__(self, cluster_id: str | None) -> None:
        self._id = cluster_id

    @workflow.query
    def status(self) -> dict:
        name = workflow.info().workflow_id.rsplit("/", 1)[-1]
        return {"name": name, "cluster_id": self._id}

    @workflow.run
    async def run(self, cluster_id: str | None) -> None:
        await workflow.wait_condition(lambda: False)


async def _listed(client, query: str, n: int) -> None:
    for _ in range(100):
        if len([w async for w in client.list_workflows(query)]) >= n:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"visibility never listed {n} workflow(s) for {query}")


async def test_tree_is_found_by_prefix_and_terminated(dev_server_env) -> None:
    env = dev_server_env
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    queue = f"tree-{ns}"
    ours = [
        f"controlplane/{ns}/prod",
        f"health/{ns}/prod",
        f"md/{ns}/prod/prod-md-0",
        f"machine/{ns}/prod/prod-md-0-abc",
        f"machine/{ns}/prod/prod-control-plane-xyz",
    ]
    theirs = [f"controlplane/{ns}/prod-2", f"machine/{ns}/prod-2/m", f"md/{ns}/prod-2/md"]
    excluded = f"md/{ns}/prod/kept"
    async with Worker(env.client, task_queue=queue, workflows=[Idle]):
        for wf_id in ours + theirs + [excluded]:
            await env.client.start_workflow("TreeProbeWorkflow", id=wf_id, task_queue=queue)
        await _listed(env.client, tree.tree_query(ns, "prod"), len(ours) + 1)
        done = await ActivityEnvironment(client=env.client).run(
            tree.terminate_cluster_workflows,
            tree.ClusterTreeInput(namespace=ns, name="prod", exclude=(excluded,)),
        )
        assert done.listed and sorted(w.workflow_id for w in done.workflows) == sorted(ours)
        states = await ActivityEnvironment(client=env.client).run(
            tree.describe_cluster_workflows, tree.WorkflowIdsInput(workflow_ids=tuple(theirs + [excluded]))
        )
        assert states.running() == tuple(theirs + [excluded])
        for wf_id in theirs + [excluded]:
            await env.client.get_workflow_handle(wf_id).terminate()


async def test_another_running_cluster_with_the_same_legacy_id_is_found(dev_server_env) -> None:
    env = dev_server_env
    name = f"prod-{uuid.uuid4().hex[:6]}"
    queue = f"shared-{name}"
    async with Worker(env.client, task_queue=queue, workflows=[ProbeCluster]):
        await env.client.start_workflow(
            "ClusterWorkflow", None, id=f"cluster/team-a/{name}", task_queue=queue
        )
        await env.client.start_workflow(
            "ClusterWorkflow", None, id=f"cluster/team-b/{name}", task_queue=queue
        )
        await env.client.start_workflow(
            "ClusterWorkflow", f"team-c.{name}", id=f"cluster/team-c/{name}", task_queue=queue
        )
        await _listed(
            env.client, 'WorkflowType = "ClusterWorkflow" AND WorkflowId STARTS_WITH "cluster/team-"', 3
        )
        found = await ActivityEnvironment(client=env.client).run(
            tree.find_clusters_sharing_id, tree.SharedIdInput(namespace="team-a", name=name, cluster_id=name)
        )
        assert found.workflow_ids == (f"cluster/team-b/{name}",)
        for ns in ("team-a", "team-b", "team-c"):
            await env.client.get_workflow_handle(f"cluster/{ns}/{name}").terminate()
