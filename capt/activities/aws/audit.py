"""The account audit: an inventory of every resource kind capt creates in a region, and a
comparison of it against a baseline and the desired state (duplicates, orphans, missing).

    baseline = take_inventory(region)            # before a cluster is created
    ...                                          # create / scale / upgrade / delete
    report = compare(baseline, take_inventory(region), [desired_from_plan(plan, machines)])
    assert report.clean, report.summary()

`take_inventory` lists, with plain describe/list calls (no tag filter: moto ignores some, e.g.
on NAT gateways, and an audit must not trust what it checks): instances that are not
terminated, VPCs, subnets, internet gateways, NAT gateways that are not deleted, Elastic IPs,
route tables, security groups, classic ELBs and ELBv2 load balancers, target groups, EBS
volumes, network interfaces and Secrets Manager secrets (not those scheduled for deletion).

`compare` attributes every resource that is not in the baseline:
- tagged `sigs.k8s.io/cluster-api-provider-aws/cluster/<c>=owned` -> cluster c, keyed by what
  makes it unique in the desired state: the `capt/machine` tag for instances, the secret's name,
  otherwise the Name tag (load balancers and target groups: their own name);
- untagged -> through what it belongs to: a VPC's main route table and `default` security group
  to the VPC; always (tagged or not) a volume or network interface to the live instance it is
  attached to, a NAT gateway's interface to that NAT gateway, a load balancer's to it.

Then, per desired cluster: a key with more than one resource is a **duplicate**; a resource of a
cluster that is not desired (deleted), whose key the desired state does not have, or that
cannot be attributed at all is an **orphan**; an expected key with no resource is **missing**.
After a delete (no desired cluster) anything beyond the baseline is an orphan.

moto keeps two kinds of leftovers real AWS removes by itself: the network interfaces of
terminated instances (still "in-use", attached to the terminated instance) and the interface
of a deleted NAT gateway. `take_inventory` discounts exactly those, listing them under
`Inventory.discounted` with the reason, so an audit against moto and one against AWS agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from capt.activities.aws import secrets as sm
from capt.activities.aws import session, tags

KINDS = (
    "instance",
    "vpc",
    "subnet",
    "internet-gateway",
    "nat-gateway",
    "elastic-ip",
    "route-table",
    "security-group",
    "load-balancer",  # classic ELB
    "load-balancer-v2",  # ELBv2 (network/application)
    "target-group",
    "volume",
    "network-interface",
    "secret",
)

DEAD_INSTANCE_STATES = ("terminated",)
# Parts of another resource: attributed through their attachment, never by their own tags.
ATTACHED_KINDS = ("volume", "network-interface")
DEAD_NAT_STATES = ("deleted",)

ClientFactory = Callable[[str, str | None], Any]


@dataclass(frozen=True)
class Resource:
    kind: str
    id: str
    tags: tuple[tuple[str, str], ...] = ()
    state: str = ""
    vpc_id: str = ""
    # What an untagged resource belongs to: the instance a volume or interface is attached to,
    # the NAT gateway an interface serves.
    attached_to: str = ""
    # The native name where a kind has one (security group, load balancer, target group, secret).
    native_name: str = ""
    # A VPC's main route table / default security group (created with the VPC).
    vpc_default: bool = False

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def cluster(self) -> str:
        """The cluster whose `owned` tag the resource carries ("" if none)."""
        for key, value in self.tags:
            if key.startswith(tags.CLUSTER_TAG_PREFIX) and value == tags.OWNED:
                return key[len(tags.CLUSTER_TAG_PREFIX) :]
        return ""

    @property
    def name(self) -> str:
        return self.tag_map.get(tags.NAME_TAG, "") or self.native_name

    @property
    def key(self) -> str:
        """What makes the resource unique within its cluster's desired state."""
        t = self.tag_map
        if self.kind == "instance":
            return t.get(tags.MACHINE_TAG) or self.name
        if self.kind == "secret":
            if t.get(tags.ROLE_TAG) == sm.ROLE_BOOTSTRAP_DATA:
                # Names are random per stored copy: two copies of one machine's chunk collide here.
                return f"bootstrap-data/{t.get(tags.MACHINE_TAG, '')}#{t.get(sm.CHUNK_TAG, '')}"
            return self.native_name
        if self.kind in ("load-balancer", "load-balancer-v2", "target-group"):
            return self.native_name
        return self.name


