"""AWS activity building blocks: error mapping, tags, client tokens, call counting, and the
idempotency branches moto cannot reach on its own (driven with botocore event hooks)."""

from __future__ import annotations

import threading

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from prometheus_client import REGISTRY
from temporalio.exceptions import ApplicationError

from capt.activities.aws import (
    bastion,
    gateways,
    load_balancer,
    route_tables,
    security_groups,
    session,
    subnets,
    sweep,
    tags,
    vpc,
)
from capt.activities.aws.client_tokens import MAX_LENGTH, client_token
from capt.activities.aws.errors import NON_RETRYABLE_CODES, NotOwnedError, to_application_error
from capt.activities.aws.models import ClusterRef
from capt.dev.testkit.reference import AZS, NAME, REGION, reference_spec
from capt.plan.cluster import build_plan
from capt.plan.network import SubnetPlan

CLUSTER = ClusterRef(name=NAME, region=REGION, additional_tags=(("team", "infra"), ("Name", "ignored")))


def client_error(code: str, message: str = "msg", status: int = 400, op: str = "CreateVpc") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retryable", "type_"),
    [
        (client_error("InvalidVpc.Range", "The CIDR '10.0.0.0/8' is invalid."), False, "InvalidVpc.Range"),
        (client_error("InvalidParameterValue"), False, "InvalidParameterValue"),
        (client_error("UnauthorizedOperation"), False, "UnauthorizedOperation"),
        (client_error("VpcLimitExceeded"), False, "VpcLimitExceeded"),
        (client_error("RequestLimitExceeded", status=503), True, "RequestLimitExceeded"),
        (client_error("Throttling"), True, "Throttling"),
        (client_error("InternalError", status=500), True, "InternalError"),
        (client_error("ServiceUnavailable", status=503), True, "ServiceUnavailable"),
        (client_error("DependencyViolation"), True, "DependencyViolation"),
        (client_error("InvalidVpcID.NotFound"), True, "InvalidVpcID.NotFound"),
        (ConnectionClosedError(endpoint_url="https://ec2"), True, "ConnectionClosedError"),
        (EndpointConnectionError(endpoint_url="https://ec2"), True, "EndpointConnectionError"),
        (NotOwnedError("vpc-1 is not ours"), False, "NotOwnedError"),
        (KeyError("bug"), False, "KeyError"),
    ],
)
def test_error_mapping(exc, retryable, type_):
    app = to_application_error(exc)
    assert isinstance(app, ApplicationError)
    assert app.non_retryable is (not retryable)
    assert app.type == type_


def test_non_retryable_error_keeps_aws_message():
    app = to_application_error(client_error("InvalidVpc.Range", "The CIDR '10.0.0.0/8' is invalid."))
    assert app.message == "CreateVpc: InvalidVpc.Range: The CIDR '10.0.0.0/8' is invalid."
    # Throttling and server errors are never in the non-retryable list.
    assert (
        not {
            "RequestLimitExceeded",
            "Throttling",
            "InternalError",
            "ServiceUnavailable",
            "DependencyViolation",
        }
        & NON_RETRYABLE_CODES
    )


# --- tags and tokens ------------------------------------------------------------------------


def test_tags_build_and_ownership():
    t = tags.build(NAME, "x", "common", additional=CLUSTER.additional_tags)
    assert t == {
        "team": "infra",
        "Name": "x",
        "sigs.k8s.io/cluster-api-provider-aws/cluster/capi-quickstart": "owned",
        "sigs.k8s.io/cluster-api-provider-aws/role": "common",
        "kubernetes.io/cluster/capi-quickstart": "owned",
    }
    assert "kubernetes.io/cluster/capi-quickstart" not in tags.build(NAME, "x", "node", cloud_provider=None)
    ours = {"Id": "b", "Tags": tags.as_list(t)}
    older_ours = {"Id": "a", "Tags": tags.as_list(t)}
    assert (
        tags.pick_owned(
            [ours, older_ours, {"Id": "c", "Tags": [{"Key": "Name", "Value": "y"}]}], NAME, "x", "thing", "Id"
        )
        is older_ours
    )
    assert tags.pick_owned([], NAME, "x", "thing", "Id") is None
    with pytest.raises(NotOwnedError, match="foreign"):
        tags.pick_owned(
            [ours, {"Id": "foreign", "Tags": [{"Key": "Name", "Value": "x"}]}], NAME, "x", "thing", "Id"
        )
    # Another cluster's owned tag is not ours.
    other = {"Id": "o", "Tags": tags.as_list(tags.build("other", "x", "common"))}
    with pytest.raises(NotOwnedError):
        tags.pick_owned([other], NAME, "x", "thing", "Id")


