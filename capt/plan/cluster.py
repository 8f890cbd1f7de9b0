"""The whole plan for a cluster: network, security groups, load balancer, bastion, machines."""

from __future__ import annotations

from collections.abc import Sequence

from capt.contracts import names
from capt.plan.network import NetworkPlan, PlanError, network_plan
from capt.plan.security_groups import APISERVER_LB, BASTION, SecurityGroupPlan, security_group_plans
from capt.rules import placement
from capt.rules.base import Frozen
from capt.spec.models import ClusterSpec


class HealthCheckPlan(Frozen):
    protocol: str  # TCP, HTTP, HTTPS or SSL
    port: int
    path: str | None = None  # /readyz for HTTP(S)
    interval_seconds: int = 10
    timeout_seconds: int = 5
    healthy_threshold: int = 5
    unhealthy_threshold: int = 3

    @property
    def classic_target(self) -> str:
        """Classic ELB's `Target` string: TCP:6443 or HTTPS:6443/readyz."""
        return f"{self.protocol}:{self.port}{self.path or ''}"


class LoadBalancerPlan(Frozen):
    name: str
    type: str  # classic | nlb
    scheme: str  # internet-facing | internal
    port: int
    subnet_names: tuple[str, ...]
    security_group_role: str
    additional_security_groups: tuple[str, ...]
    cross_zone: bool
    health_check: HealthCheckPlan
    # NLB only.
    target_group_name: str | None = None


class BastionPlan(Frozen):
    name: str
    instance_type: str
    ami: str | None
    subnet_name: str
    security_group_role: str
    ssh_key_name: str | None
    allowed_cidrs: tuple[str, ...]


class MachinePlan(Frozen):
    owner: str  # control plane or MachineDeployment name
    role: str  # control-plane | worker
    index: int
    instance_type: str
    version: str
    # None while the zones are unknown (an existing VPC's subnets named by id, not yet described).
    failure_domain: str | None


class ClusterPlan(Frozen):
    cluster: str
    namespace: str
    # The cluster's identity in AWS: every name below and the ownership tags derive from it.
    cluster_id: str
    region: str
    network: NetworkPlan
    security_groups: tuple[SecurityGroupPlan, ...]
    load_balancer: LoadBalancerPlan
    bastion: BastionPlan | None
    machines: tuple[MachinePlan, ...]
    control_plane_endpoint: str | None


def load_balancer_plan(spec: ClusterSpec, network: NetworkPlan) -> LoadBalancerPlan:
    """The API server load balancer; its name derives from the network plan's cluster id."""
    lb = spec.load_balancer
    internal = lb.scheme == "internal"
    # One subnet per zone (ELB takes at most one per zone): public ones unless internal.
    chosen: dict[str, str] = {}
    for s in network.subnets:
        if s.is_public != internal:
            chosen.setdefault(s.availability_zone or s.name, s.name)
    resolved = network.managed or all(s.availability_zone for s in network.subnets)
    if not chosen and resolved:
        raise PlanError(
            f"no {'private' if internal else 'public'} subnets for the {lb.scheme} API server load balancer"
        )
    name = lb.name or names.load_balancer(network.cluster)
    # CAPA's defaults: a TCP check for a classic ELB, HTTPS /readyz for an NLB.
    protocol = lb.health_check_protocol or ("HTTPS" if lb.type == "nlb" else "TCP")
    path = "/readyz" if protocol in ("HTTP", "HTTPS") else None
    return LoadBalancerPlan(
        name=name,
        type=lb.type,
        scheme=lb.scheme,
        port=lb.port,
        subnet_names=tuple(chosen[k] for k in sorted(chosen)),
        security_group_role=APISERVER_LB,
        additional_security_groups=tuple(lb.additional_security_groups),
        cross_zone=lb.cross_zone,
        health_check=HealthCheckPlan(protocol=protocol, port=lb.port, path=path),
        target_group_name=names.target_group(name) if lb.type == "nlb" else None,
    )


def bastion_plan(spec: ClusterSpec, network: NetworkPlan) -> BastionPlan | None:
    if not spec.bastion.enabled:
        return None
    public = network.public_subnets
    if not public:
        raise PlanError("a bastion needs a public subnet")
    return BastionPlan(
        name=names.bastion(network.cluster),
        instance_type=spec.bastion.instance_type,
        ami=spec.bastion.ami,
        subnet_name=public[0].name,
        security_group_role=BASTION,
        ssh_key_name=spec.ssh_key_name,
        allowed_cidrs=tuple(spec.bastion.allowed_cidrs),
    )


def machine_plans(spec: ClusterSpec, network: NetworkPlan) -> tuple[MachinePlan, ...]:
    zones = network.failure_domains()
    cp = spec.control_plane
    if not zones:
        out = [
            MachinePlan(
                owner=cp.name,
                role="control-plane",
                index=i,
                instance_type=cp.machine_template.instance_type,
                version=cp.version,
                failure_domain=None,
            )
            for i in range(cp.replicas)
        ]
        for md in spec.machine_deployments:
            out += [
                MachinePlan(
                    owner=md.name,
                    role="worker",
                    index=i,
                    instance_type=md.machine_template.instance_type,
                    version=md.version,
                    failure_domain=md.failure_domain,
                )
                for i in range(md.replicas)
            ]
        return tuple(out)
    out = [
        MachinePlan(
            owner=cp.name,
            role="control-plane",
            index=i,
            instance_type=cp.machine_template.instance_type,
            version=cp.version,
            failure_domain=z,
        )
        for i, z in enumerate(placement.spread(cp.replicas, zones, (), ()))
    ]
    for md in spec.machine_deployments:
        out += [
            MachinePlan(
                owner=md.name,
                role="worker",
                index=i,
                instance_type=md.machine_template.instance_type,
                version=md.version,
                failure_domain=z,
            )
            for i, z in enumerate(
                [md.failure_domain] * md.replicas
                if md.failure_domain
                else placement.spread(md.replicas, zones, (), ())
            )
        ]
    return tuple(out)


def build_plan(spec: ClusterSpec, azs: Sequence[str], cluster_id: str | None = None) -> ClusterPlan:
    """The plan for `spec`; names derive from `cluster_id` (None: the name, a legacy cluster)."""
    return plan_for_network(spec, network_plan(spec, azs, cluster_id))


def plan_for_network(spec: ClusterSpec, network: NetworkPlan) -> ClusterPlan:
    """Everything that follows from a network plan (e.g. once an existing VPC is described).
    The cluster id is the network plan's."""
    return ClusterPlan(
        cluster=spec.name,
        namespace=spec.namespace,
        cluster_id=network.cluster,
        region=spec.region,
        network=network,
        security_groups=security_group_plans(spec, network.vpc.cidr_block, network.cluster),
        load_balancer=load_balancer_plan(spec, network),
        bastion=bastion_plan(spec, network),
        machines=machine_plans(spec, network),
        control_plane_endpoint=spec.control_plane_endpoint_host,
    )
