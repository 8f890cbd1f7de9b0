"""capt.rules.placement: CAPI's failure-domain choice (fewest machines first, ties by the
priority machines, then all machines, then domain order), used by the control plane, the machine
deployments and the plan printout alike."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from capt.rules.placement import spread


@dataclass(frozen=True)
class M:
    failure_domain: str | None


def machines(*zones: str) -> list[M]:
    return [M(z) for z in zones]


@pytest.mark.parametrize(
    ("count", "zones", "existing", "expected"),
    [
        (3, ("a", "b", "c"), (), ["a", "b", "c"]),  # a fresh control plane: one per zone
        (5, ("a", "b", "c"), (), ["a", "b", "c", "a", "b"]),  # round-robin when nothing exists
        (1, ("a", "b", "c"), ("a", "b"), ["c"]),
        (2, ("a", "b", "c"), ("a", "a", "c"), ["b", "b"]),
        (2, ("a", "b"), ("z",), ["a", "b"]),  # a machine in an unlisted domain counts nowhere
        (0, (), (), []),
        (2, (), (), [None, None]),  # no failure domains: machines carry none
    ],
)
def test_spread_places_each_machine_in_the_least_used_domain(count, zones, existing, expected):
    assert spread(count, zones, machines(*existing), machines(*existing)) == expected
