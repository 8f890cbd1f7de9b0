"""Failure-domain (availability-zone) choice for new and doomed machines — pure, deterministic.

Follows CAPI's `util/failuredomains` (`PickFewest`, `PickMost`):

- `pick_fewest` places a new machine in the failure domain with the fewest *priority* machines
  (for the control plane: up-to-date, not-deleting machines), breaking ties by the fewest machines
  overall, then by the order the failure domains are listed in.
- `pick_most` chooses where to remove a machine: the failure domain with the most *eligible*
  machines, ties broken by the most machines overall, then by list order; `None` when no known
  failure domain holds an eligible machine.

CAPI breaks the last tie by Go map iteration order (deliberately random); capt breaks it by the
order the cluster lists its AZs, so a plan is reproducible and a replayed workflow decides the same.
Machines in a failure domain the cluster does not list (or in none) are ignored when counting,
as CAPI does.

Usable inside the Temporal workflow sandbox: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol


class HasFailureDomain(Protocol):
    @property
    def failure_domain(self) -> str | None: ...


def _counts(failure_domains: Sequence[str], machines: Iterable[HasFailureDomain]) -> dict[str, int]:
    known = dict.fromkeys(failure_domains, 0)
    for machine in machines:
        fd = machine.failure_domain
        if fd is not None and fd in known:
            known[fd] += 1
    return known


def pick_fewest(
    failure_domains: Sequence[str],
    all_machines: Iterable[HasFailureDomain],
    priority_machines: Iterable[HasFailureDomain],
) -> str | None:
    """The failure domain for a new machine, or None when the cluster has none."""
    if not failure_domains:
        return None
    priority = _counts(failure_domains, priority_machines)
    overall = _counts(failure_domains, all_machines)
    order = {fd: i for i, fd in enumerate(failure_domains)}
    return min(failure_domains, key=lambda fd: (priority[fd], overall[fd], order[fd]))


def pick_most(
    failure_domains: Sequence[str],
    all_machines: Iterable[HasFailureDomain],
    eligible_machines: Iterable[HasFailureDomain],
) -> str | None:
    """The failure domain to remove a machine from, or None if no listed domain holds an eligible one."""
    if not failure_domains:
        return None
    eligible = _counts(failure_domains, eligible_machines)
    overall = _counts(failure_domains, all_machines)
    order = {fd: i for i, fd in enumerate(failure_domains)}
    best = min(failure_domains, key=lambda fd: (-eligible[fd], -overall[fd], order[fd]))
    return best if eligible[best] > 0 else None


def spread(
    count: int,
    failure_domains: Sequence[str],
    all_machines: Iterable[HasFailureDomain],
    priority_machines: Iterable[HasFailureDomain],
) -> list[str | None]:
    """Failure domains for `count` new machines created together, each placed as `pick_fewest`
    would place it after the previous ones exist (so 3 new machines over 3 empty AZs land 1-1-1)."""
    if count <= 0:
        return []
    if not failure_domains:
        return [None] * count
    priority = _counts(failure_domains, priority_machines)
    overall = _counts(failure_domains, all_machines)
    order = {fd: i for i, fd in enumerate(failure_domains)}
    picks: list[str | None] = []
    for _ in range(count):
        fd = min(failure_domains, key=lambda d: (priority[d], overall[d], order[d]))
        priority[fd] += 1
        overall[fd] += 1
        picks.append(fd)
    return picks
