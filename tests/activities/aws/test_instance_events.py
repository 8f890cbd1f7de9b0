"""EventBridge → SQS instance state events (capt/activities/aws/instance_events.py) against moto."""

from __future__ import annotations

import json

import pytest

from capt.activities.aws import instance_events as ie
from capt.activities.aws import session

REGION = "ap-northeast-2"
REQ = ie.InstanceEventsRequest(region=REGION, cluster_name="demo", namespace="default")


def ec2_event(instance_id: str, state: str) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2026-05-01T12:00:00Z",
            "region": REGION,
            "resources": [f"arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "state": state},
        }
    )


@pytest.fixture(autouse=True)
def _fresh_clients() -> None:
    session.reset_clients()


def test_ensure_wires_rule_to_queue_and_is_idempotent(aws: None) -> None:
    first = ie.ensure_instance_events(REQ)
    again = ie.ensure_instance_events(REQ)
    assert (again.queue_url, again.queue_arn, again.rule_arn) == (
        first.queue_url,
        first.queue_arn,
        first.rule_arn,
    )
    assert first.aws_calls == {
        "sqs:CreateQueue": 1,
        "sqs:GetQueueAttributes": 1,
        "eventbridge:PutRule": 1,
        "sqs:SetQueueAttributes": 1,
        "eventbridge:PutTargets": 1,
    }
    events = session.client("events", REGION)
    rule = events.describe_rule(Name=ie.resource_name("default", "demo"))
    assert json.loads(rule["EventPattern"]) == ie.event_pattern()
    targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [(t["Id"], t["Arn"]) for t in targets] == [(ie.TARGET_ID, first.queue_arn)]
    attrs = session.client("sqs", REGION).get_queue_attributes(
        QueueUrl=first.queue_url, AttributeNames=["All"]
    )
    policy = json.loads(attrs["Attributes"]["Policy"])
    assert policy["Statement"][0]["Condition"] == {"ArnEquals": {"aws:SourceArn": first.rule_arn}}
    assert attrs["Attributes"]["MessageRetentionPeriod"] == "300"


def test_receive_returns_events_and_takes_them_off_the_queue(aws: None) -> None:
    ref = ie.ensure_instance_events(REQ)
    sqs = session.client("sqs", REGION)
    sqs.send_message(QueueUrl=ref.queue_url, MessageBody=ec2_event("i-0123456789abcdef0", "terminated"))
    sqs.send_message(QueueUrl=ref.queue_url, MessageBody="not an event")
    got = ie.receive_instance_events(
        ie.ReceiveInstanceEventsRequest(region=REGION, queue_url=ref.queue_url, wait_seconds=0)
    )
    assert got.received == 2
    assert [(e.instance_id, e.state, e.time.isoformat()) for e in got.events] == [
        ("i-0123456789abcdef0", "terminated", "2026-05-01T12:00:00+00:00")
    ]
    assert got.aws_calls == {"sqs:ReceiveMessage": 1, "sqs:DeleteMessage": 2}
    empty = ie.receive_instance_events(
        ie.ReceiveInstanceEventsRequest(region=REGION, queue_url=ref.queue_url, wait_seconds=0)
    )
    assert (empty.received, empty.events, empty.aws_calls) == (0, (), {"sqs:ReceiveMessage": 1})


def test_delete_removes_everything_and_tolerates_what_is_gone(aws: None) -> None:
    ie.ensure_instance_events(REQ)
    assert ie.delete_instance_events(REQ).changed
    name = ie.resource_name("default", "demo")
    assert session.client("events", REGION).list_rules(NamePrefix=name)["Rules"] == []
    assert "QueueUrls" not in session.client("sqs", REGION).list_queues(QueueNamePrefix=name)
    assert not ie.delete_instance_events(REQ).changed


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ec2_event("i-1", "stopped"), ("i-1", "stopped")),
        (json.dumps({"detail-type": "Something else", "detail": {"instance-id": "i-1", "state": "x"}}), None),
        (json.dumps({"detail-type": ie.EVENT_DETAIL_TYPE, "detail": {}}), None),
        ("[1, 2]", None),
        ("{", None),
    ],
)
def test_parse_event(body: str, expected) -> None:
    parsed = ie.parse_event(body)
    assert (None if parsed is None else (parsed.instance_id, parsed.state)) == expected


def test_resource_name_fits_both_limits() -> None:
    name = ie.resource_name("a-very-long-namespace-name", "and-a-cluster-name-that-goes-on-and-on.example")
    assert len(name) <= 64 and name.endswith("-instance-events")
    assert all(ch.isalnum() or ch in "-_" for ch in name)


def test_resource_name_from_the_cluster_id() -> None:
    # A cluster created before ids were namespaced keeps its queue and rule.
    assert ie.resource_name("default", "demo") == "capt-default-demo-instance-events"
    assert ie.resource_name("default", "demo", "demo") == "capt-default-demo-instance-events"
    a, b = ie.resource_name("a-b", "c", "a-b.c"), ie.resource_name("a", "b-c", "a.b-c")
    # Alike once sanitised (and alike in the legacy scheme), told apart by the id's hash.
    assert ie.resource_name("a-b", "c") == ie.resource_name("a", "b-c")
    assert a != b and a.startswith("capt-a-b-c-") and b.startswith("capt-a-b-c-")
    longest = ie.resource_name("n" * 63, "m" * 63, "n" * 52 + "-" + "h" * 10)
    for name in (a, b, longest):
        assert len(name) <= 64 and name.endswith("-instance-events")
        assert all(ch.isalnum() or ch in "-_" for ch in name)


def test_rule_routes_only_ending_states_to_the_queue(aws: None) -> None:
    """moto runs PutEvents through the rule's pattern (real AWS refuses "aws.*" sources from
    PutEvents: there, EC2 emits them itself)."""
    ref = ie.ensure_instance_events(REQ)
    entries = [
        {
            "Source": "aws.ec2",
            "DetailType": ie.EVENT_DETAIL_TYPE,
            "Detail": json.dumps({"instance-id": i, "state": s}),
        }
        for i, s in (("i-1", "terminated"), ("i-2", "running"), ("i-3", "stopping"), ("i-4", "pending"))
    ]
    assert session.client("events", REGION).put_events(Entries=entries)["FailedEntryCount"] == 0
    got = ie.receive_instance_events(
        ie.ReceiveInstanceEventsRequest(region=REGION, queue_url=ref.queue_url, wait_seconds=0)
    )
    assert sorted((e.instance_id, e.state) for e in got.events) == [
        ("i-1", "terminated"),
        ("i-3", "stopping"),
    ]


def test_worker_policy_limits_the_queue_and_rule_to_capt_names() -> None:
    from capt.activities.aws import iam_worker_policy

    statements = [
        s
        for s in iam_worker_policy.worker_policy()["Statement"]
        if any(a.startswith(("sqs:", "events:")) for a in s["Action"])
    ]
    assert len(statements) == 1  # every SQS/EventBridge action in one statement ...
    (statement,) = statements
    # ... on capt-* names only, with nothing else in it.
    assert sorted(statement["Resource"]) == ["arn:*:events:*:*:rule/capt-*", "arn:*:sqs:*:*:capt-*"]
    assert {a.split(":")[0] for a in statement["Action"]} == {"sqs", "events"}
    assert ie.resource_name("default", "demo").startswith("capt-")
