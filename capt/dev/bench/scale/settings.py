"""The scale benchmark's sizes, defaults and the anchors it is compared with (the issue's
baselines, Metal3, the SDK's own benchmark, the CPU profile note)."""

from __future__ import annotations

import os

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

EXAMPLE = ROOT / "examples" / "capi-quickstart.yaml"
TICKS = os.sysconf("SC_CLK_TCK")
SERVICES = ("worker", "temporal", "moto", "simulator")
DEFAULT_SIZES = [3]
DEFAULT_IDLE = 15.0
FULL_CREATE = 1000
FULL_STEADY = [100, 300, 1000]
FULL_IDLE = 60.0
# The worker's sticky cache for --full: room for every running workflow of 1,000 clusters (~6 each).
# Measured at 50 clusters of 1+1 (300 running workflows) with a cache of 100: the worker spent 2.2
# instead of ~1.0 CPU-s per cluster creating them and 28.8 % instead of ~5.7 % of a core idle.
FULL_CACHE = 8000
HISTORY_LIMIT = 200  # clusters; beyond, histories are not counted (minutes of fetching)
HEALTH_SAMPLE = 30  # health workflows whose rounds are timed per idle window
# The anchors of the issue (docs/BENCHMARKS.md quotes them beside capt's figures).
BASELINE = {
    "clusters": 20,
    "workers_per_cluster": 1,
    "ready_seconds": 73,
    "worker_cpu_s_per_cluster": 1.2,
    "server_cpu_s_per_cluster": 1.4,
    "idle_worker_pct": 2.5,
    "idle_server_pct": 5.3,
}
METAL3 = {"clusters": 1000, "minutes": 15, "cores": 14}
# Where the CPU goes: measured once by hand (2026-12-05, 2 cores, 50 clusters of 1+1 applied at once),
# py-spy on the worker (all threads, 50 Hz) and the SDK's request counters; not re-measured by a run.
PROFILE_NOTE = (
    "Where the CPU goes (profiled by hand once: 50 clusters of 1+1 applied at once, py-spy on the worker,"
    " the SDK's request counters): the worker's largest single cost is the cluster PKI (5 RSA-2048 keys and"
    " 4 certificates per cluster, 0.27 CPU-s measured alone, about a quarter of its CPU per cluster; CAPI makes"
    " the same keys), then the boto3 client side of ~52 AWS calls per cluster (every call a new connection:"
    " moto's server closes each one), then creating sandboxed workflow instances (~6 workflows per cluster)"
    " and their activations; payload encryption is < 1 %. Per cluster, creating it takes ~83 workflow tasks"
    " (machines ~26, infrastructure ~18, cluster ~16, deployment ~10, control plane ~9) and ~52 activities,"
    " and the dev server spends ~8 ms of CPU per task (workflow or activity; about a third of it in the"
    " kernel: SQLite and sockets), the same rate idle. Idle, each cluster costs ~8 workflow tasks, 6"
    " activities and 4 queries a minute: two health rounds of 30 s (query the machine owners, describe the"
    " instances, list the nodes). About 6 workflows per cluster stay running: the worker's default sticky cache"
    " (1000) holds ~160 clusters; with a cache of 100 at 50 clusters (300 running) the worker spent 2.2 instead"
    " of ~1.0 CPU-s per cluster creating them and 28.8 % instead of ~5.7 % of a core idle (health round p99 30 s"
    " instead of 2–5 s), so `--full` sizes the cache (`--max-cached-workflows`)."
)
SDK_BENCH = {"workflows_per_second": 86, "what": "trivial sandboxed workflows/s on a CI runner"}
