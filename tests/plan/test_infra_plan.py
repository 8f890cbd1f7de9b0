"""The pure network / security group / placement plan (plan/)."""

from __future__ import annotations

import json
import re

import pytest

from capt.contracts import names
from capt.dev.testkit.reference import AZS, NAME, existing_vpc_spec, reference_spec
from capt.plan.cluster import ClusterPlan, build_plan
from capt.plan.network import PlanError, SubnetPlan, network_plan, resolve_existing, select_zones, split_cidr
from capt.plan.regions import default_azs
from capt.plan.render import plan_azs, render_plan
from capt.plan.security_groups import (
    ANY_IPV4,
    Rule,
    diff_permissions,
    permission,
    resolve_permissions,
    security_group_plans,
)
from capt.spec.models import BastionSpec, IngressRule, LoadBalancerSpec, NetworkSpec, SubnetSpec

# --- CIDR arithmetic (CAPA's SplitIntoSubnetsIPv4) -------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "count", "expected"),
    [
        ("10.0.0.0/16", 1, ("10.0.0.0/16",)),
        ("10.0.0.0/16", 2, ("10.0.0.0/17", "10.0.128.0/17")),
        ("10.0.0.0/16", 3, ("10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18")),
        ("10.0.0.0/16", 4, ("10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18", "10.0.192.0/18")),
        ("10.0.0.0/16", 5, ("10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19", "10.0.96.0/19", "10.0.128.0/19")),
        ("10.0.0.0/18", 3, ("10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20")),
        ("192.168.0.0/24", 2, ("192.168.0.0/25", "192.168.0.128/25")),
        # A host address is taken as its network, as Go's net.ParseCIDR does.
        ("10.0.3.7/16", 2, ("10.0.0.0/17", "10.0.128.0/17")),
    ],
)
def test_split_cidr(cidr, count, expected):
    assert split_cidr(cidr, count) == expected


@pytest.mark.parametrize(
    ("cidr", "count"), [("10.0.0.0/31", 3), ("10.0.0.0/16", 0), ("10.0.0.0/33", 2), ("nonsense", 2)]
)
def test_split_cidr_errors(cidr, count):
    with pytest.raises(PlanError):
        split_cidr(cidr, count)


def test_reference_network_layout():
    plan = network_plan(reference_spec(), AZS)
    assert plan.vpc.name == f"{NAME}-vpc" and plan.vpc.cidr_block == "10.0.0.0/16" and plan.managed
    assert [(s.name, s.availability_zone, s.cidr_block, s.is_public) for s in plan.subnets] == [
        (f"{NAME}-subnet-public-ap-northeast-2a", "ap-northeast-2a", "10.0.0.0/20", True),
        (f"{NAME}-subnet-private-ap-northeast-2a", "ap-northeast-2a", "10.0.64.0/18", False),
        (f"{NAME}-subnet-public-ap-northeast-2b", "ap-northeast-2b", "10.0.16.0/20", True),
        (f"{NAME}-subnet-private-ap-northeast-2b", "ap-northeast-2b", "10.0.128.0/18", False),
        (f"{NAME}-subnet-public-ap-northeast-2c", "ap-northeast-2c", "10.0.32.0/20", True),
        (f"{NAME}-subnet-private-ap-northeast-2c", "ap-northeast-2c", "10.0.192.0/18", False),
    ]
    assert plan.internet_gateway_name == f"{NAME}-igw"
    assert [(n.name, n.subnet_name, n.eip_name) for n in plan.nat_gateways] == [
        (f"{NAME}-nat-{az}", f"{NAME}-subnet-public-{az}", f"{NAME}-eip-nat-{az}") for az in AZS
    ]
    routes = {r.name: (r.subnet_name, r.nat_gateway_name) for r in plan.route_tables}
    assert routes[f"{NAME}-rt-public-ap-northeast-2b"] == (f"{NAME}-subnet-public-ap-northeast-2b", None)
    assert routes[f"{NAME}-rt-private-ap-northeast-2b"] == (
        f"{NAME}-subnet-private-ap-northeast-2b",
        f"{NAME}-nat-ap-northeast-2b",
    )
    assert len(routes) == 6
    assert plan.failure_domains() == AZS