def test_client_tokens():
    a = client_token("nat", NAME, "n", "subnet-1", scope="run-1")
    assert a == client_token("nat", NAME, "n", "subnet-1", scope="run-1")
    assert len(a) <= MAX_LENGTH and a.isascii()
    assert (
        len(
            {
                a,
                client_token("nat", NAME, "n", "subnet-1", scope="run-2"),
                client_token("nat", NAME, "n", "subnet-2", scope="run-1"),
                client_token("rtb", NAME, "n", "subnet-1", scope="run-1"),
            }
        )
        == 4
    )


# --- session: clients and call accounting --------------------------------------------------------


def test_clients_use_standard_retries_and_endpoint_env(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:1")
    c = session.client("ec2", REGION)
    assert c.meta.config.retries["mode"] == "standard"
    assert c.meta.endpoint_url == "http://127.0.0.1:1"
    assert c.meta.region_name == REGION
    monkeypatch.delenv("AWS_ENDPOINT_URL_EC2")
    assert session.client("ec2", REGION).meta.endpoint_url == f"https://ec2.{REGION}.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert session.client("ec2").meta.region_name == "eu-west-1"


def _counter(service: str, operation: str) -> float:
    return (
        REGISTRY.get_sample_value("capt_aws_calls_total", {"service": service, "operation": operation}) or 0.0
    )


def test_activities_report_their_calls_per_operation(aws):
    before = _counter("ec2", "CreateVpc")
    result = vpc.ensure_vpc(vpc.EnsureVpcInput(cluster=CLUSTER, name=f"{NAME}-vpc", cidr_block="10.0.0.0/16"))
    assert result.aws_calls == {"ec2:DescribeVpcs": 1, "ec2:CreateVpc": 1, "ec2:ModifyVpcAttribute": 2}
    assert _counter("ec2", "CreateVpc") == before + 1
    again = vpc.ensure_vpc(vpc.EnsureVpcInput(cluster=CLUSTER, name=f"{NAME}-vpc", cidr_block="10.0.0.0/16"))
    assert again.vpc_id == result.vpc_id and not again.created
    assert again.aws_calls == {"ec2:DescribeVpcs": 1, "ec2:ModifyVpcAttribute": 2}
    # Tallies are per thread: a concurrent activity's calls do not leak in.
    seen = {}

    def other() -> None:
        seen["calls"] = vpc.list_availability_zones(vpc.ZonesInput(region=REGION)).aws_calls

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["calls"] == {"ec2:DescribeAvailabilityZones": 1}


def test_vpc_cidr_conflict_is_not_retried(aws):
    vpc.ensure_vpc(vpc.EnsureVpcInput(cluster=CLUSTER, name=f"{NAME}-vpc", cidr_block="10.0.0.0/16"))
    with pytest.raises(ApplicationError) as err:
        vpc.ensure_vpc(vpc.EnsureVpcInput(cluster=CLUSTER, name=f"{NAME}-vpc", cidr_block="10.1.0.0/16"))
    assert err.value.non_retryable and err.value.type == "ConflictError"


# --- idempotency branches, with injected AWS answers -------------------------------------------------


class Answer:
    """`before-call` hook answering chosen operations without sending them."""

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = answers

    def __call__(self, model, **kwargs):
        queue = self.answers.get(model.name)
        if not queue:
            return None
        parsed = queue.pop(0)
        status = parsed.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
        return AWSResponse("https://injected.invalid", status, {}, None), parsed


def error(code: str, status: int = 400) -> dict:
    return {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


class Tokens:
    def __init__(self) -> None:
        self.sent: dict[str, list[str]] = {}

    def __call__(self, params, model, **kwargs):
        if "ClientToken" in params:
            self.sent.setdefault(model.name, []).append(params["ClientToken"])


@pytest.fixture
def network(aws):
    """A VPC with one public subnet, for the gateway/route table/bastion activities."""
    v = vpc.ensure_vpc(vpc.EnsureVpcInput(cluster=CLUSTER, name=f"{NAME}-vpc", cidr_block="10.0.0.0/16"))
    plan = build_plan(reference_spec(), AZS).network
    public = subnets.ensure_subnet(
        subnets.EnsureSubnetInput(cluster=CLUSTER, vpc_id=v.vpc_id, subnet=plan.public_subnets[0])
    )
    return v.vpc_id, public.subnet_id


def test_retried_creates_send_the_same_client_token(network):
    """When a lookup cannot see the first create yet (eventual consistency), the retry's create
    carries the same ClientToken, so real AWS returns the first resource instead of a second."""
    vpc_id, subnet_id = network
    # (moto ignores ClientToken and refuses to reuse an address, so each call gets its own.)
    eips = [
        gateways.ensure_eip(gateways.EnsureEipInput(cluster=CLUSTER, name=f"e{i}")).allocation_id
        for i in range(3)
    ]
    tokens = Tokens()
    unseen = {"NatGateways": []}
    with (
        session.hooked("before-parameter-build", tokens),
        session.hooked("before-call", Answer({"DescribeNatGateways": [unseen, unseen, unseen]})),
    ):
        for eip, scope in zip(eips, ("run-1", "run-1", "run-2"), strict=True):
            gateways.ensure_nat_gateway(
                gateways.EnsureNatGatewayInput(
                    cluster=CLUSTER, name="n", subnet_id=subnet_id, allocation_id=eip, token_scope=scope
                )
            )
    first, retry, other_run = tokens.sent["CreateNatGateway"]
    assert first == retry != other_run

    empty_tables = {"RouteTables": []}
    with (
        session.hooked("before-parameter-build", tokens),
        session.hooked("before-call", Answer({"DescribeRouteTables": [empty_tables, empty_tables]})),
    ):
        igw = gateways.ensure_internet_gateway(
            gateways.EnsureInternetGatewayInput(cluster=CLUSTER, vpc_id=vpc_id, name="i")
        )
        for _ in range(2):
            route_tables.ensure_route_table(
                route_tables.EnsureRouteTableInput(
                    cluster=CLUSTER,
                    vpc_id=vpc_id,
                    name="r",
                    subnet_id=subnet_id,
                    internet_gateway_id=igw.internet_gateway_id,
                    token_scope="run-1",
                )
            )
    assert len(set(tokens.sent["CreateRouteTable"])) == 1

    group = security_groups.ensure_security_group(
        security_groups.EnsureSecurityGroupInput(
            cluster=CLUSTER, vpc_id=vpc_id, name="b", role="bastion", description="d"
        )
    )
    no_instances = {"Reservations": []}
    with (
        session.hooked("before-parameter-build", tokens),
        session.hooked("before-call", Answer({"DescribeInstances": [no_instances, no_instances]})),
    ):
        for _ in range(2):
            bastion.ensure_bastion(
                bastion.EnsureBastionInput(
                    cluster=CLUSTER,
                    name="bastion",
                    instance_type="t3.micro",
                    ami=None,
                    subnet_id=subnet_id,
                    security_group_id=group.group_id,
                    ssh_key_name=None,
                    token_scope="run-1",
                )
            )
    assert len(tokens.sent["RunInstances"]) == 2 and len(set(tokens.sent["RunInstances"])) == 1


def test_the_bastion_has_an_encrypted_root_volume_and_requires_imdsv2(network):
    vpc_id, subnet_id = network
    group = security_groups.ensure_security_group(
        security_groups.EnsureSecurityGroupInput(
            cluster=CLUSTER, vpc_id=vpc_id, name="b", role="bastion", description="d"
        )
    )
    result = bastion.ensure_bastion(
        bastion.EnsureBastionInput(
            cluster=CLUSTER,
            name="bastion",
            instance_type="t3.micro",
            ami=None,
            subnet_id=subnet_id,
            security_group_id=group.group_id,
            ssh_key_name=None,
            token_scope="run-1",
        )
    )
    ec2 = boto3.client("ec2", region_name=REGION)
    instance = ec2.describe_instances(InstanceIds=[result.instance_id])["Reservations"][0]["Instances"][0]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    (root,) = [m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]]
    volume = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
    assert volume["Encrypted"] is True and volume["VolumeType"] == "gp3"


def test_subnet_conflict_with_a_foreign_subnet_is_not_retried(network):
    vpc_id, _ = network
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.64.0/18", AvailabilityZone=AZS[0])
    private = build_plan(reference_spec(), AZS).network.private_subnets[0]
    with pytest.raises(ApplicationError) as err:
        subnets.ensure_subnet(subnets.EnsureSubnetInput(cluster=CLUSTER, vpc_id=vpc_id, subnet=private))
    assert err.value.non_retryable and err.value.type == "ConflictError"


def test_subnet_conflict_with_an_invisible_subnet_is_retried(network):
    vpc_id, _ = network
    private = build_plan(reference_spec(), AZS).network.private_subnets[0]
    invisible = {"Subnets": []}
    answers = {
        "DescribeSubnets": [invisible, invisible, invisible],
        "CreateSubnet": [error("InvalidSubnet.Conflict")],
    }
    with session.hooked("before-call", Answer(answers)), pytest.raises(ApplicationError) as err:
        subnets.ensure_subnet(subnets.EnsureSubnetInput(cluster=CLUSTER, vpc_id=vpc_id, subnet=private))
    assert not err.value.non_retryable and err.value.type == "NotYetVisibleError"


def test_subnet_conflict_with_our_subnet_shown_only_by_the_cidr_read_is_ours(network):
    """After a lost CreateSubnet, the lookups by name may still lag while the read by CIDR
    already shows the subnet (reads lag apart): it is ours (Name and owned tag), not a conflict."""
    vpc_id, _ = network
    private = build_plan(reference_spec(), AZS).network.private_subnets[0]
    inp = subnets.EnsureSubnetInput(cluster=CLUSTER, vpc_id=vpc_id, subnet=private)
    first = subnets.ensure_subnet(inp)
    invisible = {"Subnets": []}
    with session.hooked("before-call", Answer({"DescribeSubnets": [invisible, invisible]})):
        again = subnets.ensure_subnet(inp)
    assert again.subnet_id == first.subnet_id
    assert again.aws_calls == {"ec2:CreateSubnet": 1, "ec2:DescribeSubnets": 1}  # (answered reads: unsent)


def test_route_table_takes_over_an_existing_association(network):
    vpc_id, subnet_id = network
    ec2 = boto3.client("ec2", region_name=REGION)
    foreign = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=foreign, SubnetId=subnet_id)
    igw = gateways.ensure_internet_gateway(
        gateways.EnsureInternetGatewayInput(cluster=CLUSTER, vpc_id=vpc_id, name="i")
    )
    # Real EC2 refuses a second explicit association; moto would silently move it.
    with session.hooked(
        "before-call", Answer({"AssociateRouteTable": [error("Resource.AlreadyAssociated")]})
    ):
        rt = route_tables.ensure_route_table(
            route_tables.EnsureRouteTableInput(
                cluster=CLUSTER,
                vpc_id=vpc_id,
                name="r",
                subnet_id=subnet_id,
                internet_gateway_id=igw.internet_gateway_id,
                token_scope="s",
            )
        )
    assert rt.aws_calls["ec2:ReplaceRouteTableAssociation"] == 1
    tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])[
        "RouteTables"
    ]
    assert [t["RouteTableId"] for t in tables] == [rt.route_table_id]


