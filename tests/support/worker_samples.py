"""Workflows and activities for tests/worker/test_worker.py, in a module of their own so the
workflow sandbox re-imports nothing but temporalio and pydantic."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel


class Greeting(BaseModel):
    name: str


class Reply(BaseModel):
    text: str
    thread: str = ""


@activity.defn
def greet_sync(req: Greeting) -> Reply:
    """A blocking activity (like every boto3 call): it needs the worker's thread pool."""
    return Reply(text=f"hello {req.name}", thread=threading.current_thread().name)


STARTED = asyncio.Event()
FINISHED: list[str] = []


@activity.defn
async def slow(req: Greeting) -> Reply:
    STARTED.set()
    await asyncio.sleep(1.0)
    FINISHED.append(req.name)
    return Reply(text=f"done {req.name}")


@workflow.defn
class GreetWorkflow:
    @workflow.run
    async def run(self, req: Greeting) -> Reply:
        return await workflow.execute_activity(greet_sync, req, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class SlowWorkflow:
    @workflow.run
    async def run(self, req: Greeting) -> Reply:
        return await workflow.execute_activity(slow, req, start_to_close_timeout=timedelta(seconds=30))
