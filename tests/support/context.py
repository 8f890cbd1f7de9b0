"""Builders and waits shared by the time-skipping workflow tests.

The builders live in `testkit.context` (the benchmarks use them too); this module adds the two
things every orchestration test needs and that must be right once, here, not test by test:

- `query(handle, q, *args)`: a query by workflow id (so it follows continue-as-new) that rides
  over the test server's lost queries. The time-skipping server sometimes never answers a query
  that lands on a run while it continues as new, or while no worker polls the queue (a test
  restarting its worker), and a loaded 2-core machine (two xdist workers, each with its own
  Java test server) answers slowly. So each attempt has its own short RPC deadline that grows
  (2, 4, 8, ... s) and a lost answer is asked again, within a generous real-time budget.
  Fixed single deadlines were the common cause of the suite's flaky failures
  ("query deadline exceeded", "Timeout expired").
- A query answered with a nondeterminism error. Once in about ten fresh-clone CI runs, the
  query after an InfrastructureWorkflow completed failed with "[TMPRL1100] Nondeterminism error:
  Activity type of scheduled event 'ensure_nat_gateway' does not match ... 'ensure_route_table'"
  (a run whose EIP activity had been retried). It has not reproduced here in about 20 runs, loaded or
  not. The query path replays the run inside the worker; `query` then replays the run's
  recorded history with the `Replayer`, exactly as `tests/workflows/test_replay.py` does. A
  history that replays cleanly means the workflow code is deterministic for that history, so the
  error came from the query path (server or worker cache), and the query is asked again. A
  history that does not replay is a real nondeterminism: the test fails, and the history is
  written to a file named in the error for `tests/histories/`.
- `skip_time(env, duration)`: the test server's sleep with an explicit, generous RPC deadline.
  `env.sleep` sends `UnlockTimeSkippingWithSleep` with the client's default deadline; while the
  server cannot skip (an activity running, or timers of children whose parent continued as new,
  temporalio/sdk-java#1540) that sleep lasts real seconds and the RPC failed with "Timeout
  expired" -- the other common cause. The `time_skipping_env` fixture installs it as `env.sleep`.
- `wait_for(env, probe, predicate)`: polls, skipping workflow time between polls.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from capt.dev.testkit.context import AZS, cluster_context, kubeadm, machine_template, running_worker, unique

__all__ = [
    "AZS",
    "cluster_context",
    "kubeadm",
    "machine_template",
    "query",
    "running_worker",
    "skip_time",
    "unique",
    "wait_for",
]

T = TypeVar("T")

# Real seconds a query may keep failing with a lost answer before the test fails.
QUERY_BUDGET = 120.0
_FIRST_ATTEMPT = 2.0
_LONGEST_ATTEMPT = 20.0
_LOST_ANSWER = {RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED, RPCStatusCode.UNAVAILABLE}


def lost_answer(err: BaseException) -> bool:
    """A query the server did not answer in time (never a rejected or failed one)."""
    if isinstance(err, asyncio.TimeoutError | TimeoutError):
        return True
    if not isinstance(err, RPCError):
        return False
    text = str(err).lower()
    return err.status in _LOST_ANSWER or "deadline" in text or "timeout expired" in text


async def query(handle: WorkflowHandle, q: Any, *args: Any, budget: float = QUERY_BUDGET) -> Any:
    """Query the latest run of `handle`'s workflow, asking again when an answer is lost."""
    latest = handle._client.get_workflow_handle(handle.id)  # by id: follows continue-as-new
    started = time.monotonic()
    attempt = _FIRST_ATTEMPT
    while True:
        try:
            return await asyncio.wait_for(
                latest.query(q, *args, rpc_timeout=timedelta(seconds=attempt)), timeout=attempt + 5
            )
        except (TimeoutError, RPCError) as err:
            if not lost_answer(err) or time.monotonic() - started > budget:
                raise
        except WorkflowQueryFailedError as err:
            if "nondeterminism" not in str(err).lower() or time.monotonic() - started > budget:
                raise
            await _history_replays_cleanly(latest, err)
        attempt = min(attempt * 2, _LONGEST_ATTEMPT)


async def _history_replays_cleanly(handle: WorkflowHandle, err: BaseException) -> None:
    """Replay the run's recorded history; raise (naming a copy of it) if it does not replay."""
    from temporalio.worker import Replayer

    from capt.workflows.registry import WORKFLOWS

    history = await handle.fetch_history()
    result = await Replayer(
        workflows=WORKFLOWS, data_converter=handle._client.data_converter
    ).replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return
    fd, path = tempfile.mkstemp(prefix="nondeterministic-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(history.to_json())
    raise AssertionError(
        f"the history of {handle.id} does not replay ({result.replay_failure}); it is in {path}"
    ) from err


async def skip_time(env: WorkflowEnvironment, duration: timedelta | float) -> None:
    """Skip `duration` of workflow time on the time-skipping test server (see the module doc)."""
    span = duration if isinstance(duration, timedelta) else timedelta(seconds=duration)
    target = await env.get_current_time() + span
    started = time.monotonic()
    while True:
        remaining = target - await env.get_current_time()
        if remaining <= timedelta(0):
            return
        req = SleepRequest()
        req.duration.FromTimedelta(remaining)
        # Real time the server may need if it cannot skip at all, plus slack for a loaded machine.
        deadline = remaining.total_seconds() + 60
        try:
            await env.client.test_service.unlock_time_skipping_with_sleep(
                req, timeout=timedelta(seconds=deadline)
            )
            return
        except RPCError as err:
            if not lost_answer(err) or time.monotonic() - started > deadline + QUERY_BUDGET:
                raise


async def wait_for(
    env: WorkflowEnvironment,
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool],
    *,
    step: float = 30,
    limit: float = 3 * 3600,
    what: str = "condition",
) -> T:
    """Poll `probe` (e.g. a status query), skipping `step` seconds of workflow time between
    polls, until `predicate` holds; fail after `limit` seconds of workflow time.

    A probe whose answer is lost (see `query`) counts as one unanswered poll, not a failure,
    as long as answers keep coming within `QUERY_BUDGET` real seconds."""
    waited = 0.0
    last: T | None = None
    last_answer = time.monotonic()
    while waited <= limit:
        try:
            last = await probe()
        except (TimeoutError, RPCError) as err:
            if not lost_answer(err) or time.monotonic() - last_answer > QUERY_BUDGET:
                raise
        else:
            last_answer = time.monotonic()
            if predicate(last):
                return last
        await env.sleep(step)
        waited += step
        await asyncio.sleep(0)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")
