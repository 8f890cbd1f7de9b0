"""ControlPlaneWorkflow: etcd (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import capt.rules.control_plane_remediation as remediation
    from capt.activities.workload import etcd
    from capt.contracts.machines import MachineStatus
    from capt.workflows import activity_options as opts
    from capt.workflows.controlplane.models import (
        ETCD_MEMBERS_FRESH_SECONDS,
    )
    from capt.workflows.machine_owner import (
        MachineBook,
        delete_machine,
    )


class _EtcdMixin:
    def _remediation_decision(
        self, target: str, etcd_members: tuple[str, ...] | None = None
    ) -> remediation.ControlPlaneRemediationDecision:
        spec = self._spec
        assert spec is not None
        return remediation.check_control_plane_remediation(
            self._carry.book.views(),
            target,
            etcd_members=etcd_members,
            initialized=self._carry.initialized,
            now=workflow.now().timestamp(),
            in_progress=self._carry.remediation_in_progress,
            last_remediation=self._carry.remediations.get(target),
            max_retry=spec.remediation_max_retry,
            retry_period_seconds=spec.remediation_retry_period_seconds,
            min_healthy_period_seconds=spec.remediation_min_healthy_period_seconds,
        )

    async def _remove_etcd_member_then_delete(self, name: str, via: str | None) -> bool:
        """CAPI's order: remove the machine's etcd member (run on a healthy sibling, through
        SSM), and only once the surviving members confirm it is gone, delete the machine.
        A stopped member would still count toward quorum. Returns False (machine kept, reason
        in last_refusal) when no sibling could confirm the removal; the loop tries again."""
        book = self._carry.book
        departing = book.machines[name].status
        assert not self._etcd_busy, "callers check _etcd_busy first"
        self._etcd_busy = True
        try:
            return await self._remove_member_and_delete(book, name, departing, via)
        finally:
            self._etcd_busy = False
            self._members_read = None  # the membership changed (or may have): read it again

    async def _remove_member_and_delete(
        self, book: MachineBook, name: str, departing: MachineStatus, via: str | None
    ) -> bool:
        if departing.node_name and departing.instance_id:
            siblings = self._healthy_siblings(exclude=name, via=via)
            outcome = "no healthy control plane machine to run the removal on"
            for sibling in siblings[:3]:
                outcome = await self._etcd_removal_via(sibling, departing)
                if outcome == "removed":
                    break
            else:
                self._carry.last_refusal = f"etcd member of {name} not removed: {outcome}"
                self._operation = self._carry.last_refusal
                return False
        await delete_machine(book, name, restart=self._restart_inputs())
        return True

    async def _etcd_members(self) -> tuple[str, ...] | None:
        """etcd's own member list (names), read through a healthy control-plane node, for quorum
        decisions (a member whose machine is gone still counts). None when no node could answer:
        the machines' nodes stand in for it, as before."""
        assert self._cluster is not None
        now = workflow.now().timestamp()
        if self._members_read is not None and now - self._members_read[0] < ETCD_MEMBERS_FRESH_SECONDS:
            # A refused remediation is asked again every health interval: one list serves a while.
            return self._members_read[1]
        for via in self._healthy_siblings(exclude=None)[:2]:
            cmd = await workflow.execute_activity(
                etcd.send_etcd_member_list,
                etcd.EtcdMemberListRequest(
                    region=self._cluster.region, via_instance_id=via.instance_id or ""
                ),
                **opts.KUBE_CALL,
            )
            for delay in opts.poll_intervals(first=2, factor=1.5, cap=10):
                listed = await workflow.execute_activity(
                    etcd.check_etcd_member_list,
                    etcd.EtcdMemberListCheck(
                        region=self._cluster.region, command_id=cmd.command_id, instance_id=cmd.instance_id
                    ),
                    **opts.KUBE_CALL,
                )
                if listed.state != "pending":
                    break
                await workflow.sleep(delay)
            if listed.state == "listed" and listed.members:
                members = tuple(m.name or m.id for m in listed.members)
                self._members_read = (now, members)
                return members
        return None

    def _healthy_siblings(self, exclude: str | None, via: str | None = None) -> list[MachineStatus]:
        """Running control-plane machines nothing marks unhealthy (`via` first, then newest)."""
        return [
            m.status
            for m in sorted(self._carry.book.live(), key=lambda m: (m.status.name != via, -m.created))
            if m.status.name != exclude
            and m.status.instance_id
            and m.status.phase == "Running"
            and not m.delete_sent
            and not m.unhealthy
        ]

    async def _etcd_removal_via(self, via: MachineStatus, departing: MachineStatus) -> str:
        assert self._cluster is not None
        member = etcd.EtcdMemberRef(name=departing.node_name or "", peer_host=departing.private_ip)
        cmd = await workflow.execute_activity(
            etcd.send_etcd_member_removal,
            etcd.EtcdMemberRemovalRequest(
                region=self._cluster.region,
                via_instance_id=via.instance_id or "",
                departing_instance_id=departing.instance_id or "",
                member=member,
            ),
            **opts.KUBE_CALL,
        )
        for delay in opts.poll_intervals(first=2, factor=1.5, cap=10):
            check = await workflow.execute_activity(
                etcd.check_etcd_member_removal,
                etcd.EtcdMemberRemovalCheck(
                    region=self._cluster.region,
                    command_id=cmd.command_id,
                    instance_id=cmd.instance_id,
                    member=member,
                ),
                **opts.KUBE_CALL,
            )
            if check.state != "pending":
                return "removed" if check.confirmed else f"{check.state} via {via.name}: {check.detail}"
            await workflow.sleep(delay)
        return "unreachable"  # pragma: no cover - poll_intervals never ends

    def _remediation_in_progress_done(self) -> bool:
        record = self._carry.remediation_in_progress
        if record is None:
            return False
        # Finished once a machine created after it is Running.
        return any(
            m.created > record.timestamp and m.status.phase == "Running" for m in self._carry.book.live()
        )
