"""Why a delete is refused: for each kind of resource a teardown deletes, what still holds it
(instances, ENIs, load balancers, security group references, NAT gateways, volumes, target
groups), so the teardown can report the blocker by name and clear it."""

from __future__ import annotations

from capt.activities.aws import tags
from capt.activities.aws.errors import is_code
from capt.activities.aws.models import AwsResult, Blocker, ClusterRef
from capt.activities.aws.session import aws_activity, client
from capt.rules.base import Frozen

LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


LIVE_NAT_STATES = ("pending", "available", "deleting", "failed")


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


def _pages(paginator, key: str, **kw) -> list[dict]:
    items: list[dict] = []
    for page in paginator.paginate(**kw):
        items += page[key]
    return items


class BlockersInput(_In):
    cluster: ClusterRef
    kind: str  # a sweep kind: security-group, subnet, vpc, internet-gateway, volume, ...
    id: str
    # The delete's last error (its type is AWS's code), reported when AWS names nothing.
    error: str = ""
    error_type: str = ""


class BlockersResult(AwsResult):
    blockers: tuple[Blocker, ...] = ()


def _terminated_instances(ec2) -> set[str]:
    return {
        i["InstanceId"]
        for r in _pages(
            ec2.get_paginator("describe_instances"),
            "Reservations",
            Filters=[{"Name": "instance-state-name", "Values": ["terminated"]}],
        )
        for i in r["Instances"]
        if i["State"]["Name"] == "terminated"
    }


def _eni_blockers(ec2, kind: str, rid: str, filters: list[dict], match) -> list[Blocker]:
    gone = _terminated_instances(ec2)
    out = []
    for e in _pages(ec2.get_paginator("describe_network_interfaces"), "NetworkInterfaces", Filters=filters):
        if not match(e):
            continue
        att = e.get("Attachment") or {}
        if att.get("InstanceId") in gone and (
            att.get("DeleteOnTermination", True) or att.get("DeviceIndex") == 0
        ):
            continue  # AWS removes these with their instance
        kind_of = e.get("InterfaceType") or "interface"
        if e.get("RequesterManaged"):
            kind_of += f", requester-managed by {e.get('RequesterId', '?')}"
        parts = [e.get("Status", "")]
        if att.get("InstanceId"):
            parts.append(f"attached to {att['InstanceId']}")
        if e.get("Description"):
            parts.append(repr(e["Description"]))
        out.append(
            Blocker(
                resource_kind=kind,
                resource_id=rid,
                blocker_kind="network-interface",
                blocker_id=e["NetworkInterfaceId"],
                blocker_type=kind_of,
                description=", ".join(p for p in parts if p),
            )
        )
    return out


def _instance_blockers(ec2, kind: str, rid: str, filters: list[dict], match) -> list[Blocker]:
    out = []
    live = [*LIVE_INSTANCE_STATES]
    for r in _pages(
        ec2.get_paginator("describe_instances"),
        "Reservations",
        Filters=[*filters, {"Name": "instance-state-name", "Values": live}],
    ):
        for i in r["Instances"]:
            if i["State"]["Name"] in live and match(i):
                t = tags.as_dict(i.get("Tags"))
                out.append(
                    Blocker(
                        resource_kind=kind,
                        resource_id=rid,
                        blocker_kind="instance",
                        blocker_id=i["InstanceId"],
                        blocker_type=i["State"]["Name"],
                        description=tags.name_of(t),
                    )
                )
    return out


def _load_balancer_blockers(region: str, kind: str, rid: str, match_classic, match_v2) -> list[Blocker]:
    out = []
    elb = client("elb", region)
    for page in elb.get_paginator("describe_load_balancers").paginate():
        for lb in page["LoadBalancerDescriptions"]:
            if match_classic(lb):
                out.append(
                    Blocker(
                        resource_kind=kind,
                        resource_id=rid,
                        blocker_kind="load-balancer",
                        blocker_id=lb["LoadBalancerName"],
                        blocker_type="classic",
                        description=lb.get("DNSName", ""),
                    )
                )
    v2 = client("elbv2", region)
    for page in v2.get_paginator("describe_load_balancers").paginate():
        for lb in page["LoadBalancers"]:
            if match_v2(lb):
                out.append(
                    Blocker(
                        resource_kind=kind,
                        resource_id=rid,
                        blocker_kind="load-balancer",
                        blocker_id=lb["LoadBalancerName"],
                        blocker_type=lb.get("Type", ""),
                        description=lb.get("LoadBalancerArn", ""),
                    )
                )
    return out


