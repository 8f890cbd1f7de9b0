"""Subnets: one public and one private per zone (or the manifest's), tagged for the cloud provider.

Public subnets map public IPs on launch (CAPA does the same; the NAT gateways and the bastion
live there). Lookup is by Name within the VPC, then the owned tag is checked.
"""

from __future__ import annotations

from capt.activities.aws import tags
from capt.activities.aws.errors import ConflictError, NotYetVisibleError, is_code
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client
from capt.plan.network import SubnetPlan
from capt.rules.base import Frozen


class EnsureSubnetInput(Frozen):
    cluster: ClusterRef
    vpc_id: str
    subnet: SubnetPlan


class SubnetResult(AwsResult):
    subnet_id: str
    availability_zone: str
    cidr_block: str
    created: bool = False


class SubnetIdInput(Frozen):
    cluster: ClusterRef
    subnet_id: str


def subnet_tags(cluster: ClusterRef, plan: SubnetPlan) -> dict[str, str]:
    elb_tag = tags.ELB_SUBNET_TAG if plan.is_public else tags.INTERNAL_ELB_SUBNET_TAG
    role = tags.ROLE_PUBLIC if plan.is_public else tags.ROLE_PRIVATE
    return tags.build(
        cluster.name,
        plan.name,
        role,
        cloud_provider=tags.SHARED,
        additional=cluster.additional_tags,
        extra={elb_tag: "1"},
    )


def _find(ec2, inp: EnsureSubnetInput) -> dict | None:
    found = ec2.describe_subnets(
        Filters=[{"Name": "vpc-id", "Values": [inp.vpc_id]}, tags.name_filter(inp.subnet.name)]
    )["Subnets"]
    return tags.pick_owned(found, inp.cluster.name, inp.subnet.name, "subnet", "SubnetId")


@aws_activity
def ensure_subnet(inp: EnsureSubnetInput) -> SubnetResult:
    plan = inp.subnet
    ec2 = client("ec2", inp.cluster.region)
    subnet = _find(ec2, inp)
    created = subnet is None
    if subnet is None:
        try:
            subnet = ec2.create_subnet(
                VpcId=inp.vpc_id,
                CidrBlock=plan.cidr_block,
                AvailabilityZone=plan.availability_zone,
                TagSpecifications=tags.specification("subnet", subnet_tags(inp.cluster, plan)),
            )["Subnet"]
        except Exception as exc:
            if not is_code(exc, "InvalidSubnet.Conflict"):
                raise
            # Our own earlier create whose response was lost, not yet visible to reads -- or
            # someone else's subnet on this CIDR. Look once more; retry only in the first case.
            subnet = _find(ec2, inp)
            if subnet is None:
                holders = ec2.describe_subnets(
                    Filters=[
                        {"Name": "vpc-id", "Values": [inp.vpc_id]},
                        {"Name": "cidr-block", "Values": [plan.cidr_block]},
                    ]
                )["Subnets"]
                # Reads lag apart: this one may show our subnet where the lookup by name did not.
                subnet = tags.pick_owned(holders, inp.cluster.name, plan.name, "subnet", "SubnetId")
                if subnet is None and holders:
                    raise ConflictError(
                        f"CIDR {plan.cidr_block} in {inp.vpc_id} is taken by subnet {holders[0]['SubnetId']}, which is not {plan.name}"
                    ) from exc
                if subnet is None:
                    raise NotYetVisibleError(
                        f"CIDR {plan.cidr_block} is taken in {inp.vpc_id} by a subnet not visible yet"
                    ) from exc
    if subnet["CidrBlock"] != plan.cidr_block or subnet["AvailabilityZone"] != plan.availability_zone:
        raise ConflictError(
            f"subnet {subnet['SubnetId']} ({plan.name}) is {subnet['CidrBlock']} in {subnet['AvailabilityZone']}, "
            f"the plan says {plan.cidr_block} in {plan.availability_zone}"
        )
    if plan.is_public and not subnet.get("MapPublicIpOnLaunch"):
        ec2.modify_subnet_attribute(SubnetId=subnet["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    return SubnetResult(
        subnet_id=subnet["SubnetId"],
        availability_zone=subnet["AvailabilityZone"],
        cidr_block=subnet["CidrBlock"],
        created=created,
    )


@aws_activity
def delete_subnet(inp: SubnetIdInput) -> DoneResult:
    ec2 = client("ec2", inp.cluster.region)
    try:
        ec2.delete_subnet(SubnetId=inp.subnet_id)
    except Exception as exc:
        if is_code(exc, "InvalidSubnetID.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()
