"""AWS fault injection (CAPT_AWS_FAULTS) on in-process moto: throttling and 5xx are not applied,
a lost response is applied and then raised as a dropped connection; errors.py retries all three;
a seed reproduces the same faults."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from temporalio.exceptions import ApplicationError

from capt.activities.aws import audit, audit_compare, faults, session, vpc
from capt.activities.aws.errors import to_application_error
from capt.activities.aws.models import ClusterRef
from capt.dev.testkit.reference import REGION

CLUSTER = ClusterRef(name="faulty", region=REGION)


def vpc_count() -> int:
    return len(boto3.client("ec2", region_name=REGION).describe_vpcs()["Vpcs"])


def test_parse_and_validate():
    spec = faults.FaultSpec.parse("lost=0.1, throttle=0.3,5xx=0.05,seed=7,ops=mutating")
    assert (spec.lost, spec.throttle, spec.server_error, spec.seed, spec.ops) == (
        0.1,
        0.3,
        0.05,
        7,
        "mutating",
    )
    assert faults.FaultSpec.parse(str(spec)) == spec
    for bad in ("lost", "nope=1", "lost=x", "lost=1.5", "lost=0.6,throttle=0.6"):
        with pytest.raises(faults.FaultSpecError):
            faults.FaultSpec.parse(bad)


def test_mutating_operations():
    for op in (
        "CreateVpc",
        "RunInstances",
        "TerminateInstances",
        "PutSecretValue",
        "AuthorizeSecurityGroupIngress",
    ):
        assert faults.is_mutating(op)
    for op in ("DescribeVpcs", "GetSecretValue", "ListSecrets", "SendCommand"):
        assert not faults.is_mutating(op)
    only = faults.FaultSpec(ops="RunInstances+CreateVpc")
    assert only.applies_to("CreateVpc") and not only.applies_to("DeleteVpc")
    assert faults.FaultSpec(ops="all").applies_to("DescribeVpcs")


def test_off_unless_the_variable_is_set():
    assert faults.install_from_env({}) is None
    assert faults.install_from_env({faults.ENV_VAR: "  "}) is None


def test_throttling_is_not_applied_and_retryable(aws):
    ec2 = session.client("ec2", REGION)
    before = vpc_count()
    with faults.FaultInjector(faults.FaultSpec(throttle=1.0)) as injector:
        ec2.describe_vpcs()  # reads are not mutating: untouched
        with pytest.raises(ClientError) as err:
            ec2.create_vpc(CidrBlock="10.9.0.0/16")
    assert err.value.response["Error"]["Code"] == "RequestLimitExceeded"
    assert vpc_count() == before
    assert injector.injected == {"throttle": 1}
    assert not to_application_error(err.value).non_retryable

    sm = session.client("secretsmanager", REGION)
    with faults.FaultInjector(faults.FaultSpec(throttle=1.0)), pytest.raises(ClientError) as err:
        sm.create_secret(Name="x", SecretString="y")
    assert err.value.response["Error"]["Code"] == "Throttling"


def test_server_errors_are_not_applied_and_retryable(aws):
    ec2 = session.client("ec2", REGION)
    before = vpc_count()
    codes = set()
    with faults.FaultInjector(faults.FaultSpec(server_error=1.0, seed=3)):
        for _ in range(8):
            with pytest.raises(ClientError) as err:
                ec2.create_vpc(CidrBlock="10.9.0.0/16")
            codes.add(err.value.response["Error"]["Code"])
            assert not to_application_error(err.value).non_retryable
    assert codes == {"InternalError", "ServiceUnavailable"}
    assert vpc_count() == before


def test_a_lost_response_is_applied_then_raised_as_a_dropped_connection(aws):
    ec2 = session.client("ec2", REGION)
    before = vpc_count()
    with faults.FaultInjector(faults.FaultSpec(lost=1.0)) as injector:
        with pytest.raises((ReadTimeoutError, ConnectionClosedError)) as err:
            ec2.create_vpc(CidrBlock="10.9.0.0/16")
        # A call that AWS refuses is not "lost": its own error comes through.
        with pytest.raises(ClientError) as refused:
            ec2.delete_vpc(VpcId="vpc-00000000000000000")
    assert vpc_count() == before + 1
    assert injector.injected == {"lost": 1}
    assert refused.value.response["Error"]["Code"] == "InvalidVpcID.NotFound"
    app = to_application_error(err.value)
    assert not app.non_retryable and app.type in ("ReadTimeoutError", "ConnectionClosedError")


def test_an_activity_retried_after_a_lost_response_creates_one_vpc(aws):
    """ensure_vpc's CreateVpc answer is lost: the attempt fails retryably; the retry finds the VPC."""
    baseline = audit.take_inventory(REGION)
    inp = vpc.EnsureVpcInput(cluster=CLUSTER, name="faulty-vpc", cidr_block="10.0.0.0/16")
    with (
        faults.FaultInjector(faults.FaultSpec(lost=1.0, ops="CreateVpc")),
        pytest.raises(ApplicationError) as err,
    ):
        vpc.ensure_vpc(inp)
    assert not err.value.non_retryable
    again = vpc.ensure_vpc(inp)
    assert not again.created
    wanted = audit_compare.DesiredCluster("faulty", {"vpc": frozenset({"faulty-vpc"})})
    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [wanted])
    assert report.clean, report.summary()


def test_the_seed_reproduces_the_faults(aws):
    ec2 = session.client("ec2", REGION)
    default_vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]

    def run(seed: int) -> list[str]:
        seen = []
        with faults.FaultInjector(faults.FaultSpec(lost=0.2, throttle=0.3, server_error=0.1, seed=seed)):
            for _ in range(30):
                try:
                    ec2.create_tags(Resources=[default_vpc], Tags=[{"Key": "k", "Value": "v"}])
                    seen.append("ok")
                except ClientError as err:
                    seen.append(err.response["Error"]["Code"])
                except (ReadTimeoutError, ConnectionClosedError):
                    seen.append("lost")
        return seen

    first = run(7)
    assert first == run(7) and first != run(8)
    assert {"ok", "lost", "RequestLimitExceeded"} <= set(first)
