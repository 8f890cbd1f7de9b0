"""The teardown's cleanup activities on moto: what one attempt does when AWS is flaky."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from temporalio.exceptions import ApplicationError

from capt.activities.aws import cleanup, session
from capt.activities.aws.models import ClusterRef
from capt.dev.testkit.reference import REGION

CLUSTER = ClusterRef(name="c1", region=REGION)


class ThrottleNth:
    """`before-call` hook: the listed (1-based) calls of `operation` are throttled."""

    def __init__(self, operation: str, *nth: int) -> None:
        self.operation, self.nth, self.calls = operation, set(nth), 0

    def __call__(self, model, **kwargs):
        if model.name != self.operation:
            return None
        self.calls += 1
        if self.calls not in self.nth:
            return None
        parsed = {
            "Error": {"Code": "RequestLimitExceeded", "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        }
        return AWSResponse("https://injected.invalid", 503, {}, None), parsed


def rules_naming(doomed: str, groups: list[str]) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    for port, gid in enumerate(groups, start=1000):
        ec2.authorize_security_group_ingress(
            GroupId=gid,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": doomed}],
                }
            ],
        )


def naming(doomed: str, gid: str) -> int:
    ec2 = boto3.client("ec2", region_name=REGION)
    g = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    return sum(
        1 for p in g["IpPermissions"] for pair in p.get("UserIdGroupPairs", []) if pair["GroupId"] == doomed
    )


def test_a_throttled_revoke_does_not_stop_the_others_and_the_next_attempt_finishes(aws) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    doomed = ec2.create_security_group(VpcId=vpc, GroupName="elb", Description="d")["GroupId"]
    others = [
        ec2.create_security_group(VpcId=vpc, GroupName=f"g{i}", Description="d")["GroupId"] for i in range(3)
    ]
    rules_naming(doomed, others)
    inp = cleanup.RevokeReferencesInput(cluster=CLUSTER, group_ids=(doomed,), vpc_ids=(vpc,))
    # The first rule's revoke is throttled (an answer given before sending: botocore does not retry it).
    throttle = ThrottleNth("RevokeSecurityGroupIngress", 1)
    with session.hooked("before-call", throttle), pytest.raises(ApplicationError) as err:
        cleanup.revoke_security_group_references(inp)
    assert err.value.type == "RequestLimitExceeded" and not err.value.non_retryable
    left = [gid for gid in others if naming(doomed, gid)]
    assert throttle.calls == 3 and len(left) == 1  # the two other rules went in the same attempt
    result = cleanup.revoke_security_group_references(inp)  # the retry
    assert result.revoked == 1 and result.groups_changed == tuple(left)
    assert not any(naming(doomed, gid) for gid in others)
