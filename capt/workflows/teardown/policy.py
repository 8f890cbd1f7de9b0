"""The teardown's constants (call options, the kinds it sweeps, patch ids) and its error helpers; the
workflow class is in workflow.py, its models in models.py."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    pass


BEING_DELETED = "the cluster is being deleted"


# A delete whose bounded attempts all failed on throttling or dropped connections says nothing
# about the resource: the sweep tries again in its short interval instead of describing
# blockers and waiting `blocked_retry_seconds` (before: a throttled revoke waited 120 s a round).
PATCH_TRANSIENT_FAULTS = "teardown-transient-faults"


# Calls that must not stop the teardown: a few tries, then the stage is skipped.
BEST_EFFORT = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=3
)


WORKLOAD_CALL = dict(start_to_close_timeout=timedelta(seconds=120), retry_policy=BEST_EFFORT)


# The Temporal client (the cluster's workflow tree).
TREE_CALL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=10
    ),
)


# What is deleted in stage 4, in dependency order (secrets and other kinds go in stage 6).
SWEPT_KINDS = (
    "instance",
    "load-balancer",
    "network-load-balancer",
    "nat-gateway",
    "route-table",
    "target-group",
    "security-group",
    "volume",
    "network-interface",
    "elastic-ip",
    "internet-gateway",
    "subnet",
    "vpc",
)


LB_KINDS = ("load-balancer", "network-load-balancer")


NAT_GONE = ("deleted", "failed")


def _cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)


def _error_type(err: BaseException) -> str:
    """The type of the activity's ApplicationError (AWS's code, or the class of a connection
    error), not of what it was raised from (`ClientError` for every AWS code)."""
    while not isinstance(err, ApplicationError) and err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "type", None) or type(err).__name__
