"""The AWS-calls benchmark's command line: `main` measures every part, prints the tables and
saves aws_calls.json."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from capt.dev.bench import aws_calls as aws_calls_package
from capt.dev.bench import results
from capt.dev.bench.aws_calls.activities import NOT_MEASURED, activity_costs
from capt.dev.bench.aws_calls.executions import (
    cost_of,
    mean_executions,
    measure_cluster_create,
    measure_rollout,
)
from capt.dev.bench.aws_calls.network import measure_network
from capt.dev.bench.aws_calls.ops import REGION, is_mutating
from capt.dev.bench.aws_calls.report import render_tables
from capt.dev.bench.aws_calls.steady import (
    CAPA_SYNC_PERIOD_MINUTES,
    CAPT_HEALTH_INTERVAL_SECONDS,
    capa_poll_per_hour,
)

# ---------------------------------------------------------------------------------------------
# the benchmark


def totals(calls: dict[str, float]) -> dict[str, float]:
    mutating = sum(n for k, n in calls.items() if is_mutating(k))
    total = sum(calls.values())
    return {"total": round(total, 2), "mutating": round(mutating, 2), "reads": round(total - mutating, 2)}


def per_machine_phase(phase: dict[str, Counter], machines: list[str], costs: dict) -> dict[str, Any]:
    executions = mean_executions(phase, machines)
    aws = cost_of(executions, costs)
    return {
        "executions": executions,
        "aws_calls": {k: round(v, 2) for k, v in aws.items()},
        **totals(aws),
        "not_measured": {k: v for k, v in executions.items() if k in NOT_MEASURED},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m capt.dev.bench aws_calls", description=aws_calls_package.__doc__.split("\n")[0]
    )
    p.add_argument(
        "--workers", type=int, default=None, help="workers in the rolling upgrade (default 5; --full 50)"
    )
    p.add_argument("--full", action="store_true", help="the full sizes: a rolling upgrade of 50 workers")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a quarter hour of steady state instead of an hour (the per-hour rate is the same; for the smoke test)",
    )
    p.add_argument("--results", type=Path, default=results.RESULTS, help="where to save aws_calls.json")
    args = p.parse_args(argv or [])
    workers = args.workers or (50 if args.full else 5)
    hours = 0.25 if args.quick else 1.0

    from capt.dev.bench import health_aws_calls
    from capt.dev.testkit.aws_setup import offline_aws_env

    offline_aws_env(REGION)
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)

    network = asyncio.run(measure_network())
    costs = activity_costs()
    cluster = asyncio.run(measure_cluster_create())
    rollout = asyncio.run(measure_rollout(workers))
    steady = asyncio.run(health_aws_calls.measure(hours))

    machine_create = {}
    for kind, executions in cluster["executions"].items():
        aws = cost_of(executions, costs)
        machine_create[kind] = {
            "executions": executions,
            "aws_calls": {k: round(v, 2) for k, v in aws.items()},
            **totals(aws),
            "run_instances": aws.get("ec2:RunInstances", 0),
            "not_measured": {k: v for k, v in executions.items() if k in NOT_MEASURED},
        }
    md_create = per_machine_phase(rollout["create"], rollout["first_machines"], costs)
    md_delete = per_machine_phase(rollout["delete"], rollout["new_machines"], costs)
    rollout_execs: Counter = Counter()
    for c in rollout["rollout"].values():
        rollout_execs.update(c)
    rollout_aws = cost_of(dict(rollout_execs), costs)
    replaced = rollout["replaced"] or 1
    upgrade = {
        "workers": workers,
        "replaced": rollout["replaced"],
        "workflow_seconds": rollout["rollout_seconds"],
        "executions": dict(sorted(rollout_execs.items())),
        "aws_calls": dict(rollout_aws),
        **totals(rollout_aws),
        "per_replaced_machine": totals({k: v / replaced for k, v in rollout_aws.items()}),
        "not_measured": {k: v for k, v in rollout_execs.items() if k in NOT_MEASURED},
    }
    steady_rows = []
    for row in steady:
        machines = row["control_plane"] + row["workers"]
        steady_rows.append(
            {
                **row,
                "machines": machines,
                "capa_sync_period_per_hour": capa_poll_per_hour(machines, CAPA_SYNC_PERIOD_MINUTES * 60),
                "per_machine_poll_30s_per_hour": capa_poll_per_hour(machines, CAPT_HEALTH_INTERVAL_SECONDS),
            }
        )
    data = {
        "network": network,
        "activity_costs": costs,
        "not_measured": NOT_MEASURED,
        "cluster_create": {k: v for k, v in cluster.items() if k != "executions"},
        "machine_create": machine_create,
        "worker_create_deployment": md_create,
        "worker_delete": md_delete,
        "rolling_upgrade": upgrade,
        "steady_state": steady_rows,
        "capa_model": {
            "sync_period_minutes": CAPA_SYNC_PERIOD_MINUTES,
            "describe_per_machine_per_reconcile": 1,
            "capt_health_interval_seconds": CAPT_HEALTH_INTERVAL_SECONDS,
        },
        "options": {"workers": workers, "steady_hours": hours, "full": args.full, "quick": args.quick},
    }
    print(render_tables(data), flush=True)
    path = results.save("aws_calls", data, args.results)
    print(f"saved {path}")
    return 0
