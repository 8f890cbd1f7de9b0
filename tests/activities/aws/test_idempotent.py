"""Lost-response safety of the creates AWS gives no ClientToken (capt/activities/aws/idempotent.py),
activity by activity against moto, with reads that lag (tests/support/aws_lag.py).

`find_or_create` looks up by Name and owned tag, then (on a retry) by the step's token tag,
waits for reads on attempts 2-3 and creates with the token in the call. The creates whose name is
unique where it lives wait for reads however long they lag instead."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import gateways, load_balancer, security_groups, session, tags, vpc
from capt.activities.aws.client_tokens import client_token
from capt.activities.aws.idempotent import VISIBILITY_ATTEMPTS
from capt.activities.aws.models import ClusterRef
from capt.dev.testkit.reference import AZS, REGION, reference_spec
from capt.plan.cluster import build_plan
from capt.spec.models import LoadBalancerSpec
from tests.support.aws_lag import eventually_consistent, run_like_temporal

CLUSTER = ClusterRef(name="idem", region=REGION)
VPC = vpc.EnsureVpcInput(cluster=CLUSTER, name="idem-vpc", cidr_block="10.0.0.0/16")
RUN = "run-1"


def in_activity(fn, arg, attempt: int = 1, run_id: str = RUN):
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, workflow_run_id=run_id)
    return env.run(fn, arg)


def ec2():
    return boto3.client("ec2", region_name=REGION)  # plain: not hooked, sees what moto holds


def our_vpcs() -> list[dict]:
    return [v for v in ec2().describe_vpcs()["Vpcs"] if not v.get("IsDefault")]


def token_of(resource: dict) -> str | None:
    return tags.as_dict(resource.get("Tags")).get(tags.CREATE_TOKEN_TAG)


class NameLookupSeesNothing:
    """`before-call` on DescribeVpcs: the lookup by Name answers nothing (its index lags)."""

    def __call__(self, model, params, **kwargs):
        if "tag:Name" in str(params.get("body", "")):
            return AWSResponse("https://ec2", 200, {}, None), {"Vpcs": []}
        return None


# --- find_or_create, step by step -----------------------------------------------------------


def test_a_first_attempt_looks_up_once_and_creates_with_the_steps_token(aws):
    out = in_activity(vpc.ensure_vpc, VPC)
    assert out.created
    assert out.aws_calls == {"ec2:DescribeVpcs": 1, "ec2:CreateVpc": 1, "ec2:ModifyVpcAttribute": 2}
    (made,) = our_vpcs()
    assert token_of(made) == client_token("vpc", "idem", "idem-vpc", scope=RUN)
    assert tags.is_owned(tags.as_dict(made["Tags"]), "idem")


def test_a_retry_finds_an_earlier_attempts_vpc_by_its_token(aws):
    first = in_activity(vpc.ensure_vpc, VPC)
    with session.hooked("before-call.ec2.DescribeVpcs", NameLookupSeesNothing()):
        again = in_activity(vpc.ensure_vpc, VPC, attempt=2)
    assert again.vpc_id == first.vpc_id and not again.created
    assert "ec2:CreateVpc" not in again.aws_calls


def test_a_retry_that_finds_nothing_waits_for_reads_then_creates(aws):
    for attempt in range(2, VISIBILITY_ATTEMPTS):
        with pytest.raises(ApplicationError) as waiting:
            in_activity(vpc.ensure_vpc, VPC, attempt=attempt)
        assert not waiting.value.non_retryable and waiting.value.type == "NotYetVisibleError"
        assert our_vpcs() == []
    made = in_activity(vpc.ensure_vpc, VPC, attempt=VISIBILITY_ATTEMPTS)
    assert made.created and [v["VpcId"] for v in our_vpcs()] == [made.vpc_id]


def test_the_token_lookup_takes_only_this_steps_and_the_clusters_own(aws):
    token = client_token("vpc", "idem", "idem-vpc", scope=RUN)
    # Another run's VPC (owned, other token), and one with our token but not our owned tag.
    other_run = in_activity(vpc.ensure_vpc, VPC, run_id="run-0").vpc_id
    foreign = ec2().create_vpc(
        CidrBlock="10.1.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": tags.CREATE_TOKEN_TAG, "Value": token}]}],
    )["Vpc"]["VpcId"]
    with (
        session.hooked("before-call.ec2.DescribeVpcs", NameLookupSeesNothing()),
        pytest.raises(ApplicationError) as waiting,
    ):
        in_activity(vpc.ensure_vpc, VPC, attempt=2)
    assert waiting.value.type == "NotYetVisibleError"
    assert sorted(v["VpcId"] for v in our_vpcs()) == sorted([other_run, foreign])  # untouched


def test_outside_an_activity_there_is_no_token(aws):
    vpc.ensure_vpc(VPC)  # a direct call (tests, tools): no run, no token
    (made,) = our_vpcs()
    assert token_of(made) is None


# --- a lost create, with reads that lag -----------------------------------------------------


def _ensure(op: str):
    if op == "CreateVpc":
        return vpc.ensure_vpc, VPC, lambda: our_vpcs()
    if op == "CreateInternetGateway":
        vpc_id = ec2().create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        inp = gateways.EnsureInternetGatewayInput(cluster=CLUSTER, vpc_id=vpc_id, name="idem-igw")
        return (
            gateways.ensure_internet_gateway,
            inp,
            lambda: ec2().describe_internet_gateways()["InternetGateways"],
        )
    inp = gateways.EnsureEipInput(cluster=CLUSTER, name="idem-eip")
    return gateways.ensure_eip, inp, lambda: ec2().describe_addresses()["Addresses"]


@pytest.mark.parametrize("op", ["CreateVpc", "CreateInternetGateway", "AllocateAddress"])
def test_a_lost_create_behind_lagging_reads_makes_one(aws, op):
    fn, inp, listed = _ensure(op)
    with eventually_consistent(reads=3, lose={op}) as lag:
        result, failures = run_like_temporal(fn, inp)
    assert lag.lost[op] == 1 and lag.created[op] == 1
    assert failures[0] == "ConnectionClosedError" and "NotYetVisibleError" in failures
    assert len(listed()) == 1 and not result.created
    assert token_of(listed()[0]).startswith("capt-")


def test_the_wait_for_reads_is_bounded_and_a_second_vpc_carries_the_same_token(aws):
    """Reads that lag past the wait (attempts 2-3, ~7 s of backoff in a worker) do end in a
    second VPC: the wait cannot be endless, since a create that never reached AWS must be made.
    Both carry the step's token, so the step's duplicates are told from anything else."""
    with eventually_consistent(reads=0, lose={"CreateVpc"}, lost_reads=50):
        run_like_temporal(vpc.ensure_vpc, VPC)
    made = our_vpcs()
    assert len(made) == 2 and len({token_of(v) for v in made}) == 1


# --- creates whose name is unique: wait as long as reads lag --------------------------------


@pytest.fixture
def nlb_network(aws):
    spec = reference_spec(load_balancer=LoadBalancerSpec(type="nlb"))
    c = ec2()
    vpc_id = c.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = tuple(
        c.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=az)["Subnet"]["SubnetId"]
        for i, az in enumerate(AZS)
    )
    return build_plan(spec, AZS).load_balancer, vpc_id, subnet_ids


@pytest.mark.parametrize("op", ["CreateSecurityGroup", "CreateTargetGroup"])
def test_a_taken_name_that_reads_do_not_show_is_waited_for(nlb_network, op):
    """AWS refuses the retry's create (InvalidGroup.Duplicate, DuplicateTargetGroupName) while the
    lost create's resource stays out of sight for 12 reads: more than the 5 attempts other client
    errors get. The retries wait (NotYetVisibleError) and end with the one."""
    plan, vpc_id, subnet_ids = nlb_network
    if op == "CreateSecurityGroup":
        fn = security_groups.ensure_security_group
        inp = security_groups.EnsureSecurityGroupInput(
            cluster=CLUSTER, vpc_id=vpc_id, name="idem-node", role="node", description="d"
        )
    else:
        fn = load_balancer.ensure_load_balancer
        inp = load_balancer.EnsureLoadBalancerInput(
            cluster=CLUSTER, plan=plan, vpc_id=vpc_id, subnet_ids=subnet_ids, security_group_ids=()
        )
    # moto's own answers to the repeat: they are AWS's (for the target group: a repeat whose
    # settings differ), so no AwsRepeats here.
    with eventually_consistent(reads=0, lose={op}, lost_reads=12, repeats=False) as lag:
        _, failures = run_like_temporal(fn, inp)
    assert lag.lost[op] == 1 and lag.hidden_reads[lag.lost_ids[op][0]] == 12
    assert failures.count("NotYetVisibleError") >= 5, failures
    if op == "CreateSecurityGroup":
        groups = ec2().describe_security_groups(Filters=[{"Name": "group-name", "Values": ["idem-node"]}])
        assert len(groups["SecurityGroups"]) == 1
    else:
        v2 = boto3.client("elbv2", region_name=REGION)
        assert len(v2.describe_target_groups()["TargetGroups"]) == 1
        assert len(v2.describe_load_balancers()["LoadBalancers"]) == 1