def test_route_table_repoints_a_wrong_default_route(network):
    vpc_id, subnet_id = network
    igw = gateways.ensure_internet_gateway(
        gateways.EnsureInternetGatewayInput(cluster=CLUSTER, vpc_id=vpc_id, name="i")
    )
    eip = gateways.ensure_eip(gateways.EnsureEipInput(cluster=CLUSTER, name="e"))
    nat = gateways.ensure_nat_gateway(
        gateways.EnsureNatGatewayInput(
            cluster=CLUSTER, name="n", subnet_id=subnet_id, allocation_id=eip.allocation_id, token_scope="s"
        )
    )
    args = {"cluster": CLUSTER, "vpc_id": vpc_id, "name": "r", "subnet_id": subnet_id, "token_scope": "s"}
    first = route_tables.ensure_route_table(
        route_tables.EnsureRouteTableInput(**args, internet_gateway_id=igw.internet_gateway_id)
    )
    second = route_tables.ensure_route_table(
        route_tables.EnsureRouteTableInput(**args, nat_gateway_id=nat.nat_gateway_id)
    )
    assert second.route_table_id == first.route_table_id and second.aws_calls.get("ec2:ReplaceRoute") == 1
    table = boto3.client("ec2", region_name=REGION).describe_route_tables(
        RouteTableIds=[first.route_table_id]
    )["RouteTables"][0]
    assert (
        next(r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0")["NatGatewayId"]
        == nat.nat_gateway_id
    )


def test_foreign_resources_with_our_names_are_refused(network):
    vpc_id, _ = network
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_security_group(VpcId=vpc_id, GroupName=f"{NAME}-node", Description="someone else's")
    with pytest.raises(ApplicationError) as err:
        security_groups.ensure_security_group(
            security_groups.EnsureSecurityGroupInput(
                cluster=CLUSTER, vpc_id=vpc_id, name=f"{NAME}-node", role="node", description="d"
            )
        )
    assert err.value.type == "NotOwnedError" and err.value.non_retryable

    ec2.allocate_address(
        Domain="vpc",
        TagSpecifications=[
            {"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": f"{NAME}-eip-nat-a"}]}
        ],
    )
    with pytest.raises(ApplicationError, match="will not adopt"):
        gateways.ensure_eip(gateways.EnsureEipInput(cluster=CLUSTER, name=f"{NAME}-eip-nat-a"))

    boto3.client("elb", region_name=REGION).create_load_balancer(
        LoadBalancerName=f"{NAME}-apiserver",
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 6443, "InstancePort": 6443}],
        AvailabilityZones=[AZS[0]],
    )
    plan = build_plan(reference_spec(), AZS).load_balancer
    with pytest.raises(ApplicationError) as err:
        load_balancer.ensure_load_balancer(
            load_balancer.EnsureLoadBalancerInput(
                cluster=CLUSTER, plan=plan, vpc_id=vpc_id, subnet_ids=(), security_group_ids=()
            )
        )
    assert err.value.type == "NotOwnedError"
    # And the sweep does not count any of them as ours.
    found = sweep.sweep_owned_resources(sweep.SweepInput(cluster=CLUSTER)).resources
    assert {r.kind for r in found} == {"vpc", "subnet"}


