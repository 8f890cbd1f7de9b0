"""The network plan: CAPA's VPC/subnet/gateway/route-table layout as a pure function.

CAPA (`getDefaultSubnets` + `cidr.SplitIntoSubnetsIPv4`) splits the VPC CIDR into
`zones + 1` blocks rounded up to a power of two; every zone gets a private subnet from blocks
1..n and block 0 is split again into the zones' public subnets. 10.0.0.0/16 over three zones
gives four /18s: 10.0.0.0/18 becomes the public /20s, the other three are the private subnets.

Zone choice follows CAPA's `availabilityZoneUsageLimit` / `availabilityZoneSelection`:
"Ordered" takes the first zones by name; "Random" shuffles, but with a generator seeded by the
cluster name so the same cluster always gets the same zones (a workflow replay, `capt plan` and
the apply agree). The chosen zones are then listed in name order.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections.abc import Sequence

from capt.contracts import names
from capt.rules.base import Frozen
from capt.spec.models import ClusterSpec


class PlanError(ValueError):
    """The spec cannot be turned into a network (a bad CIDR, a subnet outside the VPC, ...)."""


class VpcPlan(Frozen):
    name: str
    # Unknown for an existing VPC until it is described.
    cidr_block: str | None
    # Set when the manifest names an existing VPC: capt uses it and never modifies or deletes it.
    id: str | None = None

    @property
    def managed(self) -> bool:
        return self.id is None


class SubnetPlan(Frozen):
    name: str
    # None only for an existing subnet the manifest names by id alone (filled in by describe).
    availability_zone: str | None
    cidr_block: str | None
    is_public: bool
    # An existing subnet (in an existing VPC): used, never created, tagged or deleted.
    id: str | None = None


class NatGatewayPlan(Frozen):
    name: str
    availability_zone: str
    subnet_name: str
    eip_name: str


class RouteTablePlan(Frozen):
    name: str
    availability_zone: str
    subnet_name: str
    is_public: bool
    # Private tables route 0.0.0.0/0 to their zone's NAT gateway; public ones to the IGW.
    nat_gateway_name: str | None = None


class NetworkPlan(Frozen):
    cluster: str  # the cluster id the names derive from
    vpc: VpcPlan
    availability_zones: tuple[str, ...]
    subnets: tuple[SubnetPlan, ...]
    internet_gateway_name: str | None
    nat_gateways: tuple[NatGatewayPlan, ...] = ()
    route_tables: tuple[RouteTablePlan, ...] = ()

    @property
    def managed(self) -> bool:
        return self.vpc.managed

    @property
    def public_subnets(self) -> tuple[SubnetPlan, ...]:
        return tuple(s for s in self.subnets if s.is_public)

    @property
    def private_subnets(self) -> tuple[SubnetPlan, ...]:
        return tuple(s for s in self.subnets if not s.is_public)

    def subnet(self, name: str) -> SubnetPlan:
        for s in self.subnets:
            if s.name == name:
                return s
        raise KeyError(name)

    def nat_gateway(self, name: str) -> NatGatewayPlan:
        for n in self.nat_gateways:
            if n.name == name:
                return n
        raise KeyError(name)

    def failure_domains(self) -> tuple[str, ...]:
        """Zones machines may be placed in: those with a private subnet (else any subnet)."""
        zones = {s.availability_zone for s in self.private_subnets if s.availability_zone}
        if not zones:
            zones = {s.availability_zone for s in self.subnets if s.availability_zone}
        return tuple(sorted(zones))


def split_cidr(cidr: str, count: int) -> tuple[str, ...]:
    """CAPA's SplitIntoSubnetsIPv4: the first `count` of 2**ceil(log2(count)) equal blocks."""
    if count < 1:
        raise PlanError(f"cannot split {cidr} into {count} subnets")
    try:
        parent = ipaddress.IPv4Network(cidr, strict=False)
    except ValueError as exc:
        raise PlanError(f"invalid CIDR {cidr!r}: {exc}") from exc
    bits = math.ceil(math.log2(count))
    new_prefix = parent.prefixlen + bits
    if new_prefix > 32:
        raise PlanError(f"cidr {cidr} cannot accommodate {count} subnets")
    blocks = parent.subnets(new_prefix=new_prefix)
    return tuple(str(next(blocks)) for _ in range(count))


