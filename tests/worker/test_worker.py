"""capt/worker.py: registration, the sync-activity executor, graceful shutdown, metrics, config."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from capt import worker
from capt.client import connection
from tests.support.worker_samples import (
    FINISHED,
    STARTED,
    Greeting,
    GreetWorkflow,
    Reply,
    SlowWorkflow,
    greet_sync,
    slow,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_sync_activity_runs_on_the_worker_thread_pool(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    async with worker.build_worker(client, task_queue, workflows=[GreetWorkflow], activities=[greet_sync]):
        reply = await client.execute_workflow(
            GreetWorkflow.run, Greeting(name="capt"), id=f"wf-{task_queue}", task_queue=task_queue
        )
    assert reply == Reply(text="hello capt", thread=reply.thread)
    assert reply.thread.startswith("capt-activity")


async def test_nothing_registered_is_an_error(time_skipping_env: WorkflowEnvironment) -> None:
    with pytest.raises(worker.NothingToRunError, match="both empty"):
        worker.build_worker(time_skipping_env.client, "tq", workflows=[], activities=[])


def test_main_exits_with_a_clear_error_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "registered", lambda: ([], []))
    # Port 9 (discard) would make a connect attempt hang or fail slowly; we must not get there.
    result = CliRunner().invoke(
        worker.main, ["--address", "127.0.0.1:9", "--connect-timeout", "30", "--insecure-plaintext"]
    )
    assert result.exit_code == 1
    assert "no workflows or activities to register" in result.output


def test_main_refuses_to_store_plaintext_payloads_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CAPT_CODEC_KEYS", "CAPT_CODEC_KEY_FILE", "CAPT_INSECURE_PLAINTEXT"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(worker.main, ["--address", "127.0.0.1:9"])
    assert result.exit_code == 1
    assert "no payload encryption keys" in result.output and "--insecure-plaintext" in result.output
    bad = CliRunner().invoke(worker.main, ["--address", "127.0.0.1:9"], env={"CAPT_CODEC_KEYS": "k1=short"})
    assert bad.exit_code == 1 and "payload keys" in bad.output


async def test_graceful_shutdown_lets_in_flight_activities_finish(
    time_skipping_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    client = time_skipping_env.client
    STARTED.clear()
    FINISHED.clear()
    ready = tmp_path / "worker.ready"

    def make() -> worker.Worker:
        return worker.build_worker(
            client,
            task_queue,
            workflows=[SlowWorkflow],
            activities=[slow],
            graceful_shutdown_timeout=timedelta(seconds=10),
            # No sticky cache: the next workflow task must go to the normal queue, where
            # the second worker polls (the test server never expires a dead sticky queue).
            max_cached_workflows=0,
        )

    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_worker(make(), stop, ready))
    for _ in range(200):
        if ready.exists():
            break
        await asyncio.sleep(0.05)
    assert json.loads(ready.read_text())["pid"] == os.getpid()

    handle = await client.start_workflow(
        SlowWorkflow.run, Greeting(name="inflight"), id=f"wf-{task_queue}", task_queue=task_queue
    )
    await asyncio.wait_for(STARTED.wait(), 10)
    stop.set()  # what SIGTERM does in main()
    await asyncio.wait_for(running, 15)
    assert FINISHED == ["inflight"], "the in-flight activity must complete, not be cancelled"
    assert not ready.exists()

    # The workflow itself is durable: the next worker finishes it from history.
    async with make():
        assert await handle.result() == Reply(text="done inflight")


async def test_metrics_port_serves_prometheus_metrics(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    port = free_port()
    client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        namespace=time_skipping_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=worker.metrics_runtime("127.0.0.1", port),
    )
    async with worker.build_worker(client, task_queue, workflows=[GreetWorkflow], activities=[greet_sync]):
        await client.execute_workflow(
            GreetWorkflow.run, Greeting(name="m"), id=f"wf-{task_queue}", task_queue=task_queue
        )
        # The SDK core counts the completion after the server has recorded it (the client may
        # see the result first): read the endpoint until the counter shows, for up to 20 s.
        ours: list[str] = []
        for _ in range(40):
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            )
            ours = [line for line in body.splitlines() if f'task_queue="{task_queue}"' in line]
            if any(line.startswith("temporal_workflow_completed") for line in ours):
                break
            await asyncio.sleep(0.5)
    assert any(line.startswith("temporal_workflow_completed") for line in ours), ours[:5]


def test_connect_config_reads_the_standard_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for var in [v for v in os.environ if v.startswith("TEMPORAL_")]:
        monkeypatch.delenv(var)
    assert connection.connect_config() == {"target_host": "localhost:7233", "namespace": "default"}
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "capt")
    assert connection.connect_config() == {"target_host": "temporal:7233", "namespace": "capt"}
    assert connection.connect_config("other:1", None)["target_host"] == "other:1"


async def test_connect_gives_up_with_a_clear_error() -> None:
    with pytest.raises(ConnectionError, match="cannot connect to Temporal at 127.0.0.1:"):
        await worker.connect(f"127.0.0.1:{free_port()}", "default", timeout=0.5)