def _group_blockers(ec2, region: str, gid: str) -> list[Blocker]:
    kind = "security-group"
    out = _eni_blockers(
        ec2,
        kind,
        gid,
        [{"Name": "group-id", "Values": [gid]}],
        lambda e: any(g.get("GroupId") == gid for g in e.get("Groups", [])),
    )
    out += _instance_blockers(
        ec2,
        kind,
        gid,
        [{"Name": "instance.group-id", "Values": [gid]}],
        lambda i: any(g.get("GroupId") == gid for g in i.get("SecurityGroups", [])),
    )
    out += _load_balancer_blockers(
        region,
        kind,
        gid,
        lambda lb: gid in lb.get("SecurityGroups", []),
        lambda lb: gid in lb.get("SecurityGroups", []),
    )
    for g in _pages(ec2.get_paginator("describe_security_groups"), "SecurityGroups"):
        if g["GroupId"] == gid:
            continue
        for perms_key, direction in (("IpPermissions", "ingress"), ("IpPermissionsEgress", "egress")):
            if any(
                pair.get("GroupId") == gid
                for p in g.get(perms_key, [])
                for pair in p.get("UserIdGroupPairs", [])
            ):
                out.append(
                    Blocker(
                        resource_kind=kind,
                        resource_id=gid,
                        blocker_kind="security-group-rule",
                        blocker_id=g["GroupId"],
                        blocker_type=direction,
                        description=f"a rule of {g.get('GroupName', '')} in {g.get('VpcId', '')} names it",
                    )
                )
    return out


def _subnet_blockers(ec2, region: str, sid: str) -> list[Blocker]:
    kind = "subnet"
    out = _eni_blockers(
        ec2, kind, sid, [{"Name": "subnet-id", "Values": [sid]}], lambda e: e.get("SubnetId") == sid
    )
    out += _instance_blockers(
        ec2, kind, sid, [{"Name": "subnet-id", "Values": [sid]}], lambda i: i.get("SubnetId") == sid
    )
    out += _nat_blockers(
        ec2, kind, sid, [{"Name": "subnet-id", "Values": [sid]}], lambda n: n.get("SubnetId") == sid
    )
    out += _load_balancer_blockers(
        region,
        kind,
        sid,
        lambda lb: sid in lb.get("Subnets", []),
        lambda lb: any(z.get("SubnetId") == sid for z in lb.get("AvailabilityZones", [])),
    )
    return out


def _nat_blockers(ec2, kind: str, rid: str, filters: list[dict], match) -> list[Blocker]:
    return [
        Blocker(
            resource_kind=kind,
            resource_id=rid,
            blocker_kind="nat-gateway",
            blocker_id=n["NatGatewayId"],
            blocker_type=n.get("State", ""),
        )
        for n in _pages(ec2.get_paginator("describe_nat_gateways"), "NatGateways", Filter=filters)
        if n.get("State") in LIVE_NAT_STATES and match(n)
    ]


