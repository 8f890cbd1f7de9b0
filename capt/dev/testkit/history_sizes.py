"""Workflow history sizes: the largest history per workflow type, against Temporal's limits.

Temporal warns at 10,240 events or 10 MB of history per run (and terminates a run at 51,200
events / 50 MB); capt's long-lived workflows continue-as-new well before that. Used by the chaos
runner (capt/dev/testkit/chaos/) and reusable by benchmarks:

    sizes = await largest_histories(client)            # every run the namespace still holds
    print(render_table(sizes))
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

WARN_EVENTS = 10_240
WARN_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class HistorySize:
    workflow_type: str
    workflow_id: str
    run_id: str
    events: int
    bytes: int
    runs: int = 1  # runs of this type looked at

    @property
    def over_warning(self) -> bool:
        return self.events >= WARN_EVENTS or self.bytes >= WARN_BYTES

    @property
    def share_of_limit(self) -> float:
        """The larger of events/10,240 and bytes/10 MB."""
        return max(self.events / WARN_EVENTS, self.bytes / WARN_BYTES)


async def history_size(client: Client, workflow_id: str, run_id: str | None = None) -> tuple[int, int]:
    """(events, bytes) of one run's history (bytes: the serialized events)."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return len(history.events), sum(e.ByteSize() for e in history.events)


async def largest_histories(client: Client, query: str | None = None) -> list[HistorySize]:
    """Per workflow type, the run with the most events (ties: most bytes), over every run the
    visibility `query` lists (default: all of the namespace's runs)."""
    best: dict[str, HistorySize] = {}
    runs: dict[str, int] = {}
    async for wf in client.list_workflows(query):
        events, size = await history_size(client, wf.id, wf.run_id)
        runs[wf.workflow_type] = runs.get(wf.workflow_type, 0) + 1
        current = best.get(wf.workflow_type)
        if current is None or (events, size) > (current.events, current.bytes):
            best[wf.workflow_type] = HistorySize(wf.workflow_type, wf.id, wf.run_id, events, size)
    return sorted(
        (
            HistorySize(s.workflow_type, s.workflow_id, s.run_id, s.events, s.bytes, runs[s.workflow_type])
            for s in best.values()
        ),
        key=lambda s: s.workflow_type,
    )


def render_table(sizes: list[HistorySize]) -> str:
    """A markdown table: type, runs, largest events and bytes, share of the warning limit."""
    lines = [
        "| workflow type | runs | largest history (events) | (bytes) | % of warning limit | workflow id |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in sizes:
        flag = " **over**" if s.over_warning else ""
        lines.append(
            f"| {s.workflow_type} | {s.runs} | {s.events} | {s.bytes:,} | {100 * s.share_of_limit:.1f}%{flag} "
            f"| {s.workflow_id} |"
        )
    return "\n".join(lines)
