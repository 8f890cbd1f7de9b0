"""`capt plan`: the cluster plan as text or JSON, without calling AWS."""

from __future__ import annotations

import json
from collections.abc import Sequence

from capt.contracts import names
from capt.plan.cluster import ClusterPlan, build_plan
from capt.plan.regions import default_azs
from capt.plan.security_groups import Rule
from capt.spec.models import ClusterSpec

__all__ = ["default_azs", "plan_azs", "render_plan"]


def plan_azs(spec: ClusterSpec, azs: Sequence[str] | None = None) -> tuple[str, ...]:
    """Zones to plan with: given ones, else the manifest's subnets' zones, else the region's usual ones."""
    if azs:
        return tuple(azs)
    named = sorted({s.availability_zone for s in spec.network.subnets if s.availability_zone})
    return tuple(named) or default_azs(spec.region)


def _source(rule: Rule) -> str:
    parts = list(rule.cidr_blocks) + [f"sg:{r}" for r in rule.source_roles]
    if rule.from_nat_gateways:
        parts.append("NAT gateway IPs (/32 each)")
    return ", ".join(parts) or "-"


def _ports(rule: Rule) -> str:
    if rule.protocol.lower() not in ("tcp", "udp", "icmp", "6", "17", "1", "58"):
        return "all"
    return str(rule.from_port) if rule.from_port == rule.to_port else f"{rule.from_port}-{rule.to_port}"


def _text(p: ClusterPlan) -> str:
    n = p.network
    out = [
        f"Cluster {p.namespace}/{p.cluster} in {p.region}",
        f"Cluster id: {p.cluster_id}  (${{CAPT_CLUSTER_ID}}; every name and ownership tag below derives from it)",
        "",
    ]
    if n.managed:
        out.append(f"VPC {n.vpc.name}  {n.vpc.cidr_block}  (created and deleted by capt)")
    else:
        out.append(f"VPC {n.vpc.id}  (existing: used, never modified or deleted)")
    out.append(f"Availability zones: {', '.join(n.availability_zones) or '(from the existing subnets)'}")
    out += ["", "Subnets:"]
    for s in n.subnets:
        kind = "public " if s.is_public else "private"
        ident = f"  [{s.id}]" if s.id else ""
        out.append(f"  {kind}  {s.availability_zone or '?':<18} {s.cidr_block or '?':<18} {s.name}{ident}")
    if n.internet_gateway_name:
        out += ["", f"Internet gateway: {n.internet_gateway_name} (attached to the VPC)"]
    if n.nat_gateways:
        out += ["", "NAT gateways:"]
        out += [
            f"  {g.availability_zone:<18} {g.name}  in {g.subnet_name}  with EIP {g.eip_name}"
            for g in n.nat_gateways
        ]
    if n.route_tables:
        out += ["", "Route tables:"]
        for r in n.route_tables:
            target = r.nat_gateway_name if r.nat_gateway_name else n.internet_gateway_name
            out.append(f"  {r.name}  0.0.0.0/0 -> {target}  (associated with {r.subnet_name})")
    out += ["", "Security groups:"]
    for g in p.security_groups:
        out.append(f"  {g.name}")
        if not g.rules:
            out.append("    (no ingress rules)")
        for r in g.rules:
            out.append(f"    {r.protocol:<4} {_ports(r):<12} from {_source(r):<40} {r.description}")
    lb = p.load_balancer
    out += ["", "API server load balancer:"]
    kind = "classic ELB" if lb.type == "classic" else "network load balancer"
    out.append(
        f"  {lb.name}  {kind}, {lb.scheme}, TCP {lb.port} -> {lb.port}, cross-zone {'on' if lb.cross_zone else 'off'}"
    )
    hc = lb.health_check
    out.append(f"  health check {hc.protocol}:{hc.port}{hc.path or ''}  every {hc.interval_seconds}s")
    if lb.target_group_name:
        out.append(f"  target group {lb.target_group_name}")
    out.append(f"  subnets: {', '.join(lb.subnet_names) or '(the existing public subnets)'}")
    out.append(f"  endpoint: {p.control_plane_endpoint or 'the load balancer DNS name'}")
    out += ["", "Bastion:"]
    if p.bastion:
        b = p.bastion
        out.append(
            f"  {b.name}  {b.instance_type}  in {b.subnet_name}  SSH from {', '.join(b.allowed_cidrs)}"
        )
    else:
        out.append("  (disabled)")
    out += ["", "Machines:"]
    for m in p.machines:
        out.append(
            f"  {m.owner} #{m.index}  {m.role:<13} {m.instance_type:<10} {m.version:<10} {m.failure_domain or '(a zone of the existing subnets)'}"
        )
    return "\n".join(out) + "\n"


def render_plan(
    spec: ClusterSpec, azs: Sequence[str] | None = None, fmt: str = "text", cluster_id: str | None = None
) -> str:
    """The plan for `spec` (zones: `azs`, else the manifest's, else the region's usual ones), named
    after `cluster_id`: by default the id a cluster created now gets, `<namespace>.<name>`."""
    cid = cluster_id or names.cluster_id(spec.namespace, spec.name)
    plan = build_plan(spec, plan_azs(spec, azs), cid)
    if fmt == "json":
        return json.dumps(plan.model_dump(mode="json"), indent=2) + "\n"
    if fmt == "text":
        return _text(plan)
    raise ValueError(f"unknown plan format {fmt!r} (text or json)")