@dataclass(frozen=True)
class Discounted:
    kind: str
    id: str
    reason: str


@dataclass(frozen=True)
class Inventory:
    region: str
    resources: tuple[Resource, ...]
    discounted: tuple[Discounted, ...] = ()

    def of(self, kind: str) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.kind == kind)

    def ids(self, kind: str) -> list[str]:
        return sorted(r.id for r in self.of(kind))

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of(kind)) for kind in KINDS}

    def keys(self) -> set[tuple[str, str]]:
        return {(r.kind, r.id) for r in self.resources}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Inventory:
        data = json.loads(text)
        return cls(
            region=data["region"],
            resources=tuple(
                Resource(**{**r, "tags": tuple(tuple(t) for t in r["tags"])}) for r in data["resources"]
            ),
            discounted=tuple(Discounted(**d) for d in data.get("discounted", ())),
        )


# --------------------------------------------------------------------------------------------
# inventory


def _tag_tuple(tag_list: Iterable[Mapping[str, str]] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(tags.as_dict(tag_list).items()))


def _pages(c: Any, op: str, key: str, **kw: Any) -> Iterator[dict]:
    for page in c.get_paginator(op).paginate(**kw):
        yield from page.get(key, [])


def _batches(items: list, size: int = 20) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _ec2(ec2: Any) -> tuple[list[Resource], list[Discounted]]:
    out: list[Resource] = []
    discounted: list[Discounted] = []

    terminated: set[str] = set()
    for reservation in _pages(ec2, "describe_instances", "Reservations"):
        for i in reservation["Instances"]:
            state = i.get("State", {}).get("Name", "")
            if state in DEAD_INSTANCE_STATES:
                terminated.add(i["InstanceId"])
                continue
            out.append(
                Resource(
                    "instance", i["InstanceId"], _tag_tuple(i.get("Tags")), state, vpc_id=i.get("VpcId", "")
                )
            )
    for v in _pages(ec2, "describe_vpcs", "Vpcs"):
        out.append(Resource("vpc", v["VpcId"], _tag_tuple(v.get("Tags")), v.get("State", "")))
    for s in _pages(ec2, "describe_subnets", "Subnets"):
        out.append(
            Resource(
                "subnet", s["SubnetId"], _tag_tuple(s.get("Tags")), s.get("State", ""), s.get("VpcId", "")
            )
        )
    for g in _pages(ec2, "describe_internet_gateways", "InternetGateways"):
        vpc = next((a["VpcId"] for a in g.get("Attachments", [])), "")
        out.append(
            Resource("internet-gateway", g["InternetGatewayId"], _tag_tuple(g.get("Tags")), vpc_id=vpc)
        )
    dead_nat_interfaces: dict[str, str] = {}
    live_nat_interfaces: dict[str, str] = {}
    for n in _pages(ec2, "describe_nat_gateways", "NatGateways"):
        interfaces = [
            a["NetworkInterfaceId"] for a in n.get("NatGatewayAddresses", []) if a.get("NetworkInterfaceId")
        ]
        if n.get("State") in DEAD_NAT_STATES:
            dead_nat_interfaces.update((eni, n["NatGatewayId"]) for eni in interfaces)
            continue
        live_nat_interfaces.update((eni, n["NatGatewayId"]) for eni in interfaces)
        out.append(
            Resource(
                "nat-gateway",
                n["NatGatewayId"],
                _tag_tuple(n.get("Tags")),
                n.get("State", ""),
                n.get("VpcId", ""),
            )
        )
    for a in ec2.describe_addresses()["Addresses"]:
        out.append(
            Resource(
                "elastic-ip", a["AllocationId"], _tag_tuple(a.get("Tags")), native_name=a.get("PublicIp", "")
            )
        )
    for t in _pages(ec2, "describe_route_tables", "RouteTables"):
        main = any(a.get("Main") for a in t.get("Associations", []))
        out.append(
            Resource(
                "route-table",
                t["RouteTableId"],
                _tag_tuple(t.get("Tags")),
                vpc_id=t.get("VpcId", ""),
                vpc_default=main,
            )
        )
    for g in _pages(ec2, "describe_security_groups", "SecurityGroups"):
        out.append(
            Resource(
                "security-group",
                g["GroupId"],
                _tag_tuple(g.get("Tags")),
                vpc_id=g.get("VpcId", ""),
                native_name=g.get("GroupName", ""),
                vpc_default=g.get("GroupName") == "default",
            )
        )
    for v in _pages(ec2, "describe_volumes", "Volumes"):
        attached = next((a["InstanceId"] for a in v.get("Attachments", []) if a.get("InstanceId")), "")
        out.append(
            Resource(
                "volume", v["VolumeId"], _tag_tuple(v.get("Tags")), v.get("State", ""), attached_to=attached
            )
        )
    for eni in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces"):
        eid = eni["NetworkInterfaceId"]
        instance = (eni.get("Attachment") or {}).get("InstanceId", "")
        # moto only: AWS deletes an instance's primary interface with the instance, and a NAT
        # gateway's interface with the NAT gateway; moto keeps both. Not counted, but listed.
        if instance and instance in terminated:
            discounted.append(
                Discounted("network-interface", eid, f"moto keeps it: attached to terminated {instance}")
            )
            continue
        if eid in dead_nat_interfaces:
            discounted.append(
                Discounted(
                    "network-interface",
                    eid,
                    f"moto keeps it: interface of deleted {dead_nat_interfaces[eid]}",
                )
            )
            continue
        out.append(
            Resource(
                "network-interface",
                eid,
                _tag_tuple(eni.get("TagSet")),
                eni.get("Status", ""),
                eni.get("VpcId", ""),
                attached_to=instance or live_nat_interfaces.get(eid, ""),
                native_name=eni.get("Description", ""),
            )
        )
    return out, discounted


