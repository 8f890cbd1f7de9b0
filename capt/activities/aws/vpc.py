"""VPC: create/find the cluster's VPC, describe an existing one, delete ours.

Like CAPA's network/vpc.go: DNS support and DNS hostnames are turned on (instances need
resolvable private DNS names for kubeadm and the cloud provider). A VPC named in the manifest
(`network.vpc.id`) is only ever described, never modified or deleted.
"""

from __future__ import annotations

from capt.activities.aws import idempotent
from capt.activities.aws.errors import ConflictError, is_code
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client
from capt.plan.network import SubnetPlan
from capt.rules.base import Frozen


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


class ZonesInput(_In):
    region: str


class ZonesResult(AwsResult):
    zones: tuple[str, ...]


class EnsureVpcInput(_In):
    cluster: ClusterRef
    name: str
    cidr_block: str


class VpcResult(AwsResult):
    vpc_id: str
    cidr_block: str
    created: bool = False


class VpcIdInput(_In):
    cluster: ClusterRef
    vpc_id: str


class DescribeNetworkInput(_In):
    cluster: ClusterRef
    vpc_id: str
    subnet_ids: tuple[str, ...]


class ExistingNetworkResult(AwsResult):
    vpc_cidr: str
    subnets: tuple[SubnetPlan, ...]
    # Public IPs of the VPC's available NAT gateways (the API load balancer admits them).
    nat_public_ips: tuple[str, ...]


@aws_activity
def list_availability_zones(inp: ZonesInput) -> ZonesResult:
    """The region's available zones (standard zones only: no Local or Wavelength zones)."""
    ec2 = client("ec2", inp.region)
    out = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])
    zones = [
        z["ZoneName"]
        for z in out["AvailabilityZones"]
        if z.get("ZoneType", "availability-zone") == "availability-zone"
        and z.get("State", "available") == "available"
    ]
    return ZonesResult(zones=tuple(sorted(zones)))


@aws_activity
def ensure_vpc(inp: EnsureVpcInput) -> VpcResult:
    ec2 = client("ec2", inp.cluster.region)
    vpc, created = idempotent.find_or_create(
        "vpc",
        "VPC",
        inp.cluster,
        inp.name,
        "VpcId",
        describe=lambda filters: ec2.describe_vpcs(Filters=filters)["Vpcs"],
        create=lambda spec: ec2.create_vpc(CidrBlock=inp.cidr_block, TagSpecifications=spec)["Vpc"],
    )
    if not created and vpc["CidrBlock"] != inp.cidr_block:
        raise ConflictError(
            f"VPC {vpc['VpcId']} ({inp.name}) has CIDR {vpc['CidrBlock']}, the spec says {inp.cidr_block}; a VPC's CIDR cannot change"
        )
    # One attribute per call: EC2 rejects a request that sets both. Setting is idempotent.
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
    return VpcResult(vpc_id=vpc["VpcId"], cidr_block=vpc["CidrBlock"], created=created)


@aws_activity
def delete_vpc(inp: VpcIdInput) -> DoneResult:
    """Delete a VPC the cluster owns (ids come from the ownership sweep). Gone = done;
    DependencyViolation (something inside still being deleted) is retried by Temporal."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        ec2.delete_vpc(VpcId=inp.vpc_id)
    except Exception as exc:
        if is_code(exc, "InvalidVpcID.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


@aws_activity
def describe_existing_network(inp: DescribeNetworkInput) -> ExistingNetworkResult:
    """Read-only view of an existing VPC: its CIDR, the named subnets (zone, CIDR, public or
    not -- public means its route table sends 0.0.0.0/0 to an internet gateway) and the public
    IPs of its NAT gateways."""
    ec2 = client("ec2", inp.cluster.region)
    vpcs = ec2.describe_vpcs(VpcIds=[inp.vpc_id])["Vpcs"]
    subnets = ec2.describe_subnets(SubnetIds=list(inp.subnet_ids))["Subnets"]
    foreign = [s["SubnetId"] for s in subnets if s["VpcId"] != inp.vpc_id]
    if foreign:
        raise ConflictError(f"subnets {foreign} are not in VPC {inp.vpc_id}")
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [inp.vpc_id]}])["RouteTables"]
    main_public = False
    table_public: dict[str, bool] = {}
    for t in tables:
        public = any(r.get("GatewayId", "").startswith("igw-") for r in t.get("Routes", []))
        for a in t.get("Associations", []):
            if a.get("Main"):
                main_public = public
            elif a.get("SubnetId"):
                table_public[a["SubnetId"]] = public
    nats = ec2.describe_nat_gateways(Filter=[{"Name": "vpc-id", "Values": [inp.vpc_id]}])["NatGateways"]
    ips = sorted(
        a["PublicIp"]
        for n in nats
        if n.get("VpcId") == inp.vpc_id and n.get("State") == "available"
        for a in n.get("NatGatewayAddresses", [])
        if a.get("PublicIp")
    )
    by_id = {s["SubnetId"]: s for s in subnets}
    return ExistingNetworkResult(
        vpc_cidr=vpcs[0]["CidrBlock"],
        subnets=tuple(
            SubnetPlan(
                name=sid,
                id=sid,
                availability_zone=by_id[sid]["AvailabilityZone"],
                cidr_block=by_id[sid]["CidrBlock"],
                is_public=table_public.get(sid, main_public),
            )
            for sid in inp.subnet_ids
        ),
        nat_public_ips=tuple(ips),
    )
