"""The AWS-calls benchmark's quick default, end to end (about 20 s of wall time)."""

from __future__ import annotations

import json

import pytest

from capt.dev.bench import aws_calls
from capt.dev.bench.aws_calls import ops as aws_calls_ops


@pytest.mark.parametrize(
    ("operation", "mutating"),
    [
        ("ec2:CreateVpc", True),
        ("ec2:RunInstances", True),
        ("ec2:AuthorizeSecurityGroupIngress", True),
        ("elastic-load-balancing:ConfigureHealthCheck", True),
        ("elastic-load-balancing:RegisterInstancesWithLoadBalancer", True),
        ("secrets-manager:PutSecretValue", True),
        ("ec2:CreateTags", True),
        ("ec2:DescribeInstances", False),
        ("secrets-manager:GetSecretValue", False),
        ("secrets-manager:ListSecrets", False),
        ("resource-groups-tagging-api:GetResources", False),
        ("Address", False),  # a noun, not the verb "Add"
    ],
)
def test_mutating_classifier(operation: str, mutating: bool) -> None:
    assert aws_calls_ops.is_mutating(operation) is mutating


def test_aws_calls_per_operation(tmp_path) -> None:
    assert aws_calls.main(["--quick", "--results", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "aws_calls.json").read_text())

    net = data["network"]
    create, again = net["create"], net["create again"]
    assert (
        create["mutating_minimum"] > 0
        and create["total"] > create["mutating"] >= create["mutating_minimum"] - 1
    )
    # A re-run creates nothing. Its only writes are the attribute settings capt makes unconditionally
    # (setting an attribute again changes nothing, and a read first would cost the same one call).
    assert again["creating"] == 0
    assert set(again["mutating_by_operation"]) <= {"ModifyVpcAttribute", "ModifyLoadBalancerAttributes"}
    assert again["total"] < create["total"]

    for kind, machine in data["machine_create"].items():
        assert machine["total"] > 0, kind
        assert machine["aws_calls"]["ec2:RunInstances"] == 1, kind  # one launch per machine
    assert data["worker_create_deployment"]["aws_calls"]["ec2:RunInstances"] == 1
    assert data["worker_delete"]["aws_calls"]["ec2:TerminateInstances"] == 1

    # The health check's AWS calls are flat in the machine count (CAPA #1764).
    steady = {row["cluster"]: row for row in data["steady_state"]}
    assert steady["3+3"]["per_hour"] == steady["3+50"]["per_hour"] > 0
    assert steady["3+50"]["capa_sync_period_per_hour"] > steady["3+3"]["capa_sync_period_per_hour"]

    upgrade = data["rolling_upgrade"]
    assert upgrade["replaced"] == upgrade["workers"] == 5
    assert upgrade["aws_calls"]["ec2:RunInstances"] == upgrade["aws_calls"]["ec2:TerminateInstances"] == 5

    assert "CAPA #1764" in aws_calls.section(data)
