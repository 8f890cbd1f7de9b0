"""InfrastructureWorkflow against moto (in-process) on the time-skipping test server.

What is checked is what AWS ends up holding, read back with plain boto3 (not through capt's
own lookups): exactly one of each resource, the reference CIDR layout, tags, rules, routes.
Faults are injected with botocore event hooks on the clients the activities use
(`activities.aws.session.hooked`):

- lost response: an `after-call` hook raises a dropped-connection error after AWS did the
  work, once per operation -- the activity fails, Temporal retries it, and the retry must
  find what the lost call created instead of creating a second one;
- throttling and 5xx: a `before-call` hook answers the first calls of each operation with
  RequestLimitExceeded / Throttling / 500 / 503 without sending them;
- a bad request (a VPC CIDR EC2 rejects) must fail at once, non-retryable, with AWS's message.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError
from moto import mock_aws
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from capt.activities.aws import session, tags
from capt.activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES
from capt.dev.testkit.reference import AZS, NAME, REGION, existing_vpc_spec, reference_spec
from capt.plan.network import split_cidr
from capt.spec.models import BastionSpec, LoadBalancerSpec, NetworkSpec
from capt.workflows.infrastructure.models import InfraInput, InfraResult, InfraStatus
from capt.workflows.infrastructure.workflow import InfrastructureWorkflow
from tests.support.aws_lag import eventually_consistent
from tests.support.context import query

OWNED = tags.cluster_key(NAME)


# --- harness -------------------------------------------------------------------------------


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as ex:
        yield ex


@asynccontextmanager
async def infra_worker(
    env: WorkflowEnvironment, task_queue: str, executor: ThreadPoolExecutor
) -> AsyncIterator[None]:
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[InfrastructureWorkflow],
        activities=INFRASTRUCTURE_ACTIVITIES,
        activity_executor=executor,
    ):
        yield


async def run_infra(
    env: WorkflowEnvironment, task_queue: str, spec, operation: str = "create", azs=AZS
) -> tuple[InfraResult, InfraStatus]:
    handle = await env.client.start_workflow(
        InfrastructureWorkflow.run,
        InfraInput(spec=spec, operation=operation, availability_zones=azs),
        id=f"infra/default/{spec.name}/{operation}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    result = await handle.result()
    return result, await query(handle, InfrastructureWorkflow.status)


# Plain boto3 clients, created once (moto's in-process stub serves every mock_aws() session).
@functools.cache
def ec2():
    return boto3.client("ec2", region_name=REGION)


@functools.cache
def elb():
    return boto3.client("elb", region_name=REGION)


@functools.cache
def elbv2():
    return boto3.client("elbv2", region_name=REGION)


def tagmap(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def inventory(vpc_id: str | None = None) -> dict[str, list]:
    """Everything in the (emulated) region that is not the default VPC's, read with plain boto3."""
    c = ec2()
    default_vpcs = {v["VpcId"] for v in c.describe_vpcs()["Vpcs"] if v.get("IsDefault")}
    vpcs = [v for v in c.describe_vpcs()["Vpcs"] if v["VpcId"] not in default_vpcs]
    subnets = [s for s in c.describe_subnets()["Subnets"] if s["VpcId"] not in default_vpcs]
    igws = [
        g
        for g in c.describe_internet_gateways()["InternetGateways"]
        if not {a["VpcId"] for a in g.get("Attachments", [])} & default_vpcs
    ]
    route_tables = [
        t
        for t in c.describe_route_tables()["RouteTables"]
        if t["VpcId"] not in default_vpcs and not any(a.get("Main") for a in t.get("Associations", []))
    ]
    groups = [
        g
        for g in c.describe_security_groups()["SecurityGroups"]
        if g["VpcId"] not in default_vpcs and g["GroupName"] != "default"
    ]
    nats = [n for n in c.describe_nat_gateways()["NatGateways"] if n["State"] not in ("deleted", "deleting")]
    instances = [
        i
        for r in c.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    v2 = elbv2()
    return {
        "vpc": vpcs,
        "subnet": subnets,
        "internet-gateway": igws,
        "elastic-ip": c.describe_addresses()["Addresses"],
        "nat-gateway": nats,
        "route-table": route_tables,
        "security-group": groups,
        "load-balancer": elb().describe_load_balancers()["LoadBalancerDescriptions"],
        "network-load-balancer": v2.describe_load_balancers()["LoadBalancers"],
        "target-group": v2.describe_target_groups()["TargetGroups"],
        "instance": instances,
    }


REFERENCE_COUNTS = {
    "vpc": 1,
    "subnet": 6,
    "internet-gateway": 1,
    "elastic-ip": 3,
    "nat-gateway": 3,
    "route-table": 6,
    "security-group": 5,
    "load-balancer": 1,
    "network-load-balancer": 0,
    "target-group": 0,
    "instance": 0,
}


def counts(inv: dict[str, list]) -> dict[str, int]:
    return {k: len(v) for k, v in inv.items()}


def owned_inventory(cluster: str = NAME) -> dict[str, list]:
    """`inventory()` restricted to what carries the cluster's owned tag (ELB tags asked for)."""
    key = tags.cluster_key(cluster)
    inv = inventory()
    out = {kind: [x for x in items if tagmap(x).get(key) == "owned"] for kind, items in inv.items()}
    out["load-balancer"] = [
        lb
        for lb in inv["load-balancer"]
        if tagmap(elb().describe_tags(LoadBalancerNames=[lb["LoadBalancerName"]])["TagDescriptions"][0]).get(
            key
        )
        == "owned"
    ]
    for kind, arn in (("network-load-balancer", "LoadBalancerArn"), ("target-group", "TargetGroupArn")):
        out[kind] = [
            x
            for x in inv[kind]
            if tagmap(elbv2().describe_tags(ResourceArns=[x[arn]])["TagDescriptions"][0]).get(key) == "owned"
        ]
    return out


def owned_left(cluster: str = NAME) -> list[str]:
    """Resources still tagged owned by the cluster, by plain boto3 (independent of capt's sweep)."""
    return [f"{kind} {item}" for kind, items in owned_inventory(cluster).items() for item in items]


def assert_exactly_reference(result: InfraResult, cluster: str = NAME) -> None:
    """Exactly one of each of the reference network's resources is owned by the cluster, and
    the untaggable parts (routes, associations, NAT addresses) are not duplicated either."""
    inv = owned_inventory(cluster)
    assert counts(inv) == REFERENCE_COUNTS
    assert inv["vpc"][0]["VpcId"] == result.vpc_id
    assert sorted(s["SubnetId"] for s in inv["subnet"]) == sorted(s.id for s in result.subnets)
    # Each NAT gateway holds one of the three addresses, each route table one subnet.
    assert sorted(n["NatGatewayAddresses"][0]["AllocationId"] for n in inv["nat-gateway"]) == sorted(
        a["AllocationId"] for a in inv["elastic-ip"]
    )
    associated = [a["SubnetId"] for t in inv["route-table"] for a in t["Associations"]]
    assert sorted(associated) == sorted(s.id for s in result.subnets)
    assert all(
        len([r for r in t["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]) == 1
        for t in inv["route-table"]
    )


# --- create, create again, delete ----------------------------------------------------------


def _rules(group: dict) -> set[tuple]:
    out = set()
    for p in group["IpPermissions"]:
        ports = (p.get("FromPort"), p.get("ToPort")) if p["IpProtocol"] in ("tcp", "udp") else None
        for r in p.get("IpRanges", []):
            out.add((p["IpProtocol"], ports, r["CidrIp"]))
        for g in p.get("UserIdGroupPairs", []):
            out.add((p["IpProtocol"], ports, g["GroupId"]))
    return out


async def test_create_builds_the_reference_network(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        result, status = await run_infra(time_skipping_env, task_queue, reference_spec())

    assert_exactly_reference(result)
    # Nothing untagged was made either.
    assert counts(inventory()) == REFERENCE_COUNTS
    c = ec2()
    vpc = c.describe_vpcs(VpcIds=[result.vpc_id])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    vpc_tags = tagmap(vpc)
    # The step's token (idempotent.find_or_create): capt-vpc-<hex>, scoped to the workflow run.
    assert vpc_tags.pop(tags.CREATE_TOKEN_TAG).startswith("capt-vpc-")
    assert vpc_tags == {
        "Name": f"{NAME}-vpc",
        OWNED: "owned",
        tags.ROLE_TAG: "common",
        tags.cloud_provider_key(NAME): "owned",
    }
    for attribute in ("enableDnsSupport", "enableDnsHostnames"):
        key = attribute[0].upper() + attribute[1:]
        assert c.describe_vpc_attribute(VpcId=result.vpc_id, Attribute=attribute)[key]["Value"] is True

    # The reference CIDR layout, read back from EC2.
    layout = {
        (s["AvailabilityZone"], s["CidrBlock"], s["MapPublicIpOnLaunch"])
        for s in c.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [result.vpc_id]}])["Subnets"]
    }
    assert layout == {
        ("ap-northeast-2a", "10.0.0.0/20", True),
        ("ap-northeast-2b", "10.0.16.0/20", True),
        ("ap-northeast-2c", "10.0.32.0/20", True),
        ("ap-northeast-2a", "10.0.64.0/18", False),
        ("ap-northeast-2b", "10.0.128.0/18", False),
        ("ap-northeast-2c", "10.0.192.0/18", False),
    }
    for s in c.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [result.vpc_id]}])["Subnets"]:
        t = tagmap(s)
        public = s["MapPublicIpOnLaunch"]
        assert t["Name"] == f"{NAME}-subnet-{'public' if public else 'private'}-{s['AvailabilityZone']}"
        assert t[OWNED] == "owned" and t[tags.cloud_provider_key(NAME)] == "shared"
        assert t[tags.ELB_SUBNET_TAG if public else tags.INTERNAL_ELB_SUBNET_TAG] == "1"

    # Routes: public -> IGW, private -> the NAT gateway in the same zone's public subnet.
    by_id = {s.id: s for s in result.subnets}
    igw = c.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [result.vpc_id]}])[
        "InternetGateways"
    ][0]
    nat_subnet = {n["NatGatewayId"]: n["SubnetId"] for n in c.describe_nat_gateways()["NatGateways"]}
    for t in c.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [result.vpc_id]}, {"Name": f"tag:{OWNED}", "Values": ["owned"]}]
    )["RouteTables"]:
        subnet = by_id[t["Associations"][0]["SubnetId"]]
        route = next(r for r in t["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0")
        assert (
            tagmap(t)["Name"]
            == f"{NAME}-rt-{'public' if subnet.is_public else 'private'}-{subnet.availability_zone}"
        )
        if subnet.is_public:
            assert route["GatewayId"] == igw["InternetGatewayId"]
        else:
            via = by_id[nat_subnet[route["NatGatewayId"]]]
            assert via.is_public and via.availability_zone == subnet.availability_zone

    # Security groups and their rules.
    groups = {
        g["GroupName"]: g
        for g in c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [result.vpc_id]}])[
            "SecurityGroups"
        ]
    }
    sg = result.security_groups
    assert {g: groups[f"{NAME}-{g}"]["GroupId"] for g in sg} == sg
    nat_ips = {a["PublicIp"] for a in c.describe_addresses()["Addresses"]}
    assert _rules(groups[f"{NAME}-apiserver-lb"]) == {("tcp", (6443, 6443), "0.0.0.0/0")} | {
        ("tcp", (6443, 6443), f"{ip}/32") for ip in nat_ips
    }
    assert _rules(groups[f"{NAME}-controlplane"]) == {
        ("tcp", (6443, 6443), sg["apiserver-lb"]),
        ("tcp", (6443, 6443), sg["controlplane"]),
        ("tcp", (6443, 6443), sg["node"]),
        ("tcp", (2379, 2379), sg["controlplane"]),
        ("tcp", (2380, 2380), sg["controlplane"]),
        ("tcp", (179, 179), sg["controlplane"]),
        ("tcp", (179, 179), sg["node"]),
        ("4", None, sg["controlplane"]),
        ("4", None, sg["node"]),
    }
    assert _rules(groups[f"{NAME}-node"]) == {
        ("tcp", (30000, 32767), "0.0.0.0/0"),
        ("tcp", (10250, 10250), sg["controlplane"]),
        ("tcp", (10250, 10250), sg["node"]),
        ("tcp", (179, 179), sg["controlplane"]),
        ("tcp", (179, 179), sg["node"]),
        ("4", None, sg["controlplane"]),
        ("4", None, sg["node"]),
    }
    assert _rules(groups[f"{NAME}-bastion"]) == {("tcp", (22, 22), "0.0.0.0/0")}
    assert _rules(groups[f"{NAME}-lb"]) == set()
    # Only the lb group carries the cloud provider's cluster tag.
    assert [n for n, g in groups.items() if tags.cloud_provider_key(NAME) in tagmap(g)] == [f"{NAME}-lb"]
    assert groups["default"]["IpPermissions"] == [] and groups["default"]["IpPermissionsEgress"] == []

    # The API load balancer: classic ELB, TCP 6443, TCP:6443 health check, cross-zone, public subnets.
    lb = elb().describe_load_balancers(LoadBalancerNames=[f"{NAME}-apiserver"])["LoadBalancerDescriptions"][0]
    listener = lb["ListenerDescriptions"][0]["Listener"]
    assert (listener["Protocol"], listener["LoadBalancerPort"], listener["InstancePort"]) == (
        "TCP",
        6443,
        6443,
    )
    assert lb["HealthCheck"]["Target"] == "TCP:6443"
    assert sorted(lb["Subnets"]) == sorted(s.id for s in result.subnets if s.is_public)
    assert lb["SecurityGroups"] == [sg["apiserver-lb"]]
    attributes = elb().describe_load_balancer_attributes(LoadBalancerName=lb["LoadBalancerName"])[
        "LoadBalancerAttributes"
    ]
    assert attributes["CrossZoneLoadBalancing"]["Enabled"] is True
    assert result.control_plane_endpoint_host == lb["DNSName"]
    assert result.failure_domains == AZS

    # The status query: every resource ready with its id; call totals match the result.
    assert status.phase == "ready"
    assert {r.state for r in status.resources} == {"ready"}
    assert Counter(r.kind for r in status.resources) == Counter(
        {
            "vpc": 1,
            "subnet": 6,
            "internet-gateway": 1,
            "elastic-ip": 3,
            "nat-gateway": 3,
            "route-table": 6,
            "security-group": 5,
            "load-balancer": 1,
        }
    )
    assert all(r.id for r in status.resources)
    assert status.aws_calls == result.aws_calls
    assert result.aws_calls["ec2:CreateSubnet"] == 6 and result.aws_calls["ec2:CreateNatGateway"] == 3


