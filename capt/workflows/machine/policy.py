"""The MachineWorkflow's patch ids, poll and drain timing rules and its failure type; the workflow
class is in workflow.py, its models in models.py."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from capt.workflows import activity_options as opts


# workflow.patched ids; docs/versioning.md lists each with when it can be retired.
# A non-retryable activity error while creating makes the machine Failed (it used to fail the
# workflow, which left the owner waiting for a machine that would never report again).
PATCH_PERMANENT_FAILURE = "machine-permanent-failure"


# MachineInput.mode="delete": only delete (the owner restarts a closed machine workflow so).
PATCH_DELETE_MODE = "machine-delete-mode"


# A node that is not Ready within nodeStartupTimeout no longer fails the machine: as in CAPI, only
# a MachineHealthCheck remediates it; the machine keeps waiting, polling less and less often.
PATCH_WAIT_FOR_NODE = "machine-waits-for-node"


# A drain attempt that returns before its time is up is followed by a timer for the rest of it.
PATCH_DRAIN_PACED = "machine-drain-paced"


# Until the node is Ready, poll the workload cluster every 5 s (a cheap list of one node) and
# describe the EC2 instance only every 30 s (an AWS call, a guard against an instance that died
# while joining): a node is seen Ready sooner, with fewer AWS calls (issue 19, bench/critical_path).
PATCH_NODE_POLL_FAST = "machine-node-poll-fast"


# Poll the workload node this often (a durable timer); EC2 state polls back off from 2 s to 15 s.
NODE_POLL_SECONDS = 10.0


# With PATCH_NODE_POLL_FAST: the node every 5 s, its instance every 30 s.
FAST_NODE_POLL_SECONDS = 5.0


INSTANCE_GUARD_SECONDS = 30.0


# Past nodeStartupTimeout the polls back off to every 30 minutes for a day, then every 6 hours:
# a machine whose node never comes keeps a bounded history (about 50 polls a day, then 4).
LATE_POLL_CAP_SECONDS = 1800.0


DEFAULT_NODE_STARTUP_SECONDS = 600


LATE_POLL_DAY_SECONDS = 6 * 3600.0


def drain_attempt_seconds(previous: float) -> float:
    """Without nodeDrainTimeout, each drain attempt lasts longer, up to 10 minutes (bounded history)."""
    return min(600.0, previous * 2) if previous >= 60 else 60.0


def late_node_poll(seconds_past_timeout: float, previous: float) -> float:
    """Seconds to the next node poll once nodeStartupTimeout has passed (pure, table-tested)."""
    if seconds_past_timeout >= 86400:
        return LATE_POLL_DAY_SECONDS
    return min(LATE_POLL_CAP_SECONDS, max(NODE_POLL_SECONDS, previous * 2))


def _instance_polls():
    return opts.poll_intervals(first=2, factor=1.5, cap=15)


class MachineFailed(Exception):
    """The machine cannot become what it was asked to be; the reason goes to its status."""


def permanent_failure(err: BaseException) -> str | None:
    """The reason, if `err` says that trying again cannot help: a non-retryable activity
    failure (AWS's code and message, e.g. "RunInstances: InvalidAMIID.NotFound: ..."), or a
    non-retryable ApplicationError raised by this workflow's own code. Cancellation, timeouts
    and retryable errors are not permanent."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return cause.message or cause.type or "non-retryable error"
    return None