def test_existing_network_description(aws):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.create_vpc(CidrBlock="10.5.0.0/16")["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"][0][
        "RouteTableId"
    ]
    # The main table routes to the IGW: subnets without their own table are public.
    ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    implicit = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.5.0.0/24", AvailabilityZone=AZS[0])["Subnet"][
        "SubnetId"
    ]
    private = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.5.1.0/24", AvailabilityZone=AZS[1])["Subnet"][
        "SubnetId"
    ]
    private_rt = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=private_rt, SubnetId=private)
    out = vpc.describe_existing_network(
        vpc.DescribeNetworkInput(cluster=CLUSTER, vpc_id=vpc_id, subnet_ids=(private, implicit))
    )
    assert out.vpc_cidr == "10.5.0.0/16" and out.nat_public_ips == ()
    assert out.subnets == (
        SubnetPlan(
            name=private, id=private, availability_zone=AZS[1], cidr_block="10.5.1.0/24", is_public=False
        ),
        SubnetPlan(
            name=implicit, id=implicit, availability_zone=AZS[0], cidr_block="10.5.0.0/24", is_public=True
        ),
    )
    other_vpc = ec2.create_vpc(CidrBlock="10.6.0.0/16")["Vpc"]["VpcId"]
    stray = ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.6.0.0/24", AvailabilityZone=AZS[0])["Subnet"][
        "SubnetId"
    ]
    with pytest.raises(ApplicationError, match="not in VPC"):
        vpc.describe_existing_network(
            vpc.DescribeNetworkInput(cluster=CLUSTER, vpc_id=vpc_id, subnet_ids=(stray,))
        )