def select_zones(azs: Sequence[str], limit: int, scheme: str, seed: str) -> tuple[str, ...]:
    """At most `limit` zones, chosen as CAPA does ("Ordered" or "Random"), listed by name."""
    zones = sorted(set(azs))
    if limit < 1:
        raise PlanError(f"availability zone usage limit must be at least 1, got {limit}")
    if len(zones) > limit:
        if scheme == "Random":
            # Seeded by the cluster name: stable across runs, processes and workflow replays.
            random.Random(f"capt-az/{seed}").shuffle(zones)
        zones = zones[:limit]
    return tuple(sorted(zones))


def _default_subnets(cluster: str, vpc_cidr: str, zones: Sequence[str]) -> list[SubnetPlan]:
    blocks = split_cidr(vpc_cidr, len(zones) + 1)
    public = split_cidr(blocks[0], len(zones))
    private = blocks[1:]
    subnets: list[SubnetPlan] = []
    for i, az in enumerate(zones):
        subnets.append(
            SubnetPlan(
                name=names.subnet(cluster, True, az),
                availability_zone=az,
                cidr_block=public[i],
                is_public=True,
            )
        )
        subnets.append(
            SubnetPlan(
                name=names.subnet(cluster, False, az),
                availability_zone=az,
                cidr_block=private[i],
                is_public=False,
            )
        )
    return subnets


def _explicit_subnets(spec: ClusterSpec, vpc: ipaddress.IPv4Network, cluster: str) -> list[SubnetPlan]:
    """Subnets the manifest lists for a VPC capt creates: each needs a CIDR and a zone."""
    seen: dict[tuple[bool, str], int] = {}
    nets: list[tuple[str, ipaddress.IPv4Network]] = []
    subnets: list[SubnetPlan] = []
    for s in spec.network.subnets:
        if s.id:
            raise PlanError(
                f"subnet {s.id} names an existing subnet, but the manifest names no existing VPC (network.vpc.id)"
            )
        if not s.cidr_block or not s.availability_zone:
            raise PlanError("a subnet capt creates needs both cidrBlock and availabilityZone")
        try:
            net = ipaddress.IPv4Network(s.cidr_block)
        except ValueError as exc:
            raise PlanError(f"invalid subnet CIDR {s.cidr_block!r}: {exc}") from exc
        if not net.subnet_of(vpc):
            raise PlanError(f"subnet {s.cidr_block} is outside the VPC CIDR {vpc}")
        for other_name, other in nets:
            if net.overlaps(other):
                raise PlanError(f"subnet {s.cidr_block} overlaps {other_name}")
        nets.append((s.cidr_block, net))
        key = (s.is_public, s.availability_zone)
        seen[key] = seen.get(key, 0) + 1
        name = names.subnet(cluster, s.is_public, s.availability_zone)
        if seen[key] > 1:
            name = f"{name}-{seen[key]}"
        subnets.append(
            SubnetPlan(
                name=name,
                availability_zone=s.availability_zone,
                cidr_block=s.cidr_block,
                is_public=s.is_public,
            )
        )
    return subnets


def _gateways_and_routes(
    cluster: str, subnets: Sequence[SubnetPlan]
) -> tuple[tuple[NatGatewayPlan, ...], tuple[RouteTablePlan, ...]]:
    """A NAT gateway per zone that has private subnets (in that zone's first public subnet), and a
    route table per subnet: public -> internet gateway, private -> its zone's NAT gateway."""
    public_by_az: dict[str, SubnetPlan] = {}
    for s in subnets:
        if s.is_public and s.availability_zone not in public_by_az:
            public_by_az[s.availability_zone or ""] = s
    private_azs = sorted({s.availability_zone or "" for s in subnets if not s.is_public})
    nats: dict[str, NatGatewayPlan] = {}
    for az in private_azs:
        if az not in public_by_az:
            raise PlanError(
                f"private subnets in {az} need a public subnet in the same zone for their NAT gateway"
            )
        nats[az] = NatGatewayPlan(
            name=names.nat_gateway(cluster, az),
            availability_zone=az,
            subnet_name=public_by_az[az].name,
            eip_name=names.nat_eip(cluster, az),
        )
    routes = []
    for s in subnets:
        az = s.availability_zone or ""
        # The route table shares the subnet's suffix so duplicates (explicit subnets) stay unique.
        suffix = s.name[len(names.subnet(cluster, s.is_public, az)) :]
        routes.append(
            RouteTablePlan(
                name=names.route_table(cluster, s.is_public, az) + suffix,
                availability_zone=az,
                subnet_name=s.name,
                is_public=s.is_public,
                nat_gateway_name=None if s.is_public else nats[az].name,
            )
        )
    return tuple(nats[az] for az in sorted(nats)), tuple(routes)


