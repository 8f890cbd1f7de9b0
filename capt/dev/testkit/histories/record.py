"""`Recorder`: runs `capt` as a user would, fetches, replays and writes histories, one event per
line, and finds the largest history per workflow type."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from capt.dev.testkit.histories.common import BIN, NAME, NS, ROOT, RecordingError, log
from capt.dev.testkit.histories.stack import Stack
from capt.dev.testkit.histories.steps import ScenarioMixin

# --- the recording -------------------------------------------------------------------------------


@dataclass
class Recorded:
    path: str  # relative to the output dir
    workflow_type: str
    workflow_id: str
    run_id: str
    events: int
    bytes: int
    note: str


@dataclass
class Recorder(ScenarioMixin):
    stack: Stack
    out: Path
    client: object = None  # temporalio.client.Client, connected in run()
    written: list[Recorded] = field(default_factory=list)

    # --- the user's commands ---------------------------------------------------------------
    def capt(self, *args: str, timeout: float = 900) -> str:
        t0 = time.monotonic()
        done = subprocess.run(
            [str(BIN / "capt"), *args],
            env=self.stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RecordingError(
                f"capt {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        log(f"capt {' '.join(args)} [{time.monotonic() - t0:.0f}s]")
        return done.stdout

    def describe(self) -> dict:
        return json.loads(self.capt_quiet("describe", "cluster", NAME, "-n", NS, "-o", "json"))

    def capt_quiet(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "capt"), *args],
            env=self.stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RecordingError(f"capt {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    async def wait_for(self, what: str, check: Callable[[dict], bool], timeout: float = 600) -> dict:
        t0 = time.monotonic()
        while True:
            state = await asyncio.to_thread(self.describe)
            if check(state):
                log(f"{what} [{time.monotonic() - t0:.0f}s]")
                return state
            if state["phase"] == "Failed":
                raise RecordingError(f"waiting for {what}: the cluster failed: {state['message']}")
            if time.monotonic() - t0 > timeout:
                raise RecordingError(f"timed out waiting for {what}: {state['phase']}: {state['message']}")
            await asyncio.sleep(2)

    async def wait_closed(self, workflow_id: str, run_id: str | None = None, timeout: float = 300) -> None:
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.result(follow_runs=False), timeout)

    # --- histories ----------------------------------------------------------------------------
    async def record(self, rel: str, workflow_id: str, note: str, run_id: str | None = None) -> Recorded:
        from temporalio.client import WorkflowHistory

        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        desc = await handle.describe()
        history = await self.client.get_workflow_handle(workflow_id, run_id=desc.run_id).fetch_history()
        await replay_or_fail(history, rel)
        text = history_json(history)
        # What is committed reads back as what was fetched.
        assert len(WorkflowHistory.from_json(workflow_id, text).events) == len(history.events)
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        item = Recorded(
            rel, desc.workflow_type, workflow_id, desc.run_id, len(history.events), len(text), note
        )
        self.written = [w for w in self.written if w.path != rel] + [item]
        log(f"  wrote {rel}: {item.events} events, {item.bytes} bytes ({desc.status.name.lower()})")
        return item

    async def runs(self, workflow_id: str) -> list:
        """Every run of a workflow id, oldest first."""
        found = [wf async for wf in self.client.list_workflows(f'WorkflowId = "{workflow_id}"')]
        return sorted(found, key=lambda wf: wf.start_time)

    # --- summary ----------------------------------------------------------------------------
    async def largest_per_type(self) -> dict[str, tuple[int, int, str]]:
        """Per workflow type: (events, bytes, workflow id) of the largest run in the namespace."""
        largest: dict[str, tuple[int, int, str]] = {}
        async for wf in self.client.list_workflows():
            history = await self.client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            size = (len(history.events), len(history_json(history)), wf.id)
            if size > largest.get(wf.workflow_type, (0, 0, "")):
                largest[wf.workflow_type] = size
        return largest


def history_json(history) -> str:
    """The history as `WorkflowHistory.to_json()` has it, one event per line (small diffs, no
    indentation bytes); `WorkflowHistory.from_json` reads it back."""
    events = json.loads(history.to_json())["events"]
    return '{"events": [\n' + ",\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n]}\n"


async def replay_or_fail(history, what: str) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from capt.worker import registered

    workflows, _ = registered()
    result = await Replayer(workflows=workflows, data_converter=pydantic_data_converter).replay_workflow(
        history, raise_on_replay_failure=False
    )
    if result.replay_failure is not None:
        raise RecordingError(f"{what}: a fresh recording does not replay: {result.replay_failure}")
