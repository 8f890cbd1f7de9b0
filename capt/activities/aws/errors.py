"""The few errors capt's AWS activities raise, and how AWS errors become Temporal errors.

Temporal retries a failed activity unless the error is an `ApplicationError` with
`non_retryable=True`. The rule lives here, once, as one ordered table (`classify`):

| row | what | examples | disposition |
|---|---|---|---|
| 1 | throttling (botocore's standard-mode list) | `Throttling`, `RequestLimitExceeded` | retry forever |
| 2 | the service or the connection failed | HTTP 5xx, `InternalError`, `ServiceUnavailable`, dropped connections | retry forever |
| 3 | known permanent codes | `InvalidAMIID.NotFound`, `InvalidVpc.Range`, the quotas | fail now |
| 4 | something still uses the resource | `DependencyViolation`, `VolumeInUse`, `*.InUse` | retry, give up after 12 attempts (~6 min) |
| 5 | eventual consistency right after a create | `*.NotFound`, `*NotFound` | retry, give up after 8 attempts (~2 min) |
| 6 | expired credentials (a refresh may fix it) | `ExpiredToken` | retry, give up after 3 attempts |
| 7 | malformed, unauthorized or over quota | `ValidationException`, `InvalidParameter*`, `*.Malformed`, `AccessDenied*`, `Unsupported*`, `*LimitExceeded`, `TooMany*` | fail now |
| 8 | any other client error | other 4xx | retry, give up after 5 attempts |

"Fail now" is a non-retryable ApplicationError whose message names the operation, AWS's code
and AWS's message, with the code as its type; "give up" is the same once the activity's attempt
reaches the row's count (the message says how many attempts and what blocked). Row 1 comes
before row 7, so `RequestLimitExceeded` retries while `VpcLimitExceeded` fails at once. botocore's
standard retry mode already absorbs short bursts of rows 1-2 inside one attempt. botocore's
`ParamValidationError` (a malformed request it refuses to send) fails now too, named after the
refused operation and with botocore's report. An exception
that is neither an AWS error, a connection problem nor one of capt's own errors is a bug: it
fails the activity without retries, so it surfaces instead of spinning forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.client import HTTPException
from typing import Literal

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from temporalio.exceptions import ApplicationError

# Row 1: botocore/retries/standard.py's throttling codes.
THROTTLING_CODES: frozenset[str] = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
# Row 2 (besides any HTTP 5xx).
TRANSIENT_CODES: frozenset[str] = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServiceError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# Row 3: codes that would otherwise fall in a retried row but that no wait will change.
NON_RETRYABLE_CODES: frozenset[str] = frozenset(
    {
        # Malformed or impossible requests.
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
        "UnknownParameter",
        "ValidationError",
        "ValidationException",
        "InvalidInput",
        "InvalidRequest",
        "InvalidVpc.Range",
        "InvalidSubnet.Range",
        "InvalidConfigurationRequest",
        "InvalidScheme",
        "InvalidAMIID.Malformed",
        "InvalidAMIID.NotFound",
        "InvalidAMIID.Unavailable",
        "InvalidKeyPair.NotFound",
        "InvalidGroup.Reserved",
        "InvalidAvailabilityZone",
        "InvalidInstanceType",
        "IdempotentParameterMismatch",
        "UnsupportedOperation",
        "Unsupported",
        "OptInRequired",
        # Credentials and permissions.
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        # Quotas: waiting will not raise them.
        "VpcLimitExceeded",
        "AddressLimitExceeded",
        "NatGatewayLimitExceeded",
        "InternetGatewayLimitExceeded",
        "RouteTableLimitExceeded",
        "SecurityGroupLimitExceeded",
        "RulesPerSecurityGroupLimitExceeded",
        "SubnetLimitExceeded",
        "TooManyLoadBalancers",
        "TooManyTargetGroups",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
    }
)
# Row 4.
IN_USE_CODES: frozenset[str] = frozenset(
    {
        "DependencyViolation",
        "VolumeInUse",
        "InvalidIPAddress.InUse",
        "InvalidGroup.InUse",
        "ResourceInUse",
        "ResourceInUseException",
        "InvalidNetworkInterface.InUse",
        "IncorrectState",
        "IncorrectInstanceState",
    }
)
EXPIRED_CREDENTIAL_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
PERMANENT_PREFIXES = ("InvalidParameter", "AccessDenied", "Unsupported", "TooMany", "Unauthorized")
PERMANENT_SUFFIXES = (".Malformed", "LimitExceeded")

IN_USE_ATTEMPTS = 12  # with AWS_RETRY (1 s doubling, capped at 60 s): about 6 minutes of waits
NOT_FOUND_ATTEMPTS = 8  # about 2 minutes of read-after-write lag
EXPIRED_ATTEMPTS = 3
OTHER_CLIENT_ERROR_ATTEMPTS = 5

Kind = Literal["retry", "bounded", "permanent"]


@dataclass(frozen=True)
class Disposition:
    """What to do with an AWS error: retry forever, retry up to `attempts`, or fail now."""

    kind: Kind
    why: str
    attempts: int | None = None

    def retryable_at(self, attempt: int) -> bool:
        if self.kind == "retry":
            return True
        if self.kind == "permanent":
            return False
        return attempt < (self.attempts or 1)


def classify(code: str, status: int | None = None) -> Disposition:
    """The table in the module doc, in order; pure, so it is table-tested row by row."""
    if code in THROTTLING_CODES:
        return Disposition("retry", "throttled")
    if (status is not None and status >= 500) or code in TRANSIENT_CODES:
        return Disposition("retry", "the service failed")
    if code in NON_RETRYABLE_CODES:
        return Disposition("permanent", "AWS refuses this request")
    if code in IN_USE_CODES or code.endswith(".InUse"):
        return Disposition("bounded", "still in use", IN_USE_ATTEMPTS)
    if code.endswith("NotFound") or code.endswith("NotFoundException"):
        return Disposition("bounded", "not found", NOT_FOUND_ATTEMPTS)
    if code in EXPIRED_CREDENTIAL_CODES:
        return Disposition("bounded", "expired credentials", EXPIRED_ATTEMPTS)
    if code.startswith(PERMANENT_PREFIXES) or code.endswith(PERMANENT_SUFFIXES):
        return Disposition("permanent", "AWS refuses this request")
    return Disposition("bounded", "client error", OTHER_CLIENT_ERROR_ATTEMPTS)


# What `to_application_error` names a dropped connection or timeout (the exception's class).
CONNECTION_ERROR_TYPES = frozenset(
    {
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "EndpointConnectionError",
        "ConnectionError",
        "HTTPClientError",
        "ProxyConnectionError",
        "ConnectionResetError",
        "TimeoutError",
        "RemoteDisconnected",
        "IncompleteRead",
    }
)


def is_transient(error_type: str) -> bool:
    """An activity failure of this type (AWS's code, or the exception's class for a connection
    problem) is rows 1-2: says nothing about the resource; the same call later will likely pass.
    For workflows that bound an activity's attempts and must tell "AWS was flaky" from "something
    holds this resource"."""
    return error_type in CONNECTION_ERROR_TYPES or classify(error_type).kind == "retry"


