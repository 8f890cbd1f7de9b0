"""Failure-domain placement for the plan printout (pure).

Control plane machines go, one at a time, to the zone with the fewest machines so far, ties
broken by zone order -- KubeadmControlPlane's "fewest machines first" choice, which spreads
three replicas over three zones. A MachineDeployment with a failure domain puts every machine
there; without one, `capt` spreads its machines round-robin over the zones.
"""

from __future__ import annotations

from collections.abc import Sequence


def fewest_first(replicas: int, zones: Sequence[str], existing: Sequence[str] = ()) -> list[str]:
    """Zones for `replicas` new machines, each to the least-used zone (ties: zone order)."""
    if replicas and not zones:
        raise ValueError("no failure domains to place machines in")
    counts = {z: 0 for z in zones}
    for z in existing:
        if z in counts:
            counts[z] += 1
    placed = []
    for _ in range(replicas):
        zone = min(zones, key=lambda z: (counts[z], zones.index(z)))
        counts[zone] += 1
        placed.append(zone)
    return placed


def spread(replicas: int, zones: Sequence[str], failure_domain: str | None = None) -> list[str]:
    """Zones for a MachineDeployment's machines: its failure domain, else round-robin."""
    if failure_domain:
        return [failure_domain] * replicas
    if replicas and not zones:
        raise ValueError("no failure domains to place machines in")
    return [zones[i % len(zones)] for i in range(replicas)]
