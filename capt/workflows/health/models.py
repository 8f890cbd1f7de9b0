"""The models, constants and pure helpers of this workflow (its class is in workflow.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from capt.rules.health import parse_unhealthy_range
    from capt.rules.intstr import IntOrPercentError, check_int_or_percent
    from capt.spec.models import HealthCheckSpec
    from capt.workflows.machine.models import ClusterContext


# workflow.patched id (docs/versioning.md): each round, signal owners that still mark a machine
# unhealthy which the checks now find healthy (or no longer select).
PATCH_CLEAR_STALE_MARKS = "health-clears-stale-marks"


# A check with a remediation template (MachineHealthCheck spec.remediationTemplate / v1beta2
# spec.remediation.templateRef) records an external remediation request instead of asking the
# owner to replace the machine (no request_remediation activity for it).
PATCH_EXTERNAL_REMEDIATION = "health-external-remediation"


DEFAULT_INTERVAL_SECONDS = 30.0


MIN_INTERVAL_SECONDS = 1.0


# Observing is best effort: a few quick tries, then the interval is skipped (no verdict is made on
# missing data) and the next interval tries again. Never an endless retry that stalls the loop.
OBSERVE = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=3
    ),
)


# A remediation Update may wait on the owner's etcd member removal (SSM round trips).
REMEDIATE = dict(
    start_to_close_timeout=timedelta(minutes=5),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5
    ),
)


class HealthEvent(BaseModel):
    at: datetime
    kind: str  # detected, recovered, short-circuit, allowed, requested, accepted, refused, …
    check: str = ""
    machine: str = ""
    message: str = ""


class InFlight(BaseModel):
    check: str
    owner: str
    requested_at: float


class ExternalRemediation(BaseModel):
    """A request for another system (or a human) to remediate a machine: what CAPI creates from
    the check's remediation template. capt does not delete the machine; the request is withdrawn
    when the machine is healthy again or gone."""

    machine: str
    check: str
    template: str  # "<kind>/<name> (<apiVersion>)"
    requested_at: datetime
    reason: str = ""


class MachineHealth(BaseModel):
    machine: str
    owner: str
    state: str  # healthy, unhealthy, starting, deleting
    reasons: list[str] = []
    unhealthy_since: datetime | None = None
    remediation: str = ""  # "in flight", "deferred", …


class CheckReport(BaseModel):
    name: str
    expected: int = 0
    healthy: int = 0
    unhealthy: int = 0  # machines found unhealthy (expected - healthy also counts booting/deleting)
    remediation_allowed: bool = True
    reason: str = ""  # TooManyUnhealthy: … when short-circuited
    remediations_allowed: int = 0  # CAPI's status.remediationsAllowed
    in_flight: list[str] = []
    deferred: list[str] = []
    note: str = ""
    machines: list[MachineHealth] = []
    # Matched by the selector but not targets (paused / skip-remediation annotation): "<machine>: why".
    skipped: list[str] = []
    # Machines with an open external remediation request (the check has a remediation template).
    external: list[str] = []


class MachineAnnotations(BaseModel):
    """Set (a value, "" allowed) or remove (None) annotations of one machine."""

    model_config = ConfigDict(extra="forbid")

    machine: str
    annotations: dict[str, str | None]


class HealthSettings(BaseModel):
    """A change from the cluster's apply. None = unchanged."""

    checks: tuple[HealthCheckSpec, ...] | None = None
    interval_seconds: float | None = None


