"""MachineDeploymentWorkflow: rollout steps (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

# Note: `import capt.rules.deployment as rollout`, not `from capt.rules import deployment`: written the
# second way, this module got a sandbox copy of `rollout` (re-imported on every workflow task), whose
# MachineView is not the class `MachineBook.views()` returns, and pydantic refused the machines.

with workflow.unsafe.imports_passed_through():
    import capt.contracts.search_attributes as sa
    import capt.rules.deployment as rollout
    import capt.rules.machines as machines
    from capt.activities.workload import activities as workload
    from capt.contracts.owners import (
        Condition,
    )
    from capt.spec.models import MachineDeploymentSpec
    from capt.workflows import activity_options as opts
    from capt.workflows.machine.models import MachineInput
    from capt.workflows.machine_owner import (
        delete_machine,
        new_machine_name,
        start_machine,
    )
    from capt.workflows.machinedeployment.models import (
        IDLE_RECHECK,
        NODE_CHECK,
        PATCH_EXACT_DELETE_ORDER,
        PATCH_OBSERVE_NODES,
        PATCH_ROLLOUT_AFTER,
        ControlPlaneInfo,
        RevisionRecord,
        deployment_revision,
        progress_key,
        strategy_of,
    )


class _RolloutStepsMixin:
    # --- one step -------------------------------------------------------------------------------
    def _revision(self) -> str:
        s = self._spec
        assert s is not None
        first = self._carry.first_bootstrap_template_name
        base = deployment_revision(s, first)
        return deployment_revision(s, first, rolled_after=self._carry.rolled_after.get(base))

    def _roll_if_rollout_after_passed(self) -> None:
        """CAPI's rolloutAfter: once it has passed, a current MachineSet created before it is
        replaced by a new one of the same template (here: a new revision id); one created after
        it (or not used yet) keeps its machines, whatever rolloutAfter says later."""
        at = self._rollout_after() if self._carry.honours_rollout_after else None
        now = workflow.now().timestamp()
        if at is None or at > now:
            return
        current = self._revision()
        made = next((r.created for r in self._carry.revisions if r.revision == current), None)
        if made is None or made >= at:
            return
        spec = self._spec
        assert spec is not None
        self._carry.rolled_after[deployment_revision(spec, self._carry.first_bootstrap_template_name)] = at
        self._carry.last_progress = now  # a new target: the progress deadline counts from now

    def _rollout_after(self) -> float | None:
        """spec.rolloutAfter as workflow-clock seconds (None: unset or not a time)."""
        text = self._spec.rollout_after if self._spec is not None else None
        if not text:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    def _state(self) -> rollout.DeploymentState:
        spec, cluster = self._spec, self._input.cluster if self._input else None
        assert spec is not None and cluster is not None
        views = self._carry.book.views()
        with_machines = {v.revision for v in views}
        current = self._revision()
        return rollout.DeploymentState(
            replicas=spec.replicas,
            strategy=strategy_of(spec),
            current_revision=current,
            machines=tuple(views),
            # Only revisions that still have machines (and the current one) are MachineSets.
            revisions=tuple(
                rollout.RevisionView(revision=r.revision, created=r.created)
                for r in self._carry.revisions
                if r.revision in with_machines or r.revision == current
            ),
            paused=spec.paused,
            sized_for=self._carry.sized_for,
            failure_domains=tuple(cluster.failure_domains),
            pinned_failure_domain=spec.failure_domain,
            now=workflow.now().timestamp(),
            seed=spec.name,
            exact_delete_order=self._carry.exact_delete_order,
        )

    async def _step(self) -> None:
        self._forget_finished_remediations()
        if not self._cp_initialized:
            self._operation = "waiting for the control plane to be initialized"
            return
        if not self._carry.exact_delete_order and workflow.patched(PATCH_EXACT_DELETE_ORDER):
            self._carry.exact_delete_order = True
        if not self._carry.honours_rollout_after and workflow.patched(PATCH_ROLLOUT_AFTER):
            self._carry.honours_rollout_after = True
        self._roll_if_rollout_after_passed()
        state = self._state()
        if not rollout.deployment_complete(state) and await self._observe_nodes():
            state = self._state()
        plan = rollout.plan_machine_deployment(state)
        ceiling = state.replicas + state.strategy.surge(state.replicas)
        if plan.mode == "scale" and plan.create and len(state.machines) + len(plan.create) > ceiling:
            # CAPI's proportional `scale` sizes revisions by their machines *not* being deleted, so
            # applied now it would briefly exceed replicas + maxSurge counting the machines still
            # being deleted. Those deletions end soon (each signals): scale once they have, with
            # `sized_for` left as it is so the next turn is still a scaling event.
            self._operation = (
                f"scaling to {state.replicas} waits for "
                f"{sum(1 for m in state.machines if m.deleting)} machine(s) to finish deleting "
                f"(at most {ceiling} machines)"
            )
            return
        self._carry.sized_for = plan.sized_for
        if plan.record_revision is not None:
            self._record_revision(plan.record_revision)
        self._promote_current_revision()
        for name in plan.delete:
            await delete_machine(self._carry.book, name, restart=self._restart_inputs())
        for create in plan.create:
            await self._create_machine(create)
        self._track_progress()
        self._prune_revisions()
        if plan.idle:
            done = rollout.deployment_complete(self._state())
            self._operation = "idle" if done else "waiting: " + ("; ".join(plan.notes) or "machines starting")
        else:
            self._operation = f"{plan.mode}: creating {len(plan.create)}, deleting {len(plan.delete)}" + (
                f" — {'; '.join(plan.notes)}" if plan.notes else ""
            )

    async def _observe_nodes(self) -> bool:
        """While a rollout or scale is in progress, list the running machines' nodes (at most every
        NODE_CHECK) so a node that went NotReady stops counting as available, and one Ready again
        counts minReadySeconds from now (CAPI reads the node through its watch). True if any
        machine's availability changed. Best effort: an unreachable API changes nothing."""
        book, carry = self._carry.book, self._carry
        assert self._input is not None
        now = workflow.now().timestamp()
        if carry.nodes_checked_at is not None and now - carry.nodes_checked_at < NODE_CHECK.total_seconds():
            return False
        running = {
            m.status.instance_id: m.status.name
            for m in book.live()
            if m.status.instance_id and m.status.phase == "Running" and not m.delete_sent
        }
        if not running or not workflow.patched(PATCH_OBSERVE_NODES):
            return False
        carry.nodes_checked_at = now
        cluster = self._input.cluster
        try:
            listed = await workflow.execute_activity(
                workload.list_workload_nodes,
                workload.ListNodesRequest(
                    access=workload.WorkloadAccess(
                        region=cluster.region,
                        endpoint_host=cluster.endpoint_host,
                        endpoint_port=cluster.endpoint_port,
                        pki=cluster.pki,
                    ),
                    instance_ids=tuple(sorted(running)),
                ),
                **opts.KUBE_CALL,
            )
        except ActivityError:
            return False
        if not listed.reachable:
            return False
        seen = {n.instance_id: n.ready for n in listed.nodes}
        return book.observe_nodes({name: seen.get(iid, False) for iid, name in running.items()}, now)

    async def _create_machine(self, create: rollout.MachineToCreate) -> None:
        spec, inp = self._spec, self._input
        assert spec is not None and inp is not None
        record = next((r for r in self._carry.revisions if r.revision == create.revision), None)
        if record is None:
            # The planner only creates machines of recorded revisions. A plain exception fails the
            # workflow *task* (retried, visible in the UI), never the deployment itself.
            raise RuntimeError(f"no record of revision {create.revision}")
        name = new_machine_name(f"{spec.name}-{create.revision[:5]}")
        while name in self._carry.book.machines:
            name = new_machine_name(f"{spec.name}-{create.revision[:5]}")
        await start_machine(
            self._carry.book,
            MachineInput(
                cluster=inp.cluster,
                name=name,
                role="worker",
                bootstrap_kind="join-worker",
                owner_workflow_id=workflow.info().workflow_id,
                # A revision pinned to an AZ keeps its machines there.
                failure_domain=record.failure_domain or create.failure_domain,
                version=record.version,
                revision=create.revision,
                template=record.machine_template,
                kubeadm=record.bootstrap,
                node_startup_timeout_seconds=inp.node_startup_timeout_seconds,
                node_drain_timeout_seconds=inp.node_drain_timeout_seconds,
                deployment=spec.name,
            ),
        )

    # --- revisions --------------------------------------------------------------------------------
    def _record_revision(self, view: rollout.RevisionView) -> None:
        spec = self._spec
        assert spec is not None
        self._carry.revisions = [r for r in self._carry.revisions if r.revision != view.revision]
        self._carry.revisions.append(
            RevisionRecord(
                number=max((r.number for r in self._carry.revisions), default=0) + 1,
                revision=view.revision,
                created=view.created,
                version=spec.version,
                machine_template=spec.machine_template,
                bootstrap=spec.bootstrap,
                bootstrap_template_name=spec.bootstrap_template_name,
                failure_domain=spec.failure_domain,
            )
        )

    def _promote_current_revision(self) -> None:
        """Rolling back to a revision that still has machines makes it the newest (CAPI bumps
        the MachineSet's revision number)."""
        current = self._revision()
        top = max((r.number for r in self._carry.revisions), default=0)
        for r in self._carry.revisions:
            if r.revision == current and r.number != top:
                r.number = top + 1

    def _prune_revisions(self) -> None:
        """Keep the current revision, revisions with machines, and the newest
        `revisionHistoryLimit` old ones without machines (for describe)."""
        spec = self._spec
        assert spec is not None
        current = self._revision()
        with_machines = {m.status.revision for m in self._carry.book.live()}
        empty_old = sorted(
            (r for r in self._carry.revisions if r.revision != current and r.revision not in with_machines),
            key=lambda r: r.number,
        )
        drop = {r.revision for r in empty_old[: max(len(empty_old) - spec.revision_history_limit, 0)]}
        self._carry.revisions = [r for r in self._carry.revisions if r.revision not in drop]

    # --- progress, conditions -----------------------------------------------------------------------
    def _track_progress(self) -> None:
        state = self._state()
        key = progress_key(state)
        if (
            key != self._carry.progress_key
            or self._carry.last_progress is None
            or rollout.deployment_complete(state)
        ):
            self._carry.progress_key = key
            self._carry.last_progress = state.now

    def _deadline_exceeded(self, state: rollout.DeploymentState) -> bool:
        spec = self._spec
        assert spec is not None
        if spec.paused or not self._cp_initialized or self._carry.last_progress is None:
            return False
        if rollout.deployment_complete(state):
            return False
        return rollout.progress_deadline_exceeded(
            self._carry.last_progress, state.now, spec.progress_deadline_seconds
        )

    def _conditions(self, state: rollout.DeploymentState) -> list[Condition]:
        spec = self._spec
        assert spec is not None
        counts = rollout.deployment_counts(state)
        floor = spec.replicas - state.strategy.unavailable(spec.replicas)
        available = Condition(
            type="Available",
            status=counts.available >= floor,
            reason="MinimumReplicasAvailable" if counts.available >= floor else "MinimumReplicasUnavailable",
            message=f"{counts.available} available, at least {floor} required",
        )
        if not self._cp_initialized:
            progressing = Condition(
                type="Progressing",
                status=False,
                reason="WaitingForControlPlane",
                message="no machine is created before the control plane is initialized",
            )
        elif spec.paused:
            progressing = Condition(type="Progressing", status=False, reason="DeploymentPaused")
        elif rollout.deployment_complete(state):
            progressing = Condition(
                type="Progressing",
                status=True,
                reason="NewMachineSetAvailable",
                message=f"revision {state.current_revision} has successfully progressed",
            )
        elif self._deadline_exceeded(state):
            progressing = Condition(
                type="Progressing",
                status=False,
                reason="ProgressDeadlineExceeded",
                message=(
                    f"revision {state.current_revision} has made no progress for more than "
                    f"{spec.progress_deadline_seconds}s; still trying within maxUnavailable"
                ),
            )
        else:
            progressing = Condition(
                type="Progressing",
                status=True,
                reason="MachineSetUpdated",
                message=f"{counts.up_to_date} of {spec.replicas} machines up to date, {counts.available} available",
            )
        if self._carry.cluster_paused:
            paused = Condition(type="Paused", status=True, reason="ClusterPaused")
        else:
            paused = Condition(
                type="Paused", status=spec.paused, reason="Paused" if spec.paused else "NotPaused"
            )
        return [available, progressing, paused]

    def _recheck_after(self) -> timedelta:
        state = self._state()
        spec = self._spec
        assert spec is not None
        wake_at = state.now + IDLE_RECHECK.total_seconds()
        if self._carry.honours_rollout_after and (at := self._rollout_after()) is not None and at > state.now:
            wake_at = min(wake_at, at + 1)  # roll as soon as rolloutAfter passes
        if (
            t := machines.next_availability_time(state.machines, state.now, spec.min_ready_seconds)
        ) is not None:
            wake_at = min(wake_at, t)
        if (
            self._carry.last_progress is not None
            and not spec.paused
            and not rollout.deployment_complete(state)
            and not self._deadline_exceeded(state)
        ):
            # Wake just after the deadline so the condition (and the Web UI) shows it on time.
            wake_at = min(wake_at, self._carry.last_progress + spec.progress_deadline_seconds + 1)
        return timedelta(seconds=max(wake_at - state.now, 1.0))

    # --- remediation, deletion ------------------------------------------------------------------------
    def _forget_finished_remediations(self) -> None:
        self._carry.remediating = [n for n in self._carry.remediating if n in self._carry.book.machines]

    def _wait_after(self) -> timedelta:
        """The loop's wait: `_recheck_after`, and no longer than until machines are due a look."""
        recheck = self._recheck_after()
        if self._carry.nodes_checked_at is not None and not rollout.deployment_complete(self._state()):
            recheck = min(recheck, NODE_CHECK)  # a rollout or scale: keep the nodes' state fresh
        if not self._sees_closed_machines():
            return recheck
        due = self._carry.book.next_check()
        if due is None:
            return recheck
        return min(recheck, timedelta(seconds=max(due - workflow.now().timestamp(), 1.0)))

    # --- helpers ------------------------------------------------------------------------------------
    def _replace_spec(self, spec: MachineDeploymentSpec) -> None:
        """Every change of the desired deployment goes through here (Updates and apply_spec)."""
        before = self._spec
        assert before is not None
        revision_before = self._revision()
        self._spec = spec
        if self._revision() != revision_before or (before.paused and not spec.paused):
            # A new target, or a resumed rollout: the progress deadline counts from now
            # (Kubernetes: "ReplicaSetUpdated" / "DeploymentResumed").
            self._carry.last_progress = workflow.now().timestamp()
        if spec.version != before.version:
            self._upsert_search_attributes()
        self._wake = True

    def _apply_control_plane(self, info: ControlPlaneInfo) -> None:
        if info.version is not None:
            self._cp_version = info.version
        if info.initialized:
            if not self._cp_initialized:
                self._carry.last_progress = workflow.now().timestamp()
            self._cp_initialized = True
        self._wake = True

    def _upsert_search_attributes(self) -> None:
        assert self._input is not None and self._spec is not None
        workflow.upsert_search_attributes(
            [
                sa.CLUSTER_NAME.value_set(self._input.cluster.name),
                sa.KUBERNETES_VERSION.value_set(self._spec.version),
            ]
        )
