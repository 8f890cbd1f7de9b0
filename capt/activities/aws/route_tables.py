"""Route tables: one per subnet, 0.0.0.0/0 to the internet gateway (public) or to the zone's
NAT gateway (private), associated with its subnet.

Each step checks what is there first, so a retry after a lost response (table created, route
added, association made -- but the answer never arrived) only does what is still missing.
"""

from __future__ import annotations

from pydantic import model_validator

from capt.activities.aws import tags
from capt.activities.aws.client_tokens import client_token
from capt.activities.aws.errors import is_code
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client
from capt.rules.base import Frozen

DEFAULT_ROUTE = "0.0.0.0/0"


class EnsureRouteTableInput(Frozen):
    cluster: ClusterRef
    vpc_id: str
    name: str
    subnet_id: str
    # Exactly one: the internet gateway (public) or the zone's NAT gateway (private).
    internet_gateway_id: str | None = None
    nat_gateway_id: str | None = None
    token_scope: str

    @model_validator(mode="after")
    def _one_target(self) -> EnsureRouteTableInput:
        if (self.internet_gateway_id is None) == (self.nat_gateway_id is None):
            raise ValueError("a route table routes to exactly one of internet_gateway_id, nat_gateway_id")
        return self


class RouteTableResult(AwsResult):
    route_table_id: str
    association_id: str
    created: bool = False


class RouteTableIdInput(Frozen):
    cluster: ClusterRef
    route_table_id: str


def _target(inp: EnsureRouteTableInput) -> dict[str, str]:
    return (
        {"GatewayId": inp.internet_gateway_id}
        if inp.internet_gateway_id
        else {"NatGatewayId": inp.nat_gateway_id}
    )  # type: ignore[dict-item]


@aws_activity
def ensure_route_table(inp: EnsureRouteTableInput) -> RouteTableResult:
    ec2 = client("ec2", inp.cluster.region)
    found = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [inp.vpc_id]}, tags.name_filter(inp.name)]
    )["RouteTables"]
    table = tags.pick_owned(found, inp.cluster.name, inp.name, "route table", "RouteTableId")
    created = table is None
    if table is None:
        spec = tags.specification(
            "route-table",
            tags.build(inp.cluster.name, inp.name, tags.ROLE_COMMON, additional=inp.cluster.additional_tags),
        )
        table = ec2.create_route_table(
            VpcId=inp.vpc_id,
            ClientToken=client_token("rtb", inp.cluster.name, inp.name, inp.vpc_id, scope=inp.token_scope),
            TagSpecifications=spec,
        )["RouteTable"]
    rtb = table["RouteTableId"]
    target = _target(inp)
    ((key, value),) = target.items()

    route = next((r for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == DEFAULT_ROUTE), None)
    if route is None:
        try:
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=DEFAULT_ROUTE, **target)
        except Exception as exc:
            if not is_code(exc, "RouteAlreadyExists"):
                raise
            # Added by an attempt whose answer was lost: make sure it points where we want.
            ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock=DEFAULT_ROUTE, **target)
    elif route.get(key) != value:
        ec2.replace_route(RouteTableId=rtb, DestinationCidrBlock=DEFAULT_ROUTE, **target)

    association = next((a for a in table.get("Associations", []) if a.get("SubnetId") == inp.subnet_id), None)
    if association is not None:
        association_id = association["RouteTableAssociationId"]
    else:
        try:
            association_id = ec2.associate_route_table(RouteTableId=rtb, SubnetId=inp.subnet_id)[
                "AssociationId"
            ]
        except Exception as exc:
            if not is_code(exc, "Resource.AlreadyAssociated"):
                raise
            # The subnet is associated elsewhere (ours, if an earlier answer was lost but the
            # table read above was stale; or another table): point the association at ours.
            other = ec2.describe_route_tables(
                Filters=[{"Name": "association.subnet-id", "Values": [inp.subnet_id]}]
            )["RouteTables"]
            current = next(
                a for t in other for a in t.get("Associations", []) if a.get("SubnetId") == inp.subnet_id
            )
            association_id = current["RouteTableAssociationId"]
            if current["RouteTableId"] != rtb:
                association_id = ec2.replace_route_table_association(
                    AssociationId=association_id, RouteTableId=rtb
                )["NewAssociationId"]
    return RouteTableResult(route_table_id=rtb, association_id=association_id, created=created)


@aws_activity
def delete_route_table(inp: RouteTableIdInput) -> DoneResult:
    ec2 = client("ec2", inp.cluster.region)
    try:
        table = ec2.describe_route_tables(RouteTableIds=[inp.route_table_id])["RouteTables"][0]
    except Exception as exc:
        if is_code(exc, "InvalidRouteTableID.NotFound"):
            return DoneResult(changed=False)
        raise
    for a in table.get("Associations", []):
        if a.get("Main"):
            continue
        try:
            ec2.disassociate_route_table(AssociationId=a["RouteTableAssociationId"])
        except Exception as exc:
            if not is_code(exc, "InvalidAssociationID.NotFound"):
                raise
    try:
        ec2.delete_route_table(RouteTableId=inp.route_table_id)
    except Exception as exc:
        if is_code(exc, "InvalidRouteTableID.NotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()
