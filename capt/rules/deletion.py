"""Which machines a MachineSet deletes first: CAPI's delete policies (Random, Newest, Oldest) and
their priorities (machineset_delete_policy.go). Pure."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from capt.rules.fenceposts import DeletePolicy
from capt.rules.machines import MachineView


def _random_rank(seed: str, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{name}".encode()).digest()[:8], "big")


# CAPI's MachineSet delete priorities (machineset_delete_policy.go).
MUST_DELETE, SHOULD_DELETE, BETTER_DELETE, COULD_DELETE, MUST_NOT_DELETE = 100.0, 75.0, 50.0, 20.0, 0.0


SECONDS_PER_TEN_DAYS = 864000.0


def capi_delete_priority(m: MachineView, policy: DeletePolicy, now: float) -> float:
    """CAPI v1.10's deletePriority of one machine (higher goes first): being deleted 100; the
    delete-machine annotation 75; not healthy (no node, failed, node not Ready, reported
    unhealthy) 50; then Random 20 for all (ties by name), Oldest 50·(1 − e^(−age/10 d)) and
    Newest 50 minus that, on whole-second ages as Kubernetes timestamps are."""
    if m.deleting:
        return MUST_DELETE
    if m.marked_for_deletion:
        return SHOULD_DELETE
    if not m.deletion_healthy or m.ready_since is None:
        return BETTER_DELETE
    if policy == "Random":
        return COULD_DELETE
    if policy not in ("Oldest", "Newest"):
        raise ValueError(f"unsupported delete policy {policy!r}: must be Random, Newest or Oldest")
    age = math.floor(now) - math.floor(m.created)
    oldest = MUST_NOT_DELETE if age < 0 else BETTER_DELETE * (1.0 - math.exp(-age / SECONDS_PER_TEN_DAYS))
    return oldest if policy == "Oldest" else BETTER_DELETE - oldest


def capi_deletion_order(
    machines: Iterable[MachineView], policy: DeletePolicy, now: float
) -> list[MachineView]:
    """CAPI's getMachinesToDeletePrioritized: by `capi_delete_priority`, highest first, ties by name."""
    return sorted(machines, key=lambda m: (-capi_delete_priority(m, policy, now), m.name))


def deletion_order(
    machines: Iterable[MachineView], policy: DeletePolicy = "Random", seed: str = ""
) -> list[MachineView]:
    """Machines in the order a scale-down deletes them (CAPI's deletePriority, highest first).

    1. machines already being deleted (so a scale-down does not delete more while they finish),
    2. machines marked for deletion by a user,
    3. unhealthy machines: no node yet, or reported unhealthy,
    4. the rest by policy — Oldest: oldest first; Newest: newest first; Random: a deterministic
       shuffle keyed by `seed` (e.g. the deployment's name).
    Ties are broken by name, as in CAPI.
    """

    def key(m: MachineView) -> tuple[int, float, str]:
        if m.deleting:
            return (0, 0.0, m.name)
        if m.marked_for_deletion:
            return (1, 0.0, m.name)
        if not m.deletion_healthy:
            return (2, 0.0, m.name)
        if policy == "Oldest":
            return (3, m.created, m.name)
        if policy == "Newest":
            return (3, -m.created, m.name)
        if policy == "Random":
            return (3, float(_random_rank(seed, m.name)), m.name)
        raise ValueError(f"unsupported delete policy {policy!r}: must be Random, Newest or Oldest")

    return sorted(machines, key=key)
