"""Internet gateway, Elastic IPs and NAT gateways.

NAT gateways are slow (a minute or two to become available, as long to delete), so their
activities only start the change or read the state; the workflow waits between reads with
durable timers. moto ignores tag filters on DescribeNatGateways, so NAT lookups filter by
subnet server-side and by tags client-side.
"""

from __future__ import annotations

from capt.activities.aws import idempotent, tags
from capt.activities.aws.client_tokens import client_token
from capt.activities.aws.errors import ConflictError, StillInUseError, is_code
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client
from capt.rules.base import Frozen


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


class EnsureInternetGatewayInput(_In):
    cluster: ClusterRef
    vpc_id: str
    name: str


class InternetGatewayResult(AwsResult):
    internet_gateway_id: str
    created: bool = False


class InternetGatewayIdInput(_In):
    cluster: ClusterRef
    internet_gateway_id: str
    vpc_id: str | None = None


class EnsureEipInput(_In):
    cluster: ClusterRef
    name: str


class EipResult(AwsResult):
    allocation_id: str
    public_ip: str
    created: bool = False


class AllocationIdInput(_In):
    cluster: ClusterRef
    allocation_id: str


class EnsureNatGatewayInput(_In):
    cluster: ClusterRef
    name: str
    subnet_id: str
    allocation_id: str
    # Scope of the ClientToken (the workflow run): see client_tokens.
    token_scope: str


class NatGatewayResult(AwsResult):
    nat_gateway_id: str
    state: str
    failure: str | None = None
    created: bool = False


class NatGatewayIdInput(_In):
    cluster: ClusterRef
    nat_gateway_id: str


# --- internet gateway -------------------------------------------------------------------


@aws_activity
def ensure_internet_gateway(inp: EnsureInternetGatewayInput) -> InternetGatewayResult:
    ec2 = client("ec2", inp.cluster.region)
    igw, created = idempotent.find_or_create(
        "internet-gateway",
        "internet gateway",
        inp.cluster,
        inp.name,
        "InternetGatewayId",
        describe=lambda filters: ec2.describe_internet_gateways(Filters=filters)["InternetGateways"],
        create=lambda spec: ec2.create_internet_gateway(TagSpecifications=spec)["InternetGateway"],
    )
    attached = {
        a["VpcId"]
        for a in igw.get("Attachments", [])
        if a.get("State") in (None, "attaching", "attached", "available")
    }
    if attached - {inp.vpc_id}:
        raise ConflictError(
            f"internet gateway {igw['InternetGatewayId']} ({inp.name}) is attached to {sorted(attached)}, not {inp.vpc_id}"
        )
    if inp.vpc_id not in attached:
        try:
            ec2.attach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=inp.vpc_id)
        except Exception as exc:
            # A lost response from an earlier attach: attached already is what we want.
            if not is_code(exc, "Resource.AlreadyAssociated"):
                raise
    return InternetGatewayResult(internet_gateway_id=igw["InternetGatewayId"], created=created)


@aws_activity
def delete_internet_gateway(inp: InternetGatewayIdInput) -> DoneResult:
    """Detach (from every VPC it is attached to) and delete. DependencyViolation while public
    addresses are still mapped in the VPC is retried by Temporal."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        igw = ec2.describe_internet_gateways(InternetGatewayIds=[inp.internet_gateway_id])[
            "InternetGateways"
        ][0]
    except Exception as exc:
        if is_code(exc, "InvalidInternetGatewayID.NotFound"):
            return DoneResult(changed=False)
        raise
    for attachment in igw.get("Attachments", []):
        try:
            ec2.detach_internet_gateway(InternetGatewayId=inp.internet_gateway_id, VpcId=attachment["VpcId"])
        except Exception as exc:
            if not is_code(exc, "Gateway.NotAttached", "InvalidInternetGatewayID.NotFound"):
                raise
    try:
        ec2.delete_internet_gateway(InternetGatewayId=inp.internet_gateway_id)
    except Exception as exc:
        if is_code(exc, "InvalidInternetGatewayID.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


# --- Elastic IPs ------------------------------------------------------------------------


@aws_activity
def ensure_eip(inp: EnsureEipInput) -> EipResult:
    ec2 = client("ec2", inp.cluster.region)
    address, created = idempotent.find_or_create(
        "elastic-ip",
        "Elastic IP",
        inp.cluster,
        inp.name,
        "AllocationId",
        describe=lambda filters: ec2.describe_addresses(Filters=filters)["Addresses"],
        create=lambda spec: ec2.allocate_address(Domain="vpc", TagSpecifications=spec),
    )
    return EipResult(allocation_id=address["AllocationId"], public_ip=address["PublicIp"], created=created)


@aws_activity
def release_eip(inp: AllocationIdInput) -> DoneResult:
    """Release an address. While its NAT gateway is still deleting AWS answers InUse or
    AuthFailure ("... is associated"); both are worth a retry here."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        ec2.release_address(AllocationId=inp.allocation_id)
    except Exception as exc:
        if is_code(exc, "InvalidAllocationID.NotFound"):
            return DoneResult(changed=False)
        if is_code(exc, "InvalidIPAddress.InUse", "AuthFailure"):
            raise StillInUseError(f"Elastic IP {inp.allocation_id} is still in use: {exc}") from exc
        raise
    return DoneResult()