# --- zone selection --------------------------------------------------------------------------

FOUR = ("ap-northeast-2d", "ap-northeast-2a", "ap-northeast-2c", "ap-northeast-2b")


@pytest.mark.parametrize(
    ("azs", "limit", "expected"),
    [
        (FOUR, 3, ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")),
        (FOUR, 1, ("ap-northeast-2a",)),
        (FOUR, 9, ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c", "ap-northeast-2d")),
        (("us-west-1c", "us-west-1a"), 3, ("us-west-1a", "us-west-1c")),
    ],
)
def test_ordered_zone_selection(azs, limit, expected):
    assert select_zones(azs, limit, "Ordered", "any") == expected


def test_random_zone_selection_is_seeded_by_cluster_name():
    picks = {name: select_zones(FOUR, 2, "Random", name) for name in (f"c{i}" for i in range(12))}
    # Deterministic per name (same answer every call, and listed in zone order) ...
    assert all(select_zones(FOUR, 2, "Random", n) == p for n, p in picks.items())
    assert all(list(p) == sorted(p) and len(p) == 2 and set(p) <= set(FOUR) for p in picks.values())
    # ... but not the same zones for every cluster.
    assert len(set(picks.values())) > 1
    # With no more zones than the limit there is nothing to choose.
    assert select_zones(FOUR[:2], 3, "Random", "x") == ("ap-northeast-2a", "ap-northeast-2d")


def test_zone_usage_limit_changes_the_split():
    plan = network_plan(reference_spec(network=NetworkSpec(availability_zone_usage_limit=2)), FOUR)
    assert plan.availability_zones == ("ap-northeast-2a", "ap-northeast-2b")
    # Two zones: three blocks round up to four /18s; block 0 is split into two /19 public subnets.
    assert [s.cidr_block for s in plan.public_subnets] == ["10.0.0.0/19", "10.0.32.0/19"]
    assert [s.cidr_block for s in plan.private_subnets] == ["10.0.64.0/18", "10.0.128.0/18"]


# --- explicit subnets and existing VPCs ------------------------------------------------------


def test_explicit_subnets_are_honoured():
    subnets = (
        SubnetSpec(cidr_block="10.0.0.0/24", availability_zone="ap-northeast-2a", is_public=True),
        SubnetSpec(cidr_block="10.0.10.0/24", availability_zone="ap-northeast-2a"),
        SubnetSpec(cidr_block="10.0.11.0/24", availability_zone="ap-northeast-2a"),
    )
    plan = network_plan(reference_spec(network=NetworkSpec(subnets=subnets)), AZS)
    assert [(s.name, s.cidr_block) for s in plan.subnets] == [
        (f"{NAME}-subnet-public-ap-northeast-2a", "10.0.0.0/24"),
        (f"{NAME}-subnet-private-ap-northeast-2a", "10.0.10.0/24"),
        (f"{NAME}-subnet-private-ap-northeast-2a-2", "10.0.11.0/24"),
    ]
    assert plan.availability_zones == ("ap-northeast-2a",)
    assert len(plan.nat_gateways) == 1
    assert [r.name for r in plan.route_tables] == [
        f"{NAME}-rt-public-ap-northeast-2a",
        f"{NAME}-rt-private-ap-northeast-2a",
        f"{NAME}-rt-private-ap-northeast-2a-2",
    ]
    assert plan_azs(reference_spec(network=NetworkSpec(subnets=subnets))) == ("ap-northeast-2a",)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (NetworkSpec(vpc_cidr="10.0.0.0/40"), "invalid VPC CIDR"),
        (
            NetworkSpec(
                subnets=(
                    SubnetSpec(cidr_block="10.9.0.0/24", availability_zone="ap-northeast-2a", is_public=True),
                )
            ),
            "outside the VPC",
        ),
        (
            NetworkSpec(
                subnets=(
                    SubnetSpec(cidr_block="10.0.0.0/23", availability_zone="ap-northeast-2a", is_public=True),
                    SubnetSpec(cidr_block="10.0.1.0/24", availability_zone="ap-northeast-2b"),
                )
            ),
            "overlaps",
        ),
        (
            NetworkSpec(subnets=(SubnetSpec(cidr_block="10.0.0.0/24", availability_zone="ap-northeast-2a"),)),
            "public subnet",
        ),
        (
            NetworkSpec(
                subnets=(
                    SubnetSpec(cidr_block="10.0.0.0/24", availability_zone="ap-northeast-2a", is_public=True),
                    SubnetSpec(cidr_block="10.0.1.0/24", availability_zone="ap-northeast-2b"),
                )
            ),
            "need a public subnet in the same zone",
        ),
        (NetworkSpec(subnets=(SubnetSpec(id="subnet-1"),)), "names no existing VPC"),
        (NetworkSpec(subnets=(SubnetSpec(cidr_block="10.0.0.0/24", is_public=True),)), "availabilityZone"),
        (NetworkSpec(vpc_id="vpc-1"), "needs its subnets"),
        (
            NetworkSpec(
                vpc_id="vpc-1",
                subnets=(SubnetSpec(cidr_block="10.0.0.0/24", availability_zone="ap-northeast-2a"),),
            ),
            "needs an id",
        ),
    ],
)
def test_network_plan_errors(network, message):
    with pytest.raises(PlanError, match=message):
        network_plan(reference_spec(network=network), AZS)


