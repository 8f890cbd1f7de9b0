"""What AWS does after a create that moto does not, for lost-response tests.

`LaggingReads` -- eventual consistency. A resource a create just made stays out of the matching
Describe*/List* answers for the next `reads` reads that would show it (moto answers
consistently; AWS does not, for seconds). A read that names it (by id, ARN or name) is answered
as AWS answers a read of something it does not know (`InvalidVpcID.NotFound`,
`LoadBalancerNotFound`, `ResourceNotFoundException`, ...); a filtered or listing read leaves it
out. It can also lose the answer of chosen creates once each, after AWS made the resource: the
harshest combination for a create that must find its earlier attempt's work.

`AwsRepeats` -- a repeated create. AWS answers a create whose ClientToken it has seen with the
first result (RunInstances, CreateNatGateway, CreateRouteTable), and an elbv2
CreateLoadBalancer / CreateTargetGroup / CreateListener that repeats an existing one with the
same settings with that one ("each call succeeds"; settings are not compared here: capt
repeats its own call). moto ignores ClientToken, makes a second v2
load balancer with the same name and a second listener on the same port, and refuses the
target group; tests that count resources after a lost response would otherwise test moto.

Install both with `eventually_consistent(...)` (botocore hooks on the clients capt's activities
use, through `activities.aws.session.hooked`); the plain boto3 clients a test reads with are not
hooked, so they see the truth. `run_like_temporal` runs one activity through its attempts as
Temporal's retry policy would (without the backoff: here the lag is counted in reads).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import session

_PARAMS = "capt_test_params"  # where the request's parameters are kept in botocore's context
_REPEAT = "capt_test_repeat"  # set in the context of a create AwsRepeats answered


def _remember_params(params, context, **_: Any) -> None:
    """`before-parameter-build`: keep the call's parameters for the after-call hooks."""
    context[_PARAMS] = dict(params)


def _first(out: dict, key: str, field: str) -> list[str]:
    return [out[key][field]]


def _each(out: dict, key: str, field: str) -> list[str]:
    return [x[field] for x in out.get(key, [])]


# (service, create operation) -> the new resource's ids, from (answer, parameters)
CREATES: dict[tuple[str, str], Callable[[dict, dict], list[str]]] = {
    ("ec2", "CreateVpc"): lambda out, _: _first(out, "Vpc", "VpcId"),
    ("ec2", "CreateSubnet"): lambda out, _: _first(out, "Subnet", "SubnetId"),
    ("ec2", "CreateInternetGateway"): lambda out, _: _first(out, "InternetGateway", "InternetGatewayId"),
    ("ec2", "AllocateAddress"): lambda out, _: [out["AllocationId"]],
    ("ec2", "CreateNatGateway"): lambda out, _: _first(out, "NatGateway", "NatGatewayId"),
    ("ec2", "CreateRouteTable"): lambda out, _: _first(out, "RouteTable", "RouteTableId"),
    ("ec2", "CreateSecurityGroup"): lambda out, _: [out["GroupId"]],
    ("ec2", "RunInstances"): lambda out, _: _each(out, "Instances", "InstanceId"),
    ("elb", "CreateLoadBalancer"): lambda _, params: [params["LoadBalancerName"]],
    ("elbv2", "CreateLoadBalancer"): lambda out, _: _each(out, "LoadBalancers", "LoadBalancerArn"),
    ("elbv2", "CreateTargetGroup"): lambda out, _: _each(out, "TargetGroups", "TargetGroupArn"),
    ("elbv2", "CreateListener"): lambda out, _: _each(out, "Listeners", "ListenerArn"),
    ("secretsmanager", "CreateSecret"): lambda out, _: [out["ARN"]],
}

