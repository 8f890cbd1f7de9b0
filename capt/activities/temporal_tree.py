"""Activities that look at capt's own workflows through the Temporal client.

A workflow learns about another workflow only from what that one signals it. Owners (the
control plane, machine deployments) start their machines with ParentClosePolicy.ABANDON and
continue-as-new, so when a machine workflow closes without saying so — it failed, someone
terminated it, it timed out — no event ever reaches the owner, which would book the machine
as `Provisioning` forever and wait for it forever when asked to delete it.

`describe_machine_workflows` is how owners notice: one call for a batch of workflow ids, each
described (`DescribeWorkflowExecution`) and, when closed, with the reason read from its close
event (the failure's messages, the termination's reason; the result of a completed one). It
uses the worker's own client (`activity.client()`), as the health activities do.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistoryEventFilterType
from temporalio.service import RPCError, RPCStatusCode

from capt.contracts.machines import MachineStatus
from capt.rules.base import Frozen

# Describes in flight at once (each is one RPC, two for a closed workflow).
_CONCURRENCY = 16
# A reason is for humans (status, describe): keep it short.
_REASON_LIMIT = 400


class WorkflowsRequest(Frozen):
    workflow_ids: tuple[str, ...]


class WorkflowState(Frozen):
    """One workflow id's latest run. `status` is Temporal's execution status in lower case
    (running, completed, failed, canceled, terminated, continued_as_new, timed_out), or
    `not_found`. `reason` says why a run closed; `final` is a completed machine's result."""

    workflow_id: str
    status: str
    run_id: str = ""
    reason: str = ""
    final: MachineStatus | None = None

    @property
    def closed(self) -> bool:
        return self.status not in ("running", "continued_as_new")


class WorkflowsResult(Frozen):
    workflows: tuple[WorkflowState, ...] = ()


def failure_text(failure: Failure) -> str:
    """The messages along a failure's cause chain: "Activity task failed: RunInstances: …"."""
    parts: list[str] = []
    current: Failure | None = failure
    while current is not None and len(parts) < 5:
        if current.message and current.message not in parts:
            parts.append(current.message)
        current = current.cause if current.HasField("cause") else None
    return ": ".join(parts)


async def _close_event(client: Client, workflow_id: str, run_id: str) -> HistoryEvent | None:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    last: HistoryEvent | None = None
    async for event in handle.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
    ):
        last = event
    return last


async def _reason(client: Client, state: WorkflowState) -> WorkflowState:
    event = await _close_event(client, state.workflow_id, state.run_id)
    if event is None:
        return state
    reason, final = "", None
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        reason = failure_text(event.workflow_execution_failed_event_attributes.failure)
    elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        a = event.workflow_execution_terminated_event_attributes
        reason = a.reason or "no reason given"
    elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        reason = "the workflow's execution timeout passed"
    elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        reason = "canceled"
    elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        payloads = event.workflow_execution_completed_event_attributes.result.payloads
        if payloads:
            try:
                [final] = await client.data_converter.decode(list(payloads)[:1], [MachineStatus])
            except Exception as err:  # noqa: BLE001 - a result of another shape is not a machine's
                activity.logger.warning("result of %s is not a MachineStatus: %s", state.workflow_id, err)
        reason = f"completed in phase {final.phase}" if final is not None else "completed"
    return state.model_copy(update={"reason": reason[:_REASON_LIMIT], "final": final})


async def _describe(client: Client, workflow_id: str, limit: asyncio.Semaphore) -> WorkflowState:
    async with limit:
        try:
            desc = await client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return WorkflowState(workflow_id=workflow_id, status="not_found", reason="no such workflow")
        status = desc.status or WorkflowExecutionStatus.RUNNING
        state = WorkflowState(workflow_id=workflow_id, status=status.name.lower(), run_id=desc.run_id)
        if not state.closed:
            return state
        try:
            return await _reason(client, state)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return state


@activity.defn
async def describe_machine_workflows(req: WorkflowsRequest) -> WorkflowsResult:
    """The state of each workflow id (its latest run); closed ones with why they closed."""
    client = activity.client()
    limit = asyncio.Semaphore(_CONCURRENCY)
    states = await asyncio.gather(*(_describe(client, wf_id, limit) for wf_id in req.workflow_ids))
    return WorkflowsResult(workflows=tuple(states))


TEMPORAL_TREE_ACTIVITIES = [describe_machine_workflows]
