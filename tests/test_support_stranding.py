"""The stranding detector of tests/support/test_server.py: a refusal logged by sdk-core cancels
the running test with a message --only-rerun matches; nothing else does."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import test_server


async def a_test_that_waits_forever() -> None:
    await asyncio.Event().wait()


async def test_a_logged_refusal_cancels_the_test_by_name() -> None:
    victim = asyncio.create_task(a_test_that_waits_forever())
    monitor = asyncio.create_task(
        test_server.cancel_test_when_stranded("a_test_that_waits_forever", every=0.01)
    )
    await asyncio.sleep(0.05)
    test_server.CORE_LOGGER.warning(
        "Error while completing workflow activation error=code: 'Client specified an invalid argument', "
        'message: "invalid history builder state for action" run_id="r1"'
    )
    with pytest.raises(asyncio.CancelledError) as cancelled:
        await victim
    assert "StrandedByTestServer" in str(cancelled.value)
    await monitor


async def test_other_core_warnings_do_not() -> None:
    victim = asyncio.create_task(asyncio.sleep(0.2))
    monitor = asyncio.create_task(test_server.cancel_test_when_stranded("sleep", every=0.01))
    test_server.CORE_LOGGER.warning("Task not found when completing: workflow execution already completed")
    await victim  # not cancelled
    monitor.cancel()
