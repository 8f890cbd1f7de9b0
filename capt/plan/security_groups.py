"""The five security groups CAPA gives a cluster, with their ingress rules, as pure data.

Roles and rules follow CAPA's `getSecurityGroupIngressRules` (pkg/cloud/services/securitygroup):

- apiserver-lb: the API port from the NAT gateways' public IPs (kubelets reaching an
  internet-facing load balancer from private subnets) -- or from the VPC CIDR for an internal
  one -- plus the configured ingress CIDRs (default 0.0.0.0/0);
- lb: handed to the in-cluster cloud provider; for an NLB it also admits the API port from the
  VPC CIDR (the NLB forwards, and health-checks, from inside the VPC);
- controlplane: 6443 from apiserver-lb, controlplane and node; 2379 and 2380 from controlplane;
  22 from bastion when a bastion is enabled; the CNI rules from controlplane and node;
- node: 30000-32767 from anywhere, 10250 from controlplane and node; 22 from bastion when a
  bastion is enabled; the CNI rules from controlplane and node;
- bastion: 22 from the bastion's allowed CIDRs.

Rules name their sources by role (or as "the NAT gateways' IPs"), so the plan can be printed
before anything exists; `resolve_permissions` turns them into concrete permissions once the
group ids and NAT IPs are known. Comparison with what EC2 reports works on `Permission`s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from capt.contracts import names
from capt.rules.base import Frozen
from capt.spec.models import ClusterSpec

APISERVER_LB = "apiserver-lb"
LB = "lb"
CONTROL_PLANE = "controlplane"
NODE = "node"
BASTION = "bastion"
ROLES: tuple[str, ...] = (APISERVER_LB, LB, CONTROL_PLANE, NODE, BASTION)

ANY_IPV4 = "0.0.0.0/0"
# Protocols whose rules carry a port range; for the rest (-1 = all, 4 = IP-in-IP, 50 = ESP, ...)
# EC2 ignores ports, and reports none.
PORTED_PROTOCOLS = frozenset({"tcp", "udp", "icmp", "58"})
_PROTOCOL_ALIASES = {"6": "tcp", "17": "udp", "1": "icmp", "all": "-1", "icmpv6": "58"}


class Rule(Frozen):
    description: str
    protocol: str
    from_port: int
    to_port: int
    cidr_blocks: tuple[str, ...] = ()
    source_roles: tuple[str, ...] = ()
    # The NAT gateways' public IPs, each as a /32 (known only once the EIPs exist).
    from_nat_gateways: bool = False


class SecurityGroupPlan(Frozen):
    role: str
    name: str
    description: str
    rules: tuple[Rule, ...]


class Permission(Frozen):
    """One (protocol, ports, source) ingress permission: the unit EC2 authorizes and revokes."""

    protocol: str
    from_port: int | None
    to_port: int | None
    cidr: str | None = None
    group_id: str | None = None
    description: str = ""

    @property
    def key(self) -> tuple:
        """Identity for comparison; descriptions do not make two permissions different."""
        return (self.protocol, self.from_port, self.to_port, self.cidr, self.group_id)


def normalize_protocol(protocol: str) -> str:
    p = protocol.lower()
    return _PROTOCOL_ALIASES.get(p, p)


def permission(
    description: str,
    protocol: str,
    from_port: int | None,
    to_port: int | None,
    *,
    cidr: str | None = None,
    group_id: str | None = None,
) -> Permission:
    proto = normalize_protocol(protocol)
    if proto not in PORTED_PROTOCOLS:
        from_port = to_port = None
    return Permission(
        protocol=proto,
        from_port=from_port,
        to_port=to_port,
        cidr=cidr,
        group_id=group_id,
        description=description,
    )


def _tcp(description: str, port_from: int, port_to: int | None = None, **kw) -> Rule:
    return Rule(
        description=description,
        protocol="tcp",
        from_port=port_from,
        to_port=port_from if port_to is None else port_to,
        **kw,
    )


def security_group_plans(
    spec: ClusterSpec, vpc_cidr: str | None, cluster_id: str | None = None
) -> tuple[SecurityGroupPlan, ...]:
    """The five groups and their rules. `vpc_cidr` is None for an existing VPC not yet described.
    Group names derive from `cluster_id` (None: the cluster's name, a legacy cluster)."""
    port = spec.load_balancer.port
    vpc_source = vpc_cidr or "<vpc cidr>"
    cni = tuple(
        Rule(
            description=r.description,
            protocol=r.protocol,
            from_port=r.from_port,
            to_port=r.to_port,
            source_roles=(CONTROL_PLANE, NODE),
        )
        for r in spec.network.cni_ingress_rules
    )
    bastion_ssh = (_tcp("SSH", 22, source_roles=(BASTION,)),) if spec.bastion.enabled else ()

    if spec.load_balancer.scheme == "internal":
        kubelet = (_tcp("Kubernetes API", port, cidr_blocks=(vpc_source,)),)
    else:
        kubelet = (_tcp("Kubernetes API", port, from_nat_gateways=True),)
    custom = (
        (_tcp("Kubernetes API", port, cidr_blocks=tuple(spec.load_balancer.ingress_cidrs)),)
        if spec.load_balancer.ingress_cidrs
        else ()
    )

    lb_rules: tuple[Rule, ...] = ()
    if spec.load_balancer.type == "nlb":
        lb_rules = (
            _tcp("Allow NLB traffic to the control plane instances.", port, cidr_blocks=(vpc_source,)),
        )

    rules = {
        APISERVER_LB: kubelet + custom,
        LB: lb_rules,
        CONTROL_PLANE: cni
        + (
            _tcp("Kubernetes API", port, source_roles=(APISERVER_LB, CONTROL_PLANE, NODE)),
            _tcp("etcd", 2379, source_roles=(CONTROL_PLANE,)),
            _tcp("etcd peer", 2380, source_roles=(CONTROL_PLANE,)),
        )
        + bastion_ssh,
        NODE: cni
        + (
            _tcp("Node Port Services", 30000, 32767, cidr_blocks=(ANY_IPV4,)),
            _tcp("Kubelet API", 10250, source_roles=(CONTROL_PLANE, NODE)),
        )
        + bastion_ssh,
        BASTION: (_tcp("SSH", 22, cidr_blocks=tuple(spec.bastion.allowed_cidrs)),),
    }
    return tuple(
        SecurityGroupPlan(
            role=role,
            name=names.security_group(cluster_id or spec.name, role),
            description=f"Kubernetes cluster {spec.name}: {role}",
            rules=rules[role],
        )
        for role in ROLES
    )


def resolve_permissions(
    rules: Sequence[Rule], group_ids: Mapping[str, str], nat_ips: Sequence[str]
) -> tuple[Permission, ...]:
    """Expand rules into one permission per source, with roles replaced by group ids.

    An internet-facing load balancer with no NAT gateway IPs to admit (an existing VPC without
    NAT gateways) falls back to 0.0.0.0/0 for the kubelet rule, as CAPA does.
    """
    out: dict[tuple, Permission] = {}
    for r in rules:
        sources: list[tuple[str | None, str | None]] = [(c, None) for c in r.cidr_blocks]
        sources += [(None, group_ids[role]) for role in r.source_roles]
        if r.from_nat_gateways:
            sources += [(f"{ip}/32", None) for ip in nat_ips] or [(ANY_IPV4, None)]
        for cidr, group_id in sources:
            p = permission(r.description, r.protocol, r.from_port, r.to_port, cidr=cidr, group_id=group_id)
            out.setdefault(p.key, p)
    return tuple(out.values())


def diff_permissions(
    want: Sequence[Permission], have: Sequence[Permission]
) -> tuple[tuple[Permission, ...], tuple[Permission, ...]]:
    """(to authorize, to revoke) to make `have` equal `want`."""
    want_keys = {p.key for p in want}
    have_keys = {p.key for p in have}
    return tuple(p for p in want if p.key not in have_keys), tuple(p for p in have if p.key not in want_keys)