def _vpc_blockers(ec2, region: str, vid: str) -> list[Blocker]:
    kind = "vpc"
    in_vpc = [{"Name": "vpc-id", "Values": [vid]}]
    out = [
        Blocker(
            resource_kind=kind,
            resource_id=vid,
            blocker_kind="subnet",
            blocker_id=s["SubnetId"],
            blocker_type=s.get("AvailabilityZone", ""),
            description=tags.name_of(tags.as_dict(s.get("Tags"))),
        )
        for s in _pages(ec2.get_paginator("describe_subnets"), "Subnets", Filters=in_vpc)
        if s.get("VpcId") == vid
    ]
    out += [
        Blocker(
            resource_kind=kind,
            resource_id=vid,
            blocker_kind="security-group",
            blocker_id=g["GroupId"],
            blocker_type=g.get("GroupName", ""),
            description=g.get("Description", ""),
        )
        for g in _pages(ec2.get_paginator("describe_security_groups"), "SecurityGroups", Filters=in_vpc)
        if g.get("VpcId") == vid and g.get("GroupName") != "default"
    ]
    out += _eni_blockers(ec2, kind, vid, in_vpc, lambda e: e.get("VpcId") == vid)
    out += _instance_blockers(ec2, kind, vid, in_vpc, lambda i: i.get("VpcId") == vid)
    out += _nat_blockers(ec2, kind, vid, in_vpc, lambda n: n.get("VpcId") == vid)
    out += [
        Blocker(
            resource_kind=kind,
            resource_id=vid,
            blocker_kind="internet-gateway",
            blocker_id=g["InternetGatewayId"],
            blocker_type="attached",
        )
        for g in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])[
            "InternetGateways"
        ]
        if any(a.get("VpcId") == vid for a in g.get("Attachments", []))
    ]
    out += [
        Blocker(
            resource_kind=kind,
            resource_id=vid,
            blocker_kind="route-table",
            blocker_id=t["RouteTableId"],
            description=tags.name_of(tags.as_dict(t.get("Tags"))),
        )
        for t in _pages(ec2.get_paginator("describe_route_tables"), "RouteTables", Filters=in_vpc)
        if t.get("VpcId") == vid and not any(a.get("Main") for a in t.get("Associations", []))
    ]
    out += [
        Blocker(
            resource_kind=kind,
            resource_id=vid,
            blocker_kind="vpc-endpoint",
            blocker_id=e["VpcEndpointId"],
            blocker_type=e.get("VpcEndpointType", ""),
            description=e.get("ServiceName", ""),
        )
        for e in _pages(ec2.get_paginator("describe_vpc_endpoints"), "VpcEndpoints", Filters=in_vpc)
        if e.get("VpcId") == vid and e.get("State", "").lower() not in ("deleted", "deleting")
    ]
    return out


def _igw_blockers(ec2, igw_id: str) -> list[Blocker]:
    kind = "internet-gateway"
    try:
        igw = ec2.describe_internet_gateways(InternetGatewayIds=[igw_id])["InternetGateways"][0]
    except Exception as exc:
        if is_code(exc, "InvalidInternetGatewayID.NotFound"):
            return []
        raise
    vpcs = [a["VpcId"] for a in igw.get("Attachments", [])]
    if not vpcs:
        return []
    return _eni_blockers(
        ec2,
        kind,
        igw_id,
        [{"Name": "vpc-id", "Values": vpcs}],
        lambda e: e.get("VpcId") in vpcs and bool((e.get("Association") or {}).get("PublicIp")),
    )


def _volume_blockers(ec2, vid: str) -> list[Blocker]:
    try:
        volumes = ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
    except Exception as exc:
        if is_code(exc, "InvalidVolume.NotFound"):
            return []
        raise
    return [
        Blocker(
            resource_kind="volume",
            resource_id=vid,
            blocker_kind="instance",
            blocker_id=a.get("InstanceId", ""),
            blocker_type=a.get("State", ""),
            description=f"attached as {a.get('Device', '?')}",
        )
        for v in volumes
        for a in v.get("Attachments", [])
    ]


def _target_group_blockers(region: str, arn: str) -> list[Blocker]:
    v2 = client("elbv2", region)
    try:
        groups = v2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"]
    except Exception as exc:
        if is_code(exc, "TargetGroupNotFound"):
            return []
        raise
    return [
        Blocker(
            resource_kind="target-group",
            resource_id=arn,
            blocker_kind="load-balancer",
            blocker_id=lb,
            blocker_type="uses it",
        )
        for g in groups
        for lb in g.get("LoadBalancerArns", [])
    ]


@aws_activity
def describe_blockers(inp: BlockersInput) -> BlockersResult:
    """What still holds `inp.id`; when nothing can be named, the delete's error is the blocker."""
    region = inp.cluster.region
    ec2 = client("ec2", region)
    if inp.kind == "security-group":
        found = _group_blockers(ec2, region, inp.id)
    elif inp.kind == "subnet":
        found = _subnet_blockers(ec2, region, inp.id)
    elif inp.kind == "vpc":
        found = _vpc_blockers(ec2, region, inp.id)
    elif inp.kind == "internet-gateway":
        found = _igw_blockers(ec2, inp.id)
    elif inp.kind == "volume":
        found = _volume_blockers(ec2, inp.id)
    elif inp.kind == "target-group":
        found = _target_group_blockers(region, inp.id)
    else:
        found = []
    if not found:
        found = [
            Blocker(
                resource_kind=inp.kind,
                resource_id=inp.id,
                blocker_kind="error",
                blocker_id="",
                blocker_type=inp.error_type,
                description=inp.error or "AWS refused the deletion",
            )
        ]
    return BlockersResult(blockers=tuple(found))
