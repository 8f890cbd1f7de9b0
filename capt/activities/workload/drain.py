"""Drain a node: cordon it, evict its pods through the Eviction API, wait until they are gone.

Evictions (not deletes) are what make PodDisruptionBudgets hold: the API server answers 429 while
evicting a pod would take its budget below minAvailable, and the drain tries that pod again on
the next pass. A drain ends when no pod it must evict is left on the node (DaemonSet and mirror
pods stay, as with `kubectl drain --ignore-daemonsets`), or when its time is up; either way it
reports what it evicted, what is still blocked and why, and what is still terminating.

The loop is bounded by `timeout` and heartbeats on every pass and every eviction, so it can run
inside one activity (with a heartbeat timeout). A node drain timeout of many minutes belongs to the
workflow: call the activity repeatedly (each call is one bounded drain; a drain is idempotent),
with a durable `workflow.sleep` between calls, until `drained` or the workflow's own deadline.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from capt.activities.workload.client import WorkloadClient
from capt.activities.workload.objects import pod_action, pod_key
from capt.activities.workload.transport import MESSAGE_LIMIT


@dataclass
class DrainReport:
    node_found: bool = True
    drained: bool = False
    timed_out: bool = False
    passes: int = 0
    evicted: list[str] = field(default_factory=list)  # ns/name, in order of eviction
    blocked: dict[str, str] = field(default_factory=dict)  # ns/name → the API server's reason
    terminating: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # DaemonSet and mirror pods left in place


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def drain(
    client: WorkloadClient,
    node_name: str,
    *,
    timeout: float,
    interval: float = 5.0,
    skip_deleted_after: dt.timedelta | None = None,
    heartbeat: Callable[..., None] = lambda *_: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = _utcnow,
) -> DrainReport:
    """Cordon `node_name` and evict its pods until none is left or `timeout` seconds passed.

    At least one full pass (cordon, list, evict) runs even with timeout 0.
    """
    report = DrainReport()
    deadline = clock() + timeout
    if client.set_unschedulable(node_name, True) is None:
        report.node_found = False
        report.drained = True  # no Node, no pods to move
        return report
    evicted: set[str] = set()
    while True:
        report.passes += 1
        heartbeat(f"pass {report.passes}")
        blocked: dict[str, str] = {}
        terminating: list[str] = []
        skipped: list[str] = []
        t = now()
        for pod in client.list_pods_on_node(node_name):
            key = pod_key(pod)
            action = pod_action(pod, t, skip_deleted_after)
            if action in ("skip-daemonset", "skip-mirror"):
                skipped.append(key)
            elif action == "terminating":
                terminating.append(key)
            elif action == "evict":
                ns, _, name = key.partition("/")
                resp = client.evict(ns, name)
                heartbeat(f"pass {report.passes}: evicted {len(evicted)}")
                if resp.status in (200, 201):
                    if key not in evicted:
                        evicted.add(key)
                        report.evicted.append(key)
                    terminating.append(key)
                elif resp.status == 404:
                    pass  # gone already
                else:
                    # 429: a PodDisruptionBudget does not allow it now. 500: e.g. more than one
                    # budget selects the pod. Either way: try again next pass, report if it stays.
                    blocked[key] = f"{resp.status}: {resp.message()}"[:MESSAGE_LIMIT]
        report.blocked, report.terminating, report.skipped = blocked, terminating, skipped
        if not blocked and not terminating:
            report.drained = True
            return report
        remaining = deadline - clock()
        if remaining <= 0:
            report.timed_out = True
            return report
        sleep(min(interval, remaining))
