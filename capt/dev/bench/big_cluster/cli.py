"""The big-cluster benchmark's command line: `main` runs the sizes, prints the table and saves
big_cluster.json."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from capt.dev.bench import big_cluster as big_cluster_package
from capt.dev.bench import model, results
from capt.dev.bench.big_cluster.measure import measure
from capt.dev.bench.big_cluster.report import table
from capt.dev.bench.big_cluster.settings import DEFAULT_WORKERS, FULL_RUNS, SURGES
from capt.dev.bench.big_cluster.shared import quiet_sdk

# ---------------------------------------------------------------------------------------------
# CLI, report
# ---------------------------------------------------------------------------------------------


def _workers(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m capt.dev.bench big_cluster", description=big_cluster_package.__doc__.split("\n")[0]
    )
    p.add_argument(
        "--workers", type=_workers, default=None, help="worker counts, comma-separated (default 20)"
    )
    p.add_argument(
        "--surges", default=None, help="maxSurge of each rollout, comma-separated (default 1,10%%)"
    )
    p.add_argument("--full", action="store_true", help="N = 20 (both rollouts), 50 and 500 (10 %% only)")
    p.add_argument("--results", type=Path, default=results.RESULTS, help="where to save big_cluster.json")
    args = p.parse_args(argv or [])
    quiet_sdk()
    lat = model.load()
    surges = tuple(int(x) if x.isdigit() else x for x in args.surges.split(",")) if args.surges else SURGES
    plan = (
        FULL_RUNS
        if args.full and not args.workers
        else tuple((n, surges) for n in args.workers or DEFAULT_WORKERS)
    )
    runs = []
    for n, these in plan:
        print(f"3 + {n}:", flush=True)
        runs.append(asyncio.run(measure(n, lat, these)))
    print(table(runs))
    results.save(
        "big_cluster",
        {
            "latencies": {
                "instance_pending": lat.instance_pending,
                "kubeadm_init": lat.kubeadm_init,
                "kubeadm_join": lat.kubeadm_join,
                "instance_terminate": lat.instance_terminate,
            },
            "runs": runs,
        },
        args.results,
    )
    return 0