async def test_create_again_changes_nothing(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        # The first run asks EC2 for the zones (moto's ap-northeast-2 has a-d; the usage limit
        # of 3 takes a-c), the second is given them: same plan, same resources.
        first, _ = await run_infra(time_skipping_env, task_queue, reference_spec(), azs=())
        assert first.aws_calls["ec2:DescribeAvailabilityZones"] == 1
        before = inventory()
        second, _ = await run_infra(time_skipping_env, task_queue, reference_spec())

    assert second.model_dump(exclude={"aws_calls"}) == first.model_dump(exclude={"aws_calls"})
    assert inventory() == before
    creates = {
        op
        for op in second.aws_calls
        if op.split(":")[1].startswith(("Create", "Allocate", "Attach", "Associate", "Authorize", "Run"))
    }
    assert creates == set()
    assert sum(second.aws_calls.values()) < sum(first.aws_calls.values())


async def test_delete_leaves_nothing_owned(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        await run_infra(time_skipping_env, task_queue, reference_spec())
        result, status = await run_infra(time_skipping_env, task_queue, reference_spec(), operation="delete")

    assert owned_left() == []
    assert {k: v for k, v in counts(inventory()).items() if v} == {}
    assert status.phase == "deleted"
    assert {r.state for r in status.resources} == {"deleted"}
    assert Counter(r.kind for r in status.resources)["subnet"] == 6
    assert result.aws_calls["ec2:DeleteVpc"] == 1 and result.aws_calls["ec2:ReleaseAddress"] == 3


# --- namespaces: the cluster id -----------------------------------------------------------


async def _infra(env, task_queue, spec, cluster_id: str | None, operation: str = "create") -> InfraResult:
    handle = await env.client.start_workflow(
        InfrastructureWorkflow.run,
        InfraInput(spec=spec, operation=operation, availability_zones=AZS, cluster_id=cluster_id),
        id=f"infra/{spec.namespace}/{spec.name}/{operation}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    return await handle.result()


def _lb_names(cluster: str) -> list[str]:
    return [lb["LoadBalancerName"] for lb in owned_inventory(cluster)["load-balancer"]]


async def test_same_named_clusters_in_two_namespaces_and_a_legacy_one_stay_apart(
    time_skipping_env, task_queue, moto, executor
):
    """`prod` in team-a and in team-b (ids `team-a.prod`, `team-b.prod`) and a `prod` created before
    ids were namespaced (id `prod`): three networks, three load balancers, three owned tags; deleting
    one leaves the others exactly as they were."""
    env = time_skipping_env
    prod = reference_spec("prod")
    clusters = {
        "team-a.prod": prod.model_copy(update={"namespace": "team-a"}),
        "team-b.prod": prod.model_copy(update={"namespace": "team-b"}),
        "prod": prod,  # legacy: no id in the input, named and tagged after the name
    }
    async with infra_worker(env, task_queue, executor):
        results = {}
        for cid, spec in clusters.items():
            results[cid] = await _infra(env, task_queue, spec, None if cid == "prod" else cid)
        before = {cid: owned_inventory(cid) for cid in clusters}
        for cid in clusters:
            assert counts(before[cid]) == REFERENCE_COUNTS, cid
            assert before[cid]["vpc"][0]["VpcId"] == results[cid].vpc_id
        assert len({r.vpc_id for r in results.values()}) == 3
        # Names: the id, and ELB-safe load balancer names.
        assert tagmap(before["team-a.prod"]["vpc"][0])["Name"] == "team-a.prod-vpc"
        assert tagmap(before["prod"]["vpc"][0])["Name"] == "prod-vpc"
        assert _lb_names("team-a.prod") == ["team-a-prod-4d480957-apiserver"]
        assert _lb_names("team-b.prod") == ["team-b-prod-cafb7f32-apiserver"]
        assert _lb_names("prod") == ["prod-apiserver"]
        # Every resource carries its own cluster's tags and no other's.
        keys = {cid: (tags.cluster_key(cid), tags.cloud_provider_key(cid)) for cid in clusters}
        for cid, inv in before.items():
            for kind, items in inv.items():
                if kind in ("load-balancer", "network-load-balancer", "target-group"):
                    continue
                for item in items:
                    t = tagmap(item)
                    others = {k for o, ks in keys.items() if o != cid for k in ks}
                    assert not others & set(t), (cid, kind, t)
        vpc_a = ec2().describe_vpcs(VpcIds=[results["team-a.prod"].vpc_id])["Vpcs"][0]
        assert tagmap(vpc_a)[tags.cloud_provider_key("team-a.prod")] == "owned"

        await _infra(env, task_queue, clusters["team-a.prod"], "team-a.prod", operation="delete")
        assert owned_left("team-a.prod") == []
        for cid in ("team-b.prod", "prod"):
            after = owned_inventory(cid)
            assert {k: sorted(map(str, v)) for k, v in after.items()} == {
                k: sorted(map(str, v)) for k, v in before[cid].items()
            }, cid
        # The legacy cluster's deletion (by its name) spares the namespaced one.
        await _infra(env, task_queue, clusters["prod"], None, operation="delete")
        assert owned_left("prod") == []
        assert counts(owned_inventory("team-b.prod")) == REFERENCE_COUNTS


# --- lost responses ------------------------------------------------------------------------


class LoseResponse:
    """`after-call` hook: the call succeeded at AWS, then the connection "drops" -- once per operation."""

    def __init__(self, operations: set[str]) -> None:
        self.operations = operations
        self.lost: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, http_response, model, **kwargs) -> None:
        op = model.name
        if op not in self.operations or http_response.status_code >= 300:
            return
        with self._lock:
            if self.lost[op]:
                return
            self.lost[op] += 1
        raise ConnectionClosedError(endpoint_url=f"https://{op}.example.invalid")


@contextmanager
def injected(event: str, handler) -> Iterator:
    with session.hooked(event, handler):
        yield handler


REFERENCE_MUTATIONS = [
    "CreateVpc",
    "ModifyVpcAttribute",
    "CreateSubnet",
    "ModifySubnetAttribute",
    "CreateInternetGateway",
    "AttachInternetGateway",
    "RevokeSecurityGroupEgress",
    "AllocateAddress",
    "CreateNatGateway",
    "CreateRouteTable",
    "CreateRoute",
    "AssociateRouteTable",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "CreateLoadBalancer",
    "ConfigureHealthCheck",
    "ModifyLoadBalancerAttributes",
]


async def test_lost_response_matrix_converges_to_exactly_one_of_each(
    time_skipping_env, task_queue, moto, executor
):
    """For each create-side operation in turn: AWS does the work, the answer is lost once.

    One moto region serves the whole matrix; each case is its own cluster (same CIDRs), so a
    duplicate anywhere shows up in that cluster's owned inventory."""
    async with infra_worker(time_skipping_env, task_queue, executor):
        for i, op in enumerate(REFERENCE_MUTATIONS):
            spec = reference_spec(f"lost-{i:02d}")
            with injected("after-call", LoseResponse({op})) as lose:
                result, status = await run_infra(time_skipping_env, task_queue, spec)
            assert lose.lost[op] == 1, op
            assert_exactly_reference(result, spec.name)
            assert status.phase == "ready"


NLB_BASTION_MUTATIONS = [
    "CreateLoadBalancer",
    "CreateTargetGroup",
    "CreateListener",
    "ModifyLoadBalancerAttributes",
    "RunInstances",
]


def nlb_bastion_spec():
    return reference_spec(
        load_balancer=LoadBalancerSpec(type="nlb"),
        bastion=BastionSpec(enabled=True, allowed_cidrs=("203.0.113.0/24",)),
    )


async def test_lost_responses_on_nlb_and_bastion(time_skipping_env, task_queue, moto, executor):
    """The NLB and bastion calls lose their answers once each, all in one run."""
    async with infra_worker(time_skipping_env, task_queue, executor):
        with injected("after-call", LoseResponse(set(NLB_BASTION_MUTATIONS))) as lose:
            result, _ = await run_infra(time_skipping_env, task_queue, nlb_bastion_spec())
    assert set(lose.lost) == set(NLB_BASTION_MUTATIONS)
    assert {
        k: v
        for k, v in counts(inventory()).items()
        if k in ("load-balancer", "network-load-balancer", "target-group", "instance")
    } == {
        "load-balancer": 0,
        "network-load-balancer": 1,
        "target-group": 1,
        "instance": 1,
    }
    v2 = elbv2()
    listeners = v2.describe_listeners(LoadBalancerArn=result.load_balancer.arn)["Listeners"]
    assert [(x["Protocol"], x["Port"]) for x in listeners] == [("TCP", 6443)]


# Every create call of the infrastructure: the reference network's, then the NLB's and the bastion's.
REFERENCE_CREATES = [
    "CreateVpc",
    "CreateSubnet",
    "CreateInternetGateway",
    "AllocateAddress",
    "CreateNatGateway",
    "CreateRouteTable",
    "CreateSecurityGroup",
    "CreateLoadBalancer",  # classic
]
NLB_BASTION_CREATES = ["CreateLoadBalancer", "CreateTargetGroup", "CreateListener", "RunInstances"]
# Two reads: what a bounded wait covers (find_or_create's attempts 2-3 read at least once each);
# longer lags are tests/activities/aws/test_idempotent.py's, and the uniquely named creates' below.
LAGGING_READS = 2
NLB_BASTION_COUNTS = {
    **REFERENCE_COUNTS,
    "load-balancer": 0,
    "network-load-balancer": 1,
    "target-group": 1,
    "instance": 1,
}


def _assert_lost_behind_lag(lag, op: str) -> None:
    """The create's answer was lost once, and the retry's reads did not show what it made."""
    assert lag.lost[op] == 1, (op, lag.lost)
    assert all(lag.hidden_reads[i] >= 1 for i in lag.lost_ids[op]), (op, lag.lost_ids, lag.hidden_reads)


@pytest.mark.parametrize("op", REFERENCE_CREATES)
async def test_a_lost_create_behind_lagging_reads_makes_one(
    time_skipping_env, task_queue, moto, executor, op
):
    """AWS makes the resource, the answer is lost, and reads do not show it (nor anything else
    just created) for the next two lookups: the retry must still not make a second one --
    whether the call takes a ClientToken (answered as AWS answers a repeat: tests.support.aws_lag),
    has a natural unique name, or neither (idempotent.find_or_create waits for reads)."""
    async with infra_worker(time_skipping_env, task_queue, executor):
        spec = reference_spec(f"lag-{op.lower()}")
        with eventually_consistent(reads=LAGGING_READS, lose={op}) as lag:
            result, status = await run_infra(time_skipping_env, task_queue, spec)
    _assert_lost_behind_lag(lag, op)
    assert_exactly_reference(result, spec.name)
    assert counts(inventory()) == REFERENCE_COUNTS  # nothing untagged either
    assert status.phase == "ready"


@pytest.mark.parametrize("op", NLB_BASTION_CREATES)
async def test_a_lost_nlb_or_bastion_create_behind_lagging_reads_makes_one(
    time_skipping_env, task_queue, moto, executor, op
):
    """The same for the NLB's creates (AWS answers a repeated v2 create with the same settings
    with the existing one; moto would make a second: tests.support.aws_lag.AwsRepeats) and the
    bastion's RunInstances (ClientToken)."""
    async with infra_worker(time_skipping_env, task_queue, executor):
        with eventually_consistent(reads=LAGGING_READS, lose={op}) as lag:
            result, status = await run_infra(time_skipping_env, task_queue, nlb_bastion_spec())
    _assert_lost_behind_lag(lag, op)
    assert counts(inventory()) == NLB_BASTION_COUNTS
    listeners = elbv2().describe_listeners(LoadBalancerArn=result.load_balancer.arn)["Listeners"]
    assert [(x["Protocol"], x["Port"]) for x in listeners] == [("TCP", 6443)]
    assert status.phase == "ready"


# Creates whose name (or CIDR) is unique where it lives: AWS refuses a retry's create while what
# the lost one made is out of sight, and the retries wait for it however long reads lag. (The v2
# load balancer's and target group's repeats are answered with the existing one: see above; a
# refused target group is tests/activities/aws/test_idempotent.py's.)
UNIQUELY_NAMED_CREATES = ["CreateSubnet", "CreateSecurityGroup", "CreateLoadBalancer"]  # classic


@pytest.mark.parametrize("op", UNIQUELY_NAMED_CREATES)
async def test_a_lost_uniquely_named_create_waits_for_reads_however_long_they_lag(
    time_skipping_env, task_queue, moto, executor, op
):
    """What the lost create made stays out of sight for twelve reads -- more than the five
    attempts AWS's other client errors get (errors.OTHER_CLIENT_ERROR_ATTEMPTS): the retries see
    the name taken and nothing by that name, wait (NotYetVisibleError), and end with one."""
    spec = reference_spec(f"uniq-{op.lower()}")
    async with infra_worker(time_skipping_env, task_queue, executor):
        with eventually_consistent(reads=1, lose={op}, lost_reads=12) as lag:
            result, status = await run_infra(time_skipping_env, task_queue, spec)
    _assert_lost_behind_lag(lag, op)
    assert all(lag.hidden_reads[i] == 12 for i in lag.lost_ids[op]), lag.hidden_reads
    assert_exactly_reference(result, spec.name)
    assert counts(inventory()) == REFERENCE_COUNTS
    assert status.phase == "ready"


async def test_lost_responses_on_every_delete_call(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        await run_infra(time_skipping_env, task_queue, nlb_bastion_spec())
        ops = {
            "DeleteLoadBalancer",
            "DeleteTargetGroup",
            "TerminateInstances",
            "RevokeSecurityGroupIngress",
            "DeleteSecurityGroup",
            "DisassociateRouteTable",
            "DeleteRouteTable",
            "DeleteNatGateway",
            "ReleaseAddress",
            "DetachInternetGateway",
            "DeleteInternetGateway",
            "DeleteSubnet",
            "DeleteVpc",
        }
        with injected("after-call", LoseResponse(ops)) as lose:
            _, status = await run_infra(time_skipping_env, task_queue, nlb_bastion_spec(), operation="delete")
    assert set(lose.lost) == ops
    assert status.phase == "deleted"
    assert owned_left() == []
    assert {k: v for k, v in counts(inventory()).items() if v} == {}


# --- throttling, 5xx, bad requests ----------------------------------------------------------


class Throttle:
    """`before-call` hook: answer the first two calls of every operation with an error, unsent.

    First a throttle (RequestLimitExceeded for EC2, Throttling for ELB), then a 5xx
    (alternating 500 InternalError / 503 ServiceUnavailable).
    """

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, model, **kwargs):
        op = model.name
        with self._lock:
            self.seen[op] += 1
            n = self.seen[op]
        if n > 2:
            return None
        service = model.service_model.service_id.hyphenize()
        if n == 1:
            status, code = (503, "RequestLimitExceeded") if service == "ec2" else (400, "Throttling")
        else:
            status, code = (500, "InternalError") if len(op) % 2 else (503, "ServiceUnavailable")
        self.injected[code] += 1
        parsed = {
            "Error": {"Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return AWSResponse("https://injected.invalid", status, {}, None), parsed


async def test_throttling_and_server_errors_converge(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        with injected("before-call", Throttle()) as throttle:
            result, _ = await run_infra(time_skipping_env, task_queue, reference_spec())
            assert_exactly_reference(result)
            _, status = await run_infra(time_skipping_env, task_queue, reference_spec(), operation="delete")
    assert throttle.injected["RequestLimitExceeded"] >= 20 and throttle.injected["Throttling"] >= 3
    assert throttle.injected["InternalError"] + throttle.injected["ServiceUnavailable"] >= 20
    assert status.phase == "deleted" and owned_left() == []


async def test_bad_request_fails_fast_with_aws_message(time_skipping_env, task_queue, moto, executor):
    # 10.0.0.0/8 splits fine on paper, but EC2 only takes /16../28 VPCs.
    spec = reference_spec(network=NetworkSpec(vpc_cidr="10.0.0.0/8"))
    async with infra_worker(time_skipping_env, task_queue, executor):
        with pytest.raises(WorkflowFailureError) as failure:
            await run_infra(time_skipping_env, task_queue, spec)
    activity_error = failure.value.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.retry_state == RetryState.NON_RETRYABLE_FAILURE
    app = activity_error.cause
    assert isinstance(app, ApplicationError) and app.non_retryable
    assert app.type == "InvalidVpc.Range"
    assert "The CIDR '10.0.0.0/8' is invalid." in app.message
    assert counts(inventory())["vpc"] == 0


class Refuse:
    """`before-call` hook: one operation is always refused with a non-retryable error."""

    def __init__(self, operation: str, code: str) -> None:
        self.operation, self.code = operation, code

    def __call__(self, model, **kwargs):
        if model.name != self.operation:
            return None
        parsed = {
            "Error": {"Code": self.code, "Message": f"injected {self.code}"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://injected.invalid", 400, {}, None), parsed


async def test_delete_cleans_up_after_a_failed_create(time_skipping_env, task_queue, moto, executor):
    """Deletion works from what the sweep finds, not from a finished create."""
    async with infra_worker(time_skipping_env, task_queue, executor):
        with injected("before-call", Refuse("CreateLoadBalancer", "InvalidConfigurationRequest")):
            handle = await time_skipping_env.client.start_workflow(
                InfrastructureWorkflow.run,
                InfraInput(spec=reference_spec(), availability_zones=AZS),
                id=f"infra/default/{NAME}/fails",
                task_queue=task_queue,
            )
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
        assert failure.value.cause.cause.type == "InvalidConfigurationRequest"
        failed = await query(handle, InfrastructureWorkflow.status)
        assert failed.phase == "failed" and "CreateLoadBalancer: InvalidConfigurationRequest" in (
            failed.error or ""
        )
        assert {r.state for r in failed.resources if r.kind == "subnet"} == {"ready"}
        assert [r.state for r in failed.resources if r.kind == "load-balancer"] == ["creating"]
        assert counts(owned_inventory())["subnet"] == 6 and counts(owned_inventory())["load-balancer"] == 0
        _, status = await run_infra(time_skipping_env, task_queue, reference_spec(), operation="delete")
    assert status.phase == "deleted" and owned_left() == []


class SlowNat:
    """`after-call` hook: NAT gateways report "pending" / "deleting" for their first reads, as
    real ones do for a minute or two (moto's are available, and deleted, at once)."""

    def __init__(self, reads: int) -> None:
        self.reads = reads
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, http_response, parsed, model, **kwargs) -> None:
        if model.name == "CreateNatGateway":
            parsed["NatGateway"]["State"] = "pending"
        if model.name == "DescribeNatGateways":
            for nat in parsed.get("NatGateways", []):
                with self._lock:
                    self.seen[nat["NatGatewayId"], nat["State"]] += 1
                    early = self.seen[nat["NatGatewayId"], nat["State"]] <= self.reads
                if early and nat["State"] in ("available", "deleted"):
                    nat["State"] = "pending" if nat["State"] == "available" else "deleting"


async def test_nat_gateways_are_waited_for_with_durable_timers(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        with injected("after-call", SlowNat(reads=3)):
            handles = []
            for operation in ("create", "delete"):
                handle = await time_skipping_env.client.start_workflow(
                    InfrastructureWorkflow.run,
                    InfraInput(spec=reference_spec(), operation=operation, availability_zones=AZS),
                    id=f"infra/default/{NAME}/slow-{operation}",
                    task_queue=task_queue,
                )
                result = await handle.result()
                handles.append((handle, result))
    (create, created), (delete, deleted) = handles
    # Create: one lookup per NAT before it exists, then reads until the 4th says "available"
    # (a durable timer before each). Delete: the two sweeps, then per NAT one read right after
    # DeleteNatGateway and three more behind timers until "deleted".
    assert created.aws_calls["ec2:DescribeNatGateways"] == 3 + 3 * 4
    assert deleted.aws_calls["ec2:DescribeNatGateways"] == 2 + 3 * 4
    for handle, timers_expected in ((create, 3 * 4), (delete, 3 * 3)):
        timers = [
            e async for e in handle.fetch_history_events() if e.HasField("timer_started_event_attributes")
        ]
        assert len(timers) == timers_expected
    assert owned_left() == []


async def test_a_vpc_with_our_name_but_not_our_tag_is_never_adopted(
    time_skipping_env, task_queue, moto, executor
):
    c = ec2()
    squatter = c.create_vpc(
        CidrBlock="10.0.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"{NAME}-vpc"}]}],
    )["Vpc"]
    async with infra_worker(time_skipping_env, task_queue, executor):
        with pytest.raises(WorkflowFailureError) as failure:
            await run_infra(time_skipping_env, task_queue, reference_spec())
    app = failure.value.cause.cause
    assert isinstance(app, ApplicationError) and app.type == "NotOwnedError" and app.non_retryable
    assert squatter["VpcId"] in app.message
    assert counts(inventory()) == {**{k: 0 for k in REFERENCE_COUNTS}, "vpc": 1}
    assert tagmap(c.describe_vpcs(VpcIds=[squatter["VpcId"]])["Vpcs"][0]) == {"Name": f"{NAME}-vpc"}


# --- existing VPC, NLB + bastion, leftovers --------------------------------------------------


def make_existing_network() -> tuple[str, list[str], list[str], str]:
    """A VPC someone else built: public + private subnet in two zones, IGW, one NAT gateway."""
    c = ec2()
    vpc_id = c.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    igw = c.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    c.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    public_rt = c.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    c.create_route(RouteTableId=public_rt, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    public, private = [], []
    for i, az in enumerate(AZS[:2]):
        pub = c.create_subnet(VpcId=vpc_id, CidrBlock=f"10.1.{i}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        c.associate_route_table(RouteTableId=public_rt, SubnetId=pub)
        public.append(pub)
        private.append(
            c.create_subnet(VpcId=vpc_id, CidrBlock=f"10.1.{100 + i}.0/24", AvailabilityZone=az)["Subnet"][
                "SubnetId"
            ]
        )
    eip = c.allocate_address(Domain="vpc")
    c.create_nat_gateway(SubnetId=public[0], AllocationId=eip["AllocationId"])
    return vpc_id, public, private, eip["PublicIp"]


async def test_existing_vpc_is_used_and_survives_deletion(time_skipping_env, task_queue, moto, executor):
    vpc_id, public, private, nat_ip = make_existing_network()
    spec = existing_vpc_spec(vpc_id, public + private)
    before = inventory()
    async with infra_worker(time_skipping_env, task_queue, executor):
        result, status = await run_infra(time_skipping_env, task_queue, spec, azs=())
        after_create = inventory()
        _, deleted = await run_infra(time_skipping_env, task_queue, spec, operation="delete", azs=())

    assert result.vpc_id == vpc_id and not result.vpc_managed
    assert {s.id: s.is_public for s in result.subnets} == {
        **{s: True for s in public},
        **{s: False for s in private},
    }
    assert result.failure_domains == AZS[:2]
    # Nothing network-level was created; groups and the load balancer were, inside that VPC.
    for kind in ("vpc", "subnet", "internet-gateway", "elastic-ip", "nat-gateway", "route-table"):
        assert after_create[kind] == before[kind], kind
    assert {g["VpcId"] for g in after_create["security-group"]} == {vpc_id} and len(
        after_create["security-group"]
    ) == 5
    lb = after_create["load-balancer"][0]
    assert sorted(lb["Subnets"]) == sorted(public)
    apiserver_lb = next(
        g for g in after_create["security-group"] if g["GroupName"] == f"{spec.name}-apiserver-lb"
    )
    assert ("tcp", (6443, 6443), f"{nat_ip}/32") in _rules(apiserver_lb)
    assert {r.kind for r in status.resources} == {"security-group", "load-balancer"}

    # Deletion removed what capt made and nothing else.
    after_delete = inventory()
    for kind in ("vpc", "subnet", "internet-gateway", "elastic-ip", "nat-gateway", "route-table"):
        assert after_delete[kind] == before[kind], kind
    assert after_delete["security-group"] == [] and after_delete["load-balancer"] == []
    assert deleted.phase == "deleted" and owned_left(spec.name) == []


async def test_nlb_and_bastion(time_skipping_env, task_queue, moto, executor):
    spec = nlb_bastion_spec()
    async with infra_worker(time_skipping_env, task_queue, executor):
        result, status = await run_infra(time_skipping_env, task_queue, spec)
        inv = inventory()
        v2 = elbv2()
        tg = v2.describe_target_groups(TargetGroupArns=[result.load_balancer.target_group_arn])[
            "TargetGroups"
        ][0]
        lb_attributes = {
            a["Key"]: a["Value"]
            for a in v2.describe_load_balancer_attributes(LoadBalancerArn=result.load_balancer.arn)[
                "Attributes"
            ]
        }
        _, deleted = await run_infra(time_skipping_env, task_queue, spec, operation="delete")

    assert (
        result.load_balancer.type == "nlb"
        and result.control_plane_endpoint_host == result.load_balancer.dns_name
    )
    assert (tg["Protocol"], tg["Port"], tg["HealthCheckProtocol"], tg["HealthCheckPath"]) == (
        "TCP",
        6443,
        "HTTPS",
        "/readyz",
    )
    assert lb_attributes["load_balancing.cross_zone.enabled"] == "true"
    nlb = inv["network-load-balancer"][0]
    assert nlb["Scheme"] == "internet-facing" and nlb["Type"] == "network"
    groups = {g["GroupName"]: g for g in inv["security-group"]}
    sg = result.security_groups
    assert _rules(groups[f"{NAME}-lb"]) == {("tcp", (6443, 6443), "10.0.0.0/16")}
    assert _rules(groups[f"{NAME}-bastion"]) == {("tcp", (22, 22), "203.0.113.0/24")}
    assert ("tcp", (22, 22), sg["bastion"]) in _rules(groups[f"{NAME}-controlplane"])
    assert ("tcp", (22, 22), sg["bastion"]) in _rules(groups[f"{NAME}-node"])
    (bastion,) = inv["instance"]
    assert bastion["InstanceId"] == result.bastion_instance_id
    assert bastion["SubnetId"] == next(
        s.id for s in result.subnets if s.is_public and s.availability_zone == AZS[0]
    )
    assert [g["GroupId"] for g in bastion["SecurityGroups"]] == [sg["bastion"]]
    assert (
        tagmap(bastion)[tags.ROLE_TAG] == "bastion" and bastion["MetadataOptions"]["HttpTokens"] == "required"
    )
    assert ("instance", f"{NAME}-bastion") in {(r.kind, r.name) for r in status.resources}
    assert deleted.phase == "deleted" and owned_left() == []
    assert {k: v for k, v in counts(inventory()).items() if v} == {}


async def test_leftover_owned_resource_fails_the_deletion_loudly(
    time_skipping_env, task_queue, moto, executor
):
    async with infra_worker(time_skipping_env, task_queue, executor):
        await run_infra(time_skipping_env, task_queue, reference_spec())
        # Something owned by the cluster that the infrastructure workflow does not manage.
        sm = boto3.client("secretsmanager", region_name=REGION)
        secret = sm.create_secret(
            Name=f"{NAME}/forgotten", SecretString="x", Tags=[{"Key": OWNED, "Value": "owned"}]
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await run_infra(time_skipping_env, task_queue, reference_spec(), operation="delete")
    app = failure.value.cause
    assert isinstance(app, ApplicationError) and app.type == "ResourcesRemain"
    assert secret["ARN"] in app.message
    # Everything else is gone.
    assert {k: v for k, v in counts(inventory()).items() if v} == {}


async def test_delete_refuses_while_machines_remain(time_skipping_env, task_queue, moto, executor):
    async with infra_worker(time_skipping_env, task_queue, executor):
        result, _ = await run_infra(time_skipping_env, task_queue, reference_spec())
        image = ec2().describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2().run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            SubnetId=result.private_subnet(AZS[0]).id,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": OWNED, "Value": "owned"}, {"Key": tags.ROLE_TAG, "Value": "node"}],
                }
            ],
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await run_infra(time_skipping_env, task_queue, reference_spec(), operation="delete")
    assert failure.value.cause.type == "MachinesRemain"
    assert counts(inventory()) == {**REFERENCE_COUNTS, "instance": 1}


def test_reference_layout_matches_capa_split():
    # The layout the tests above read back is CAPA's: (zones + 1) blocks, block 0 split again.
    blocks = split_cidr("10.0.0.0/16", 4)
    assert blocks == ("10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18", "10.0.192.0/18")
    assert split_cidr(blocks[0], 3) == ("10.0.0.0/20", "10.0.16.0/20", "10.0.32.0/20")
