"""ControlPlaneWorkflow — KubeadmControlPlane semantics over MachineWorkflows.

One loop: build the planner's view of the machines, ask `capt.rules.control_plane` for one step
(init, add one, remove one, wait and why), apply it, and wait — on a durable timer, or until
a machine reports a change or an Update arrives. Everything that decides lives in
`capt/rules/control_plane.py` (pure, table-tested); this file only applies decisions.

Requests arrive as Temporal Updates with validators; a validator's rejection never enters
history. Requests are *merged*, not queued: the workflow holds one desired state and an
accepted Update replaces part of it (replicas, version, machine template, kubeadm config),
so a second request during a rollout retargets it and the planner moves towards the newest
target one machine at a time. One exception keeps etcd and kubeadm safe: a version change is
checked against every version still running, so a request that would put a machine two
minors away from another is refused until the current rollout has finished.

Long life: the workflow continues-as-new when Temporal suggests it (or after
`max_iterations` loop turns), carrying its `MachineBook`, after `all_handlers_finished` so
no Update is dropped. Machines are children with ParentClosePolicy.ABANDON, so they survive.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError

from capt.workflows.owner import OwnerWorkflow

with workflow.unsafe.imports_passed_through():
    import capt.rules.control_plane_remediation as remediation
    from capt.activities.workload import components
    from capt.activities.workload.activities import WorkloadAccess
    from capt.contracts import search_attributes as sa
    from capt.contracts.owners import (
        ControlPlaneMachine,
        ControlPlaneRemediationAnswer,
        ControlPlaneRemediationRequest,
        ControlPlaneStatus,
    )
    from capt.rules import control_plane as rules
    from capt.rules.versions import oldest, version_change_error
    from capt.spec.models import ControlPlaneSpec
    from capt.workflows import activity_options as opts
    from capt.workflows.controlplane.models import (
        IDLE_RECHECK,
        PATCH_COMPONENTS_FOLLOW,
        PATCH_READS_ETCD_MEMBERS,
        PATCH_REMEDIATION_ORDER,
        ControlPlaneCarry,
        ControlPlaneInput,
        ScaleRequest,
        TemplateRequest,
        UpgradeRequest,
        _drain_timeout,
        _parse_time,
        _rollout_threshold,
    )
    from capt.workflows.machine.models import ClusterContext, MachineInput
    from capt.workflows.machine_owner import (
        RestartInputs,
        new_machine_name,
        revision_of,
        start_machine,
    )
from capt.workflows.controlplane.etcd import _EtcdMixin


@workflow.defn(name="ControlPlaneWorkflow", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class ControlPlaneWorkflow(_EtcdMixin, OwnerWorkflow):
    DELETE_OPERATION = "deleting every control plane machine"
    REPORT_SIGNAL = "control_plane_changed"

    @workflow.init
    def __init__(self, inp: ControlPlaneInput) -> None:
        # State comes from the input here, not in run(): a signal or Update that arrives with the
        # first task of a continued-as-new run is handled before run() starts, and must land on
        # the carried state rather than be overwritten by it.
        self._cluster: ClusterContext | None = inp.cluster
        self._spec: ControlPlaneSpec | None = inp.spec
        self._carry = inp.carry if inp.carry is not None else ControlPlaneCarry()
        self._wake = False
        # True while an etcd member is being removed (scale-down or remediation): one at a time.
        self._etcd_busy = False
        self._operation = "starting"
        # (when, names) of the last etcd member list read; not carried across continue-as-new.
        self._members_read: tuple[float, tuple[str, ...]] | None = None
        self._last_reported: ControlPlaneStatus | None = None
        self._owner: str | None = inp.owner_workflow_id

    # --- queries ------------------------------------------------------------------------
    @workflow.query
    def status(self) -> ControlPlaneStatus:
        assert self._spec is not None
        revision = self._revision()
        live = self._carry.book.live()
        machines = [
            ControlPlaneMachine(
                name=m.status.name,
                phase=m.status.phase,
                availability_zone=m.status.failure_domain,
                instance_id=m.status.instance_id,
                node_name=m.status.node_name,
                node_ready=m.status.node_ready,
                version=m.status.version,
                up_to_date=m.status.revision == revision,
                unhealthy=m.unhealthy,
                message=m.unhealthy_reason or m.status.failure_reason or m.status.message,
            )
            for m in sorted(live, key=lambda m: m.created)
        ]
        ready = sum(1 for m in machines if m.node_ready and m.phase == "Running")
        up_to_date = sum(1 for m in machines if m.up_to_date and m.phase != "Deleting")
        return ControlPlaneStatus(
            name=self._spec.name,
            desired_replicas=self._spec.replicas,
            replicas=len(machines),
            ready_replicas=ready,
            up_to_date_replicas=up_to_date,
            version=self._spec.version,
            initialized=self._carry.initialized,
            ready=self._carry.initialized and len(machines) == self._spec.replicas == up_to_date == ready,
            paused=self._carry.paused,
            operation=self._operation,
            last_refusal=self._carry.last_refusal,
            last_remediation=self._carry.last_remediation,
            machines=machines,
        )

    # --- signals --------------------------------------------------------------------------
    # machine_changed, machines_healthy and delete_all: OwnerWorkflow's.
    @workflow.signal
    def apply_spec(self, spec: ControlPlaneSpec) -> None:
        """The ClusterWorkflow's desired control plane, already validated by its Update
        validators with the same rules as this workflow's own Updates. Latest wins."""
        self._spec = spec
        self._wake = True

    @workflow.signal
    def set_paused(self, paused: bool) -> None:
        """Paused: no machine is created or deleted (remediation is refused) until resumed."""
        self._carry.paused = paused
        self._wake = True

    # --- updates --------------------------------------------------------------------------
    @workflow.update
    def scale(self, req: ScaleRequest) -> ControlPlaneStatus:
        self._spec = self._spec.model_copy(update={"replicas": req.replicas})  # type: ignore[union-attr]
        self._wake = True
        return self.status()

    @scale.validator
    def _validate_scale(self, req: ScaleRequest) -> None:
        self._reject_if_deleting()
        if err := rules.control_plane_replicas_error(req.replicas):
            raise ValueError(err)
        if err := rules.rollout_strategy_error(req.replicas, self._spec.max_surge):  # type: ignore[union-attr]
            raise ValueError(err)

    @workflow.update
    def upgrade(self, req: UpgradeRequest) -> ControlPlaneStatus:
        self._spec = self._spec.model_copy(update={"version": req.version})  # type: ignore[union-attr]
        self._wake = True
        return self.status()

    @upgrade.validator
    def _validate_upgrade(self, req: UpgradeRequest) -> None:
        self._reject_if_deleting()
        assert self._spec is not None
        running = {m.status.version for m in self._carry.book.live()} | {self._spec.version}
        for version in sorted(running):
            if err := version_change_error(version, req.version):
                if version != self._spec.version:
                    err += f" (machines still run {version}: wait for the current rollout to finish)"
                raise ValueError(err)

    @workflow.update
    def change_template(self, req: TemplateRequest) -> ControlPlaneStatus:
        assert self._spec is not None
        changes: dict = {}
        if req.machine_template is not None:
            changes["machine_template"] = req.machine_template
        if req.kubeadm is not None:
            changes["kubeadm"] = req.kubeadm
        if req.rollout_after is not None:
            changes["rollout_after"] = req.rollout_after
        if req.max_surge is not None:
            changes["max_surge"] = req.max_surge
        self._spec = self._spec.model_copy(update=changes)
        self._wake = True
        return self.status()

    @change_template.validator
    def _validate_template(self, req: TemplateRequest) -> None:
        self._reject_if_deleting()
        if req.max_surge is not None and (
            err := rules.rollout_strategy_error(self._spec.replicas, req.max_surge)  # type: ignore[union-attr]
        ):
            raise ValueError(err)
        if req.rollout_after is not None:
            _parse_time(req.rollout_after)

    @workflow.update
    async def remediate(self, req: ControlPlaneRemediationRequest) -> ControlPlaneRemediationAnswer:
        """Asked by the health workflow. The quorum decision is made and acted on at once
        (delete first, the planner recreates), so a second request sees this one in
        progress and is refused — two remediations never race for etcd quorum."""
        # The request carries the health check's whole current verdict: refresh every mark.
        unhealthy = {req.machine, *req.unhealthy_machines}
        for name, owned in sorted(self._carry.book.machines.items()):
            owned.unhealthy = name in unhealthy
        target = req.machine
        if workflow.patched(PATCH_REMEDIATION_ORDER):
            # CAPI's KCP picks which unhealthy machine goes first (no node, then an etcd problem,
            # then a components problem, then the oldest), not whichever the request named.
            chosen = remediation.pick_machine_to_remediate(self._carry.book.views())
            target = chosen.name if chosen is not None else req.machine
        members = None
        if not self._etcd_busy and not self._carry.paused and workflow.patched(PATCH_READS_ETCD_MEMBERS):
            members = await self._etcd_members()
        decision = self._remediation_decision(target, members)
        if self._etcd_busy:
            decision = decision.model_copy(
                update={"allowed": False, "reason": "another etcd member removal is in progress"}
            )
        if self._carry.paused:
            decision = decision.model_copy(update={"allowed": False, "reason": "the cluster is paused"})
        if not decision.allowed:
            self._carry.last_refusal = decision.reason
            self._publish()
            return ControlPlaneRemediationAnswer(accepted=False, reason=decision.reason, machine=target)
        owned = self._carry.book.machines[target]
        owned.unhealthy, owned.unhealthy_reason = True, req.reason
        previous = self._carry.remediations.get(target)
        self._carry.remediation_in_progress = remediation.RemediationRecord(
            machine=target,
            timestamp=workflow.now().timestamp(),
            retry_count=decision.retry_count if previous else 0,
        )
        retry = self._carry.remediation_in_progress.retry_count
        limit = (
            f" of {self._spec.remediation_max_retry}" if self._spec.remediation_max_retry is not None else ""
        )  # type: ignore[union-attr]
        self._operation = (
            f"remediating {target}" + (f" (retry {retry}{limit})" if retry else "") + f": {req.reason}"
        )
        self._carry.last_remediation = f"{workflow.now().isoformat()}: {self._operation}"
        removed = await self._remove_etcd_member_then_delete(target, decision.etcd_leader_candidate)
        self._wake = True
        if not removed:
            self._carry.remediation_in_progress = None
            return ControlPlaneRemediationAnswer(
                accepted=False, reason=self._carry.last_refusal, machine=target
            )
        return ControlPlaneRemediationAnswer(accepted=True, reason=decision.reason, machine=target)

    @remediate.validator
    def _validate_remediate(self, req: ControlPlaneRemediationRequest) -> None:
        self._reject_if_deleting()
        if req.machine not in self._carry.book.machines:
            raise ValueError(f"{req.machine} is not a machine of control plane {self._spec.name}")  # type: ignore[union-attr]

    def _reject_if_deleting(self) -> None:
        if self._carry.deleting:
            raise ValueError("the control plane is being deleted")

    # --- run ------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: ControlPlaneInput) -> ControlPlaneStatus:
        workflow.upsert_search_attributes(
            [sa.CLUSTER_NAME.value_set(inp.cluster.name), sa.KUBERNETES_VERSION.value_set(inp.spec.version)]
        )
        return await self._owner_loop(inp)

    # --- the owner loop's hooks (capt/workflows/owner.py) ------------------------------------
    def _paused_operation(self) -> str | None:
        return "paused" if self._carry.paused else None

    def _loop_timeout(self) -> timedelta:
        return self._recheck_after()

    def _continue_as_new_input(self, inp: ControlPlaneInput) -> ControlPlaneInput:
        return ControlPlaneInput(
            cluster=inp.cluster,
            spec=self._spec,
            carry=self._carry,
            owner_workflow_id=inp.owner_workflow_id,
            max_iterations=inp.max_iterations,
        )

    # --- steps ----------------------------------------------------------------------------
    def _revision(self) -> str:
        s = self._spec
        assert s is not None
        return revision_of(s.version, s.machine_template, s.kubeadm)

    def _state(self) -> rules.ControlPlaneState:
        assert self._spec is not None and self._cluster is not None
        return rules.ControlPlaneState(
            replicas=self._spec.replicas,
            max_surge=self._spec.max_surge,
            desired_revision=self._revision(),
            machines=tuple(self._carry.book.views()),
            failure_domains=tuple(self._cluster.failure_domains),
            initialized=self._carry.initialized,
            rollout_after=_rollout_threshold(self._spec, workflow.now().timestamp()),
            now=workflow.now().timestamp(),
            remediation_in_progress=self._carry.remediation_in_progress is not None,
        )

    async def _step(self) -> None:
        book = self._carry.book
        if self._etcd_busy:
            # A remediation is removing an etcd member right now: plan again once it is done.
            return
        if not self._carry.initialized and any(
            m.status.phase == "Running" and m.status.node_ready for m in book.live()
        ):
            # The first machine ran `kubeadm init` and its node is Ready: the API answers.
            self._carry.initialized = True
        if self._carry.initialized and not await self._components_follow_version():
            return
        step = rules.plan_control_plane(self._state())
        if step.action in ("init", "scale_up"):
            await self._create_machine(
                step.failure_domain, "init" if step.action == "init" else "join-control-plane"
            )
            self._operation = f"{step.purpose}: creating a machine in {step.failure_domain} ({step.reason})"
        elif step.action == "scale_down" and step.machine:
            self._operation = f"{step.purpose}: {step.reason}"
            await self._remove_etcd_member_then_delete(step.machine, step.etcd_leader_candidate)
        elif step.action == "wait":
            self._operation = f"{step.purpose or 'waiting'}: {step.reason}"
        else:
            self._operation = "idle"
        if self._remediation_in_progress_done():
            self._carry.remediation_in_progress = None

    async def _components_follow_version(self) -> bool:
        """CAPI's KCP upgrade step: before the first machine of a new version joins, move the
        kubeadm-config ClusterConfiguration (`kubeadm join --control-plane` reads its
        kubernetesVersion), CoreDNS and kube-proxy to it. False: not done yet (the reason is the
        operation; the next loop turn tries again) — no machine is created or removed meanwhile."""
        assert self._spec is not None and self._cluster is not None
        spec, carry = self._spec, self._carry
        if carry.components_version is None:
            versions = [m.status.version for m in carry.book.live() if m.status.version]
            carry.components_version = oldest(versions) if versions else spec.version
        if carry.components_version == spec.version or not workflow.patched(PATCH_COMPONENTS_FOLLOW):
            return True
        cc = spec.kubeadm.cluster_configuration
        dns = cc.get("dns") if isinstance(cc.get("dns"), dict) else {}
        cluster = self._cluster
        try:
            result = await workflow.execute_activity(
                components.upgrade_cluster_components,
                components.ComponentsRequest(
                    access=WorkloadAccess(
                        region=cluster.region,
                        endpoint_host=cluster.endpoint_host,
                        endpoint_port=cluster.endpoint_port,
                        pki=cluster.pki,
                    ),
                    version=spec.version,
                    image_repository=cc.get("imageRepository") or None,
                    coredns_image_tag=dns.get("imageTag") or None,
                    coredns_image_repository=dns.get("imageRepository") or None,
                ),
                **opts.KUBE_CALL,
            )
        except ActivityError as err:
            self._operation = f"upgrade: kubeadm-config, CoreDNS and kube-proxy not moved to {spec.version}: {err.cause or err}"
            return False
        carry.components_version = spec.version
        self._operation = (
            f"upgrade: kubeadm-config {result.kubeadm_config}, CoreDNS {result.coredns_image or result.coredns}, "
            f"kube-proxy {result.kube_proxy_image or result.kube_proxy}"
        )
        return True

    async def _create_machine(self, failure_domain: str | None, kind: str) -> None:
        assert self._spec is not None and self._cluster is not None
        spec = self._spec
        name = new_machine_name(spec.name)
        record = self._carry.remediation_in_progress
        if record is not None:
            self._carry.remediations[name] = record
        await start_machine(
            self._carry.book,
            MachineInput(
                cluster=self._cluster,
                name=name,
                role="control-plane",
                bootstrap_kind=kind,  # type: ignore[arg-type]
                owner_workflow_id=workflow.info().workflow_id,
                failure_domain=failure_domain,
                version=spec.version,
                revision=self._revision(),
                template=spec.machine_template,
                kubeadm=spec.kubeadm,
                node_drain_timeout_seconds=_drain_timeout(spec),
            ),
        )

    def _restart_inputs(self) -> RestartInputs:
        spec = self._spec
        assert spec is not None and self._cluster is not None
        return RestartInputs(
            cluster=self._cluster,
            template=spec.machine_template,
            kubeadm=spec.kubeadm,
            node_drain_timeout_seconds=_drain_timeout(spec),
        )

    def _recheck_after(self) -> timedelta:
        if not self._sees_closed_machines():
            return IDLE_RECHECK
        due = self._carry.book.next_check()
        if due is None:
            return IDLE_RECHECK
        return min(IDLE_RECHECK, timedelta(seconds=max(due - workflow.now().timestamp(), 1.0)))

    def _owner_id(self) -> str | None:
        return self._owner

    def _publish(self) -> None:
        """What the Web UI shows without opening the history."""
        s = self.status()
        workflow.set_current_details(
            f"**{s.name}**: {s.ready_replicas}/{s.desired_replicas} ready, {s.up_to_date_replicas} up to date, "
            f"{s.version}{' (initialized)' if s.initialized else ''}\n\n{s.operation}"
            + (f"\n\nlast refusal: {s.last_refusal}" if s.last_refusal else "")
        )
