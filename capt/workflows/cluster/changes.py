"""What `capt apply` of a changed manifest means for a running cluster — pure, table-tested.

`plan_changes(running, desired, …)` compares two ClusterSpecs and either rejects the change
(immutable fields, unsafe control-plane requests) or says what each owner must be told:
the control plane's new spec, each deployment's new spec, deployments added and removed,
new health-check settings. The ClusterWorkflow's Update validator calls it, so a rejected
apply never enters history; the handler calls it again and forwards the result.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from capt.rules import control_plane as cp_rules
from capt.rules.versions import version_change_error, worker_version_error
from capt.spec.models import ClusterSpec, ControlPlaneSpec, HealthCheckSpec, MachineDeploymentSpec


class ClusterChanges(BaseModel):
    model_config = ConfigDict(frozen=True)

    control_plane: ControlPlaneSpec | None = None  # the new spec, when anything changed
    control_plane_version_change: bool = False
    deployments_changed: tuple[MachineDeploymentSpec, ...] = ()
    deployments_added: tuple[MachineDeploymentSpec, ...] = ()
    deployments_removed: tuple[str, ...] = ()
    health_checks: tuple[HealthCheckSpec, ...] | None = None  # new settings, when changed
    addons_changed: bool = False
    paused: bool | None = None

    @property
    def empty(self) -> bool:
        return (
            self.control_plane is None
            and not self.deployments_changed
            and not self.deployments_added
            and not self.deployments_removed
            and self.health_checks is None
            and not self.addons_changed
            and self.paused is None
        )

    def summary(self) -> str:
        parts = []
        if self.control_plane is not None:
            parts.append("control plane" + (" (version)" if self.control_plane_version_change else ""))
        parts += [f"deployment {d.name}" for d in self.deployments_changed]
        parts += [f"new deployment {d.name}" for d in self.deployments_added]
        parts += [f"removed deployment {n}" for n in self.deployments_removed]
        if self.health_checks is not None:
            parts.append("health checks")
        if self.addons_changed:
            parts.append("addons")
        if self.paused is not None:
            parts.append("paused" if self.paused else "resumed")
        return ", ".join(parts) or "nothing"


class ApplyPreview(BaseModel):
    """What applying a spec would do (the `preview` query of the cluster workflow)."""

    model_config = ConfigDict(frozen=True)

    accepted: bool
    reason: str = ""  # why it would be refused
    summary: str = "nothing"
    fields: tuple[str, ...] = ()  # `path: old -> new`
    machines: tuple[str, ...] = ()  # which machines are replaced, added or removed


class ChangeRejected(ValueError):
    """The apply is refused; the message lists every reason."""


# (what, how to read it) — fields no running cluster can change in place.
_IMMUTABLE = (
    ("cluster name", lambda s: s.name),
    ("namespace", lambda s: s.namespace),
    ("region", lambda s: s.region),
    ("VPC CIDR", lambda s: s.network.vpc_cidr),
    ("VPC id", lambda s: s.network.vpc_id),
    ("subnets", lambda s: s.network.subnets),
    (
        "availability zone usage",
        lambda s: (s.network.availability_zone_usage_limit, s.network.availability_zone_selection),
    ),
    ("pod CIDRs", lambda s: s.network.pod_cidrs),
    ("service CIDRs", lambda s: s.network.service_cidrs),
    ("service domain", lambda s: s.network.service_domain),
    ("API load balancer", lambda s: s.load_balancer),
    ("control plane endpoint", lambda s: (s.control_plane_endpoint_host, s.control_plane_endpoint_port)),
    ("control plane name", lambda s: s.control_plane.name),
)


def immutable_errors(running: ClusterSpec, desired: ClusterSpec) -> list[str]:
    return [
        f"{what} cannot be changed on a running cluster ({get(running)!r} → {get(desired)!r}); "
        "create a new cluster instead"
        for what, get in _IMMUTABLE
        if get(running) != get(desired)
    ]


def control_plane_errors(
    running: ControlPlaneSpec, desired: ControlPlaneSpec, running_versions: tuple[str, ...] = ()
) -> list[str]:
    """The control plane's own Update validators, applied to a whole new spec."""
    errors = []
    if desired.replicas != running.replicas and (
        err := cp_rules.control_plane_replicas_error(desired.replicas)
    ):
        errors.append(err)
    if err := cp_rules.rollout_strategy_error(desired.replicas, desired.max_surge):
        errors.append(err)
    if desired.version != running.version:
        for version in sorted({running.version, *running_versions}):
            if err := version_change_error(version, desired.version):
                if version != running.version:
                    err += f" (machines still run {version}: wait for the current rollout to finish)"
                errors.append(err)
                break
    return errors