def test_existing_vpc_plan_creates_no_network_and_resolves_from_describe():
    spec = existing_vpc_spec("vpc-0abc", ["subnet-pub", "subnet-priv"])
    plan = build_plan(spec, AZS)
    net = plan.network
    assert not net.managed and net.vpc.id == "vpc-0abc"
    assert net.internet_gateway_name is None and net.nat_gateways == () and net.route_tables == ()
    assert [s.id for s in net.subnets] == ["subnet-pub", "subnet-priv"]
    # Until described, zones are unknown; nothing is placed yet.
    assert {m.failure_domain for m in plan.machines} == {None}
    resolved = resolve_existing(
        net,
        "10.1.0.0/16",
        [
            SubnetPlan(
                name="subnet-priv",
                id="subnet-priv",
                availability_zone="ap-northeast-2b",
                cidr_block="10.1.1.0/24",
                is_public=False,
            ),
            SubnetPlan(
                name="subnet-pub",
                id="subnet-pub",
                availability_zone="ap-northeast-2a",
                cidr_block="10.1.0.0/24",
                is_public=True,
            ),
        ],
    )
    assert resolved.vpc.cidr_block == "10.1.0.0/16"
    assert [(s.id, s.is_public) for s in resolved.subnets] == [("subnet-pub", True), ("subnet-priv", False)]
    assert resolved.failure_domains() == ("ap-northeast-2b",)
    with pytest.raises(PlanError, match="not in VPC"):
        resolve_existing(net, "10.1.0.0/16", [])


# --- names ------------------------------------------------------------------------------------


def test_names():
    assert names.security_group("sg-cluster", "node") == "@sg-cluster-node"
    assert names.load_balancer(NAME) == "capi-quickstart-apiserver"
    long = "a-very-long-cluster-name-for.testing-purposes"
    lb = names.load_balancer(long)
    assert len(lb) <= 32 and lb.endswith("-apiserver") and lb == names.load_balancer(long)
    assert "." not in lb and lb != names.load_balancer(long + "x")
    assert (
        len(names.target_group(lb)) <= 32
        and names.target_group("capi-quickstart-apiserver") == "capi-quickstart-apiserver-tg"
    )


# --- cluster ids (namespace isolation) ----------------------------------------------------------


