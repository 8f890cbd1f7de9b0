"""capt-worker: the Temporal worker that runs every capt workflow and activity.

    capt-worker [--task-queue capt] [--metrics-port 9464]

Connection settings come from the standard Temporal client environment (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, or a TEMPORAL_PROFILE in the CLI's
config file), so the same worker runs against the local dev server, a docker-compose
deployment or Temporal Cloud. AWS settings are boto3's own (AWS_ENDPOINT_URL, AWS_REGION, ...).

Shutdown: on SIGTERM/SIGINT the worker stops polling, lets in-flight activities finish for
up to --graceful-shutdown seconds (then cancels them; Temporal retries them elsewhere),
and exits 0. Workflow tasks need no draining: workflow state lives in the server's history.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from capt.activities import redaction
from capt.client import codec
from capt.client.connection import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, connect_config

log = logging.getLogger("capt.worker")

DEFAULT_TASK_QUEUE = "capt"
DEFAULT_MAX_CONCURRENT_ACTIVITIES = 64
DEFAULT_MAX_CACHED_WORKFLOWS = 1000  # the SDK's default
DEFAULT_GRACEFUL_SHUTDOWN = timedelta(seconds=30)


NOTHING_TO_RUN = (
    "no workflows or activities to register: capt/workflows/registry.py WORKFLOWS and "
    "capt/activities/registry.py ACTIVITIES are both empty"
)


class NothingToRunError(RuntimeError):
    pass


def _is_async(fn: Callable) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def registered() -> tuple[list[type], list[Callable]]:
    """The registries' contents (capt/workflows/registry.py, capt/activities/registry.py)."""
    from capt.activities.registry import ACTIVITIES
    from capt.workflows.registry import WORKFLOWS

    return list(WORKFLOWS), list(ACTIVITIES)


def build_worker(
    client: Client,
    task_queue: str = DEFAULT_TASK_QUEUE,
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable] | None = None,
    activity_executor: ThreadPoolExecutor | None = None,
    max_concurrent_activities: int = DEFAULT_MAX_CONCURRENT_ACTIVITIES,
    graceful_shutdown_timeout: timedelta = DEFAULT_GRACEFUL_SHUTDOWN,
    **worker_kwargs: Any,
) -> Worker:
    """The capt worker: every registered workflow and activity (or the given ones).

    Sync activity functions (boto3 is blocking) run on a thread pool sized like the
    activity slots, so every slot can run at once; async ones run on the event loop.
    """
    if workflows is None or activities is None:
        registered_workflows, registered_activities = registered()
        workflows = registered_workflows if workflows is None else workflows
        activities = registered_activities if activities is None else activities
    if not workflows and not activities:
        raise NothingToRunError(NOTHING_TO_RUN)
    if activity_executor is None and any(not _is_async(a) for a in activities):
        activity_executor = ThreadPoolExecutor(
            max_workers=max_concurrent_activities, thread_name_prefix="capt-activity"
        )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(workflows),
        activities=list(activities),
        activity_executor=activity_executor,
        max_concurrent_activities=max_concurrent_activities,
        graceful_shutdown_timeout=graceful_shutdown_timeout,
        **worker_kwargs,
    )


def versioning_options(deployment_name: str | None, build_id: str | None = None) -> dict[str, Any]:
    """build_worker's Worker Versioning arguments: none without a deployment name (an unversioned
    worker, as the tests build), else the deployment version (capt/workflows/versioning.py)."""
    if not deployment_name:
        if build_id:
            raise click.UsageError("--build-id needs --deployment-name (Worker Versioning)")
        return {}
    from capt.workflows.versioning import deployment_config

    return {"deployment_config": deployment_config(deployment_name, build_id)}