def network_plan(spec: ClusterSpec, azs: Sequence[str], cluster_id: str | None = None) -> NetworkPlan:
    """The network capt builds (or, for an existing VPC, uses) for `spec` given the region's zones.

    Names derive from `cluster_id` (contracts.names.cluster_id), or from the cluster's name for a
    cluster created before ids were namespaced (None). The zone choice stays seeded by the name,
    so both kinds of cluster get the zones they always got."""
    net = spec.network
    cluster = cluster_id or spec.name
    if net.vpc_id:
        if not net.subnets:
            raise PlanError(
                "an existing VPC needs its subnets listed in the manifest (network.subnets with ids)"
            )
        subnets = []
        for s in net.subnets:
            if not s.id:
                raise PlanError(
                    "capt never creates subnets in an existing VPC: every subnet there needs an id"
                )
            subnets.append(
                SubnetPlan(
                    name=s.id,
                    availability_zone=s.availability_zone,
                    cidr_block=s.cidr_block,
                    is_public=s.is_public,
                    id=s.id,
                )
            )
        zones = tuple(sorted({s.availability_zone for s in subnets if s.availability_zone}))
        return NetworkPlan(
            cluster=cluster,
            vpc=VpcPlan(name=net.vpc_id, cidr_block=None, id=net.vpc_id),
            availability_zones=zones,
            subnets=tuple(subnets),
            internet_gateway_name=None,
        )

    try:
        vpc = ipaddress.IPv4Network(net.vpc_cidr)
    except ValueError as exc:
        raise PlanError(f"invalid VPC CIDR {net.vpc_cidr!r}: {exc}") from exc
    if net.subnets:
        subnet_list = _explicit_subnets(spec, vpc, cluster)
    else:
        if not azs:
            raise PlanError(f"no availability zones known for region {spec.region}")
        zones = select_zones(
            azs, net.availability_zone_usage_limit, net.availability_zone_selection, spec.name
        )
        subnet_list = _default_subnets(cluster, net.vpc_cidr, zones)
    if not any(s.is_public for s in subnet_list):
        raise PlanError("a VPC capt creates needs at least one public subnet")
    nats, routes = _gateways_and_routes(cluster, subnet_list)
    return NetworkPlan(
        cluster=cluster,
        vpc=VpcPlan(name=names.vpc(cluster), cidr_block=str(vpc)),
        availability_zones=tuple(sorted({s.availability_zone for s in subnet_list if s.availability_zone})),
        subnets=tuple(subnet_list),
        internet_gateway_name=names.internet_gateway(cluster),
        nat_gateways=nats,
        route_tables=routes,
    )


def resolve_existing(plan: NetworkPlan, vpc_cidr: str, subnets: Sequence[SubnetPlan]) -> NetworkPlan:
    """An existing-VPC plan with what DescribeVpcs/DescribeSubnets said about the VPC and subnets."""
    if plan.managed:
        raise PlanError("resolve_existing is only for an existing VPC")
    by_id = {s.id: s for s in subnets}
    missing = [s.id for s in plan.subnets if s.id not in by_id]
    if missing:
        raise PlanError(f"subnets {missing} are not in VPC {plan.vpc.id}")
    resolved = tuple(by_id[s.id] for s in plan.subnets)
    return plan.model_copy(
        update={
            "vpc": plan.vpc.model_copy(update={"cidr_block": vpc_cidr}),
            "subnets": resolved,
            "availability_zones": tuple(
                sorted({s.availability_zone for s in resolved if s.availability_zone})
            ),
        }
    )
