"""The Java time-skipping test server's one known way to strand a workflow, detected and named.

When a workflow task cancels a timer that fired while the task was with the worker (with time
skipping, a timer due a few milliseconds after a skip ends), the test server refuses the task's
completion with INVALID_ARGUMENT "invalid history builder state for action" and then never times
the task out nor sends it again: the run waits forever and so does the test
(temporalio/sdk-java#2606 and #3088; the fix, sdk-java#3060, is not in a released test server
yet). The real server handles the same completion (it drops the buffered TimerFired and records
TimerCanceled), so this is a property of the test server, not of capt's workflows.

This module does not hide it. It forwards sdk-core's log records to the `temporalio.core`
logger (they stay visible in a failing test's captured log), watches for that refusal, and the
`time_skipping_env` fixture then cancels the test with `StrandedByTestServer: <workflow run>`.
pytest-rerunfailures (`--only-rerun StrandedByTestServer`, in pyproject's addopts) reruns such
a test up to twice, and prints it in the summary as a rerun; any other failure fails at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

SIGNATURE = "invalid history builder state for action"
CORE_LOGGER = logging.getLogger("temporalio.core")


class StrandedByTestServer(Exception):
    """The test server refused a workflow task completion and will never resend the task."""


class _Watch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._lock = threading.Lock()
        self._hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if SIGNATURE in message:
            with self._lock:
                self._hits.append(message)

    def take(self) -> list[str]:
        with self._lock:
            hits, self._hits = self._hits, []
        return hits


WATCH = _Watch()


def install() -> None:
    """Make every client and worker of this process forward sdk-core's logs to `CORE_LOGGER`.

    Must run before the first client connects (the default runtime is created then)."""
    CORE_LOGGER.addHandler(WATCH)
    CORE_LOGGER.setLevel(logging.WARNING)
    runtime = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=CORE_LOGGER),
            )
        )
    )
    Runtime.set_default(runtime, error_if_already_set=False)


async def cancel_test_when_stranded(test_name: str, every: float = 0.25) -> None:
    """Runs beside a test: once the test server strands a run, cancel the test's task with a
    `StrandedByTestServer` message (what `--only-rerun` matches)."""
    WATCH.take()  # a previous test's leftovers are not this test's
    while True:
        await asyncio.sleep(every)
        hits = WATCH.take()
        if not hits:
            continue
        reason = f"StrandedByTestServer: {hits[0]}"
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            if getattr(getattr(coro, "cr_code", None), "co_name", None) == test_name:
                task.cancel(msg=reason)
                return