def _elb(elb: Any, elbv2: Any) -> list[Resource]:
    out: list[Resource] = []
    classic = {
        lb["LoadBalancerName"]: lb
        for lb in _pages(elb, "describe_load_balancers", "LoadBalancerDescriptions")
    }
    for batch in _batches(sorted(classic)):
        for d in elb.describe_tags(LoadBalancerNames=batch)["TagDescriptions"]:
            name = d["LoadBalancerName"]
            out.append(
                Resource(
                    "load-balancer",
                    name,
                    _tag_tuple(d.get("Tags")),
                    vpc_id=classic[name].get("VPCId", ""),
                    native_name=name,
                )
            )
    for kind, op, key, name_key in (
        ("load-balancer-v2", "describe_load_balancers", "LoadBalancers", "LoadBalancerName"),
        ("target-group", "describe_target_groups", "TargetGroups", None),
    ):
        arn_key = "LoadBalancerArn" if kind == "load-balancer-v2" else "TargetGroupArn"
        items = {i[arn_key]: i for i in _pages(elbv2, op, key)}
        for batch in _batches(sorted(items)):
            for d in elbv2.describe_tags(ResourceArns=batch)["TagDescriptions"]:
                item = items[d["ResourceArn"]]
                out.append(
                    Resource(
                        kind,
                        d["ResourceArn"],
                        _tag_tuple(d.get("Tags")),
                        (item.get("State") or {}).get("Code", ""),
                        item.get("VpcId", ""),
                        native_name=item[name_key or "TargetGroupName"],
                    )
                )
    return out


def _secrets(secretsmanager: Any) -> list[Resource]:
    # ListSecrets leaves out secrets scheduled for deletion (they are going away by themselves).
    return [
        Resource("secret", s["ARN"], _tag_tuple(s.get("Tags")), native_name=s["Name"])
        for s in _pages(secretsmanager, "list_secrets", "SecretList")
        if not s.get("DeletedDate")
    ]


def take_inventory(region: str | None = None, *, client_factory: ClientFactory | None = None) -> Inventory:
    """Every resource of the audited kinds in `region` (default: AWS_REGION), via boto3.

    `client_factory(service, region)` defaults to capt's cached clients (session.client)."""
    make = client_factory or session.client
    region = region or session.default_region() or ""
    resources, discounted = _ec2(make("ec2", region))
    resources += _elb(make("elb", region), make("elbv2", region))
    resources += _secrets(make("secretsmanager", region))
    order = {k: i for i, k in enumerate(KINDS)}
    return Inventory(
        region=region,
        resources=tuple(sorted(resources, key=lambda r: (order[r.kind], r.id))),
        discounted=tuple(sorted(discounted, key=lambda d: (d.kind, d.id))),
    )
