"""The few errors capt's AWS activities raise, and how AWS errors become Temporal errors.

Temporal retries a failed activity unless the error is an `ApplicationError` with
`non_retryable=True`. So the rule lives here, once: an AWS error code listed in
`NON_RETRYABLE_CODES` (a request AWS will refuse however often it is sent: a malformed
parameter, a missing permission, an exhausted quota) fails the activity at once with AWS's own
message; everything else -- throttling (`RequestLimitExceeded`, `Throttling`), 5xx, dropped
connections, eventual-consistency "not found" right after a create, `DependencyViolation`
while something is still being deleted -- is retried by Temporal with backoff (botocore's
standard retry mode already absorbs short bursts inside one attempt). An exception that is
neither an AWS error, a connection problem nor one of capt's own errors is a bug: it fails
the activity without retries, so it surfaces instead of spinning forever.
"""

from __future__ import annotations

from http.client import HTTPException

from botocore.exceptions import BotoCoreError, ClientError
from temporalio.exceptions import ApplicationError

NON_RETRYABLE_CODES: frozenset[str] = frozenset(
    {
        # Malformed or impossible requests.
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "MissingParameter",
        "UnknownParameter",
        "ValidationError",
        "InvalidInput",
        "InvalidRequest",
        "InvalidVpc.Range",
        "InvalidSubnet.Range",
        "InvalidConfigurationRequest",
        "InvalidScheme",
        "InvalidAMIID.Malformed",
        "InvalidAMIID.NotFound",
        "InvalidKeyPair.NotFound",
        "InvalidGroup.Reserved",
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


def to_application_error(exc: BaseException) -> ApplicationError:
    """The Temporal error for an exception raised inside an AWS activity."""
    if isinstance(exc, ApplicationError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc) or "Unknown"
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        op = getattr(exc, "operation_name", "")
        return ApplicationError(
            f"{op}: {code}: {message}", type=code, non_retryable=code in NON_RETRYABLE_CODES
        )
    if isinstance(exc, CaptAwsError):
        return ApplicationError(str(exc), type=type(exc).__name__, non_retryable=exc.non_retryable)
    if isinstance(exc, BotoCoreError | OSError | HTTPException):
        # Connection drops, read timeouts, endpoint errors (AWS or a workload API): worth another attempt.
        return ApplicationError(f"{type(exc).__name__}: {exc}", type=type(exc).__name__, non_retryable=False)
    # Anything else (TypeError, KeyError, a pydantic ValidationError, ...) is a bug that no
    # retry will fix: fail the activity so the workflow reports it instead of retrying forever.
    return ApplicationError(f"{type(exc).__name__}: {exc}", type=type(exc).__name__, non_retryable=True)