def test_cluster_id_is_namespace_dot_name_and_fits_63():
    assert names.cluster_id("team-a", "prod") == "team-a.prod"
    assert names.cluster_id("team-b", "prod") != names.cluster_id("team-a", "prod")
    # Both parts are DNS labels (no dot): the dot makes the pair unambiguous.
    assert names.cluster_id("a-b", "c") != names.cluster_id("a", "b-c")
    exact = names.cluster_id("n" * 31, "m" * 31)
    assert exact == f"{'n' * 31}.{'m' * 31}" and len(exact) == 63
    longest = names.cluster_id("n" * 63, "m" * 63)
    assert len(longest) == 63 and longest.startswith("n" * 52 + "-")
    assert longest == names.cluster_id("n" * 63, "m" * 63)  # stable
    assert longest != names.cluster_id("n" * 63, "m" * 62)
    assert names.cluster_id("n" * 62, "m" * 63) != names.cluster_id("n" * 63, "m" * 62)


LEGACY_GOLDEN = {
    "vpc": "capi-quickstart-vpc",
    "subnets": [
        "capi-quickstart-subnet-public-ap-northeast-2a",
        "capi-quickstart-subnet-private-ap-northeast-2a",
        "capi-quickstart-subnet-public-ap-northeast-2b",
        "capi-quickstart-subnet-private-ap-northeast-2b",
        "capi-quickstart-subnet-public-ap-northeast-2c",
        "capi-quickstart-subnet-private-ap-northeast-2c",
    ],
    "igw": "capi-quickstart-igw",
    "nat": ("capi-quickstart-nat-ap-northeast-2a", "capi-quickstart-eip-nat-ap-northeast-2a"),
    "rt": "capi-quickstart-rt-private-ap-northeast-2b",
    "groups": [
        "capi-quickstart-apiserver-lb",
        "capi-quickstart-lb",
        "capi-quickstart-controlplane",
        "capi-quickstart-node",
        "capi-quickstart-bastion",
    ],
    "lb": "capi-quickstart-apiserver",
    "tg": "capi-quickstart-apiserver-tg",
    "bastion": "capi-quickstart-bastion",
}
NAMESPACED_GOLDEN = {
    "vpc": "team-a.prod-vpc",
    "subnets": [
        "team-a.prod-subnet-public-ap-northeast-2a",
        "team-a.prod-subnet-private-ap-northeast-2a",
        "team-a.prod-subnet-public-ap-northeast-2b",
        "team-a.prod-subnet-private-ap-northeast-2b",
        "team-a.prod-subnet-public-ap-northeast-2c",
        "team-a.prod-subnet-private-ap-northeast-2c",
    ],
    "igw": "team-a.prod-igw",
    "nat": ("team-a.prod-nat-ap-northeast-2a", "team-a.prod-eip-nat-ap-northeast-2a"),
    "rt": "team-a.prod-rt-private-ap-northeast-2b",
    "groups": [
        "team-a.prod-apiserver-lb",
        "team-a.prod-lb",
        "team-a.prod-controlplane",
        "team-a.prod-node",
        "team-a.prod-bastion",
    ],
    # ELB names allow no dot: a prefix, a hash of the whole id, the suffix.
    "lb": "team-a-prod-4d480957-apiserver",
    "tg": "team-a-prod-4d480957-d4930825-tg",
    "bastion": "team-a.prod-bastion",
}


def _golden(plan: ClusterPlan, nlb: ClusterPlan) -> dict:
    n = plan.network
    return {
        "vpc": n.vpc.name,
        "subnets": [s.name for s in n.subnets],
        "igw": n.internet_gateway_name,
        "nat": (n.nat_gateways[0].name, n.nat_gateways[0].eip_name),
        "rt": n.route_tables[3].name,
        "groups": [g.name for g in plan.security_groups],
        "lb": plan.load_balancer.name,
        "tg": nlb.load_balancer.target_group_name,
        "bastion": plan.bastion.name if plan.bastion else None,
    }


