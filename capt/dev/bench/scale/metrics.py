"""What the scale benchmark reads: CPU seconds and memory of a process tree from /proc, and
histograms and counters from the worker's Prometheus text."""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from pathlib import Path

from capt.dev.bench.scale.settings import TICKS

# --------------------------------------------------------------------------------------------
# /proc


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children[int(fields[1])].append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int | None) -> float:
    """utime + stime (+ the waited-for children's) of a process and its live descendants."""
    if not pid:
        return 0.0
    total = 0
    for p in descendants(pid):
        fields = _stat(p)
        if fields:
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib(pid: int | None, key: str = "VmRSS") -> float:
    """Resident set (VmRSS) or its peak (VmHWM) of a process and its descendants, MiB."""
    if not pid:
        return 0.0
    return sum(_status_kib(p, key) for p in descendants(pid)) / 1024


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


# --------------------------------------------------------------------------------------------
# Prometheus text


def _buckets(text: str, metric: str) -> dict[float, float]:
    """Cumulative `_bucket` counts of `metric` by upper bound, summed over label sets."""
    out: dict[float, float] = {}
    prefix = f"{metric}_bucket"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        le = re.search(r'le="([^"]+)"', line)
        if not le:
            continue
        bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
        out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def histogram_delta(before: str, after: str, metric: str) -> dict[str, float] | None:
    """p50/p99 (the upper bound of the bucket the quantile falls in, in the metric's unit: the
    SDK exports durations in ms) and count of what `metric` recorded between two scrapes."""
    b, a = _buckets(before, metric), _buckets(after, metric)
    delta = {k: v - b.get(k, 0.0) for k, v in a.items()}
    if not delta or max(delta.values()) <= 0:
        return None
    total = delta[max(delta)]
    out: dict[str, float] = {}
    for q in (0.5, 0.99):
        out[f"p{round(q * 100)}"] = next(k for k in sorted(delta) if delta[k] >= q * total)
    out["count"] = total
    return out


def counters(text: str) -> dict[str, float]:
    """Every counter and histogram count of the SDK (`temporal_*`), summed over label sets."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line.startswith("temporal_") or "_bucket" in line.split("{")[0].split(" ")[0]:
            continue
        name = line.split("{")[0].split(" ")[0]
        if name.endswith("_sum"):
            continue
        with contextlib.suppress(ValueError):
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


def counters_delta(before: str, after: str) -> dict[str, float]:
    b, a = counters(before), counters(after)
    keep = (
        "temporal_workflow_task_execution_latency_count",
        "temporal_workflow_task_replay_latency_count",
        "temporal_workflow_task_schedule_to_start_latency_count",
        "temporal_activity_execution_latency_count",
        "temporal_sticky_cache_hit",
        "temporal_sticky_cache_miss",
        "temporal_sticky_cache_total_forced_eviction",
        "temporal_workflow_completed",
        "temporal_workflow_continue_as_new",
        "temporal_request",
        "temporal_long_request",
    )
    return {k.removeprefix("temporal_"): round(a.get(k, 0.0) - b.get(k, 0.0)) for k in keep if k in a}
