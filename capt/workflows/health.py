"""HealthCheckWorkflow — the cluster's MachineHealthChecks: find failing machines, ask owners to replace them.

One workflow per cluster (`health/<namespace>/<cluster>`) runs every MachineHealthCheck of the
cluster, each evaluated on its own. Every interval (default 30 s):

1. a durable timer (`workflow.wait_condition(..., timeout=interval)`: it survives worker restarts
   and costs nothing while it waits);
2. observe, with exactly three activities whatever the cluster's size:
   - `query_machine_owners` — the control plane's and the checked deployments' `status` queries
     through the Temporal client (a workflow cannot query another workflow; see
     activities/health.py for why querying beats having owners push their machine set);
   - `describe_cluster_instances` — ONE paginated DescribeInstances filtered by the cluster's
     ownership tag (never one call per machine);
   - `list_workload_nodes` — ONE Node list from the workload cluster (unreachable = data);
3. decide, in pure code (`workflows/health_detection.py`): per check, which machines are
   unhealthy and why, whether maxUnhealthy / unhealthyRange allows remediation at all
   (`TooManyUnhealthy` otherwise: a zone outage must not become a mass replacement), and which
   candidates fit under maxInFlight;
4. ask the owners, through `request_remediation` (an activity executing the owner's `remediate`
   Update): the control plane gets one machine at a time with the full unhealthy set of that
   control plane (it applies KCP's etcd-quorum rules and may refuse); a deployment gets its
   candidates and maxInFlight. The health workflow never terminates an instance itself.

Every detection and decision is an event in the `status` query (a bounded list) and the Web UI
shows a summary (`set_current_details`). Repeated identical decisions (a refusal that holds, a
short-circuit that holds) are recorded once, when they start.

Durability. The workflow runs forever with bounded history: after `max_iterations` intervals (or
when Temporal suggests it) it waits for running handlers to finish (`all_handlers_finished`) and
continues-as-new, carrying what cannot be observed again: when it first saw each machine and each
node condition (for nodes that report no lastTransitionTime), since when each machine has been
unhealthy, the remediations owners accepted that have not finished (they hold maxInFlight slots),
when the control plane became initialized, the event list and the AWS call totals.

Machine annotations. capt's machines are not manifest objects and their owners' status carries
no annotations, so the health workflow keeps them: the `annotate` Update sets or removes a
machine's annotations (CAPI's `cluster.x-k8s.io/remediate-machine`, `skip-remediation`,
`paused`: see workflows/health_detection.py for what each does), carried across continue-as-new
and forgotten with the machine.

Settings. A client changes them with the `configure` Update (validated before it enters history);
the ClusterWorkflow's apply, which cannot send Updates, with the `apply_settings` signal. Accepted
settings take effect at the next interval, never in the middle of one. The `stop` signal ends the
workflow (cluster deletion).

Event-driven detection (optional, off by default): with `instance_events_queue_url` set (the
queue of the cluster's EventBridge rule for EC2 state changes, created by
`activities/aws/instance_events.ensure_instance_events`), the wait between checks long-polls the
queue (one ReceiveMessage per ≤ 20 s) and an event saying one of the cluster's instances is
shutting down, terminated, stopping or stopped triggers a check at once. The scheduled checks
still run: events only make detection faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import capt.activities.aws.instance_events as instance_events
    import capt.contracts.search_attributes as sa
    import capt.workflows.health_detection as detect
    from capt.activities.aws.instances import (
        ClusterInstancesRequest,
        ClusterInstancesResult,
        describe_cluster_instances,
    )
    from capt.activities.health import (
        HealthyAgainCall,
        OwnersRequest,
        OwnersResult,
        RemediationCall,
        RemediationOutcome,
        WatchedMachine,
        query_machine_owners,
        report_healthy_again,
        request_remediation,
    )
    from capt.activities.workload.activities import (
        ListNodesRequest,
        WorkloadAccess,
        WorkloadNodes,
        list_workload_nodes,
    )
    from capt.rules.health import TOO_MANY_UNHEALTHY, parse_unhealthy_range
    from capt.rules.intstr import IntOrPercentError, check_int_or_percent
    from capt.spec.models import HealthCheckSpec
    from capt.workflows.machine_models import ClusterContext

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


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------


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
    # EventBridge rule fills with EC2 instance state changes (activities/aws/instance_events.py).
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


# ---------------------------------------------------------------------------------------------
# the workflow
# ---------------------------------------------------------------------------------------------


@workflow.defn(name="HealthCheckWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class HealthCheckWorkflow:
    @workflow.init
    def __init__(self, inp: HealthCheckInput) -> None:
        self._inp: HealthCheckInput | None = None
        self._carry = HealthCarry()
        self._checks: tuple[HealthCheckSpec, ...] = ()
        self._interval = DEFAULT_INTERVAL_SECONDS
        self._stop = False
        self._run_iterations = 0
        # From the input here, not in run(): signals/Updates that come with a continued-as-new
        # run's first task are handled before run() starts and must not be overwritten.
        self._inp = inp
        self._checks, self._interval = inp.checks, inp.interval_seconds
        if inp.carry is not None:
            self._carry = inp.carry

    # --- query ---------------------------------------------------------------------------------
    @workflow.query
    def status(self) -> HealthStatus:
        assert self._inp is not None
        c = self._carry
        return HealthStatus(
            cluster=self._inp.cluster.name,
            interval_seconds=self._interval,
            checks=c.reports,
            events=c.events,
            iterations=c.iterations_total,
            runs=c.runs,
            last_check_at=c.last_check_at,
            observation=c.observation,
            in_flight=sorted(c.in_flight),
            aws_calls=c.aws_calls,
            aws_calls_since=c.aws_calls_since,
            pending_settings=c.pending is not None,
            stopped=self._stop,
            annotations=c.annotations,
            external_remediations=sorted(c.external.values(), key=lambda r: r.machine),
        )

    # --- update / signal -----------------------------------------------------------------------
    @workflow.update
    def configure(self, settings: HealthSettings) -> HealthStatus:
        """New health-check settings (from a client, e.g. `capt apply`): applied at the next
        interval. A second change before then is merged over the first."""
        self._merge_pending(settings)
        return self.status()

    @configure.validator
    def _validate_configure(self, settings: HealthSettings) -> None:
        # Runs before the Update is written to history: a rejected change leaves no trace.
        if self._stop:
            raise ValueError("the health check is stopping")
        if err := settings_error(settings):
            raise ValueError(err)

    @workflow.update
    def annotate(self, change: MachineAnnotations) -> HealthStatus:
        """Set or remove a machine's annotations; they count from the next interval. A machine
        that no owner reports at the next interval has its annotations forgotten."""
        current = dict(self._carry.annotations.get(change.machine, {}))
        for key, value in change.annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        if current:
            self._carry.annotations[change.machine] = current
        else:
            self._carry.annotations.pop(change.machine, None)
        shown = ", ".join(f"{k}={v}" if v is not None else f"{k}-" for k, v in change.annotations.items())
        self._event("annotated", machine=change.machine, message=shown)
        return self.status()

    @annotate.validator
    def _validate_annotate(self, change: MachineAnnotations) -> None:
        if self._stop:
            raise ValueError("the health check is stopping")
        if err := annotations_error(change):
            raise ValueError(err)

    @workflow.signal
    def apply_settings(self, settings: HealthSettings) -> None:
        """The same change from another workflow (the ClusterWorkflow's apply: a workflow can
        signal but not send Updates). The cluster validates first; an invalid change that still
        arrives is dropped and recorded as an event."""
        if err := settings_error(settings):
            self._event("settings-rejected", message=err)
            return
        self._merge_pending(settings)

    def _merge_pending(self, settings: HealthSettings) -> None:
        pending = self._carry.pending or HealthSettings()
        self._carry.pending = HealthSettings(
            checks=settings.checks if settings.checks is not None else pending.checks,
            interval_seconds=settings.interval_seconds
            if settings.interval_seconds is not None
            else pending.interval_seconds,
        )

    @workflow.signal
    def stop(self) -> None:
        """The cluster is being deleted: finish the current interval and end."""
        self._stop = True

    # --- run -------------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: HealthCheckInput) -> HealthStatus:
        if self._carry.aws_calls_since is None:
            self._carry.aws_calls_since = workflow.now()
        workflow.upsert_search_attributes([sa.CLUSTER_NAME.value_set(inp.cluster.name)])
        self._publish()
        while True:
            # The interval's durable timer, on a fixed schedule: the time the checks take is not
            # added to the interval. Behind schedule (a worker outage): check at once, no burst.
            now = workflow.now()
            due = max(self._carry.next_check_at or now + timedelta(seconds=self._interval), now)
            if await self._wait_until(due):
                self._carry.next_check_at = due  # an extra check now; the scheduled one still runs
            else:
                self._carry.next_check_at = due + timedelta(seconds=self._interval)
            if self._stop:
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._publish()
                return self.status()
            self._apply_pending()
            if self._checks:
                await self._interval_check()
            else:
                self._carry.observation = "no health checks configured"
            self._carry.iterations_total += 1
            self._run_iterations += 1
            self._publish()
            if workflow.info().is_continue_as_new_suggested() or self._run_iterations >= inp.max_iterations:
                # Let a running `configure` finish so its caller gets an answer; anything that
                # arrives later is delivered to the next run (it addresses the workflow id).
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._stop:
                    # A stop that arrived during this interval must not be forgotten by the next run.
                    self._publish()
                    return self.status()
                self._carry.runs += 1
                workflow.continue_as_new(
                    inp.model_copy(
                        update={
                            "checks": self._checks,
                            "interval_seconds": self._interval,
                            "carry": self._carry,
                        }
                    )
                )

    # --- waiting -----------------------------------------------------------------------------------
    async def _wait_until(self, due: datetime) -> bool:
        """Wait for the next check (or a stop). With instance events on, long-poll the queue
        meanwhile; True when an event about one of the cluster's instances cut the wait short."""
        assert self._inp is not None
        queue = self._inp.instance_events_queue_url
        while not self._stop:
            now = workflow.now()
            if now >= due:
                return False
            if not queue:
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(lambda: self._stop, timeout=due - now)
                continue
            poll = max(1, min(instance_events.MAX_WAIT_SECONDS, int((due - now).total_seconds())))
            try:
                got = await workflow.execute_activity(
                    instance_events.receive_instance_events,
                    instance_events.ReceiveInstanceEventsRequest(
                        region=self._inp.cluster.region, queue_url=queue, wait_seconds=poll
                    ),
                    start_to_close_timeout=timedelta(seconds=poll + 30),
                    retry_policy=RetryPolicy(maximum_attempts=2),
                )
            except ActivityError as err:
                # Events only accelerate: without them, wait for the interval as usual.
                self._note_once("events", "events-failed", f"instance events not read: {_cause(err)}")
                queue = None
                continue
            self._carry.last_decision.pop("events", None)
            self._count_calls(got.aws_calls)
            hits = [e for e in got.events if e.instance_id in self._carry.watched_instances]
            for e in hits:
                machine = self._carry.watched_instances[e.instance_id]
                self._event(
                    "instance-event", machine=machine, message=f"instance {e.instance_id} is {e.state}"
                )
            if hits:
                return True
            if not got.received:
                # A long poll that came back empty early (a fake, a time-skipping test): wait out
                # the rest of it, so polls never spin. Real long polls have already waited.
                rest = now + timedelta(seconds=poll) - workflow.now()
                if rest > timedelta(0):
                    with contextlib.suppress(asyncio.TimeoutError):
                        await workflow.wait_condition(lambda: self._stop, timeout=rest)
        return False

    # --- one interval ----------------------------------------------------------------------------
    def _apply_pending(self) -> None:
        pending = self._carry.pending
        if pending is None:
            return
        self._carry.pending = None
        parts = []
        if pending.checks is not None:
            self._checks = pending.checks
            parts.append(f"checks: {', '.join(c.name for c in pending.checks) or 'none'}")
        if pending.interval_seconds is not None:
            self._interval = pending.interval_seconds
            parts.append(f"interval {pending.interval_seconds:g}s")
        self._event("settings", message="applied " + "; ".join(parts))

    async def _interval_check(self) -> None:
        assert self._inp is not None
        cluster = self._inp.cluster
        now = workflow.now()
        carry = self._carry
        # Owners first: every instance an owner knows was launched before the describe below, so
        # a just-launched instance can never look "missing".
        try:
            owners: OwnersResult = await workflow.execute_activity(
                query_machine_owners,
                OwnersRequest(
                    namespace=cluster.namespace,
                    cluster=cluster.name,
                    control_plane=True,  # always: its initialization gates worker checks
                    deployments=tuple(sorted({d for c in self._checks for d in c.machine_deployments})),
                    created_known=tuple(carry.created_known),
                ),
                **OBSERVE,
            )
        except ActivityError as err:
            self._note_once("observe", "observe-failed", f"machine owners not queried: {_cause(err)}")
            return
        carry.last_decision.pop("observe", None)
        instances_task = workflow.execute_activity(
            describe_cluster_instances,
            ClusterInstancesRequest(
                region=cluster.region,
                cluster_name=cluster.name,
                include_terminated=True,
                cluster_id=cluster.cluster_id,
            ),
            **OBSERVE,
        )
        nodes_task = workflow.execute_activity(
            list_workload_nodes,
            ListNodesRequest(
                access=WorkloadAccess(
                    region=cluster.region,
                    endpoint_host=cluster.endpoint_host,
                    endpoint_port=cluster.endpoint_port,
                    pki=cluster.pki,
                )
            ),
            **OBSERVE,
        )
        found_instances, found_nodes = await asyncio.gather(
            instances_task, nodes_task, return_exceptions=True
        )
        instances = self._instances(found_instances)
        nodes = self._nodes(found_nodes)

        machines = [
            m.model_copy(update={"annotations": tuple(sorted(carry.annotations[m.name].items()))})
            if m.name in carry.annotations
            else m
            for o in owners.owners
            if o.found
            for m in o.machines
        ]
        owner_ids = {f"{o.kind}/{o.name}": o.workflow_id for o in owners.owners if o.found}
        self._remember_machines(machines, owners, now)
        carry.watched_instances = {m.instance_id: m.name for m in machines if m.instance_id}
        self._track_control_plane(owners, now)
        obs = detect.Observation(
            now=now,
            instances=instances,
            nodes=nodes,
            control_plane_initialized=bool(carry.control_plane_initialized),
            control_plane_initialized_at=datetime.fromtimestamp(
                carry.control_plane_initialized_at, now.tzinfo
            )
            if carry.control_plane_initialized_at is not None
            else None,
        )
        carry.condition_first_seen = detect.observed_conditions(
            machines, obs, self._checks, carry.condition_first_seen
        )
        carry.last_check_at = now
        carry.observation = (
            f"{len(machines)} machines from {sum(1 for o in owners.owners if o.found)} owners; "
            + (f"{len(instances)} instances" if instances is not None else "instances not described")
            + "; "
            + (f"{len(nodes)} nodes" if nodes is not None else "nodes not listed")
        )

        evaluations = [
            detect.evaluate_check(
                check,
                machines,
                obs,
                first_seen=carry.first_seen,
                condition_first_seen=carry.condition_first_seen,
                unhealthy_since=carry.unhealthy_since,
                in_flight=carry.in_flight,
            )
            for check in self._checks
        ]
        self._record_verdicts(evaluations, now)
        self._withdraw_external(evaluations, machines)
        for ev in evaluations:
            for name, why in ev.skipped:
                self._decide(name, ev.check, "skipped", why)
        for ev in evaluations:
            await self._remediate(ev, machines, owner_ids, now)
        await self._clear_stale_marks(
            machines, evaluations, owner_ids, observed=instances is not None and nodes is not None
        )
        carry.reports = [self._report(ev) for ev in evaluations]

    async def _clear_stale_marks(
        self,
        machines: list[WatchedMachine],
        evaluations: list[detect.CheckEvaluation],
        owner_ids: dict[str, str],
        *,
        observed: bool,
    ) -> None:
        """Owners keep an unhealthy mark from each remediation request; scale-up and rollout wait
        on it. Each round, tell an owner which of its marked machines are healthy again (or no
        longer selected), so a machine that recovered, or whose remediation was refused, never
        blocks for good. Only owners holding a stale mark are signalled."""
        stale = detect.healthy_again(machines, evaluations, observed=observed)
        if not stale or not workflow.patched(PATCH_CLEAR_STALE_MARKS):
            return
        for owner, names in stale.items():
            if owner not in owner_ids:
                continue
            try:
                await workflow.execute_activity(
                    report_healthy_again,
                    HealthyAgainCall(owner_workflow_id=owner_ids[owner], machines=names),
                    **OBSERVE,
                )
            except ActivityError as err:
                self._note_once(f"marks:{owner}", "marks-failed", f"{owner} not told: {_cause(err)}")
                continue
            for name in names:
                self._decide(name, "", "healthy-again", f"{owner} no longer marks it unhealthy")

    def _instances(self, found) -> dict | None:
        if isinstance(found, BaseException):
            self._note_once("instances", "observe-failed", f"instances not described: {_cause(found)}")
            return None
        self._carry.last_decision.pop("instances", None)
        assert isinstance(found, ClusterInstancesResult)
        self._count_calls(found.aws_calls)
        return {i.instance_id: i for i in found.instances}

    def _nodes(self, found) -> tuple | None:
        if isinstance(found, BaseException):
            self._note_once("nodes", "observe-failed", f"nodes not listed: {_cause(found)}")
            return None
        assert isinstance(found, WorkloadNodes)
        self._count_calls(found.aws_calls)
        if not found.reachable:
            self._note_once("nodes", "api-unreachable", f"node checks skipped: {found.detail}")
            return None
        self._carry.last_decision.pop("nodes", None)
        return found.nodes

    def _remember_machines(self, machines: list[WatchedMachine], owners: OwnersResult, now: datetime) -> None:
        carry = self._carry
        present = {m.name for m in machines}
        for m in machines:
            if m.created_at is not None and m.name not in carry.created_known:
                carry.first_seen[m.name] = m.created_at.timestamp()
            carry.first_seen.setdefault(m.name, now.timestamp())
            if m.booting and m.name not in carry.created_known:
                # The activity asked the machine for its creation time: never again.
                carry.created_known.append(m.name)
        # Only forget machines of owners that answered (an owner that is briefly missing keeps its own).
        answered = {(o.kind, o.name) for o in owners.owners if o.found}
        for name, flight in list(carry.in_flight.items()):
            owner_kind, _, owner_name = flight.owner.partition("/")
            if name not in present and (owner_kind, owner_name) in answered:
                del carry.in_flight[name]
                self._event(
                    "finished", check=flight.check, machine=name, message=f"{name} is gone: remediation done"
                )
        # An owner that is not found does not exist (other query failures skip the interval), so
        # a machine no owner reports is gone.
        for name in [n for n in carry.annotations if n not in present]:
            del carry.annotations[name]
            self._event("annotations-forgotten", machine=name, message="no owner reports this machine")
        for book in (carry.first_seen, carry.unhealthy_since):
            for name in [n for n in book if n not in present]:
                del book[name]
        carry.created_known = [n for n in carry.created_known if n in present]
        for key in [k for k in carry.last_decision if k.startswith("machine:") and k[8:] not in present]:
            del carry.last_decision[key]

    def _track_control_plane(self, owners: OwnersResult, now: datetime) -> None:
        cp = owners.owner("control-plane")
        if cp is not None and cp.found:
            initialized = bool(cp.control_plane_initialized)
        else:
            initialized = any(o.control_plane_initialized for o in owners.owners if o.found)
        previous = self._carry.control_plane_initialized
        if initialized and previous is False:
            # Seen becoming initialized: nodeStartupTimeout of workers counts from here. (When the
            # health check starts on an initialized control plane, the moment is unknown and older
            # than every machine's creation, so it does not matter.)
            self._carry.control_plane_initialized_at = now.timestamp()
        self._carry.control_plane_initialized = initialized

    def _record_verdicts(self, evaluations: list[detect.CheckEvaluation], now: datetime) -> None:
        carry = self._carry
        unhealthy: dict[str, tuple[str, detect.Verdict]] = {}
        healthy: dict[str, str] = {}
        for ev in evaluations:
            for v in ev.verdicts:
                if v.unhealthy:
                    unhealthy.setdefault(v.machine, (ev.check, v))
                elif v.healthy:
                    healthy[v.machine] = ev.check
            key = f"check:{ev.check}"
            if not ev.allowed:
                if carry.last_decision.get(key) != ev.reason:
                    carry.last_decision[key] = ev.reason
                    self._event("short-circuit", check=ev.check, message=ev.reason)
            elif carry.last_decision.pop(key, None) is not None:
                self._event(
                    "allowed",
                    check=ev.check,
                    message=f"remediation allowed again ({ev.expected - ev.healthy} of {ev.expected} not healthy)",
                )
        for name, (check, v) in unhealthy.items():
            if name not in carry.unhealthy_since:
                carry.unhealthy_since[name] = now.timestamp()
                self._event("detected", check=check, machine=name, message="; ".join(v.reasons))
        for name, check in healthy.items():
            if name in carry.unhealthy_since and name not in unhealthy:
                del carry.unhealthy_since[name]
                self._event("recovered", check=check, machine=name, message="healthy again")

    async def _remediate(
        self,
        ev: detect.CheckEvaluation,
        machines: list[WatchedMachine],
        owner_ids: dict[str, str],
        now: datetime,
    ) -> None:
        """Ask each owner about this check's candidates: the control plane one machine at a time
        (KCP remediates one at a time and judges quorum on the whole unhealthy set), each
        deployment all of its candidates in one Update. A check with a remediation template asks
        no owner: it records external remediation requests."""
        check = next(c for c in self._checks if c.name == ev.check)
        if check.remediation_template is not None and workflow.patched(PATCH_EXTERNAL_REMEDIATION):
            self._request_external(ev, check, now)
            return
        if not ev.remediate:
            for name in ev.deferred:
                self._decide(name, ev.check, "deferred", ev.note)
            return
        by_name = {m.name: m for m in machines}
        verdicts = {v.machine: v for v in ev.verdicts}
        groups: dict[str, list[str]] = {}
        for name in ev.remediate:
            groups.setdefault(detect.owner_key(by_name[name]), []).append(name)
        for name in ev.deferred:
            self._decide(name, ev.check, "deferred", ev.note)
        for owner, names in groups.items():
            first = by_name[names[0]]
            if first.owner == "control-plane":
                names = names[:1]
                call = RemediationCall(
                    owner="control-plane",
                    owner_workflow_id=owner_ids[owner],
                    machines=tuple(names),
                    reason="; ".join(verdicts[names[0]].reasons),
                    # Quorum is judged on every machine of the control plane found unhealthy.
                    unhealthy_machines=tuple(
                        v.machine for v in ev.verdicts if v.unhealthy and v.owner == owner
                    ),
                    update_id=self._update_id(ev.check, names, now),
                )
            else:
                call = RemediationCall(
                    owner="machine-deployment",
                    owner_workflow_id=owner_ids[owner],
                    machines=tuple(names),
                    reason="; ".join(f"{n}: {'; '.join(verdicts[n].reasons)}" for n in names),
                    max_in_flight=check.max_in_flight,
                    update_id=self._update_id(ev.check, names, now),
                )
            try:
                outcome: RemediationOutcome = await workflow.execute_activity(
                    request_remediation, call, **REMEDIATE
                )
            except ActivityError as err:
                for name in names:
                    self._decide(name, ev.check, "request-failed", str(err.cause or err))
                continue
            for name in outcome.remediated:
                self._carry.in_flight[name] = InFlight(
                    check=ev.check, owner=owner, requested_at=now.timestamp()
                )
                self._decide(name, ev.check, "accepted", f"{owner} replaces it ({call.reason})")
            # A deployment defers for maxInFlight; a control plane refusal (quorum, a remediation
            # in progress) or an owner's rejection is a refusal. Asked again next interval.
            refused = outcome.rejected or first.owner == "control-plane"
            for name in outcome.deferred:
                self._decide(name, ev.check, "refused" if refused else "deferred", outcome.reason)
            for name in outcome.skipped:
                self._decide(name, ev.check, "skipped", outcome.reason or "left to the rollout")

    def _request_external(self, ev: detect.CheckEvaluation, check: HealthCheckSpec, now: datetime) -> None:
        """CAPI's external remediation: one request per unhealthy machine while remediation is
        allowed (maxUnhealthy / unhealthyRange; maxInFlight is the owners' and does not apply)."""
        t = check.remediation_template
        assert t is not None
        if not ev.allowed or not check.remediation_enabled:
            return
        template = f"{t.kind}/{t.name} ({t.api_version})"
        for v in ev.unhealthy:
            if v.machine in self._carry.external:
                continue
            reason = "; ".join(v.reasons)
            self._carry.external[v.machine] = ExternalRemediation(
                machine=v.machine, check=ev.check, template=template, requested_at=now, reason=reason
            )
            self._decide(
                v.machine,
                ev.check,
                "external-remediation",
                f"requested from {template}; capt leaves the machine ({reason})",
            )

    def _withdraw_external(
        self, evaluations: list[detect.CheckEvaluation], machines: list[WatchedMachine]
    ) -> None:
        """A request whose machine is gone, or healthy again by its check, is withdrawn (CAPI
        deletes the remediation object when the machine is healthy)."""
        present = {m.name for m in machines}
        healthy = {(ev.check, v.machine) for ev in evaluations for v in ev.verdicts if v.healthy}
        for name, req in list(self._carry.external.items()):
            if name not in present:
                why = "the machine is gone"
            elif (req.check, name) in healthy:
                why = "the machine is healthy again"
            else:
                continue
            del self._carry.external[name]
            self._decide(name, req.check, "external-remediation-withdrawn", why)

    # --- helpers -----------------------------------------------------------------------------------
    def _update_id(self, check: str, names: list[str], now: datetime) -> str:
        # Same id for every retry of this activity (Temporal dedupes Updates by id).
        return f"health-{check}-{'+'.join(names)}-{int(now.timestamp())}"

    def _decide(self, machine: str, check: str, kind: str, message: str) -> None:
        key = f"machine:{machine}"
        text = f"{kind}: {message}"
        if self._carry.last_decision.get(key) == text:
            return
        self._carry.last_decision[key] = text
        self._event(kind, check=check, machine=machine, message=message)

    def _note_once(self, key: str, kind: str, message: str) -> None:
        if self._carry.last_decision.get(key) == message:
            return
        self._carry.last_decision[key] = message
        self._event(kind, message=message)

    def _event(self, kind: str, *, check: str = "", machine: str = "", message: str = "") -> None:
        assert self._inp is not None
        event = HealthEvent(at=workflow.now(), kind=kind, check=check, machine=machine, message=message)
        workflow.logger.info("health %s %s %s: %s", kind, check, machine, message)
        self._carry.events = (self._carry.events + [event])[-self._inp.max_events :]

    def _count_calls(self, calls: dict[str, int]) -> None:
        for op, n in calls.items():
            self._carry.aws_calls[op] = self._carry.aws_calls.get(op, 0) + n

    def _report(self, ev: detect.CheckEvaluation) -> CheckReport:
        carry = self._carry
        allowed, remaining, reason = ev.allowance

        def remediation(name: str) -> str:
            if name in carry.in_flight:
                return "in flight"
            if name in carry.external:
                return "external"
            decision = carry.last_decision.get(f"machine:{name}", "")
            return decision.split(":", 1)[0]

        return CheckReport(
            name=ev.check,
            expected=ev.expected,
            healthy=ev.healthy,
            unhealthy=len(ev.unhealthy),
            remediation_allowed=allowed,
            reason=reason,
            remediations_allowed=remaining,
            in_flight=list(ev.in_flight),
            deferred=list(ev.deferred),
            note=ev.note,
            skipped=[f"{name}: {why}" for name, why in ev.skipped],
            external=sorted(n for n, r in carry.external.items() if r.check == ev.check),
            machines=[
                MachineHealth(
                    machine=v.machine,
                    owner=v.owner,
                    state=v.state,
                    reasons=list(v.reasons),
                    unhealthy_since=datetime.fromtimestamp(
                        carry.unhealthy_since[v.machine], workflow.now().tzinfo
                    )
                    if v.machine in carry.unhealthy_since
                    else None,
                    remediation=remediation(v.machine) if v.unhealthy or v.state == "deleting" else "",
                )
                for v in ev.verdicts
            ],
        )

    def _publish(self) -> None:
        """What the Web UI shows without opening the history."""
        s = self.status()
        lines = [
            f"**health of {s.cluster}**: every {s.interval_seconds:g}s, {s.iterations} checks, run {s.runs}"
        ]
        for c in s.checks:
            state = "remediation allowed" if c.remediation_allowed else f"**{TOO_MANY_UNHEALTHY}**"
            lines.append(
                f"- {c.name}: {c.healthy}/{c.expected} healthy, {c.unhealthy} unhealthy, "
                f"{len(c.in_flight)} in flight — {state}"
            )
        lines.append(s.observation)
        for e in s.events[-5:]:
            lines.append(f"- {e.at:%H:%M:%S} {e.kind} {e.machine} {e.message}".rstrip())
        workflow.set_current_details("\n".join(lines))
