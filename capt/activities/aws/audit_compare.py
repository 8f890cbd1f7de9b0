"""The account audit's second half: what a cluster should have (from its plan) against what the
inventory found, as findings (missing, extra, leaked, attributed to the wrong owner)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from capt.activities.aws import secrets as sm
from capt.activities.aws.audit import (
    ATTACHED_KINDS,
    KINDS,
    Discounted,
    Inventory,
    Resource,
)
from capt.plan.cluster import ClusterPlan


@dataclass(frozen=True)
class DesiredCluster:
    """What one live cluster should have: per kind, the keys (see `Resource.key`) it needs,
    one resource each. Kinds not listed need none."""

    name: str
    expected: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def keys(self, kind: str) -> frozenset[str]:
        return self.expected.get(kind, frozenset())


def desired_from_plan(
    plan: ClusterPlan,
    machines: Iterable[str],
    *,
    secrets: Iterable[str] | None = None,
) -> DesiredCluster:
    """The desired live set of a cluster from its plan (network, security groups, API load
    balancer, bastion), one instance per live machine name, and its secrets: by default the
    cluster PKI (bootstrap tokens and bootstrap data are gone once every machine is Running)."""
    net = plan.network
    expected: dict[str, set[str]] = defaultdict(set)
    if net.managed:
        expected["vpc"].add(net.vpc.name)
        expected["subnet"].update(s.name for s in net.subnets)
        if net.internet_gateway_name:
            expected["internet-gateway"].add(net.internet_gateway_name)
        expected["nat-gateway"].update(n.name for n in net.nat_gateways)
        expected["elastic-ip"].update(n.eip_name for n in net.nat_gateways)
        expected["route-table"].update(r.name for r in net.route_tables)
    expected["security-group"].update(g.name for g in plan.security_groups)
    lb = plan.load_balancer
    if lb.type == "classic":
        expected["load-balancer"].add(lb.name)
    else:
        expected["load-balancer-v2"].add(lb.name)
        if lb.target_group_name:
            expected["target-group"].add(lb.target_group_name)
    expected["instance"].update(machines)
    if plan.bastion is not None:
        expected["instance"].add(plan.bastion.name)
    if secrets is None:
        # The admin kubeconfig exists once the endpoint is known (always, with a load balancer).
        secrets = [sm.pki_secret_name(plan.namespace, plan.cluster, what) for what in sm.PKI_NAMES]
    expected["secret"].update(secrets)
    return DesiredCluster(name=plan.cluster_id, expected={k: frozenset(v) for k, v in expected.items()})


Problem = Literal["duplicate", "orphan", "missing"]


@dataclass(frozen=True)
class Finding:
    problem: Problem
    kind: str
    ids: tuple[str, ...]
    cluster: str
    key: str
    reason: str

    def __str__(self) -> str:
        ids = ", ".join(self.ids) or "-"
        who = f"{self.cluster}/" if self.cluster else ""
        return f"{self.problem} {self.kind} {who}{self.key or '?'} [{ids}]: {self.reason}"


@dataclass(frozen=True)
class AuditReport:
    duplicates: tuple[Finding, ...]
    orphans: tuple[Finding, ...]
    missing: tuple[Finding, ...]
    discounted: tuple[Discounted, ...]
    counts: Mapping[str, int]
    baseline_counts: Mapping[str, int]

    @property
    def clean(self) -> bool:
        """No duplicate, no orphan, nothing missing."""
        return not (self.duplicates or self.orphans or self.missing)

    @property
    def extra_resources(self) -> int:
        """Resources beyond what the desired state needs (each duplicate beyond the first)."""
        return sum(len(f.ids) - 1 for f in self.duplicates)

    def summary(self) -> str:
        lines = [
            f"{len(self.duplicates)} duplicate(s), {len(self.orphans)} orphan(s), {len(self.missing)} missing; "
            f"{len(self.discounted)} moto leftover(s) discounted"
        ]
        lines += [f"  {f}" for f in (*self.duplicates, *self.orphans, *self.missing)]
        return "\n".join(lines)


def _attribution(r: Resource, live: Mapping[str, str], vpcs: Mapping[str, str]) -> tuple[str, str] | None:
    """(cluster, note) of an untagged resource through what it belongs to, or None."""
    if r.vpc_default and r.vpc_id in vpcs:
        return vpcs[r.vpc_id], f"default of {r.vpc_id}"
    if r.kind in ("network-interface", "volume") and r.attached_to in live:
        return live[r.attached_to], f"attached to {r.attached_to}"
    if r.kind == "network-interface" and r.native_name.startswith("ELB "):
        # AWS's own interfaces of a load balancer: "ELB <name>" (classic), "ELB net/<name>/<id>".
        described = r.native_name[len("ELB ") :]
        name = described.split("/")[1] if described.count("/") == 2 else described
        if f"lb:{name}" in live:
            return live[f"lb:{name}"], f"interface of load balancer {name}"
    return None


def compare(baseline: Inventory, current: Inventory, desired: Iterable[DesiredCluster]) -> AuditReport:
    """Duplicates, orphans and missing resources of `current` against `baseline` (the account
    before any of the clusters existed) and the desired clusters (none: everything deleted)."""
    wanted = {d.name: d for d in desired}
    before = baseline.keys()
    new = [r for r in current.resources if (r.kind, r.id) not in before]

    # Owners that untagged resources can be attributed to: tagged VPCs, instances and NAT
    # gateways of desired clusters (an orphan's dependants are covered by the orphan itself),
    # and everything in the baseline (the account's own default VPC, ...).
    owner_of: dict[str, str] = {}
    vpcs: dict[str, str] = {}
    for r in current.resources:
        if (r.kind, r.id) in before:
            owner_of[r.id] = ""
            if r.kind == "vpc":
                vpcs[r.id] = ""
        elif r.cluster:
            if r.kind in ("instance", "nat-gateway"):
                owner_of[r.id] = r.cluster
            if r.kind in ("load-balancer", "load-balancer-v2"):
                owner_of[f"lb:{r.native_name}"] = r.cluster
            if r.kind == "vpc":
                vpcs[r.id] = r.cluster

    groups: dict[tuple[str, str, str], list[Resource]] = defaultdict(list)
    orphans: list[Finding] = []
    for r in new:
        cluster = r.cluster
        if r.kind in ATTACHED_KINDS:
            # Volumes and interfaces are parts of what they are attached to (capt tags an
            # instance's volumes like the instance): attributed that way, tags or not.
            if _attribution(r, owner_of, vpcs) is None:
                what = f" ({r.native_name})" if r.native_name else ""
                orphans.append(
                    Finding(
                        "orphan",
                        r.kind,
                        (r.id,),
                        cluster,
                        r.name,
                        f"{what} not attached to anything live".strip(),
                    )
                )
            continue
        if not cluster:
            attributed = _attribution(r, owner_of, vpcs)
            if attributed is None:
                what = f" ({r.native_name})" if r.native_name else ""
                orphans.append(
                    Finding(
                        "orphan",
                        r.kind,
                        (r.id,),
                        "",
                        r.name,
                        f"untagged{what} and not attributable to anything live",
                    )
                )
            continue
        if cluster not in wanted:
            orphans.append(
                Finding(
                    "orphan", r.kind, (r.id,), cluster, r.key, f"cluster {cluster} is not desired (deleted)"
                )
            )
            continue
        if r.key not in wanted[cluster].keys(r.kind):
            orphans.append(Finding("orphan", r.kind, (r.id,), cluster, r.key, "not in the desired state"))
            continue
        groups[(cluster, r.kind, r.key)].append(r)

    duplicates = [
        Finding(
            "duplicate",
            kind,
            tuple(sorted(r.id for r in found)),
            cluster,
            key,
            f"{len(found)} resources where the desired state needs one",
        )
        for (cluster, kind, key), found in sorted(groups.items())
        if len(found) > 1
    ]
    missing = [
        Finding("missing", kind, (), d.name, key, "expected by the desired state, not found")
        for d in wanted.values()
        for kind in KINDS
        for key in sorted(d.keys(kind))
        if (d.name, kind, key) not in groups
    ]
    return AuditReport(
        duplicates=tuple(duplicates),
        orphans=tuple(orphans),
        missing=tuple(missing),
        discounted=tuple(d for d in current.discounted if d not in set(baseline.discounted)),
        counts=current.counts(),
        baseline_counts=baseline.counts(),
    )