@pytest.mark.parametrize(
    ("name", "cluster_id", "golden"),
    [
        # A cluster created before ids were namespaced (and every plan without an id): the name.
        ("capi-quickstart", None, LEGACY_GOLDEN),
        ("capi-quickstart", "capi-quickstart", LEGACY_GOLDEN),
        ("prod", "team-a.prod", NAMESPACED_GOLDEN),
    ],
)
def test_golden_names_from_the_cluster_id(name, cluster_id, golden):
    spec = reference_spec(name, bastion=BastionSpec(enabled=True))
    nlb = reference_spec(name, load_balancer=LoadBalancerSpec(type="nlb"))
    plan = build_plan(spec, AZS, cluster_id)
    assert _golden(plan, build_plan(nlb, AZS, cluster_id)) == golden
    assert plan.cluster == name and plan.cluster_id == (cluster_id or name)


def test_the_cluster_id_changes_names_but_not_zones():
    """The zone shuffle stays seeded by the name: a cluster plans the same zones whatever its id."""
    for name in (f"c{i}" for i in range(8)):
        spec = reference_spec(
            name, network=NetworkSpec(availability_zone_usage_limit=2, availability_zone_selection="Random")
        )
        legacy, namespaced = (
            network_plan(spec, FOUR),
            network_plan(spec, FOUR, names.cluster_id("team-a", name)),
        )
        assert legacy.availability_zones == namespaced.availability_zones
        assert [s.cidr_block for s in legacy.subnets] == [s.cidr_block for s in namespaced.subnets]
        assert namespaced.vpc.name == f"team-a.{name}-vpc" and namespaced.cluster == f"team-a.{name}"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("a-b", "c"), ("a", "b-c")),  # the same characters, the dot elsewhere
        (("team-a", "prod"), ("team", "a-prod")),
        (("x" * 40, "prod"), ("x" * 40, "prod2")),  # differ only past the kept prefix
        (("n" * 63, "m" * 63), ("n" * 63, "m" * 62)),  # hashed ids
    ],
)
def test_elb_and_target_group_names_fit_and_differ(a, b):
    ida, idb = names.cluster_id(*a), names.cluster_id(*b)
    lbs = [names.load_balancer(i) for i in (ida, idb)]
    tgs = [names.target_group(lb) for lb in lbs]
    for n in lbs + tgs:
        assert len(n) <= names.ELB_NAME_MAX and re.fullmatch(r"[A-Za-z0-9-]+", n), n
        assert not n.startswith("-") and not n.endswith("-"), n
    assert lbs[0] != lbs[1] and tgs[0] != tgs[1]
    # A legacy id (the bare name, no dot) never shares the namespaced one's names either.
    assert names.load_balancer("a-b-c") not in lbs


# --- security groups -----------------------------------------------------------------------------


def _rules(plans, role):
    g = next(p for p in plans if p.role == role)
    return {
        (r.protocol, r.from_port, r.to_port, r.cidr_blocks, r.source_roles, r.from_nat_gateways)
        for r in g.rules
    }


def test_reference_security_groups():
    plans = security_group_plans(reference_spec(), "10.0.0.0/16")
    assert [p.name for p in plans] == [
        f"{NAME}-{r}" for r in ("apiserver-lb", "lb", "controlplane", "node", "bastion")
    ]
    cni = {
        ("tcp", 179, 179, (), ("controlplane", "node"), False),
        ("4", -1, 65535, (), ("controlplane", "node"), False),
    }
    assert _rules(plans, "controlplane") == cni | {
        ("tcp", 6443, 6443, (), ("apiserver-lb", "controlplane", "node"), False),
        ("tcp", 2379, 2379, (), ("controlplane",), False),
        ("tcp", 2380, 2380, (), ("controlplane",), False),
    }
    assert _rules(plans, "node") == cni | {
        ("tcp", 30000, 32767, (ANY_IPV4,), (), False),
        ("tcp", 10250, 10250, (), ("controlplane", "node"), False),
    }
    assert _rules(plans, "apiserver-lb") == {
        ("tcp", 6443, 6443, (), (), True),
        ("tcp", 6443, 6443, (ANY_IPV4,), (), False),
    }
    assert _rules(plans, "lb") == set()
    assert _rules(plans, "bastion") == {("tcp", 22, 22, (ANY_IPV4,), (), False)}


