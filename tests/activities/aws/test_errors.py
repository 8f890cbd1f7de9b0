"""One table classifies every AWS error (capt/activities/aws/errors.py): retry forever, retry a
bounded number of attempts, or fail now with AWS's code and message."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError, ParamValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import session, vpc
from capt.activities.aws.errors import (
    IN_USE_ATTEMPTS,
    NOT_FOUND_ATTEMPTS,
    OTHER_CLIENT_ERROR_ATTEMPTS,
    NotYetVisibleError,
    classify,
    is_transient,
    to_application_error,
)
from capt.activities.aws.models import ClusterRef

REGION = "ap-northeast-2"

PERMANENT = [
    "ValidationError",
    "ValidationException",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "InvalidParameterException",
    "MissingParameter",
    "UnknownParameter",
    "InvalidAMIID.Malformed",
    "InvalidVpcID.Malformed",
    "InvalidAMIID.NotFound",
    "InvalidKeyPair.NotFound",
    "InvalidVpc.Range",
    "IdempotentParameterMismatch",
    "UnsupportedOperation",
    "UnsupportedInstanceType",
    "OptInRequired",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "VpcLimitExceeded",
    "AddressLimitExceeded",
    "SecurityGroupLimitExceeded",
    "TooManyLoadBalancers",
    "TooManyTargetGroups",
]
RETRY = ["Throttling", "ThrottlingException", "RequestLimitExceeded", "LimitExceededException", "SlowDown"]
IN_USE = [
    "DependencyViolation",
    "VolumeInUse",
    "InvalidIPAddress.InUse",
    "InvalidGroup.InUse",
    "ResourceInUse",
]
NOT_FOUND = [
    "InvalidVpcID.NotFound",
    "InvalidInstanceID.NotFound",
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
]


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_codes_fail_at_once(code):
    assert classify(code, 400).kind == "permanent"
    assert not classify(code, 400).retryable_at(1)


@pytest.mark.parametrize("code", RETRY)
def test_throttling_retries_forever_even_where_a_quota_pattern_matches(code):
    verdict = classify(code, 400)
    assert verdict.kind == "retry" and verdict.retryable_at(1000)


@pytest.mark.parametrize(
    ("code", "status"), [("InternalError", 500), ("ServiceUnavailable", 503), ("Odd", 502)]
)
def test_server_errors_retry_forever(code, status):
    assert classify(code, status).retryable_at(1000)


@pytest.mark.parametrize(
    ("codes", "attempts"),
    [
        (IN_USE, IN_USE_ATTEMPTS),
        (NOT_FOUND, NOT_FOUND_ATTEMPTS),
        (["SomethingNew"], OTHER_CLIENT_ERROR_ATTEMPTS),
    ],
)
def test_bounded_codes_stop_at_their_attempt(codes, attempts):
    for code in codes:
        verdict = classify(code, 400)
        assert verdict.kind == "bounded", code
        assert verdict.retryable_at(attempts - 1) and not verdict.retryable_at(attempts), code


def test_order_requestlimit_retries_but_a_quota_fails():
    assert classify("RequestLimitExceeded", 400).kind == "retry"
    assert classify("VpcLimitExceeded", 400).kind == "permanent"
    assert classify("SomeNewQuotaLimitExceeded", 400).kind == "permanent"


class Refuse:
    """`before-call` hook: AWS answers `operation` with `code` (the request is not applied)."""

    def __init__(self, operation: str, code: str, status: int = 400) -> None:
        self.operation, self.code, self.status, self.calls = operation, code, status, 0

    def __call__(self, model, **kwargs):
        if model.name != self.operation:
            return None
        self.calls += 1
        parsed = {
            "Error": {"Code": self.code, "Message": f"AWS says no ({self.code})"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        return AWSResponse("https://ec2", self.status, {}, None), parsed


def run_ensure_vpc(attempt: int):
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    inp = vpc.EnsureVpcInput(
        cluster=ClusterRef(name="errs", region=REGION), name="errs-vpc", cidr_block="10.0.0.0/16"
    )
    return env.run(vpc.ensure_vpc, inp)


@pytest.mark.parametrize("code", ["InvalidParameterValue", "VpcLimitExceeded", "UnauthorizedOperation"])
def test_the_real_activity_fails_permanently_on_the_first_attempt_with_awss_message(aws, code):
    refuse = Refuse("CreateVpc", code)
    with session.hooked("before-call.ec2.CreateVpc", refuse), pytest.raises(ApplicationError) as failed:
        run_ensure_vpc(attempt=1)
    assert failed.value.non_retryable and failed.value.type == code
    assert failed.value.message == f"CreateVpc: {code}: AWS says no ({code})"
    assert refuse.calls == 1  # short-circuited before botocore's own retries


def test_the_real_activity_gives_up_on_a_bounded_code_only_at_its_last_attempt(aws):
    refuse = Refuse("CreateVpc", "DependencyViolation")
    with session.hooked("before-call.ec2.CreateVpc", refuse):
        with pytest.raises(ApplicationError) as early:
            run_ensure_vpc(attempt=IN_USE_ATTEMPTS - 1)
        with pytest.raises(ApplicationError) as last:
            run_ensure_vpc(attempt=IN_USE_ATTEMPTS)
    assert not early.value.non_retryable
    assert last.value.non_retryable and last.value.type == "DependencyViolation"
    assert f"gave up after {IN_USE_ATTEMPTS} attempts (still in use)" in str(last.value)


def test_the_real_activity_keeps_retrying_throttling(aws):
    refuse = Refuse("CreateVpc", "RequestLimitExceeded")
    with session.hooked("before-call.ec2.CreateVpc", refuse), pytest.raises(ApplicationError) as throttled:
        run_ensure_vpc(attempt=50)
    assert not throttled.value.non_retryable


@pytest.mark.parametrize(
    "error_type, transient",
    [
        ("RequestLimitExceeded", True),  # throttling
        ("Throttling", True),
        ("InternalError", True),  # the service failed
        ("ReadTimeoutError", True),  # a dropped connection, named by its class
        ("ConnectionClosedError", True),
        ("EndpointConnectionError", True),
        ("DependencyViolation", False),  # something holds the resource
        ("InvalidGroup.NotFound", False),
        ("VpcLimitExceeded", False),
        ("ClientError", False),  # not a code: never guessed transient
        ("InvalidParameterValue", False),
    ],
)
def test_is_transient(error_type: str, transient: bool) -> None:
    assert is_transient(error_type) is transient


def _refused_by_botocore(operation: str | None) -> ParamValidationError:
    """What botocore raises for a malformed parameter, before sending anything."""
    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    try:
        ec2.create_vpc(CidrBlock=42)  # not a string
    except ParamValidationError as exc:
        if operation:
            exc.operation_name = operation  # what aws_activity adds
        return exc
    raise AssertionError("botocore sent a malformed request")


def _client_error(code: str, status: int = 400, op: str = "CreateVpc") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "AWS says no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        op,
    )


@pytest.mark.parametrize(
    ("exc", "type_", "non_retryable", "message"),
    [
        (
            _client_error("InvalidParameterValue"),
            "InvalidParameterValue",
            True,
            "CreateVpc: InvalidParameterValue: AWS says no",
        ),
        (
            _client_error("RequestLimitExceeded", 503),
            "RequestLimitExceeded",
            False,
            "CreateVpc: RequestLimitExceeded: AWS says no",
        ),
        (
            ConnectionClosedError(endpoint_url="https://ec2"),
            "ConnectionClosedError",
            False,
            "ConnectionClosedError: ",
        ),
        # Refused by botocore before sending: malformed, so no retry can help -- named after the
        # call (aws_activity supplies it), with botocore's report.
        (
            _refused_by_botocore("CreateVpc"),
            "ParamValidationError",
            True,
            "CreateVpc: ParamValidationError: Parameter validation failed:",
        ),
        (
            _refused_by_botocore(None),
            "ParamValidationError",
            True,
            "ParamValidationError: Parameter validation failed:",
        ),
        (NotYetVisibleError("not visible yet"), "NotYetVisibleError", False, "not visible yet"),
        (KeyError("bug"), "KeyError", True, "KeyError: 'bug'"),
    ],
)
def test_to_application_error(exc, type_, non_retryable, message) -> None:
    err = to_application_error(exc, attempt=1)
    assert (err.type, err.non_retryable) == (type_, non_retryable)
    assert err.message.startswith(message), err.message


def test_the_real_activity_fails_at_once_on_a_request_botocore_refuses_naming_the_call(aws) -> None:
    """A malformed parameter (here: injected into ensure_vpc's CreateVpc) is refused before it is
    sent; the activity fails on its first attempt, non-retryably, naming the call and the reason."""
    sent: list[str] = []

    def malformed(params, **kwargs):
        return {**params, "CidrBlock": 42}

    with (
        session.hooked("provide-client-params.ec2.CreateVpc", malformed),
        session.hooked("before-send.ec2.CreateVpc", lambda **kw: sent.append("CreateVpc")),
        pytest.raises(ApplicationError) as failed,
    ):
        run_ensure_vpc(attempt=1)
    assert failed.value.non_retryable and failed.value.type == "ParamValidationError"
    assert failed.value.message.startswith("CreateVpc: ParamValidationError: Parameter validation failed:")
    assert "CidrBlock" in failed.value.message
    assert sent == []
