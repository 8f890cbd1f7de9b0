"""describe_machine_workflows against the time-skipping test server: running, completed (with a
machine's final status), failed (the failure's messages), terminated (its reason), unknown."""

from __future__ import annotations

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.temporal_tree import WorkflowsRequest, describe_machine_workflows
from capt.contracts.machines import MachineStatus
from tests.support.context import running_worker


@workflow.defn(name="TreeProbe", sandboxed=False)
class TreeProbe:
    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        self._go = True

    @workflow.run
    async def run(self, how: str) -> MachineStatus:
        await workflow.wait_condition(lambda: self._go)
        if how == "fail":
            raise ApplicationError(
                "RunInstances: InvalidAMIID.NotFound: no such image", type="InvalidAMIID.NotFound"
            )
        return MachineStatus(name="m", role="worker", phase="Deleted")


async def test_states_and_reasons(time_skipping_env, task_queue):
    env = time_skipping_env
    async with running_worker(env, task_queue, [TreeProbe], []):
        handles = {
            how: await env.client.start_workflow(TreeProbe.run, how, id=f"probe/{how}", task_queue=task_queue)
            for how in ("run", "fail", "done", "terminate")
        }
        await handles["fail"].signal(TreeProbe.go)
        await handles["done"].signal(TreeProbe.go)
        await handles["terminate"].terminate(reason="operator says so")
        # Awaiting a result unlocks time skipping, and with nothing else scheduled the test server
        # may skip to `probe/run`'s run timeout (seen once: it read "timed_out"): keep the clock.
        with env.auto_time_skipping_disabled():
            await handles["done"].result()
            with pytest.raises(WorkflowFailureError):
                await handles["fail"].result()
        ids = (*(h.id for h in handles.values()), "probe/unknown")
        result = await ActivityEnvironment(client=env.client).run(
            describe_machine_workflows, WorkflowsRequest(workflow_ids=ids)
        )
    states = {s.workflow_id: s for s in result.workflows}
    assert [s.workflow_id for s in result.workflows] == list(ids)
    assert states["probe/run"].status == "running" and not states["probe/run"].closed
    assert states["probe/fail"].status == "failed" and states["probe/fail"].closed
    assert states["probe/fail"].reason == "RunInstances: InvalidAMIID.NotFound: no such image"
    assert states["probe/done"].status == "completed" and states["probe/done"].final.phase == "Deleted"
    assert states["probe/terminate"].status == "terminated"
    assert states["probe/terminate"].reason == "operator says so"
    assert states["probe/unknown"].status == "not_found" and states["probe/unknown"].closed
