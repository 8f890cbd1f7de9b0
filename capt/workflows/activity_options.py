"""Timeouts and retry policies, declared once per kind of activity and reused by every workflow.

Temporal retries an activity that raises (or times out) according to its RetryPolicy; the
attempts are not new history events, only the final result is. So:

- AWS calls are short; botocore's standard retry mode absorbs a few throttles inside one
  attempt, and Temporal's retry (exponential, capped at a minute, unlimited attempts) does the
  long backoff. Errors AWS marks as the caller's fault are raised as non-retryable
  ApplicationErrors by the activities themselves (capt/activities/aws/errors.py).
- Calls to the workload cluster's API are short too; an unreachable API server is retried.
- Waiting is never done inside an activity: workflows poll a short describe activity between
  durable timers (see `poll_intervals`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

AWS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
)

# One AWS API call or a handful of them (ensure_* looks up, then creates and tags).
AWS_CALL = dict(start_to_close_timeout=timedelta(seconds=90), retry_policy=AWS_RETRY)

# A call to the workload cluster's API server (or SSM Run Command round trip).
KUBE_CALL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30)),
)

# Node hygiene before deletion (cordon, drain, delete Node): a few tries, then move on.
BEST_EFFORT_RETRY = RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10))

# Rendering and storing bootstrap data or PKI (CPU for RSA keys + a few Secrets Manager calls).
BOOTSTRAP_CALL = dict(start_to_close_timeout=timedelta(seconds=120), retry_policy=AWS_RETRY)


def drain_call(timeout_seconds: int) -> dict:
    """Draining evicts pods and waits for PodDisruptionBudgets: bounded, heartbeating."""
    return dict(
        start_to_close_timeout=timedelta(seconds=timeout_seconds + 60),
        heartbeat_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=30)),
    )


def poll_intervals(first: float = 2.0, factor: float = 1.5, cap: float = 30.0):
    """Seconds between polls of a describe activity: a short first wait, growing to `cap`."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)