# (service, read operation) -> (its list, the id field, parameters that name what is read,
# AWS's code when a named one is unknown)
LISTS: dict[tuple[str, str], tuple[str, str, tuple[str, ...], str | None]] = {
    ("ec2", "DescribeVpcs"): ("Vpcs", "VpcId", ("VpcIds",), "InvalidVpcID.NotFound"),
    ("ec2", "DescribeSubnets"): ("Subnets", "SubnetId", ("SubnetIds",), "InvalidSubnetID.NotFound"),
    ("ec2", "DescribeInternetGateways"): (
        "InternetGateways",
        "InternetGatewayId",
        ("InternetGatewayIds",),
        "InvalidInternetGatewayID.NotFound",
    ),
    ("ec2", "DescribeAddresses"): (
        "Addresses",
        "AllocationId",
        ("AllocationIds",),
        "InvalidAllocationID.NotFound",
    ),
    ("ec2", "DescribeNatGateways"): ("NatGateways", "NatGatewayId", ("NatGatewayIds",), "NatGatewayNotFound"),
    ("ec2", "DescribeRouteTables"): (
        "RouteTables",
        "RouteTableId",
        ("RouteTableIds",),
        "InvalidRouteTableID.NotFound",
    ),
    ("ec2", "DescribeSecurityGroups"): ("SecurityGroups", "GroupId", ("GroupIds",), "InvalidGroup.NotFound"),
    ("elb", "DescribeLoadBalancers"): (
        "LoadBalancerDescriptions",
        "LoadBalancerName",
        ("LoadBalancerNames",),
        "LoadBalancerNotFound",
    ),
    ("elbv2", "DescribeLoadBalancers"): (
        "LoadBalancers",
        "LoadBalancerArn",
        ("Names", "LoadBalancerArns"),
        "LoadBalancerNotFound",
    ),
    ("elbv2", "DescribeTargetGroups"): (
        "TargetGroups",
        "TargetGroupArn",
        ("Names", "TargetGroupArns"),
        "TargetGroupNotFound",
    ),
    ("elbv2", "DescribeListeners"): ("Listeners", "ListenerArn", ("ListenerArns",), "ListenerNotFound"),
    ("secretsmanager", "ListSecrets"): ("SecretList", "ARN", (), None),
}
# Reads of one secret, by name or ARN: the answer itself carries the ARN.
SINGLE_READS = {("secretsmanager", "DescribeSecret"), ("secretsmanager", "GetSecretValue")}


def _key(model) -> tuple[str, str]:
    return model.service_model.service_name, model.name


def _not_found(code: str, op: str, what: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{what} does not exist (a lagging read)"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        op,
    )


class LaggingReads:
    def __init__(self, reads: int, lose: set[str] = frozenset(), lost_reads: int | None = None) -> None:
        self.reads = reads
        # What a lost create made may stay out of sight for longer than the rest.
        self.lost_reads = reads if lost_reads is None else lost_reads
        self.lose = set(lose)
        self.lost: Counter[str] = Counter()
        self.lost_ids: dict[str, list[str]] = {}  # create operation -> what its lost answer named
        self.hidden_reads: Counter[str] = Counter()  # how often an id was left out
        self.created: Counter[str] = Counter()  # create operation -> resources AWS made
        self._left: dict[str, int] = {}
        self._lock = threading.Lock()

    def _hide(self, ident: str) -> bool:
        """Whether this read leaves `ident` out (and count it); call with the lock held."""
        if self._left.get(ident, 0) <= 0:
            return False
        self._left[ident] -= 1
        self.hidden_reads[ident] += 1
        return True

    def __call__(self, http_response, parsed, model, context=None, **kwargs) -> None:
        """`after-call`: remember what a create made (maybe losing its answer), hide it from reads."""
        if http_response.status_code >= 300:
            return
        key, op = _key(model), model.name
        params = (context or {}).get(_PARAMS, {})
        if key in CREATES:
            if (context or {}).get(_REPEAT):
                return  # AWS made nothing new: the first answer again
            new_ids = CREATES[key](parsed, params)
            with self._lock:
                self.created[op] += len(new_ids)
                lose = op in self.lose and not self.lost[op]
                if lose:
                    self.lost[op] += 1
                    self.lost_ids[op] = new_ids
                for ident in new_ids:
                    self._left[ident] = self.lost_reads if lose else self.reads
            if lose:
                raise ConnectionClosedError(endpoint_url=f"https://{op}.example.invalid")
        elif key in LISTS:
            list_key, id_field, naming, code = LISTS[key]
            with self._lock:
                kept = [item for item in parsed.get(list_key, []) if not self._hide(item[id_field])]
                hidden = len(parsed.get(list_key, [])) - len(kept)
            parsed[list_key] = kept
            if hidden and code and any(params.get(p) for p in naming):
                raise _not_found(code, op, f"{model.service_model.service_name} resource")
        elif key == ("ec2", "DescribeInstances"):
            with self._lock:
                hidden = 0
                for reservation in parsed.get("Reservations", []):
                    kept = [i for i in reservation["Instances"] if not self._hide(i["InstanceId"])]
                    hidden += len(reservation["Instances"]) - len(kept)
                    reservation["Instances"] = kept
            parsed["Reservations"] = [r for r in parsed.get("Reservations", []) if r["Instances"]]
            if hidden and params.get("InstanceIds"):
                raise _not_found("InvalidInstanceID.NotFound", op, "instance")
        elif key in SINGLE_READS:
            with self._lock:
                hidden = self._hide(parsed.get("ARN", ""))
            if hidden:
                raise _not_found("ResourceNotFoundException", op, f"secret {parsed.get('Name')}")


