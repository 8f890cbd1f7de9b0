"""Kubernetes version rules, each in one place: what a version looks like, which control-plane
changes kubeadm can make, how far workers may lag. `capt validate`/`apply` (capt/spec/loader.py) and
the workflows' update validators (capt/rules/control_plane.py,
capt/workflows/machinedeployment/workflow.py, capt/workflows/cluster/changes.py) all call these.

- *Format*: `v1.30.2` (a leading `v` optional where the workflows accept it; manifests must write
  it, as CAPI's webhooks require).
- *Downgrades.* CAPI's webhook only forbids going up two or more minor versions (and to v1.19.0);
  it lets a minor downgrade through, which kubeadm cannot perform on a running control plane.
  capt rejects a minor (or major) downgrade unless the caller explicitly allows it; patch
  downgrades within a minor are allowed, as in CAPI.
- *Skew*: a worker's kubelet may not be newer than the control plane, nor more than
  MAX_KUBELET_MINOR_SKEW minors older (Kubernetes' version skew policy).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_KUBELET_MINOR_SKEW = 3

_VERSION = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)([-+][0-9A-Za-z.+_-]*)?$")


def parse_kubernetes_version(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of "v1.30.2" / "1.30.2" / "v1.30.2-rc.0+build"; ValueError otherwise."""
    match = _VERSION.match(version.strip()) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"{version!r} is not a Kubernetes version like v1.30.2")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def manifest_version_error(version: str) -> str | None:
    """A manifest's version: the rule above, with the leading `v` CAPI's webhooks require."""
    try:
        parse_kubernetes_version(version)
    except ValueError:
        pass
    else:
        if version.startswith("v"):
            return None
    return f"{version!r} is not a Kubernetes version of the form vMAJOR.MINOR.PATCH (e.g. v1.30.2)"


def oldest(versions: Iterable[str]) -> str:
    """The oldest of some versions (what every machine of a group runs while a rollout is on)."""
    return min(versions, key=parse_kubernetes_version)


def version_change_error(current: str, target: str, allow_minor_downgrade: bool = False) -> str | None:
    """Why changing the control plane from `current` to `target` is refused, or None if allowed.

    Allowed: the same version, a patch change, or the next minor (any patch). Refused: skipping a
    minor (v1.20 -> v1.22), changing major, v1.19.0 (CAPI: kubernetes-sigs/cluster-api#3564), and —
    unless `allow_minor_downgrade` — going down a minor.
    """
    try:
        old = parse_kubernetes_version(current)
    except ValueError as e:
        return f"failed to parse the current version: {e}"
    try:
        new = parse_kubernetes_version(target)
    except ValueError as e:
        return f"failed to parse the requested version: {e}"
    if old == new:
        return None
    if new == (1, 19, 0):
        return "cannot update Kubernetes version to v1.19.0 (kubernetes-sigs/cluster-api#3564)"
    if new >= (old[0], old[1] + 2, 0):
        return (
            f"cannot update Kubernetes version from {current} to {target}: upgrade one minor "
            f"version at a time (next: v{old[0]}.{old[1] + 1}.x)"
        )
    if new[:2] < old[:2] and not allow_minor_downgrade:
        return f"cannot downgrade Kubernetes from {current} to {target}: kubeadm cannot downgrade a control plane"
    return None


def worker_version_error(version: str, control_plane_version: str | None) -> str | None:
    """Why worker machines may not run `version` next to this control plane, or None.

    A worker may not be newer than the control plane (kubelet must not be newer than its API
    server), nor more than MAX_KUBELET_MINOR_SKEW minors older."""
    try:
        wanted = parse_kubernetes_version(version)
    except ValueError as e:
        return str(e)
    if control_plane_version is None:
        return None
    try:
        cp = parse_kubernetes_version(control_plane_version)
    except ValueError:
        return None  # an unknown control-plane version cannot bound anything
    if wanted > cp:
        return (
            f"version {version} is newer than the control plane's {control_plane_version}: "
            "upgrade the control plane first"
        )
    if wanted[0] != cp[0] or cp[1] - wanted[1] > MAX_KUBELET_MINOR_SKEW:
        return (
            f"version {version} is more than {MAX_KUBELET_MINOR_SKEW} minor versions older than the "
            f"control plane's {control_plane_version}"
        )
    return None


# The CoreDNS version kubeadm installs for each Kubernetes minor (kubeadm's constants.CoreDNSVersion
# at each release). A control-plane upgrade moves CoreDNS to the target minor's version unless the
# manifest pins `clusterConfiguration.dns.imageTag`; CoreDNS is never downgraded.
COREDNS_BY_MINOR: dict[tuple[int, int], str] = {
    (1, 20): "1.7.0",
    (1, 21): "v1.8.0",
    (1, 22): "v1.8.4",
    (1, 23): "v1.8.6",
    (1, 24): "v1.8.6",
    (1, 25): "v1.9.3",
    (1, 26): "v1.9.3",
    (1, 27): "v1.10.1",
    (1, 28): "v1.10.1",
    (1, 29): "v1.11.1",
    (1, 30): "v1.11.1",
    (1, 31): "v1.11.3",
    (1, 32): "v1.11.3",
    (1, 33): "v1.12.0",
    (1, 34): "v1.12.1",
}


def default_coredns_tag(kubernetes_version: str) -> str | None:
    """kubeadm's CoreDNS tag for this Kubernetes version (None for a minor outside the table)."""
    major, minor, _ = parse_kubernetes_version(kubernetes_version)
    return COREDNS_BY_MINOR.get((major, minor))


def newer_image_tag(current: str, target: str) -> bool:
    """Is `target` a newer semantic version tag than `current` (tags such as v1.11.3 or 1.11.3)?
    An unparsable current tag is replaced; an unparsable target never is."""
    try:
        want = parse_kubernetes_version(target)
    except ValueError:
        return False
    try:
        have = parse_kubernetes_version(current)
    except ValueError:
        return True
    return want > have
