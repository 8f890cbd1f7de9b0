"""CAPT_CHAOS_KILL: the kill points' syntax, and the interceptor firing exactly before or after the
nth execution of an activity (with the kill replaced by a recorder)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow

from capt.activities import kill_points
from capt.dev.testkit.context import running_worker

calls: list[str] = []


@activity.defn(name="step")
def step(n: int) -> int:
    calls.append(f"step {n}")
    return n


@activity.defn(name="other")
def other(n: int) -> int:
    calls.append(f"other {n}")
    return n


@workflow.defn(name="KillPointsWorkflow", sandboxed=False)
class KillPointsWorkflow:
    @workflow.run
    async def run(self) -> None:
        for n in range(1, 4):
            await workflow.execute_activity(step, n, start_to_close_timeout=timedelta(seconds=10))
            await workflow.execute_activity(other, n, start_to_close_timeout=timedelta(seconds=10))


def test_parse():
    points = kill_points.parse_points("ensure_vpc:after:1, ensure_instance:before:2")
    assert [str(p) for p in points] == ["ensure_vpc:after:1", "ensure_instance:before:2"]
    for bad in ("ensure_vpc", "ensure_vpc:during:1", "ensure_vpc:after:x", "ensure_vpc:after:0", ":after:1"):
        with pytest.raises(kill_points.KillSpecError):
            kill_points.parse_points(bad)
    assert kill_points.interceptor_from_env({}) is None
    assert kill_points.interceptor_from_env({kill_points.ENV_VAR: "step:after:2"}).points == (
        kill_points.KillPoint("step", "after", 2),
    )


async def test_fires_before_or_after_the_nth_execution(time_skipping_env, task_queue):
    calls.clear()
    killer = kill_points.KillInterceptor(
        kill_points.parse_points("step:before:2,step:after:3,other:after:1"),
        die=lambda point: calls.append(f"kill at {point}"),
    )
    async with running_worker(
        time_skipping_env,
        task_queue,
        [KillPointsWorkflow],
        [step, other],
        interceptors=[killer],
    ):
        await time_skipping_env.client.execute_workflow(
            KillPointsWorkflow.run, id=f"kp-{uuid.uuid4()}", task_queue=task_queue
        )
    assert calls == [
        "step 1",
        "other 1",
        "kill at other:after:1",
        "kill at step:before:2",
        "step 2",
        "other 2",
        "step 3",
        "kill at step:after:3",
        "other 3",
    ]
    assert killer.started == {"step": 3, "other": 3}
