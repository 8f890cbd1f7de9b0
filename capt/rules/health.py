"""MachineHealthCheck arithmetic with CAPI's semantics — pure, deterministic, table-tested.

The HealthCheckWorkflow counts, each interval, the machines its selector matches (`expected`) and
how many of them are unhealthy or missing. Before asking owners to remediate anything it asks
`max_unhealthy_allows`: above `maxUnhealthy` (or outside `unhealthyRange`) remediation is
short-circuited with `TooManyUnhealthy` — a zone outage must not become a mass replacement.
`limit_in_flight` then caps how many remediations run at once.

Sources followed (kubernetes-sigs/cluster-api, read to learn, not copied):
`internal/controllers/machinehealthcheck/machinehealthcheck_controller.go` (isAllowedRemediation,
getUnhealthyRange, getMaxUnhealthy, unhealthyMachineCount) and the MachineSet/MachinePool
remediation code (maxInFlight: an int or a percentage of replicas rounded up, minus remediations
still in flight).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from capt.rules.intstr import IntOrPercentError, scaled_value

TOO_MANY_UNHEALTHY = "TooManyUnhealthy"  # CAPI's RemediationAllowed=False reason

_RANGE = re.compile(r"^\[(\d+)-(\d+)\]$")


def parse_unhealthy_range(value: str | tuple[int, int] | Sequence[int]) -> tuple[int, int]:
    """ "[a-b]" (CAPI's format) or (a, b) -> (a, b); ValueError if malformed or b < a."""
    if isinstance(value, str):
        match = _RANGE.match(value.strip())
        if match is None:
            raise ValueError(f"unhealthyRange {value!r} must look like [2-5]")
        low, high = int(match.group(1)), int(match.group(2))
    else:
        low, high = (int(v) for v in value)
        if low < 0:
            raise ValueError(f"unhealthyRange min {low} must not be negative")
    if high < low:
        raise ValueError(f"max value {high} cannot be less than min value {low} for unhealthyRange")
    return low, high


class RemediationAllowance(NamedTuple):
    allowed: bool
    # How many more machines may turn unhealthy and still be remediated (CAPI's
    # status.remediationsAllowed; 0 when refused).
    remaining: int
    # Empty when allowed; otherwise CAPI's message (prefixed by the reason `TooManyUnhealthy`).
    reason: str


def max_unhealthy_allows(
    max_unhealthy: int | str | None,
    unhealthy_range: str | tuple[int, int] | None,
    expected: int,
    unhealthy: int,
) -> RemediationAllowance:
    """CAPI's isAllowedRemediation.

    `unhealthy` is expected - currently healthy (missing machines count). With `unhealthy_range`
    [a-b], remediation is allowed iff a <= unhealthy <= b. Otherwise `max_unhealthy` — an int, or a
    percentage of `expected` rounded down; None means no limit — must be >= unhealthy. A malformed
    value refuses remediation (CAPI returns an error and remediates nothing).
    """
    if unhealthy_range is not None:
        try:
            low, high = parse_unhealthy_range(unhealthy_range)
        except ValueError as e:
            return RemediationAllowance(False, 0, f"invalid unhealthyRange: {e}")
        if low <= unhealthy <= high:
            return RemediationAllowance(True, high - unhealthy, "")
        shown = unhealthy_range if isinstance(unhealthy_range, str) else f"[{low}-{high}]"
        return RemediationAllowance(
            False,
            0,
            f"{TOO_MANY_UNHEALTHY}: Remediation is not allowed, the number of not started or unhealthy "
            f"machines does not fall within the range (total: {expected}, unhealthy: {unhealthy}, "
            f"unhealthyRange: {shown})",
        )
    if max_unhealthy is None:
        return RemediationAllowance(True, max(expected - unhealthy, 0), "")
    try:
        limit = scaled_value(max_unhealthy, expected, round_up=False)
    except IntOrPercentError as e:
        return RemediationAllowance(False, 0, f"invalid maxUnhealthy: {e}")
    if unhealthy <= limit:
        return RemediationAllowance(True, limit - unhealthy, "")
    return RemediationAllowance(
        False,
        0,
        f"{TOO_MANY_UNHEALTHY}: Remediation is not allowed, the number of not started or unhealthy "
        f"machines exceeds maxUnhealthy (total: {expected}, unhealthy: {unhealthy}, maxUnhealthy: {max_unhealthy})",
    )


class InFlightLimit(NamedTuple):
    start: tuple[str, ...]  # remediate these now, in this order
    deferred: tuple[str, ...]  # wait for a free slot
    reason: str


def limit_in_flight(
    candidates: Sequence[str], max_in_flight: int | str | None, replicas: int, in_flight: int = 0
) -> InFlightLimit:
    """At most `max_in_flight` remediations at once (an int, or a percentage of `replicas` rounded
    up; None = no limit), counting `in_flight` ones not finished yet. `candidates` are in priority
    order; the first that fit start now."""
    if max_in_flight is None:
        return InFlightLimit(tuple(candidates), (), "")
    limit = scaled_value(max_in_flight, replicas, round_up=True)
    slots = max(limit - in_flight, 0)
    start, deferred = tuple(candidates[:slots]), tuple(candidates[slots:])
    reason = ""
    if deferred:
        reason = (
            f"waiting because there are already too many remediations in progress "
            f"(maxInFlight is {max_in_flight}: {limit} at once, {in_flight + len(start)} in flight)"
        )
    return InFlightLimit(start, deferred, reason)
