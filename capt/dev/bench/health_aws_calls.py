"""AWS calls per cluster per hour made by the health check in steady state, for a 3+3 and a 3+50 cluster.

    .venv/bin/python -m capt.dev.bench.health_aws_calls [--hours 1]

Runs the HealthCheckWorkflow on the time-skipping test server for an hour of workflow time (a
few seconds of wall time) with the real `describe_cluster_instances` activity against in-process
moto holding the cluster's instances; owners and nodes are fakes that report every machine
healthy. The numbers are the activities' own botocore counts, totalled by the workflow.

Not counted here: `list_workload_nodes` reads the workload cluster's CA and admin credentials
from Secrets Manager when its TLS context cache (capt/activities/workload/client.py,
CONTEXT_TTL_SECONDS) misses: at most 2 GetSecretValue per 300 s per worker process, i.e. <= 24
per hour, shared by everything that talks to that cluster's API from that worker. Also
independent of the cluster's size.
"""

from __future__ import annotations

import asyncio
import os
import sys

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT


SIZES = ((3, 3), (3, 50))


def _offline_aws_env() -> None:
    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[var]  # in-process moto only; never a real endpoint
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="ap-northeast-2",
        AWS_REGION="ap-northeast-2",
    )


async def measure(hours: float = 1.0, sizes: tuple[tuple[int, int], ...] = SIZES) -> list[dict]:
    """The health check's AWS calls over `hours` of workflow time for each (control plane,
    workers) size: one row each with `cluster`, `checks`, `by_operation` and `per_hour`."""
    from moto import mock_aws

    from capt.dev.testkit import time_skipping
    from capt.dev.testkit.steady_cluster import measure_steady_state

    # The workflow upserts capt's search attributes: the server knows them.
    env = await time_skipping.start_env()
    rows = []
    try:
        for cp, workers in sizes:
            with mock_aws():
                status = await measure_steady_state(env, f"bench-{cp}-{workers}", cp, workers, hours=hours)
            calls = sum(status.aws_calls.values())
            rows.append(
                {
                    "cluster": f"{cp}+{workers}",
                    "control_plane": cp,
                    "workers": workers,
                    "hours": hours,
                    "checks": status.iterations,
                    "by_operation": dict(status.aws_calls),
                    "per_hour": calls / hours,
                }
            )
    finally:
        await env.shutdown()
    return rows


async def main(hours: float) -> None:
    _offline_aws_env()
    rows = await measure(hours)
    print(f"health check, interval 30 s, {hours:g} h of workflow time")
    print(f"{'cluster':<8} {'checks':>6} {'AWS calls per hour':>19}  by operation")
    for r in rows:
        print(f"{r['cluster']:<8} {r['checks']:>6} {r['per_hour']:>19.0f}  {r['by_operation']}")


if __name__ == "__main__":
    hours = float(sys.argv[sys.argv.index("--hours") + 1]) if "--hours" in sys.argv else 1.0
    asyncio.run(main(hours))