def test_deletes_treat_gone_as_done(aws):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc_id = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    ec2.delete_vpc(VpcId=vpc_id)
    assert vpc.delete_vpc(vpc.VpcIdInput(cluster=CLUSTER, vpc_id=vpc_id)).changed is False
    assert (
        subnets.delete_subnet(
            subnets.SubnetIdInput(cluster=CLUSTER, subnet_id="subnet-0123456789abcdef0")
        ).changed
        is False
    )
    assert (
        gateways.release_eip(
            gateways.AllocationIdInput(cluster=CLUSTER, allocation_id="eipalloc-0123456789abcdef0")
        ).changed
        is False
    )
    assert (
        gateways.delete_internet_gateway(
            gateways.InternetGatewayIdInput(cluster=CLUSTER, internet_gateway_id="igw-0123456789abcdef0")
        ).changed
        is False
    )
    assert (
        route_tables.delete_route_table(
            route_tables.RouteTableIdInput(cluster=CLUSTER, route_table_id="rtb-0123456789abcdef0")
        ).changed
        is False
    )
    assert (
        security_groups.delete_security_group(
            security_groups.GroupIdInput(cluster=CLUSTER, group_id="sg-0123456789abcdef0")
        ).changed
        is False
    )
    assert (
        bastion.terminate_bastion(
            bastion.InstanceIdInput(cluster=CLUSTER, instance_id="i-0123456789abcdef0")
        ).state
        == "terminated"
    )


def test_dependency_violation_is_retryable(network):
    vpc_id, _ = network
    with pytest.raises(ApplicationError) as err:
        vpc.delete_vpc(vpc.VpcIdInput(cluster=CLUSTER, vpc_id=vpc_id))
    assert err.value.type == "DependencyViolation" and not err.value.non_retryable
