"""HealthCheckWorkflow — the cluster's MachineHealthChecks: find failing machines, ask owners to replace them.

One workflow per cluster (`health/<namespace>/<cluster>`) runs every MachineHealthCheck of the
cluster, each evaluated on its own. Every interval (default 30 s):

1. a durable timer (`workflow.wait_condition(..., timeout=interval)`: it survives worker restarts
   and costs nothing while it waits);
2. observe, with exactly three activities whatever the cluster's size:
   - `query_machine_owners` — the control plane's and the checked deployments' `status` queries
     through the Temporal client (a workflow cannot query another workflow; see
     capt/activities/owners.py for why querying beats having owners push their machine set);
   - `describe_cluster_instances` — ONE paginated DescribeInstances filtered by the cluster's
     ownership tag (never one call per machine);
   - `list_workload_nodes` — ONE Node list from the workload cluster (unreachable = data);
3. decide, in pure code (`capt/workflows/health/detection.py`): per check, which machines are
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
`paused`: see capt/workflows/health/detection.py for what each does), carried across continue-as-new
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

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    import capt.contracts.search_attributes as sa
    import capt.workflows.health.detection as detect
    from capt.rules.health import TOO_MANY_UNHEALTHY
    from capt.spec.models import HealthCheckSpec
    from capt.workflows.health.models import (
        DEFAULT_INTERVAL_SECONDS,
        CheckReport,
        HealthCarry,
        HealthCheckInput,
        HealthEvent,
        HealthSettings,
        HealthStatus,
        MachineAnnotations,
        MachineHealth,
        annotations_error,
        settings_error,
    )
from capt.workflows.health.remediation import _RemediationMixin
from capt.workflows.health.round import _RoundMixin


@workflow.defn(name="HealthCheckWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class HealthCheckWorkflow(_RoundMixin, _RemediationMixin):
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