class CaptAwsError(Exception):
    """Base of capt's own activity errors; `non_retryable` says whether a retry could help."""

    non_retryable = True


class NotOwnedError(CaptAwsError):
    """A resource has the name capt would give it but not the cluster's `owned` tag.

    capt never adopts such a resource (it could belong to another cluster or a person), so
    the activity fails instead of using, changing or deleting it.
    """


class ConflictError(CaptAwsError):
    """What exists cannot be reconciled with the spec (e.g. a VPC with a different CIDR)."""


class NotYetVisibleError(CaptAwsError):
    """AWS reports a conflict with something capt just created that reads do not show yet."""

    non_retryable = False


class StillInUseError(CaptAwsError):
    """A resource cannot go yet because something being deleted still uses it."""

    non_retryable = False


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def is_code(exc: BaseException, *codes: str) -> bool:
    return error_code(exc) in codes


def to_application_error(exc: BaseException, attempt: int = 1) -> ApplicationError:
    """The Temporal error for an exception raised inside an AWS activity's `attempt`-th attempt."""
    if isinstance(exc, ApplicationError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc) or "Unknown"
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        op = getattr(exc, "operation_name", "")
        verdict = classify(code, status)
        retryable = verdict.retryable_at(attempt)
        text = f"{op}: {code}: {message}"
        if verdict.kind == "bounded" and not retryable:
            text = f"{op}: gave up after {attempt} attempts ({verdict.why}): {code}: {message}"
        return ApplicationError(text, type=code, non_retryable=not retryable)
    if isinstance(exc, CaptAwsError):
        return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=exc.non_retryable)
    if isinstance(exc, ParamValidationError):
        # botocore refused the request before sending it (a malformed parameter): no retry can
        # help. `aws_activity` names the refused call (`operation_name`), as AWS's errors do.
        op = getattr(exc, "operation_name", "")
        text = f"{op + ': ' if op else ''}{type(exc).__name__}: {exc}"
        return ApplicationError(text, type=type(exc).__name__, non_retryable=True)
    if isinstance(exc, BotoCoreError | OSError | HTTPException):
        # Connection drops, read timeouts, endpoint errors (AWS or a workload API): worth another attempt.
        return ApplicationError(f"{type(exc).__name__}: {exc}", type=type(exc).__name__, non_retryable=False)
    # Anything else (TypeError, KeyError, a pydantic ValidationError, ...) is a bug that no
    # retry will fix: fail the activity so the workflow reports it instead of retrying forever.
    return ApplicationError(f"{type(exc).__name__}: {exc}", type=type(exc).__name__, non_retryable=True)
