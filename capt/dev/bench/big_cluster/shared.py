"""What capt/dev/bench/mttr.py shares with the big-cluster benchmark: the fake cloud with cheap samples
(`BenchCloud`), skipping time on the test server, reading histories, a quiet SDK."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from capt.dev.bench import model
from capt.dev.testkit.fake_cloud import FakeCloud

# ---------------------------------------------------------------------------------------------
# The fake cloud, with samples kept cheap
# ---------------------------------------------------------------------------------------------


class BenchCloud(FakeCloud):
    """FakeCloud whose `ready <machine>` sample is kept once per machine: the deployment's node
    checks list every running node each 30 s during a rollout, and FakeCloud samples each Ready
    node each time (O(N²) samples for a 500-machine rollout, all alike)."""

    def __init__(self, lat: model.Latencies, with_init: bool = True) -> None:
        super().__init__(
            boot_seconds=lat.instance_pending,
            join_seconds=lat.kubeadm_join,
            terminate_seconds=lat.instance_terminate,
            init_seconds=lat.kubeadm_init if with_init else None,
        )
        self.ready_seen: set[str] = set()

    def sample(self, event: str) -> None:
        kind, _, machine = event.partition(" ")
        if kind == "ready":
            if machine in self.ready_seen:
                return
            self.ready_seen.add(machine)
        super().sample(event)


# ---------------------------------------------------------------------------------------------
# Shared with capt/dev/bench/mttr.py: the test server, skipping time, reading histories
# ---------------------------------------------------------------------------------------------


async def skip(env, seconds: float) -> None:
    """Skip `seconds` of workflow time, with an RPC deadline generous enough for a loaded server
    (while tasks are outstanding the test server's clock runs in real time instead of skipping)."""
    from temporalio.api.testservice.v1 import SleepRequest
    from temporalio.service import RPCError

    target = await env.get_current_time() + timedelta(seconds=seconds)
    while True:
        remaining = target - await env.get_current_time()
        if remaining <= timedelta(0):
            return
        req = SleepRequest()
        req.duration.FromTimedelta(remaining)
        try:
            await env.client.test_service.unlock_time_skipping_with_sleep(
                req, timeout=timedelta(seconds=remaining.total_seconds() + 600)
            )
            return
        except RPCError as err:
            if "deadline" not in str(err).lower() and "timeout" not in str(err).lower():
                raise


@dataclass
class TypeHistory:
    """Histories of one workflow type: every run of every workflow id of that type."""

    workflows: int = 0
    runs: int = 0
    max_events: int = 0
    max_bytes: int = 0
    total_events: int = 0
    total_bytes: int = 0
    workflow_tasks: int = 0
    activities: int = 0
    signals_sent_bytes: int = 0
    largest_event_bytes: int = 0
    largest_event: str = ""
    max_run: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


async def histories(client, workflow_ids: list[str], concurrency: int = 8) -> dict[str, dict[str, Any]]:
    """Per workflow type: runs, the largest run's events and bytes, totals, workflow tasks
    completed and activities scheduled, over every run of each id (following continue-as-new
    back from the latest run)."""
    from temporalio.api.enums.v1 import EventType

    by_type: dict[str, TypeHistory] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(wid: str) -> None:
        async with gate:
            run_id: str | None = (await client.get_workflow_handle(wid).describe()).run_id
            first = True
            while run_id:
                history = await client.get_workflow_handle(wid, run_id=run_id).fetch_history()
                started = history.events[0].workflow_execution_started_event_attributes
                t = by_type.setdefault(started.workflow_type.name, TypeHistory())
                events, size = len(history.events), sum(e.ByteSize() for e in history.events)
                t.runs += 1
                t.workflows += 1 if first else 0
                t.total_events += events
                t.total_bytes += size
                if (events, size) > (t.max_events, t.max_bytes):
                    t.max_events, t.max_bytes, t.max_run = events, size, f"{wid}@{run_id[:8]}"
                for e in history.events:
                    if (b := e.ByteSize()) > t.largest_event_bytes:
                        t.largest_event_bytes, t.largest_event = b, EventType.Name(e.event_type)
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                        t.workflow_tasks += 1
                    elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                        t.activities += 1
                    elif e.event_type == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                        t.signals_sent_bytes += e.ByteSize()
                run_id = started.continued_execution_run_id or None
                first = False

    await asyncio.gather(*(one(w) for w in workflow_ids))
    return {k: by_type[k].as_dict() for k in sorted(by_type)}


def quiet_sdk() -> None:
    # Workflows log at warning level when they retry; a benchmark prints its own table.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
