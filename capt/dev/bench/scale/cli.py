"""The scale benchmark's command line: `main` runs the stacks (`run_stack`), prints the table and
saves the results."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from capt.dev.bench import results
from capt.dev.bench import scale as scale_package
from capt.dev.bench.scale.report import section
from capt.dev.bench.scale.settings import (
    BASELINE,
    DEFAULT_IDLE,
    DEFAULT_SIZES,
    FULL_CACHE,
    FULL_CREATE,
    FULL_IDLE,
    FULL_STEADY,
    HISTORY_LIMIT,
    METAL3,
    SDK_BENCH,
)
from capt.dev.bench.scale.stack import Scale


async def run_stack(
    label: str,
    sizes: list[int],
    workers: int,
    idle_seconds: float,
    deadline: float | None,
    keep: bool,
    worker_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    from capt.dev.testkit.chaos.scenarios import SIM_SETTINGS

    state_dir = Path(tempfile.mkdtemp(prefix="capt-bench-scale-"))
    environ = dict(os.environ)
    scale = Scale(state_dir, workers, worker_env)
    creates: list[dict[str, Any]] = []
    idles: list[dict[str, Any]] = []
    histories: list[dict[str, Any]] | None = None
    stopped = None
    try:
        scale.stack.up()
        scale.stack.sim_settings(SIM_SETTINGS)
        for size in sizes:
            if size <= scale.created:
                continue
            limit = deadline or max(300.0, 1.8 * (size - scale.created))
            grown = await scale.grow(size, limit)
            creates.append(grown)
            print(_create_line(grown), flush=True)
            if not grown["all_ready"]:
                stopped = (
                    f"{label}: at {size} clusters only {grown['ready']} were Ready after"
                    f" {grown['wall_seconds']:.0f} s (deadline {limit:.0f} s); larger sizes not attempted"
                )
                print(stopped, flush=True)
                break
            if idle_seconds:
                steady = await scale.idle(size, idle_seconds)
                idles.append(steady)
                print(_idle_line(steady), flush=True)
        if scale.created <= HISTORY_LIMIT:
            histories = await scale.history_counts()
    finally:
        if not keep:
            scale.stack.down()
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            print(f"stack kept in {state_dir}: {scale.stack.cfg.temporal_address}")
        os.environ.clear()
        os.environ.update(environ)
    return {
        "label": label,
        "workers_per_cluster": workers,
        "control_plane_per_cluster": 1,
        "worker_env": worker_env or {},
        "creates": creates,
        "idle": idles,
        "histories": histories,
        "stopped": stopped,
    }


def _create_line(c: dict[str, Any]) -> str:
    return (
        f"{c['size']:>5} clusters: +{c['new_clusters']} Ready {c['ready']}/{c['size']} in {c['wall_seconds']:.0f} s"
        f" (apply→Ready p50 {c['time_to_ready_p50']} s, p99 {c['time_to_ready_p99']} s); per new cluster"
        f" worker {c['worker_cpu_s_per_cluster']} CPU-s, server {c['server_cpu_s_per_cluster']} CPU-s,"
        f" moto+simulator {c['emulation_cpu_s_per_cluster']} CPU-s; peak RSS worker {c['peak_rss_mib']['worker']}"
        f" MiB, server {c['peak_rss_mib']['temporal']} MiB"
    )


def _idle_line(s: dict[str, Any]) -> str:
    sts, ex = s["workflow_task_schedule_to_start_ms"] or {}, s["workflow_task_execution_ms"] or {}
    hr = s["health_rounds"]
    return (
        f"{s['size']:>5} clusters idle {s['seconds']:.0f} s: worker {s['cpu_pct_of_a_core']['worker']} %,"
        f" server {s['cpu_pct_of_a_core']['temporal']} % of a core; RSS worker {s['rss_mib']['worker']} MiB,"
        f" server {s['rss_mib']['temporal']} MiB; WFT schedule-to-start p50/p99 {sts.get('p50', '–')}/"
        f"{sts.get('p99', '–')} ms, execution {ex.get('p50', '–')}/{ex.get('p99', '–')} ms; health round p99"
        f" {hr.get('p99_s', '–')} s ({hr['rounds']} rounds)"
    )


def print_table(data: dict[str, Any]) -> None:
    print()
    print(section(data))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m capt.dev.bench scale", description=scale_package.__doc__.split("\n")[0]
    )
    p.add_argument(
        "--clusters",
        action="append",
        default=[],
        help="cumulative cluster counts, e.g. 20,50 (repeatable) [3]",
    )
    p.add_argument("--workers", type=int, choices=(0, 1), default=0, help="worker machines per cluster [0]")
    p.add_argument(
        "--idle", type=float, default=None, help=f"seconds of steady state after each size [{DEFAULT_IDLE:g}]"
    )
    p.add_argument("--deadline", type=float, default=None, help="seconds a size may take to be all Ready")
    p.add_argument(
        "--full",
        action="store_true",
        help=f"{FULL_CREATE} single-node clusters to Ready, then steady state at {FULL_STEADY} (1 CP + 1 worker)",
    )
    p.add_argument(
        "--max-cached-workflows",
        type=int,
        help=f"the worker's sticky cache size (CAPT_MAX_CACHED_WORKFLOWS) [the worker's default, 1000; {FULL_CACHE} with --full]",
    )
    p.add_argument("--keep-stack", action="store_true", help="leave the stack running (debugging)")
    p.add_argument("--results", type=Path, default=results.RESULTS, help="directory of the JSON result")
    args = p.parse_args(argv or [])
    sizes = sorted({int(s) for arg in args.clusters for s in arg.split(",") if s.strip()}) or DEFAULT_SIZES
    cache = args.max_cached_workflows
    if args.full and cache is None:
        # ~6 workflows run per cluster: the worker's default cache (1000) holds ~160 clusters; past
        # that every task of an evicted workflow replays its history (see FULL_CACHE).
        cache = FULL_CACHE
    env = {"CAPT_MAX_CACHED_WORKFLOWS": str(cache)} if cache else {}
    runs = []
    if args.full:
        runs.append(
            asyncio.run(
                run_stack(f"create {FULL_CREATE}", [FULL_CREATE], 0, 0.0, args.deadline, args.keep_stack, env)
            )
        )
        idle = FULL_IDLE if args.idle is None else args.idle
        runs.append(
            asyncio.run(run_stack("steady state", FULL_STEADY, 1, idle, args.deadline, args.keep_stack, env))
        )
    else:
        idle = DEFAULT_IDLE if args.idle is None else args.idle
        runs.append(
            asyncio.run(run_stack("run", sizes, args.workers, idle, args.deadline, args.keep_stack, env))
        )
    from capt.dev.testkit.chaos.scenarios import SIM_SETTINGS

    data = {
        "full": args.full,
        "simulator_settings": SIM_SETTINGS,
        "runs": runs,
        "baseline": BASELINE,
        "metal3": METAL3,
        "sdk_benchmark": SDK_BENCH,
    }
    path = results.save("scale", data, args.results)
    print_table(data)
    print(f"\nsaved {path}")
    return 0 if all(r["creates"] and r["creates"][-1]["all_ready"] for r in runs) else 1