class HealthCarry(BaseModel):
    """State carried across continue-as-new (everything that cannot be observed again)."""

    model_config = ConfigDict(extra="forbid")

    iterations_total: int = 0
    runs: int = 1
    # machine -> creation time (its own record), or when the health check first saw it.
    first_seen: dict[str, float] = {}
    created_known: list[str] = []  # machines whose first_seen is their real creation time
    condition_first_seen: dict[str, float] = {}
    unhealthy_since: dict[str, float] = {}
    in_flight: dict[str, InFlight] = {}
    control_plane_initialized: bool | None = None
    control_plane_initialized_at: float | None = None
    # Last decision per machine / per check, to record a repeated one once.
    last_decision: dict[str, str] = {}
    events: list[HealthEvent] = []
    reports: list[CheckReport] = []
    observation: str = "not observed yet"
    last_check_at: datetime | None = None
    next_check_at: datetime | None = None
    # instance id -> machine, from the last observation (to pick the instance events that matter).
    watched_instances: dict[str, str] = {}
    aws_calls: dict[str, int] = {}
    aws_calls_since: datetime | None = None
    pending: HealthSettings | None = None
    # machine -> annotations set through the `annotate` Update.
    annotations: dict[str, dict[str, str]] = {}
    # machine -> its open external remediation request.
    external: dict[str, ExternalRemediation] = {}


class HealthCheckInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: ClusterContext
    checks: tuple[HealthCheckSpec, ...] = ()
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    # Continue-as-new after this many intervals (~20 history events each) unless Temporal says so first.
    max_iterations: int = 100
    max_events: int = 100
    # Optional event-driven detection (off by default): the SQS queue that the cluster's
    # EventBridge rule fills with EC2 instance state changes (capt/activities/aws/instance_events.py).
    # Between checks the workflow long-polls it and checks at once when one of its instances ends.
    instance_events_queue_url: str | None = None
    carry: HealthCarry | None = None


class HealthStatus(BaseModel):
    cluster: str
    interval_seconds: float
    checks: list[CheckReport]
    events: list[HealthEvent]
    iterations: int  # intervals observed, across continue-as-new
    runs: int  # this is the n-th run of the workflow id
    last_check_at: datetime | None
    observation: str
    in_flight: list[str]
    aws_calls: dict[str, int]
    aws_calls_since: datetime | None
    pending_settings: bool
    stopped: bool
    annotations: dict[str, dict[str, str]] = {}
    external_remediations: list[ExternalRemediation] = []

    def check(self, name: str) -> CheckReport | None:
        return next((c for c in self.checks if c.name == name), None)


def _cause(err: BaseException) -> str:
    return str(getattr(err, "cause", None) or err)


def settings_error(settings: HealthSettings) -> str | None:
    """Why a settings change is refused (before it enters history), or None."""
    if settings.interval_seconds is not None and settings.interval_seconds < MIN_INTERVAL_SECONDS:
        return f"interval must be at least {MIN_INTERVAL_SECONDS:g}s, got {settings.interval_seconds:g}s"
    names = [c.name for c in settings.checks or ()]
    if len(set(names)) != len(names):
        return f"health check names must be unique: {', '.join(sorted(names))}"
    for c in settings.checks or ():
        try:
            check_int_or_percent(c.max_unhealthy)
            if c.max_in_flight is not None:
                check_int_or_percent(c.max_in_flight)
        except IntOrPercentError as e:
            return f"{c.name}: {e}"
        if c.unhealthy_range is not None:
            try:
                parse_unhealthy_range(c.unhealthy_range)
            except ValueError as e:
                return f"{c.name}: {e}"
        if c.node_startup_timeout_seconds < 0:
            return f"{c.name}: nodeStartupTimeout must not be negative"
        for uc in c.unhealthy_conditions:
            if uc.timeout_seconds < 0:
                return f"{c.name}: timeout of condition {uc.type}={uc.status} must not be negative"
        if not c.control_plane and not c.machine_deployments:
            return f"{c.name}: its selector matches no machine (neither the control plane nor a deployment)"
    return None


_ANNOTATION_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def annotations_error(change: MachineAnnotations) -> str | None:
    """Why an `annotate` request is refused (before it enters history), or None."""
    if not change.machine:
        return "name the machine"
    if not change.annotations:
        return "give at least one annotation to set or remove"
    for key, value in change.annotations.items():
        if len(key) > 316 or not _ANNOTATION_KEY.match(key):
            return f"{key!r} is not a valid annotation key"
        if value is not None and len(value) > 4096:
            return f"the value of {key} is longer than 4096 characters"
    return None
