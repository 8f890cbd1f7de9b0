"""HealthCheckWorkflow: round (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import capt.activities.aws.instance_events as instance_events
    import capt.workflows.health.detection as detect
    from capt.activities.aws.instances import (
        ClusterInstancesRequest,
        ClusterInstancesResult,
        describe_cluster_instances,
    )
    from capt.activities.owners import (
        HealthyAgainCall,
        OwnersRequest,
        OwnersResult,
        WatchedMachine,
        query_machine_owners,
        report_healthy_again,
    )
    from capt.activities.workload.activities import (
        ListNodesRequest,
        WorkloadAccess,
        WorkloadNodes,
        list_workload_nodes,
    )
    from capt.workflows.health.models import (
        OBSERVE,
        PATCH_CLEAR_STALE_MARKS,
        _cause,
    )


class _RoundMixin:
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
