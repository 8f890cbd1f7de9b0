"""A one-screen, human summary of a ClusterSpec (what `capt validate` prints)."""

from __future__ import annotations

from capt.contracts.names import cluster_id
from capt.spec.models import ClusterSpec, MachineTemplate


def _machine(t: MachineTemplate, version: str) -> str:
    ami = t.ami.id or f"newest {t.ami.name_pattern(version)} of {t.ami.lookup_org}"
    profile = t.iam_instance_profile or "none"
    return f"{t.instance_type}, AMI {ami}, instance profile {profile}"


def summarize(spec: ClusterSpec, warnings: list[str] | None = None) -> str:
    n = spec.network
    cp = spec.control_plane
    lines = [
        f"Cluster {spec.key}  region {spec.region}" + ("  (paused)" if spec.paused else ""),
        f"  id          {cluster_id(spec.namespace, spec.name)}  (${{CAPT_CLUSTER_ID}}: AWS names and tags of a cluster created now)",
        "",
        "Network",
        f"  VPC         {n.vpc_id + ' (existing, never modified)' if n.vpc_id else n.vpc_cidr}",
        f"  AZs         up to {n.availability_zone_usage_limit}, {n.availability_zone_selection}"
        + (f"; {len(n.subnets)} subnet(s) given" if n.subnets else ""),
        f"  pods        {', '.join(n.pod_cidrs)}",
        f"  services    {', '.join(n.service_cidrs)}  ({n.service_domain})",
        "  CNI rules   "
        + "; ".join(
            f"{r.description or r.protocol} {r.protocol}/{r.from_port}-{r.to_port}"
            for r in n.cni_ingress_rules
        ),
        f"  API LB      {spec.load_balancer.type} {spec.load_balancer.scheme} :{spec.control_plane_endpoint_port}"
        + (f", endpoint {spec.control_plane_endpoint_host}" if spec.control_plane_endpoint_host else ""),
        f"  bastion     {'enabled, from ' + ', '.join(spec.bastion.allowed_cidrs) if spec.bastion.enabled else 'disabled'}",
        "",
        "Control plane",
        f"  {cp.name}: {cp.replicas} x {_machine(cp.machine_template, cp.version)}",
        f"  Kubernetes {cp.version}, rollout maxSurge {cp.max_surge}",
    ]
    lines += ["", "Machine deployments"] if spec.machine_deployments else ["", "Machine deployments: none"]
    for md in spec.machine_deployments:
        strategy = (
            f"RollingUpdate maxSurge {md.rolling_update.max_surge} maxUnavailable {md.rolling_update.max_unavailable}"
            if md.strategy == "RollingUpdate"
            else "OnDelete"
        )
        where = f", AZ {md.failure_domain}" if md.failure_domain else ", spread over AZs"
        lines += [
            f"  {md.name}: {md.replicas} x {_machine(md.machine_template, md.version)}",
            f"    Kubernetes {md.version}, {strategy}, delete {md.delete_policy}{where}",
        ]
    lines += ["", "Health checks"] if spec.health_checks else ["", "Health checks: none"]
    for hc in spec.health_checks:
        targets = (["control plane"] if hc.control_plane else []) + list(hc.machine_deployments)
        conditions = (
            ", ".join(f"{c.type}={c.status} {c.timeout_seconds}s" for c in hc.unhealthy_conditions) or "none"
        )
        limit = f"range {hc.unhealthy_range}" if hc.unhealthy_range else f"maxUnhealthy {hc.max_unhealthy}"
        lines += [
            f"  {hc.name}: covers {', '.join(targets) or 'nothing'}",
            f"    conditions {conditions}; node startup {hc.node_startup_timeout_seconds}s; {limit}",
        ]
    if spec.addons:
        lines += ["", "Addons"]
        lines += [
            f"  {a.name} ({a.strategy}): " + ", ".join(f"{r.kind}/{r.name}" for r in a.resources)
            for a in spec.addons
        ]
    if warnings:
        lines += ["", "Warnings"] + [f"  {w}" for w in warnings]
    return "\n".join(lines)
