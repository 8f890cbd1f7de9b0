"""The availability zones a region usually offers, for planning without calling AWS.

`capt plan` uses these when the manifest names no zones; the workflow asks EC2
(DescribeAvailabilityZones) instead. The table is a convenience, not an authority: an account
may see fewer zones (us-west-1 offers two of three to most accounts), so the applied plan can
differ from the printed one when a region is missing here or an account is restricted.
"""

from __future__ import annotations

_SUFFIXES: dict[str, str] = {
    "us-east-1": "abcdef",
    "us-east-2": "abc",
    "us-west-1": "ac",
    "us-west-2": "abcd",
    "ca-central-1": "abd",
    "eu-west-1": "abc",
    "eu-west-2": "abc",
    "eu-west-3": "abc",
    "eu-central-1": "abc",
    "eu-north-1": "abc",
    "eu-south-1": "abc",
    "ap-northeast-1": "acd",
    "ap-northeast-2": "abcd",
    "ap-northeast-3": "abc",
    "ap-southeast-1": "abc",
    "ap-southeast-2": "abc",
    "ap-south-1": "abc",
    "sa-east-1": "abc",
}


def default_azs(region: str) -> tuple[str, ...]:
    """The region's usual zones (`<region>a`, `<region>b`, ...); three zones if unknown."""
    return tuple(f"{region}{suffix}" for suffix in _SUFFIXES.get(region, "abc"))
