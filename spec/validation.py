"""Cross-field rules CAPI's webhooks (and AWS) would enforce, as small pure checks.

Each returns an error message or None, so the loader can attach it to the right document
and field path.
"""

from __future__ import annotations

import ipaddress
import re

from spec.intstr import IntOrPercentError, check_int_or_percent, scaled_value

_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]+)?$")


def parse_version(version: str) -> tuple[int, int, int] | None:
    m = _VERSION.match(version)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def version_error(version: str) -> str | None:
    if parse_version(version) is None:
        return f"{version!r} is not a Kubernetes version of the form vMAJOR.MINOR.PATCH (e.g. v1.30.2)"
    return None


def network_error(cidr: str, what: str) -> str | None:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        return f"{cidr!r} is not a valid {what} CIDR ({exc})"
    if net.version != 4:
        return f"{cidr!r}: capt supports IPv4 {what} CIDRs only"
    return None


def vpc_cidr_error(cidr: str) -> str | None:
    if err := network_error(cidr, "VPC"):
        return err
    prefix = ipaddress.ip_network(cidr).prefixlen
    if not 16 <= prefix <= 28:
        return f"{cidr!r}: an AWS VPC CIDR must be between /16 and /28"
    return None


def overlap_error(a: str, a_what: str, b: str, b_what: str) -> str | None:
    try:
        if ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b)):
            return f"{a_what} {a} overlaps the {b_what} {b}"
    except ValueError:
        return None  # reported by the format check
    return None


def subnet_in_vpc_error(subnet: str, vpc: str) -> str | None:
    try:
        if not ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(vpc)):  # type: ignore[arg-type]
            return f"subnet {subnet} is not inside the VPC CIDR {vpc}"
    except (ValueError, TypeError):
        return None
    return None


def control_plane_replicas_error(replicas: int) -> str | None:
    if replicas == 0:
        return "must be at least 1"
    if replicas % 2 == 0:
        return (
            f"{replicas} is even: a control plane with stacked etcd needs an odd number of machines "
            "(1, 3, 5, 7) so that etcd keeps quorum"
        )
    return None


def control_plane_max_surge_error(value: object) -> str | None:
    if isinstance(value, bool) or value not in (0, 1):
        return f"must be 0 or 1 for a KubeadmControlPlane, got {value!r}"
    return None


def int_or_percent_error(value: object) -> str | None:
    try:
        check_int_or_percent(value)
    except IntOrPercentError as exc:
        return str(exc)
    return None


def rolling_update_error(max_surge: object, max_unavailable: object, replicas: int) -> str | None:
    """CAPI's webhook: both scaled (rounding up, over max(replicas, 1)) must not be zero."""
    total = max(replicas, 1)
    try:
        surge = scaled_value(max_surge, total, round_up=True)  # type: ignore[arg-type]
        unavailable = scaled_value(max_unavailable, total, round_up=True)  # type: ignore[arg-type]
    except IntOrPercentError:
        return None  # reported by the format check
    if surge == 0 and unavailable == 0:
        return "maxSurge and maxUnavailable must not both be 0: the rollout could never make progress"
    return None


def version_skew_error(worker: str, control_plane: str) -> str | None:
    w, c = parse_version(worker), parse_version(control_plane)
    if not w or not c:
        return None
    if w[:2] > c[:2]:
        return f"{worker} is newer than the control plane's {control_plane}: kubelets must not be newer than the API server"
    return None
