"""MachineDeployment fenceposts: maxSurge and maxUnavailable resolved against replicas, as
CAPI's `mdutil.ResolveFenceposts` does, and the rollout strategy they belong to. Pure."""

from __future__ import annotations

from typing import Literal

from capt.rules.base import Frozen
from capt.rules.intstr import IntOrPercent, scaled_value

DeletePolicy = Literal["Random", "Newest", "Oldest"]


StrategyType = Literal["RollingUpdate", "OnDelete"]


def resolve_fenceposts(max_surge: int | str, max_unavailable: int | str, replicas: int) -> tuple[int, int]:
    """CAPI's `ResolveFenceposts`: (surge, unavailable) for `replicas` desired machines.

    Surge rounds a percentage up, unavailable rounds it down; when both resolve to 0, unavailable
    becomes 1 (a rollout must be able to move even if surging is impossible, e.g. for quota).
    A string that is not a percentage ("5", "oops") raises `rules.intstr.IntOrPercentError`.
    """
    if replicas < 0:
        raise ValueError(f"replicas must not be negative, got {replicas}")
    surge = scaled_value(max_surge, replicas, round_up=True)
    unavailable = scaled_value(max_unavailable, replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(
    replicas: int,
    max_unavailable: int | str,
    max_surge: int | str = 1,
    strategy: StrategyType = "RollingUpdate",
) -> int:
    """CAPI's `MaxUnavailable`: 0 for OnDelete or 0 replicas, else the fencepost clamped to replicas."""
    if strategy != "RollingUpdate" or replicas == 0:
        return 0
    _, unavailable = resolve_fenceposts(max_surge, max_unavailable, replicas)
    return min(unavailable, replicas)


def max_surge(
    replicas: int,
    max_surge: int | str,
    max_unavailable: int | str = 0,
    strategy: StrategyType = "RollingUpdate",
) -> int:
    """CAPI's `MaxSurge`: 0 for OnDelete, else the resolved surge fencepost."""
    if strategy != "RollingUpdate":
        return 0
    surge, _ = resolve_fenceposts(max_surge, max_unavailable, replicas)
    return surge


class DeploymentStrategy(Frozen):
    """The rollout knobs of a MachineDeployment."""

    type: StrategyType = "RollingUpdate"
    max_surge: IntOrPercent = 1
    max_unavailable: IntOrPercent = 0
    delete_policy: DeletePolicy = "Random"
    min_ready_seconds: int = 0

    def surge(self, replicas: int) -> int:
        return max_surge(replicas, self.max_surge, self.max_unavailable, self.type)

    def unavailable(self, replicas: int) -> int:
        return max_unavailable(replicas, self.max_unavailable, self.max_surge, self.type)
