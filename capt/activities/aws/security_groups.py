"""Security groups: create the cluster's five groups, reconcile their ingress rules, delete them.

Group names are unique within a VPC, so lookup is by group name and the owned tag is then
checked. Rules are reconciled as CAPA does: the wanted permissions (plan.security_groups) are
compared with what EC2 reports; missing ones are authorized, extra ones revoked. Groups
reference each other, so deletion is two-phase: revoke every group's ingress, then delete.
"""

from __future__ import annotations

from capt.activities.aws import tags
from capt.activities.aws.errors import NotOwnedError, NotYetVisibleError, is_code
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client
from capt.activities.aws.vpc import VpcIdInput
from capt.plan.security_groups import LB, Permission, diff_permissions, permission
from capt.rules.base import Frozen


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


class EnsureSecurityGroupInput(_In):
    cluster: ClusterRef
    vpc_id: str
    name: str
    role: str
    description: str


class SecurityGroupResult(AwsResult):
    group_id: str
    created: bool = False


class RulesInput(_In):
    cluster: ClusterRef
    group_id: str
    permissions: tuple[Permission, ...]


class RulesResult(AwsResult):
    authorized: int
    revoked: int


class GroupIdInput(_In):
    cluster: ClusterRef
    group_id: str


def from_ip_permissions(perms: list[dict]) -> list[Permission]:
    """EC2 IpPermissions -> one Permission per source."""
    out = []
    for p in perms:
        proto, lo, hi = p["IpProtocol"], p.get("FromPort"), p.get("ToPort")
        for r in p.get("IpRanges", []):
            out.append(permission(r.get("Description", ""), proto, lo, hi, cidr=r["CidrIp"]))
        for g in p.get("UserIdGroupPairs", []):
            out.append(permission(g.get("Description", ""), proto, lo, hi, group_id=g["GroupId"]))
    return out


def to_ip_permissions(perms: tuple[Permission, ...] | list[Permission]) -> list[dict]:
    out = []
    for p in perms:
        # Protocols without ports (-1, 4, ...) are sent with -1/-1, which AWS ignores (and moto
        # requires); comparisons never look at their ports (see plan.security_groups).
        entry: dict = {
            "IpProtocol": p.protocol,
            "FromPort": -1 if p.from_port is None else p.from_port,
            "ToPort": -1 if p.to_port is None else p.to_port,
        }
        source: dict = {"Description": p.description} if p.description else {}
        if p.cidr:
            entry["IpRanges"] = [{"CidrIp": p.cidr, **source}]
        if p.group_id:
            entry["UserIdGroupPairs"] = [{"GroupId": p.group_id, **source}]
        out.append(entry)
    return out


def _find(ec2, vpc_id: str, name: str, cluster: str) -> dict | None:
    """The group named `name` in the VPC (EC2 keeps group names unique per VPC), if ours."""
    found = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    found = [g for g in found if g["GroupName"] == name]
    foreign = [g["GroupId"] for g in found if not tags.is_owned(tags.as_dict(g.get("Tags")), cluster)]
    if foreign:
        raise NotOwnedError(
            f"security group {foreign[0]} is named {name!r} but is not tagged {tags.cluster_key(cluster)}={tags.OWNED}; capt will not adopt it"
        )
    return min(found, key=lambda g: g["GroupId"]) if found else None


@aws_activity
def ensure_security_group(inp: EnsureSecurityGroupInput) -> SecurityGroupResult:
    ec2 = client("ec2", inp.cluster.region)
    group = _find(ec2, inp.vpc_id, inp.name, inp.cluster.name)
    if group is not None:
        return SecurityGroupResult(group_id=group["GroupId"])
    # Only the lb group carries the cloud provider's cluster tag (see tags.py).
    group_tags = tags.build(
        inp.cluster.name,
        inp.name,
        inp.role,
        cloud_provider=tags.OWNED if inp.role == LB else None,
        additional=inp.cluster.additional_tags,
    )
    try:
        out = ec2.create_security_group(
            VpcId=inp.vpc_id,
            GroupName=inp.name,
            Description=inp.description,
            TagSpecifications=tags.specification("security-group", group_tags),
        )
    except Exception as exc:
        if not is_code(exc, "InvalidGroup.Duplicate"):
            raise
        # Created by an attempt whose answer was lost (or someone else's: _find checks).
        group = _find(ec2, inp.vpc_id, inp.name, inp.cluster.name)
        if group is None:
            # The name is taken in the VPC, by a group reads do not show yet: ours, from an
            # attempt whose answer was lost (a foreign one would be visible and refused).
            raise NotYetVisibleError(
                f"security group {inp.name} exists in {inp.vpc_id} but is not visible yet"
            ) from exc
        return SecurityGroupResult(group_id=group["GroupId"])
    return SecurityGroupResult(group_id=out["GroupId"], created=True)