def test_security_group_variants():
    spec = reference_spec(
        load_balancer=LoadBalancerSpec(type="nlb", scheme="internal", ingress_cidrs=("198.51.100.0/24",)),
        bastion=BastionSpec(enabled=True, allowed_cidrs=("203.0.113.7/32",)),
        network=NetworkSpec(
            cni_ingress_rules=(
                IngressRule(description="cilium health", protocol="tcp", from_port=4240, to_port=4240),
            )
        ),
    )
    plans = security_group_plans(spec, "10.0.0.0/16")
    # Internal load balancer: kubelets come from inside the VPC; plus the configured CIDRs.
    assert _rules(plans, "apiserver-lb") == {
        ("tcp", 6443, 6443, ("10.0.0.0/16",), (), False),
        ("tcp", 6443, 6443, ("198.51.100.0/24",), (), False),
    }
    # NLB: the lb group admits the API port from the VPC.
    assert _rules(plans, "lb") == {("tcp", 6443, 6443, ("10.0.0.0/16",), (), False)}
    assert ("tcp", 22, 22, (), ("bastion",), False) in _rules(plans, "controlplane")
    assert ("tcp", 22, 22, (), ("bastion",), False) in _rules(plans, "node")
    assert _rules(plans, "bastion") == {("tcp", 22, 22, ("203.0.113.7/32",), (), False)}
    # The manifest's CNI rules replace Calico's.
    assert ("tcp", 4240, 4240, (), ("controlplane", "node"), False) in _rules(plans, "node")
    assert not any(p[0] == "4" for p in _rules(plans, "node"))


def test_resolve_and_diff_permissions():
    ids = {"controlplane": "sg-cp", "node": "sg-node", "apiserver-lb": "sg-alb"}
    rules = [
        Rule(
            description="a",
            protocol="tcp",
            from_port=6443,
            to_port=6443,
            source_roles=("controlplane", "node"),
        ),
        Rule(description="b", protocol="4", from_port=-1, to_port=65535, source_roles=("node",)),
        Rule(description="k", protocol="tcp", from_port=6443, to_port=6443, from_nat_gateways=True),
        # A duplicate of the first rule's controlplane source collapses into one permission.
        Rule(description="dup", protocol="tcp", from_port=6443, to_port=6443, source_roles=("controlplane",)),
    ]
    perms = resolve_permissions(rules, ids, ["3.3.3.3", "4.4.4.4"])
    assert {p.key for p in perms} == {
        ("tcp", 6443, 6443, None, "sg-cp"),
        ("tcp", 6443, 6443, None, "sg-node"),
        ("4", None, None, None, "sg-node"),
        ("tcp", 6443, 6443, "3.3.3.3/32", None),
        ("tcp", 6443, 6443, "4.4.4.4/32", None),
    }
    # No NAT gateway IPs to admit: CAPA falls back to anywhere.
    assert ("tcp", 6443, 6443, ANY_IPV4, None) in {p.key for p in resolve_permissions(rules[2:3], ids, [])}
    # EC2's view: ports reported on IP-in-IP and "6" for tcp compare equal; descriptions do not matter.
    have = [
        permission("", "6", 6443, 6443, group_id="sg-cp"),
        permission("x", "4", 0, 0, group_id="sg-node"),
        permission("", "tcp", 22, 22, cidr="0.0.0.0/0"),
    ]
    add, drop = diff_permissions(perms, have)
    assert {p.key for p in add} == {
        ("tcp", 6443, 6443, None, "sg-node"),
        ("tcp", 6443, 6443, "3.3.3.3/32", None),
        ("tcp", 6443, 6443, "4.4.4.4/32", None),
    }
    assert [p.key for p in drop] == [("tcp", 22, 22, "0.0.0.0/0", None)]


# --- the whole plan and its rendering --------------------------------------------------------------