def deployment_errors(desired: MachineDeploymentSpec, control_plane_version: str) -> list[str]:
    """The deployment's own version rule (`worker_version_error`), plus non-negative replicas."""
    errors = []
    if desired.replicas < 0:
        errors.append(f"deployment {desired.name}: replicas must not be negative")
    if err := worker_version_error(desired.version, control_plane_version):
        errors.append(f"deployment {desired.name}: {err}")
    return errors


def plan_changes(
    running: ClusterSpec, desired: ClusterSpec, running_cp_versions: tuple[str, ...] = ()
) -> ClusterChanges:
    """The changes to forward, or ChangeRejected with every reason."""
    errors = immutable_errors(running, desired)
    errors += control_plane_errors(running.control_plane, desired.control_plane, running_cp_versions)
    for md in desired.machine_deployments:
        errors += deployment_errors(md, desired.control_plane.version)
    if errors:
        raise ChangeRejected("; ".join(errors))

    old_mds = {md.name: md for md in running.machine_deployments}
    new_mds = {md.name: md for md in desired.machine_deployments}
    return ClusterChanges(
        control_plane=desired.control_plane if desired.control_plane != running.control_plane else None,
        control_plane_version_change=desired.control_plane.version != running.control_plane.version,
        deployments_changed=tuple(
            md for name, md in new_mds.items() if name in old_mds and old_mds[name] != md
        ),
        deployments_added=tuple(md for name, md in new_mds.items() if name not in old_mds),
        deployments_removed=tuple(name for name in old_mds if name not in new_mds),
        health_checks=desired.health_checks if desired.health_checks != running.health_checks else None,
        addons_changed=desired.addons != running.addons,
        paused=desired.paused if desired.paused != running.paused else None,
    )


# ---------------------------------------------------------------------------------------------
# what an apply would change, for `capt diff` and `capt apply --dry-run` (the cluster workflow's
# `preview` query: judged by the same rules as the apply, recorded nowhere)
# ---------------------------------------------------------------------------------------------


def field_changes(running: ClusterSpec, desired: ClusterSpec) -> list[str]:
    """`path: old -> new` for every spec field that differs (lists of objects by name)."""
    out: list[str] = []

    def key_of(item) -> str | None:
        return item.get("name") if isinstance(item, dict) else None

    def walk(path: str, old, new) -> None:
        if old == new:
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for k in sorted(set(old) | set(new)):
                walk(f"{path}.{k}" if path else k, old.get(k), new.get(k))
            return
        if isinstance(old, list) and isinstance(new, list) and all(key_of(x) for x in old + new):
            olds, news = {key_of(x): x for x in old}, {key_of(x): x for x in new}
            for name in sorted(set(olds) | set(news)):
                if name not in olds:
                    out.append(f"{path}[{name}]: added")
                elif name not in news:
                    out.append(f"{path}[{name}]: removed")
                else:
                    walk(f"{path}[{name}]", olds[name], news[name])
            return
        out.append(f"{path}: {_short(old)} -> {_short(new)}")

    walk("", running.model_dump(mode="json"), desired.model_dump(mode="json"))
    return out


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def machine_effects(running: ClusterSpec, desired: ClusterSpec, changes: ClusterChanges) -> list[str]:
    """Which machines the change replaces, adds or removes (the rollout rules' outcome in words)."""
    out: list[str] = []
    old_cp, new_cp = running.control_plane, desired.control_plane
    if changes.control_plane is not None:
        rolled = (
            old_cp.version != new_cp.version
            or old_cp.machine_template != new_cp.machine_template
            or old_cp.kubeadm != new_cp.kubeadm
            or old_cp.rollout_after != new_cp.rollout_after
        )
        if rolled:
            out.append(
                f"control plane: every machine replaced, one at a time ({old_cp.replicas} -> {new_cp.replicas})"
            )
        elif new_cp.replicas != old_cp.replicas:
            verb = "added" if new_cp.replicas > old_cp.replicas else "removed"
            out.append(f"control plane: {abs(new_cp.replicas - old_cp.replicas)} machine(s) {verb}")
    old_mds = {md.name: md for md in running.machine_deployments}
    for md in changes.deployments_changed:
        old = old_mds[md.name]
        template = (
            old.version != md.version
            or old.machine_template != md.machine_template
            or old.bootstrap != md.bootstrap
            or old.rollout_after != md.rollout_after
        )
        if template:
            how = "when you delete them (OnDelete)" if md.strategy == "OnDelete" else "by a rolling update"
            out.append(
                f"deployment {md.name}: every machine replaced {how} ({old.replicas} -> {md.replicas})"
            )
        elif md.replicas != old.replicas:
            verb = "added" if md.replicas > old.replicas else "removed"
            out.append(f"deployment {md.name}: {abs(md.replicas - old.replicas)} machine(s) {verb}")
    out += [f"deployment {md.name}: {md.replicas} new machine(s)" for md in changes.deployments_added]
    out += [
        f"deployment {name}: all {old_mds[name].replicas} machine(s) removed"
        for name in changes.deployments_removed
    ]
    return out