def _current(ec2, group_id: str) -> list[Permission]:
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    return from_ip_permissions(group.get("IpPermissions", []))


@aws_activity
def reconcile_security_group_rules(inp: RulesInput) -> RulesResult:
    ec2 = client("ec2", inp.cluster.region)
    to_authorize, to_revoke = diff_permissions(inp.permissions, _current(ec2, inp.group_id))
    if to_revoke:
        try:
            ec2.revoke_security_group_ingress(
                GroupId=inp.group_id, IpPermissions=to_ip_permissions(to_revoke)
            )
        except Exception as exc:
            if not is_code(exc, "InvalidPermission.NotFound"):
                raise
    if to_authorize:
        try:
            ec2.authorize_security_group_ingress(
                GroupId=inp.group_id, IpPermissions=to_ip_permissions(to_authorize)
            )
        except Exception as exc:
            if not is_code(exc, "InvalidPermission.Duplicate"):
                raise
            # Some were authorized by an attempt whose answer was lost (the request is
            # all-or-nothing): read again and add the rest one by one.
            for p in diff_permissions(inp.permissions, _current(ec2, inp.group_id))[0]:
                try:
                    ec2.authorize_security_group_ingress(
                        GroupId=inp.group_id, IpPermissions=to_ip_permissions([p])
                    )
                except Exception as exc2:
                    if not is_code(exc2, "InvalidPermission.Duplicate"):
                        raise
    return RulesResult(authorized=len(to_authorize), revoked=len(to_revoke))


@aws_activity
def revoke_default_security_group_rules(inp: VpcIdInput) -> DoneResult:
    """Empty the default group of a VPC capt created (ingress and egress): AWS creates it,
    it cannot be deleted, and capt never uses it -- an instance put in it by mistake gets no
    traffic. Never called for an existing VPC."""
    ec2 = client("ec2", inp.cluster.region)
    found = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [inp.vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    if not found:
        return DoneResult(changed=False)
    group = found[0]
    changed = False
    for perms, revoke in (
        (group.get("IpPermissions"), ec2.revoke_security_group_ingress),
        (group.get("IpPermissionsEgress"), ec2.revoke_security_group_egress),
    ):
        clean = [{k: v for k, v in p.items() if v not in ([], None)} for p in perms or []]
        if clean:
            try:
                revoke(GroupId=group["GroupId"], IpPermissions=clean)
                changed = True
            except Exception as exc:
                if not is_code(exc, "InvalidPermission.NotFound"):
                    raise
    return DoneResult(changed=changed)


@aws_activity
def revoke_security_group_ingress(inp: GroupIdInput) -> DoneResult:
    """First phase of deletion: drop every ingress rule (they reference the other groups)."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        current = _current(ec2, inp.group_id)
    except Exception as exc:
        if is_code(exc, "InvalidGroup.NotFound"):
            return DoneResult(changed=False)
        raise
    if not current:
        return DoneResult(changed=False)
    try:
        ec2.revoke_security_group_ingress(GroupId=inp.group_id, IpPermissions=to_ip_permissions(current))
    except Exception as exc:
        if not is_code(exc, "InvalidPermission.NotFound", "InvalidGroup.NotFound"):
            raise
    return DoneResult()


@aws_activity
def delete_security_group(inp: GroupIdInput) -> DoneResult:
    """Delete; DependencyViolation (an instance or load balancer ENI still in it, or a rule of
    another group still naming it) is retried by Temporal."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        ec2.delete_security_group(GroupId=inp.group_id)
    except Exception as exc:
        if is_code(exc, "InvalidGroup.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()