def test_reference_plan_machines_and_load_balancer():
    plan = build_plan(reference_spec(md_failure_domain="ap-northeast-2b"), AZS)
    assert [(m.role, m.failure_domain) for m in plan.machines] == [
        ("control-plane", "ap-northeast-2a"),
        ("control-plane", "ap-northeast-2b"),
        ("control-plane", "ap-northeast-2c"),
        ("worker", "ap-northeast-2b"),
        ("worker", "ap-northeast-2b"),
        ("worker", "ap-northeast-2b"),
    ]
    lb = plan.load_balancer
    assert (lb.name, lb.type, lb.health_check.classic_target, lb.cross_zone) == (
        f"{NAME}-apiserver",
        "classic",
        "TCP:6443",
        True,
    )
    assert lb.subnet_names == tuple(f"{NAME}-subnet-public-{az}" for az in AZS)
    assert plan.bastion is None
    nlb = build_plan(
        reference_spec(load_balancer=LoadBalancerSpec(type="nlb", scheme="internal")), AZS
    ).load_balancer
    assert (nlb.health_check.protocol, nlb.health_check.path, nlb.target_group_name) == (
        "HTTPS",
        "/readyz",
        f"{NAME}-apiserver-tg",
    )
    assert nlb.subnet_names == tuple(f"{NAME}-subnet-private-{az}" for az in AZS)


def test_render_names_a_new_cluster_after_its_namespaced_id():
    text = render_plan(reference_spec(), AZS)
    assert "Cluster id: default.capi-quickstart" in text
    assert "VPC default.capi-quickstart-vpc  10.0.0.0/16" in text
    lb = names.load_balancer("default.capi-quickstart")
    assert f"  {lb}  classic ELB" in text and lb.endswith("-apiserver") and "." not in lb
    data = json.loads(render_plan(reference_spec(), AZS, fmt="json"))
    assert (data["cluster"], data["namespace"], data["cluster_id"]) == (
        "capi-quickstart",
        "default",
        "default.capi-quickstart",
    )


def test_render_text_lists_everything():
    # Named as a cluster created before ids were namespaced (its id is its name).
    text = render_plan(reference_spec(bastion=BastionSpec(enabled=True)), AZS, cluster_id=NAME)
    for expected in (
        "VPC capi-quickstart-vpc  10.0.0.0/16",
        "10.0.0.0/20",
        "10.0.16.0/20",
        "10.0.32.0/20",
        "10.0.64.0/18",
        "10.0.128.0/18",
        "10.0.192.0/18",
        "Internet gateway: capi-quickstart-igw",
        "capi-quickstart-nat-ap-northeast-2c  in capi-quickstart-subnet-public-ap-northeast-2c",
        "capi-quickstart-rt-private-ap-northeast-2a  0.0.0.0/0 -> capi-quickstart-nat-ap-northeast-2a",
        "capi-quickstart-controlplane",
        "2379",
        "30000-32767",
        "from sg:bastion",
        "NAT gateway IPs",
        "capi-quickstart-apiserver  classic ELB, internet-facing, TCP 6443 -> 6443, cross-zone on",
        "health check TCP:6443",
        "capi-quickstart-bastion  t3.micro  in capi-quickstart-subnet-public-ap-northeast-2a",
        "capi-quickstart-control-plane #2  control-plane t3.large   v1.20.5    ap-northeast-2c",
        "capi-quickstart-md-0 #1  worker",
    ):
        assert expected in text, expected


def test_render_json_round_trips_and_defaults_to_region_zones():
    data = json.loads(render_plan(reference_spec(), fmt="json"))
    plan = ClusterPlan.model_validate(data)
    # No zones given: the region's usual ones (ap-northeast-2 has four), limited to three.
    assert plan.network.availability_zones == AZS
    assert default_azs("ap-northeast-2") == (*AZS, "ap-northeast-2d")
    assert default_azs("xx-nowhere-1") == ("xx-nowhere-1a", "xx-nowhere-1b", "xx-nowhere-1c")
    with pytest.raises(ValueError):
        render_plan(reference_spec(), AZS, fmt="yaml")


def test_render_existing_vpc_without_aws():
    text = render_plan(existing_vpc_spec("vpc-0abc", ["subnet-1", "subnet-2"]))
    assert "VPC vpc-0abc  (existing: used, never modified or deleted)" in text
    assert "Internet gateway" not in text and "NAT gateways" not in text
    assert "(a zone of the existing subnets)" in text
