"""EC2 instance state-change events through EventBridge to SQS — optional, off by default.

CAPA's EventBridgeInstanceState feature, for capt's health check: an EventBridge rule matching
"EC2 Instance State-change Notification" events for the states that end an instance
(shutting-down, terminated, stopping, stopped) delivers them to an SQS queue of the cluster's;
the HealthCheckWorkflow long-polls the queue between its intervals and checks at once when an
instance of one of its machines is named, so a vanished instance is seen within seconds rather
than an interval. Events only *accelerate* detection: the interval's DescribeInstances stays the
source of truth, so a lost or duplicated event costs at most an interval or one extra check.

Names are deterministic, for the rule and the queue: `capt-<id>-<h8(id)>-instance-events` from
the cluster's id (contracts.names.cluster_id; sanitised, shortened to fit, and a hash of the whole id
so that ids differing only in punctuation differ), or `capt-<namespace>-<cluster>-instance-events`
for a request without an id (a cluster created before ids were namespaced): `ensure_instance_events` is create-or-update (CreateQueue returns the existing queue,
PutRule and PutTargets overwrite) and `delete_instance_events` treats "already gone" as done.
The rule matches the account's EC2 events in the region (EventBridge cannot filter on tags);
the consumer keeps only events about the cluster's own instances.

Real AWS only: moto neither emits EC2 state-change events nor runs them through rules, so tests
inject the events into the queue.

AWS calls: `ensure` 5 (CreateQueue, GetQueueAttributes, PutRule, SetQueueAttributes,
PutTargets); `receive` 1 ReceiveMessage per long poll (≤ 20 s) plus 1 DeleteMessage per event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import session
from capt.activities.aws.errors import is_code
from capt.activities.aws.models import AwsResult, DoneResult
from capt.rules.base import Frozen

EVENT_SOURCE = "aws.ec2"
EVENT_DETAIL_TYPE = "EC2 Instance State-change Notification"
ENDING_STATES = ("shutting-down", "terminated", "stopping", "stopped")
TARGET_ID = "capt-health"
MAX_WAIT_SECONDS = 20  # SQS long polling's maximum


class InstanceEventsRequest(Frozen):
    region: str
    cluster_name: str
    namespace: str = "default"
    # The cluster's id in AWS (contracts.names.cluster_id); None: a legacy cluster, named as before.
    cluster_id: str | None = None


class InstanceEventsRef(AwsResult):
    queue_url: str
    queue_arn: str
    rule_arn: str


class ReceiveInstanceEventsRequest(Frozen):
    region: str
    queue_url: str
    wait_seconds: int = MAX_WAIT_SECONDS


class InstanceEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_id: str
    state: str
    time: dt.datetime | None = None


class InstanceEvents(AwsResult):
    events: tuple[InstanceEvent, ...] = ()
    received: int = 0  # messages taken off the queue (unparseable ones included)


# --------------------------------------------------------------------------------------------
# pure parts


NAME_MAX = 64  # rule and queue names: ≤ 64 characters of [A-Za-z0-9_-] (the stricter limits)
SUFFIX = "-instance-events"


def resource_name(namespace: str, cluster: str, cluster_id: str | None = None) -> str:
    """Rule and queue name (starting `capt-`, which the worker's IAM policy requires).

    From the cluster id when there is one that is not the bare name; `a-b.c` and `a.b-c` read
    alike once sanitised, the hash tells them apart. Without one, the legacy name: an existing
    cluster keeps its queue."""
    if cluster_id is None or cluster_id == cluster:
        raw = re.sub(r"[^A-Za-z0-9_-]", "-", f"capt-{namespace}-{cluster}")
        return raw[: NAME_MAX - len(SUFFIX)] + SUFFIX
    digest = hashlib.sha256(cluster_id.encode()).hexdigest()[:8]
    keep = NAME_MAX - len("capt-") - len(digest) - 1 - len(SUFFIX)
    readable = re.sub(r"[^A-Za-z0-9_-]", "-", cluster_id)[:keep].strip("-")
    return f"capt-{readable}-{digest}{SUFFIX}"


def event_pattern() -> dict[str, Any]:
    return {
        "source": [EVENT_SOURCE],
        "detail-type": [EVENT_DETAIL_TYPE],
        "detail": {"state": list(ENDING_STATES)},
    }


def queue_policy(queue_arn: str, rule_arn: str) -> dict[str, Any]:
    """Only this rule may send to the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CaptInstanceStateEvents",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def parse_event(body: str) -> InstanceEvent | None:
    """An EventBridge EC2 state-change event (the SQS message body) → its instance and state."""
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("detail-type") != EVENT_DETAIL_TYPE:
        return None
    detail = event.get("detail") or {}
    instance_id, state = detail.get("instance-id"), detail.get("state")
    if not isinstance(instance_id, str) or not isinstance(state, str):
        return None
    time = None
    if isinstance(event.get("time"), str):
        try:
            time = dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        except ValueError:
            time = None
    return InstanceEvent(instance_id=instance_id, state=state, time=time)


# --------------------------------------------------------------------------------------------
# activities


@session.aws_activity
def ensure_instance_events(req: InstanceEventsRequest) -> InstanceEventsRef:
    """The cluster's queue and rule, wired together (create or bring up to date)."""
    name = resource_name(req.namespace, req.cluster_name, req.cluster_id)
    sqs = session.client("sqs", req.region)
    events = session.client("events", req.region)
    # Events are only useful for a few minutes: keep them 5 minutes at most.
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "300"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = events.put_rule(
        Name=name,
        EventPattern=json.dumps(event_pattern()),
        State="ENABLED",
        Description=f"capt: EC2 instance state changes for the health check of {req.namespace}/{req.cluster_name}",
    )["RuleArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(queue_policy(arn, rule_arn))})
    events.put_targets(Rule=name, Targets=[{"Id": TARGET_ID, "Arn": arn}])
    return InstanceEventsRef(queue_url=url, queue_arn=arn, rule_arn=rule_arn)


@session.aws_activity
def receive_instance_events(req: ReceiveInstanceEventsRequest) -> InstanceEvents:
    """One long poll (≤ 20 s): the instance state events waiting, removed from the queue."""
    sqs = session.client("sqs", req.region)
    messages = sqs.receive_message(
        QueueUrl=req.queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=max(0, min(req.wait_seconds, MAX_WAIT_SECONDS)),
    ).get("Messages", [])
    found = []
    for message in messages:
        parsed = parse_event(message.get("Body", ""))
        if parsed is not None:
            found.append(parsed)
        # Taken even when unparseable (it would only come back). A message deleted but not
        # returned (the attempt dies now) costs at most one interval: the describe still runs.
        sqs.delete_message(QueueUrl=req.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return InstanceEvents(events=tuple(found), received=len(messages))


@session.aws_activity
def delete_instance_events(req: InstanceEventsRequest) -> DoneResult:
    """Remove the rule's target, the rule and the queue; anything already gone is done."""
    name = resource_name(req.namespace, req.cluster_name, req.cluster_id)
    sqs = session.client("sqs", req.region)
    events = session.client("events", req.region)
    changed = False
    try:
        events.remove_targets(Rule=name, Ids=[TARGET_ID])
        events.delete_rule(Name=name)
        changed = True
    except Exception as err:
        if not is_code(err, "ResourceNotFoundException"):
            raise
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sqs.delete_queue(QueueUrl=url)
        changed = True
    except Exception as err:
        if not is_code(err, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
    return DoneResult(changed=changed)


INSTANCE_EVENT_ACTIVITIES = [ensure_instance_events, receive_instance_events, delete_instance_events]
