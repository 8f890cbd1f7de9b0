"""What ClusterTeardownWorkflow needs beyond the infrastructure's own delete activities.

- `terminate_cluster_instances`: every instance the cluster owns (by its owned tag), whatever
  made it: a failed or abandoned machine, the bastion. The workflow then polls
  `instances.describe_cluster_instances` between durable timers until none is left.
- `revoke_security_group_references`: the rules that name a group about to be deleted. AWS
  refuses to delete a group while another group's rule references it (the cloud provider adds
  such a rule for every Service load balancer: the instances' group admits the ELB's group).
  Only groups being deleted and groups in the cluster's own VPCs are changed, never another
  VPC's.
- `delete_volume`, `delete_network_interface`: volumes the cluster's CSI driver made (or ours)
  and interfaces left in its VPC. In use = retried (bounded by the workflow).
- `describe_blockers`: once a delete gave up, *what* still holds the resource: for a group, the
  interfaces, load balancers, instances and rules that use it; for a subnet or VPC, what is
  still inside; for an internet gateway, the public addresses mapped in its VPC; for a volume,
  its attachments; for a target group, its load balancers. Reported in the cluster's status so
  that a person can act, then `capt delete` runs again.

Every activity takes the cluster's `ClusterRef` (its `name` is the cluster's AWS id) and reads
AWS afresh: a retry after a lost response does only what is still left.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import cluster_sweep, tags
from capt.activities.aws.errors import error_code, is_code, is_transient
from capt.activities.aws.models import AwsResult, Blocker, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client

LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
LIVE_NAT_STATES = ("pending", "available", "deleting", "failed")


class _In(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClusterInput(_In):
    cluster: ClusterRef


class InstanceState(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_id: str
    state: str
    name: str = ""


class InstancesResult(AwsResult):
    instances: tuple[InstanceState, ...] = ()


class RevokeReferencesInput(_In):
    cluster: ClusterRef
    # The groups being deleted: every rule naming one of them goes, in these groups and in
    # every group of `vpc_ids` (the cluster's own VPCs, `default` group included).
    group_ids: tuple[str, ...]
    vpc_ids: tuple[str, ...] = ()


class RevokeResult(AwsResult):
    revoked: int = 0
    groups_changed: tuple[str, ...] = ()


class VolumeIdInput(_In):
    cluster: ClusterRef
    volume_id: str


class NetworkInterfaceIdInput(_In):
    cluster: ClusterRef
    network_interface_id: str


class BlockersInput(_In):
    cluster: ClusterRef
    kind: str  # a sweep kind: security-group, subnet, vpc, internet-gateway, volume, ...
    id: str
    # The delete's last error (its type is AWS's code), reported when AWS names nothing.
    error: str = ""
    error_type: str = ""


class BlockersResult(AwsResult):
    blockers: tuple[Blocker, ...] = ()


def _pages(paginator, key: str, **kw) -> list[dict]:
    items: list[dict] = []
    for page in paginator.paginate(**kw):
        items += page[key]
    return items


# --- instances ---------------------------------------------------------------------------------


def _live_owned_instances(ec2, cluster: str) -> list[dict]:
    reservations = _pages(
        ec2.get_paginator("describe_instances"),
        "Reservations",
        Filters=[
            tags.owned_filter(cluster),
            {"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)},
        ],
    )
    return [
        i
        for r in reservations
        for i in r["Instances"]
        if tags.is_owned(tags.as_dict(i.get("Tags")), cluster) and i["State"]["Name"] in LIVE_INSTANCE_STATES
    ]


@aws_activity
def terminate_cluster_instances(inp: ClusterInput) -> InstancesResult:
    """Terminate every instance the cluster owns that is not terminated yet; returns them with
    the state TerminateInstances answered."""
    ec2 = client("ec2", inp.cluster.region)
    live = _live_owned_instances(ec2, inp.cluster.name)
    names = {i["InstanceId"]: tags.name_of(tags.as_dict(i.get("Tags"))) for i in live}
    out: list[InstanceState] = []
    ids = sorted(names)
    for start in range(0, len(ids), 50):
        batch = ids[start : start + 50]
        try:
            changes = ec2.terminate_instances(InstanceIds=batch)["TerminatingInstances"]
        except Exception as exc:
            if not is_code(exc, "InvalidInstanceID.NotFound"):
                raise
            changes = [{"InstanceId": i, "CurrentState": {"Name": "terminated"}} for i in batch]
        out += [
            InstanceState(
                instance_id=c["InstanceId"],
                state=c.get("CurrentState", {}).get("Name", "shutting-down"),
                name=names.get(c["InstanceId"], ""),
            )
            for c in changes
        ]
    return InstancesResult(instances=tuple(sorted(out, key=lambda i: i.instance_id)))


# --- security group references -------------------------------------------------------------------


def _naming(perm: dict, group_ids: set[str]) -> list[dict]:
    """One IpPermission per group pair of `perm` that names one of `group_ids`.

    One per call: EC2 refuses a whole revoke when one of its permissions does not match. Ports
    of a protocol without ports are sent as -1, which AWS ignores and moto requires."""
    return [
        {
            "IpProtocol": perm["IpProtocol"],
            "FromPort": perm.get("FromPort", -1),
            "ToPort": perm.get("ToPort", -1),
            # The description as it is: AWS ignores it when matching, moto compares it.
            "UserIdGroupPairs": [{k: v for k, v in pair.items() if k in ("GroupId", "Description")}],
        }
        for pair in perm.get("UserIdGroupPairs", [])
        if pair.get("GroupId") in group_ids
    ]


@aws_activity
def revoke_security_group_references(inp: RevokeReferencesInput) -> RevokeResult:
    ec2 = client("ec2", inp.cluster.region)
    doomed = set(inp.group_ids)
    groups: dict[str, dict] = {}
    for gid in inp.group_ids:
        try:
            for g in ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"]:
                groups[g["GroupId"]] = g
        except Exception as exc:
            if not is_code(exc, "InvalidGroup.NotFound", "InvalidGroupId.NotFound"):
                raise
    if inp.vpc_ids:
        for g in _pages(
            ec2.get_paginator("describe_security_groups"),
            "SecurityGroups",
            Filters=[{"Name": "vpc-id", "Values": list(inp.vpc_ids)}],
        ):
            if g.get("VpcId") in inp.vpc_ids:
                groups[g["GroupId"]] = g
    revoked = 0
    changed: list[str] = []
    # One call per rule; a throttled or dropped call does not stop the others, so every attempt
    # gets as far as AWS lets it and the next one starts from what is left (re-read above).
    first_transient: Exception | None = None
    for gid, g in sorted(groups.items()):
        for perms_key, revoke in (
            ("IpPermissions", ec2.revoke_security_group_ingress),
            ("IpPermissionsEgress", ec2.revoke_security_group_egress),
        ):
            for perm in [one for p in g.get(perms_key, []) for one in _naming(p, doomed)]:
                try:
                    revoke(GroupId=gid, IpPermissions=[perm])
                except Exception as exc:
                    if is_code(exc, "InvalidPermission.NotFound", "InvalidGroup.NotFound"):
                        continue  # gone already (an earlier attempt whose answer was lost)
                    if is_transient(error_code(exc) or type(exc).__name__):
                        first_transient = first_transient or exc
                        continue
                    raise
                revoked += 1
                if gid not in changed:
                    changed.append(gid)
    if first_transient is not None:
        raise first_transient
    return RevokeResult(revoked=revoked, groups_changed=tuple(changed))


# --- volumes and network interfaces --------------------------------------------------------------


@aws_activity
def delete_volume(inp: VolumeIdInput) -> DoneResult:
    """Delete an available volume; gone = done; VolumeInUse (still attached) is retried."""
    try:
        client("ec2", inp.cluster.region).delete_volume(VolumeId=inp.volume_id)
    except Exception as exc:
        if is_code(exc, "InvalidVolume.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


@aws_activity
def delete_network_interface(inp: NetworkInterfaceIdInput) -> DoneResult:
    """Delete a detached interface; gone = done; in use is retried."""
    try:
        client("ec2", inp.cluster.region).delete_network_interface(
            NetworkInterfaceId=inp.network_interface_id
        )
    except Exception as exc:
        if is_code(exc, "InvalidNetworkInterfaceID.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


# --- what blocks a deletion ------------------------------------------------------------------------


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


CLEANUP_ACTIVITIES = [
    cluster_sweep.sweep_cluster_resources,
    terminate_cluster_instances,
    revoke_security_group_references,
    delete_volume,
    delete_network_interface,
    describe_blockers,
]
