"""Cross-field rules CAPI's webhooks (and AWS) would enforce, as small pure checks.

Each returns an error message or None, so the loader can attach it to the right document
and field path.
"""

from __future__ import annotations

import ipaddress

from capt.rules.intstr import IntOrPercentError, check_int_or_percent


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
    """CAPI's webhook: maxSurge and maxUnavailable may not both be the integer 0. Percentages
    that scale to 0 ("0%"/"0%", or "10%" of 3 rounded down) are accepted, as in CAPI: the
    fenceposts then allow one machine unavailable (capt/rules/fenceposts.resolve_fenceposts)."""
    del replicas  # CAPI's check does not scale
    if _int_zero(max_surge) and _int_zero(max_unavailable):
        return "maxSurge and maxUnavailable must not both be 0: the rollout could never make progress"
    return None


def _int_zero(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


# --------------------------------------------------------------------------------------------
# bounds (issue 17): every one an error naming the field before anything is created

MAX_CONTROL_PLANE_REPLICAS = 7
# CAPI's scale tests go to 500 workers in one deployment; capt's planner and workflows are tested
# to 1,000 (bench/), so that is the cap.
MAX_DEPLOYMENT_REPLICAS = 1000
MAX_LABEL_VALUE = 63  # a Kubernetes label value (MachineDeployment / control plane names are ones)
# AWS: at most 50 tags per resource, keys up to 128 and values up to 256 characters, no `aws:`.
MAX_TAGS = 50
MAX_TAG_KEY, MAX_TAG_VALUE = 128, 256
# What capt itself puts on a resource: Name, the ownership tag, the role, the cloud provider's
# cluster tag, and on instances capt/machine (+ capt/create-token where there is no ClientToken).
CAPT_TAG_COUNT = 6
RESERVED_TAG_PREFIXES = (
    "sigs.k8s.io/cluster-api-provider-aws/",
    "kubernetes.io/cluster/",
    "capt/",
)


def deployment_replicas_error(replicas: int) -> str | None:
    if replicas > MAX_DEPLOYMENT_REPLICAS:
        return f"{replicas} is more than capt's limit of {MAX_DEPLOYMENT_REPLICAS} machines per MachineDeployment"
    return None


def control_plane_size_error(replicas: int) -> str | None:
    if replicas > MAX_CONTROL_PLANE_REPLICAS:
        return f"{replicas} is more than {MAX_CONTROL_PLANE_REPLICAS}: etcd gets slower, not safer, beyond 7 members"
    return None


def label_name_error(name: str, what: str) -> str | None:
    if len(name) > MAX_LABEL_VALUE:
        return (
            f"{len(name)} characters: a {what} name is a label value on every machine and must be at "
            f"most {MAX_LABEL_VALUE}"
        )
    return None


def tags_errors(tags: dict[str, str], extra: int = 0) -> list[tuple[str, str]]:
    """(tag key, message) for each problem with user tags; `extra` counts other user tags that
    land on the same resources (the cluster's additionalTags next to a template's)."""
    out: list[tuple[str, str]] = []
    for key, value in tags.items():
        if key.lower().startswith("aws:"):
            out.append((key, "tag keys starting with aws: are reserved by AWS"))
        elif key == "Name" or key.startswith(RESERVED_TAG_PREFIXES):
            out.append((key, "is a tag capt sets (ownership, role, name): a user tag may not override it"))
        elif len(key) > MAX_TAG_KEY:
            out.append((key, f"tag keys are at most {MAX_TAG_KEY} characters"))
        elif len(value) > MAX_TAG_VALUE:
            out.append((key, f"tag values are at most {MAX_TAG_VALUE} characters"))
    total = len(tags) + extra + CAPT_TAG_COUNT
    if total > MAX_TAGS:
        out.append(
            (
                "",
                f"{len(tags) + extra} user tags plus capt's {CAPT_TAG_COUNT} make {total}: AWS allows "
                f"{MAX_TAGS} per resource",
            )
        )
    return out


def overlapping_cidrs(cidrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(path, message) for every CIDR overlapping an earlier one (duplicates included)."""
    out = []
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for path, cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue  # reported by the format check
        for other_path, other in seen:
            if net.version == other.version and net.overlaps(other):
                out.append((path, f"{cidr} overlaps {other} ({other_path})"))
                break
        seen.append((path, net))
    return out