def metrics_runtime(host: str, port: int) -> Runtime:
    """An SDK runtime whose Prometheus endpoint (http://host:port/metrics) exports the
    worker's metrics: task slots, poll and schedule-to-start latencies, failures, ..."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    runtime: Runtime | None = None,
    timeout: float = 30.0,
) -> Client:
    """Connect with retries (a compose deployment may start the worker before the server
    accepts connections)."""
    cfg = connect_config(address, namespace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.2
    while True:
        try:
            return await Client.connect(**cfg, data_converter=codec.converter_from_env(), runtime=runtime)
        except RuntimeError as err:
            if loop.time() + delay > deadline:
                raise ConnectionError(f"cannot connect to Temporal at {cfg['target_host']}: {err}") from err
            log.warning("Temporal at %s not reachable yet (%s); retrying", cfg["target_host"], err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def run_worker(worker: Worker, stop: asyncio.Event, ready_file: Path | None = None) -> None:
    """Run until `stop` is set, then shut down gracefully. Writes `ready_file` (JSON with
    this pid) once the worker passed its namespace check and its pollers run."""
    run_task = asyncio.create_task(worker.run())
    while not worker.is_running and not run_task.done():
        await asyncio.sleep(0.05)
    if run_task.done():
        await run_task  # raises the start-up error (e.g. unknown namespace)
        return
    if ready_file is not None:
        ready_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = ready_file.with_name(f".{ready_file.name}.tmp")
        ready: dict[str, Any] = {"pid": os.getpid(), "detail": f"polling task queue {worker.task_queue}"}
        deployment = worker.config().get("deployment_config")
        if deployment is not None:
            # For whoever makes this version current (the local stack: capt/dev/stack/services.py).
            ready["deployment"] = {
                "name": deployment.version.deployment_name,
                "build_id": deployment.version.build_id,
            }
        tmp.write_text(json.dumps(ready))
        os.replace(tmp, ready_file)
    log.info("worker polling task queue %r", worker.task_queue)
    stop_task = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    if not run_task.done():
        log.info("shutting down: no new tasks; waiting for in-flight activities")
        await worker.shutdown()
    await run_task  # re-raises a fatal worker error
    log.info("worker shut down gracefully")


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("received %s: shutting down gracefully", signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("received %s again: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


def _chaos_hooks() -> list:
    """Test-only fault injection, each switched on by its own environment variable that the
    production path never sets (both log loudly when on): CAPT_AWS_FAULTS (capt/activities/aws/faults.py:
    lost responses, throttling, 5xx on boto3 calls) and CAPT_CHAOS_KILL (capt/activities/kill_points.py:
    the worker kills itself -9 before/after the nth execution of an activity). Returns the
    worker interceptors to add."""
    from capt.activities import kill_points
    from capt.activities.aws import faults

    faults.install_from_env()
    killer = kill_points.interceptor_from_env()
    return [killer] if killer is not None else []


async def _amain(
    address: str | None,
    namespace: str | None,
    task_queue: str,
    metrics: tuple[str, int] | None,
    ready_file: Path | None,
    graceful_shutdown: float,
    max_concurrent_activities: int,
    connect_timeout: float,
    deployment_name: str | None = None,
    build_id: str | None = None,
    max_cached_workflows: int = DEFAULT_MAX_CACHED_WORKFLOWS,
) -> None:
    workflows, activities = registered()
    if not workflows and not activities:
        # Fail before connecting: a worker with nothing registered is a packaging bug.
        raise NothingToRunError(NOTHING_TO_RUN)
    versioning = versioning_options(deployment_name, build_id)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    runtime = metrics_runtime(*metrics) if metrics else None
    if metrics:
        log.info("Prometheus metrics on http://%s:%d/metrics", *metrics)
    client = await connect(address, namespace, runtime=runtime, timeout=connect_timeout)
    executor = ThreadPoolExecutor(max_workers=max_concurrent_activities, thread_name_prefix="capt-activity")
    try:
        worker = build_worker(
            client,
            task_queue,
            workflows=workflows,
            activities=activities,
            activity_executor=executor,
            max_concurrent_activities=max_concurrent_activities,
            graceful_shutdown_timeout=timedelta(seconds=graceful_shutdown),
            max_cached_workflows=max_cached_workflows,
            **versioning,
            interceptors=_chaos_hooks(),
        )
        if versioning:
            log.info("Worker Versioning: deployment version %s", versioning["deployment_config"].version)
        log.info(
            "connected to %s namespace %s; %d workflows, %d activities",
            client.service_client.config.target_host,
            client.namespace,
            len(workflows),
            len(activities),
        )
        await run_worker(worker, stop, ready_file)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--address", envvar="TEMPORAL_ADDRESS", help=f"Temporal frontend host:port [{DEFAULT_ADDRESS}]."
)
@click.option("--namespace", envvar="TEMPORAL_NAMESPACE", help=f"Temporal namespace [{DEFAULT_NAMESPACE}].")
@click.option("--task-queue", envvar="CAPT_TASK_QUEUE", default=DEFAULT_TASK_QUEUE, show_default=True)
@click.option(
    "--metrics-port", type=int, envvar="CAPT_METRICS_PORT", help="Serve Prometheus metrics on this port."
)
@click.option("--metrics-host", envvar="CAPT_METRICS_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CAPT_WORKER_READY_FILE",
    help="Write this file (JSON with the pid) once polling; removed on shutdown.",
)
@click.option(
    "--graceful-shutdown",
    type=float,
    envvar="CAPT_WORKER_GRACEFUL_SHUTDOWN",
    default=DEFAULT_GRACEFUL_SHUTDOWN.total_seconds(),
    show_default=True,
    help="Seconds in-flight activities may run after SIGTERM before they are cancelled.",
)
@click.option(
    "--max-concurrent-activities",
    type=int,
    default=DEFAULT_MAX_CONCURRENT_ACTIVITIES,
    show_default=True,
)
@click.option(
    "--max-cached-workflows",
    type=int,
    envvar="CAPT_MAX_CACHED_WORKFLOWS",
    default=DEFAULT_MAX_CACHED_WORKFLOWS,
    show_default=True,
    help="Workflows kept in memory between their tasks (the SDK's sticky cache); one evicted is "
    "replayed from its history at its next task. About 6 per cluster run at once (capt/dev/bench/scale/).",
)
@click.option("--connect-timeout", type=float, default=30.0, show_default=True)
@click.option(
    "--deployment-name",
    envvar="CAPT_DEPLOYMENT_NAME",
    help="Worker Versioning: join this Worker Deployment (e.g. capt); unset = unversioned worker. "
    "The version gets tasks once it is made current (docs/versioning.md).",
)
@click.option(
    "--build-id",
    envvar="CAPT_BUILD_ID",
    help="Build id of this worker's version [package version + digest of the workflow sources].",
)
@click.option(
    "--insecure-plaintext",
    is_flag=True,
    envvar="CAPT_INSECURE_PLAINTEXT",
    help="Run without payload encryption (local development only): workflow inputs, results and "
    "failures are then stored in Temporal in plaintext.",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="CAPT_LOG_LEVEL")
def main(
    address: str | None,
    namespace: str | None,
    task_queue: str,
    metrics_port: int | None,
    metrics_host: str,
    ready_file: Path | None,
    graceful_shutdown: float,
    max_concurrent_activities: int,
    max_cached_workflows: int,
    connect_timeout: float,
    deployment_name: str | None,
    build_id: str | None,
    insecure_plaintext: bool,
    log_level: str,
) -> None:
    """Run the capt Temporal worker until SIGTERM/SIGINT."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redaction.install()  # no secret value in any log line, at any level (capt/activities/redaction.py)
    try:
        keys = codec.keys_from_env()
    except codec.CodecKeyError as err:
        raise click.ClickException(f"payload keys: {err}") from err
    if keys is None and not insecure_plaintext:
        raise click.ClickException(
            f"no payload encryption keys: set {codec.KEY_FILE_ENV} (a key file: `capt codec keygen`) or "
            f"{codec.KEYS_ENV}, or pass --insecure-plaintext for local development"
        )
    if keys is None:
        log.warning("!!! payloads are stored in Temporal in PLAINTEXT (--insecure-plaintext) !!!")
    else:
        log.info(
            "payloads encrypted with AES-256-GCM, current key %s (%d key(s))", keys.current, len(keys.keys)
        )
    try:
        asyncio.run(
            _amain(
                address,
                namespace,
                task_queue,
                (metrics_host, metrics_port) if metrics_port else None,
                ready_file,
                graceful_shutdown,
                max_concurrent_activities,
                connect_timeout,
                deployment_name,
                build_id,
                max_cached_workflows,
            )
        )
    except (NothingToRunError, ConnectionError) as err:
        raise click.ClickException(str(err)) from err


if __name__ == "__main__":
    main()
