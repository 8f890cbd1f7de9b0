"""The runner's chaos points in action: tending a phase, a dead worker's restart and its failed
activity attempts, history triggers (a mixin of `Runner`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import timedelta

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from capt.contracts.ids import cluster_workflow_id, control_plane_workflow_id, deployment_workflow_id
from capt.dev.stack import procs
from capt.dev.testkit.chaos.context import PhaseContext
from capt.dev.testkit.chaos.scenarios import SERVER_DOWN_SECONDS, Trigger
from capt.spec.models import ClusterSpec

log = logging.getLogger("capt.chaos")


class WorkerDeathsMixin:
    """Worker deaths and history triggers of `Runner`."""

    # -- worker deaths, triggers -----------------------------------------------------------
    async def tend(self, ctx: PhaseContext) -> None:
        """Restart what died (worker, Temporal); fire the phase's history trigger when due."""
        record = ctx.worker
        if record is not None and not procs.is_ours(record):
            await self.on_worker_death(ctx, record)
        if self.stack.record("temporal") is None:
            ctx.row.notes.append("Temporal server found dead: restarted")
            self.stack.up()
            ctx.worker = self.stack.record("worker")
        trig = ctx.phase.trigger
        if trig is not None and not ctx.trigger_fired and await self.trigger_due(ctx, trig):
            ctx.trigger_fired = True
            if trig.target == "worker":
                pid = self.stack.kill9("worker")
                ctx.row.notes.append(f"worker {pid} killed -9 by the runner")
                ctx.expected_deaths.add(pid or -1)
                if ctx.worker is not None:
                    await self.on_worker_death(ctx, ctx.worker)
            else:
                pid = self.stack.kill9("temporal")
                t0 = time.monotonic()
                await asyncio.sleep(SERVER_DOWN_SECONDS)
                self.stack.up()
                ctx.row.notes.append(
                    f"Temporal server {pid} killed -9, restarted on its SQLite file in {time.monotonic() - t0:.0f}s"
                )
                ctx.worker = self.stack.record("worker")

    async def on_worker_death(self, ctx: PhaseContext, record: procs.PidRecord) -> None:
        pid = record.pid
        text = self.stack.log_since("worker", ctx.worker_log_offset)
        planned = re.search(rf"capt-chaos: kill -9 of worker pid {pid} at (\S+)", text)
        if planned:
            ctx.kill_fired = planned.group(1)
            ctx.row.notes.append(f"worker {pid} killed itself at {planned.group(1)}")
        elif pid not in ctx.expected_deaths:
            self.worker_exits += 1
            ctx.row.notes.append(f"worker {pid} exited unexpectedly")
            ctx.unexpected_exits += 1
        # A new worker, without the kill point (the scenario's environment stays).
        ctx.worker_log_offset = self.stack.log_size("worker")
        self.stack.restart_worker(ctx.base_env)
        ctx.worker = self.stack.record("worker")
        if self.expedite:
            failed = await self.fail_attempts_of(f"{pid}@{self.hostname}")
            if failed:
                ctx.row.notes.append(f"{failed} started attempt(s) of the dead worker failed by id")

    async def fail_attempts_of(self, identity: str) -> int:
        """Fail, by activity id, the attempts a dead worker had started (retryably: Temporal retries
        them as their start-to-close timeout would, only sooner); reset every sticky queue."""
        client = await self.connect()
        failed = 0
        for _ in range(3):
            try:
                async for wf in client.list_workflows('ExecutionStatus = "Running"'):
                    desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
                    for pa in desc.raw_description.pending_activities:
                        if (
                            pa.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                            and pa.last_worker_identity == identity
                        ):
                            handle = client.get_async_activity_handle(
                                workflow_id=wf.id, run_id=wf.run_id, activity_id=pa.activity_id
                            )
                            with contextlib.suppress(RPCError):
                                await handle.fail(
                                    ApplicationError(f"worker {identity} was killed", type="WorkerKilled")
                                )
                                failed += 1
                    with contextlib.suppress(RPCError):
                        await client.workflow_service.reset_sticky_task_queue(
                            ResetStickyTaskQueueRequest(
                                namespace=client.namespace,
                                execution=WorkflowExecution(workflow_id=wf.id, run_id=wf.run_id),
                            )
                        )
                return failed
            except RPCError as err:
                log.warning("listing workflows to expedite retries failed (%s); again", err)
                await asyncio.sleep(1)
        return failed

    async def trigger_due(self, ctx: PhaseContext, trig: Trigger) -> bool:
        count = await self.count_events(ctx.spec, trig)
        if count is None:
            return False
        if ctx.trigger_base is None:
            ctx.trigger_base = count
        return count - ctx.trigger_base >= trig.nth

    def workflow_id(self, spec: ClusterSpec, which: str) -> str:
        return {
            "cluster": cluster_workflow_id(spec.namespace, spec.name),
            "infra": f"infra/{spec.namespace}/{spec.name}",
            "controlplane": control_plane_workflow_id(spec.namespace, spec.name),
            "md": deployment_workflow_id(spec.namespace, spec.name, spec.machine_deployments[0].name),
        }[which]

    async def count_events(self, spec: ClusterSpec, trig: Trigger) -> int | None:
        client = await self.connect()
        try:
            history = await client.get_workflow_handle(self.workflow_id(spec, trig.workflow)).fetch_history(
                rpc_timeout=timedelta(seconds=5)
            )
        except RPCError as err:
            if "not found" in str(err).lower():
                return 0
            return None
        except (TimeoutError, RuntimeError):
            return None
        wanted = EventType.Value(trig.event)
        return sum(1 for e in history.events if e.event_type == wanted)