TOKEN_CREATES = {("ec2", "RunInstances"), ("ec2", "CreateNatGateway"), ("ec2", "CreateRouteTable")}


class AwsRepeats:
    """`before-call` + `after-call`: a repeated create answered as AWS answers it (module doc)."""

    def __init__(self) -> None:
        self.repeated: Counter[str] = Counter()  # operation -> creates answered with the first result
        self._answers: dict[tuple, dict] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _token_key(model, params: dict) -> tuple | None:
        if _key(model) in TOKEN_CREATES and params.get("ClientToken"):
            return (*_key(model), params["ClientToken"])
        return None

    def _existing_v2(self, model, params: dict, region: str) -> dict | None:
        """The elbv2 resource a create repeats, read from moto with a plain (unhooked) client."""
        if model.service_model.service_name != "elbv2":
            return None
        v2 = boto3.client("elbv2", region_name=region)
        try:
            if model.name == "CreateLoadBalancer":
                found = v2.describe_load_balancers(Names=[params["Name"]])["LoadBalancers"]
                return {"LoadBalancers": found}
            if model.name == "CreateTargetGroup":
                found = v2.describe_target_groups(Names=[params["Name"]])["TargetGroups"]
                return {"TargetGroups": found}
        except ClientError as err:
            if err.response["Error"]["Code"] in ("LoadBalancerNotFound", "TargetGroupNotFound"):
                return None
            raise
        if model.name == "CreateListener":
            listeners = v2.describe_listeners(LoadBalancerArn=params["LoadBalancerArn"])["Listeners"]
            same = [x for x in listeners if x["Port"] == params["Port"]]
            return {"Listeners": same} if same else None
        return None

    def before_call(self, model, context, **kwargs):
        params = context.get(_PARAMS, {})
        token = self._token_key(model, params)
        with self._lock:
            answer = copy.deepcopy(self._answers.get(token)) if token else None
        if answer is None:
            answer = self._existing_v2(model, params, context.get("client_region") or "")
        if answer is None:
            return None
        with self._lock:
            self.repeated[model.name] += 1
        context[_REPEAT] = True
        answer.setdefault("ResponseMetadata", {"HTTPStatusCode": 200})
        return AWSResponse(f"https://{model.name}.repeat.invalid", 200, {}, None), answer

    def after_call(self, http_response, parsed, model, context=None, **kwargs) -> None:
        token = self._token_key(model, (context or {}).get(_PARAMS, {}))
        if token and http_response.status_code < 300:
            with self._lock:
                self._answers.setdefault(token, copy.deepcopy(parsed))


@contextmanager
def eventually_consistent(
    reads: int, lose: set[str] = frozenset(), lost_reads: int | None = None, repeats: bool = True
) -> Iterator[LaggingReads]:
    """AWS's answers to repeated creates (unless `repeats` is False: moto's), reads lagging `reads`
    behind creates (`lost_reads` behind a create whose answer is lost), and the answers of the
    `lose` creates lost once each, on every client capt's activities use."""
    lag = LaggingReads(reads, lose, lost_reads)
    with ExitStack() as stack:
        stack.enter_context(session.hooked("before-parameter-build", _remember_params))
        if repeats:
            lag.repeats = AwsRepeats()  # type: ignore[attr-defined]
            stack.enter_context(session.hooked("before-call", lag.repeats.before_call))
            # In this order: the first answer is kept before it may be lost.
            stack.enter_context(session.hooked("after-call", lag.repeats.after_call))
        stack.enter_context(session.hooked("after-call", lag))
        yield lag


def run_like_temporal(fn: Callable[[Any], Any], arg: Any, max_attempts: int = 30) -> tuple[Any, list[str]]:
    """(result, the error types of the failed attempts): `fn` run as an activity, attempt 1, 2, ...
    until it returns; a non-retryable failure is raised."""
    env = ActivityEnvironment()
    failures: list[str] = []
    for attempt in range(1, max_attempts + 1):
        env.info = dataclasses.replace(env.info, attempt=attempt)
        try:
            return env.run(fn, arg), failures
        except ApplicationError as err:
            if err.non_retryable:
                raise
            failures.append(err.type or "")
    raise AssertionError(f"still failing after {max_attempts} attempts: {failures}")
