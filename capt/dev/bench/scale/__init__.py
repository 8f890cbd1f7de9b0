"""Benchmark 3: many clusters on one worker process and one Temporal dev server, on the local stack.

    python -m capt.dev.bench scale [--clusters 3] [--workers 0|1] [--idle 15] [--deadline S] [--full]

One local stack on free ports in a temporary directory (Temporal dev server on SQLite, moto server,
the workload simulator with short boot/ready delays, ONE `capt-worker` serving its Prometheus
metrics), torn down at the end (also on an error or Ctrl-C). `--clusters` takes cumulative sizes:
`--clusters 20,50` creates 20 clusters, then 30 more. At each size the new clusters (1
control-plane machine + `--workers` workers, each cluster named and namespaced on its own) are
applied at once, and the benchmark measures:

- wall time until all are Ready (visibility: `CaptPhase = "Ready"`), and per cluster the time
  from its apply to its Ready transition (ClusterStatus.phase_since), p50/p99;
- CPU-seconds spent meanwhile (utime+stime of the process and its descendants, /proc) by the
  worker and the dev server, per new cluster; moto's and the simulator's (they stand in for AWS
  and the clusters' nodes, on the same cores); peak RSS (VmHWM);
- then `--idle` seconds of steady state: worker and server CPU as % of one core, RSS, the
  worker's workflow-task schedule-to-start and execution latency p50/p99 (the SDK's Prometheus
  histograms, in ms: bucket upper bounds), and the health rounds' duration (from the health
  workflows' histories: timer fired → the next interval's timer started; HealthStatus carries
  no round timing);
- afterwards (≤ 200 clusters), from every workflow history: workflow tasks, activities and
  timers per cluster during each window, by workflow type and activity.

A size whose clusters are not all Ready within the deadline (`--deadline`, by default 300 s or
1.8 s per new cluster, whichever is more) is reported as reached (how many were Ready after how
long) and larger sizes are not attempted: no number is extrapolated.

`--full` runs the issue's sizes: 1,000 single-node clusters (1 CP, no worker) applied at once to
Ready on one stack, then on a fresh stack steady state at 100, 300 and 1,000 clusters of 1 CP +
1 worker (60 s idle each), with the worker's sticky cache sized for them (FULL_CACHE; about 6
workflows run per cluster, and the default cache of 1000 holds ~160 clusters' worth).
"""

from capt.dev.bench.scale.cli import main
from capt.dev.bench.scale.report import plots, section, summary

__all__ = ["main", "plots", "section", "summary"]