# --- NAT gateways -----------------------------------------------------------------------

_LIVE_NAT_STATES = ("pending", "available")


@aws_activity
def ensure_nat_gateway(inp: EnsureNatGatewayInput) -> NatGatewayResult:
    ec2 = client("ec2", inp.cluster.region)
    # Server-side filters AWS honours; moto ignores the tag one, hence the client-side check.
    found = ec2.describe_nat_gateways(
        Filter=[
            {"Name": "subnet-id", "Values": [inp.subnet_id]},
            {"Name": "state", "Values": list(_LIVE_NAT_STATES)},
            tags.name_filter(inp.name),
        ]
    )["NatGateways"]
    live = [n for n in found if n.get("State") in _LIVE_NAT_STATES and n.get("SubnetId") == inp.subnet_id]
    nat = tags.pick_owned(live, inp.cluster.name, inp.name, "NAT gateway", "NatGatewayId")
    created = nat is None
    if nat is None:
        spec = tags.specification(
            "natgateway",
            tags.build(inp.cluster.name, inp.name, tags.ROLE_COMMON, additional=inp.cluster.additional_tags),
        )
        nat = ec2.create_nat_gateway(
            SubnetId=inp.subnet_id,
            AllocationId=inp.allocation_id,
            ClientToken=client_token("nat", inp.cluster.name, inp.name, inp.subnet_id, scope=inp.token_scope),
            TagSpecifications=spec,
        )["NatGateway"]
    return NatGatewayResult(
        nat_gateway_id=nat["NatGatewayId"],
        state=nat["State"],
        failure=nat.get("FailureMessage"),
        created=created,
    )


@aws_activity
def describe_nat_gateway(inp: NatGatewayIdInput) -> NatGatewayResult:
    """One read of a NAT gateway's state; the workflow polls this between durable timers."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        found = ec2.describe_nat_gateways(NatGatewayIds=[inp.nat_gateway_id])["NatGateways"]
    except Exception as exc:
        if is_code(exc, "NatGatewayNotFound", "InvalidNatGatewayID.NotFound"):
            return NatGatewayResult(nat_gateway_id=inp.nat_gateway_id, state="deleted")
        raise
    if not found:
        return NatGatewayResult(nat_gateway_id=inp.nat_gateway_id, state="deleted")
    nat = found[0]
    return NatGatewayResult(
        nat_gateway_id=nat["NatGatewayId"], state=nat["State"], failure=nat.get("FailureMessage")
    )


@aws_activity
def delete_nat_gateway(inp: NatGatewayIdInput) -> NatGatewayResult:
    """Start deleting; returns the state after the call ("deleting", or "deleted" if gone)."""
    ec2 = client("ec2", inp.cluster.region)
    try:
        ec2.delete_nat_gateway(NatGatewayId=inp.nat_gateway_id)
    except Exception as exc:
        if is_code(exc, "NatGatewayNotFound", "InvalidNatGatewayID.NotFound"):
            return NatGatewayResult(nat_gateway_id=inp.nat_gateway_id, state="deleted")
        raise
    return NatGatewayResult(nat_gateway_id=inp.nat_gateway_id, state="deleting")
