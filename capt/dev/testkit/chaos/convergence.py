"""When a phase has passed: the cluster's status and its simulated nodes settled, and the account
audit clean (a mixin of `Runner`)."""

from __future__ import annotations

import asyncio
import logging
import time

from temporalio.client import WorkflowExecutionStatus

from capt.activities.aws import audit, audit_compare
from capt.contracts.names import cluster_id
from capt.dev.testkit.chaos.context import PhaseContext, PhaseFailed, Want
from capt.dev.testkit.chaos.scenarios import AUDIT_SETTLE, POLL
from capt.plan.cluster import build_plan
from capt.spec.models import ClusterSpec
from capt.workflows.cluster.models import ClusterStatus

log = logging.getLogger("capt.chaos")


class ConvergenceMixin:
    """Convergence and the account audit of `Runner`."""

    # -- convergence -------------------------------------------------------------------------
    def settled(self, status: ClusterStatus | None, want: Want) -> str | None:
        """None when the cluster is where `want` says; else what is still different."""
        if status is None:
            return "status not available"
        if status.phase != "Ready":
            return f"{status.phase}: {status.message}"
        cp = status.control_plane
        if cp is None:
            return "no control plane status"
        cp_running = [m for m in cp.machines if m.phase == "Running" and m.node_ready]
        if len(cp.machines) != want.cp or len(cp_running) != want.cp:
            return f"control plane: {len(cp_running)}/{want.cp} Running of {len(cp.machines)}"
        if cp.version != want.version or any(
            m.version != want.version or not m.up_to_date for m in cp.machines
        ):
            return f"control plane not all at {want.version}"
        for d in status.deployments:
            running = [m for m in d.machines if m.phase == "Running" and m.node_ready and m.up_to_date]
            if len(d.machines) != want.md or len(running) != want.md or d.version != want.version:
                return (
                    f"{d.name}: {len(running)}/{want.md} Running at {d.version}, {len(d.machines)} machines"
                )
        return None

    def workload_settled(self, spec: ClusterSpec, status: ClusterStatus, want: Want) -> str | None:
        """The simulated workload cluster agrees: nodes of exactly the desired instances, Ready at
        the desired kubelet version; one healthy etcd member per control-plane machine."""
        state = self.stack.sim_state()
        clusters = [
            c
            for c in state.get("clusters", [])
            if c.get("tag_cluster") == cluster_id(spec.namespace, spec.name)
        ]
        if not clusters:
            return "no workload cluster in the simulator"
        c = clusters[0]
        instances = {m.instance_id for m in status.control_plane.machines} | {
            m.instance_id for d in status.deployments for m in d.machines
        }
        nodes = c["nodes"]
        if {n["instance_id"] for n in nodes} != instances:
            return (
                f"nodes {sorted(n['instance_id'] for n in nodes)} != machines' instances {sorted(instances)}"
            )
        bad = [n["name"] for n in nodes if n["ready"] != "True" or n["kubelet_version"] != want.version]
        if bad:
            return f"nodes not Ready at {want.version}: {bad}"
        members = c["etcd_members"]
        if len(members) != want.cp or not all(m["healthy"] for m in members):
            return f"etcd members {[(m['name'], m['healthy']) for m in members]}, want {want.cp} healthy"
        return None

    async def converge(self, ctx: PhaseContext, want: Want | None) -> None:
        """Wait (tending the stack) until the cluster is where the phase wants it, or time out."""
        deadline = time.monotonic() + ctx.timeout
        why = "not started"
        while True:
            await self.tend(ctx)
            wf_status, status = await self.status(ctx.spec)
            if want is None:
                if (
                    wf_status == WorkflowExecutionStatus.COMPLETED
                    and status is not None
                    and status.phase == "Deleted"
                ):
                    return
                why = f"workflow {wf_status.name if wf_status else '?'}: {status.phase + ': ' + status.message if status else ''}"
                if wf_status not in (
                    None,
                    WorkflowExecutionStatus.RUNNING,
                    WorkflowExecutionStatus.COMPLETED,
                ):
                    raise PhaseFailed(why)
            else:
                why = self.settled(status, want) or ""
                if not why:
                    assert status is not None
                    why = self.workload_settled(ctx.spec, status, want) or ""
                    if not why:
                        ctx.status = status
                        return
                if status is not None and status.phase == "Failed":
                    raise PhaseFailed(f"cluster Failed: {status.message}")
            log.debug("%s %s: %s", ctx.spec.name, ctx.phase, why)
            if time.monotonic() >= deadline:
                raise PhaseFailed(f"not converged after {ctx.timeout:.0f}s: {why}")
            await asyncio.sleep(POLL)

    # -- audit -------------------------------------------------------------------------------
    def audit(
        self, ctx: PhaseContext, baseline: audit.Inventory, want: Want | None
    ) -> audit_compare.AuditReport:
        spec = ctx.spec
        deadline = time.monotonic() + AUDIT_SETTLE
        while True:
            now = audit.take_inventory(spec.region)
            if want is None:
                desired = []
            else:
                assert ctx.status is not None
                machines = [m.name for m in ctx.status.control_plane.machines] + [
                    m.name for d in ctx.status.deployments for m in d.machines
                ]
                plan = build_plan(spec, self.zones(spec.region), cluster_id(spec.namespace, spec.name))
                desired = [audit_compare.desired_from_plan(plan, machines)]
            report = audit_compare.compare(baseline, now, desired)
            gone = sorted(baseline.keys() - now.keys())
            if (report.clean and not gone) or time.monotonic() >= deadline:
                if gone:
                    ctx.row.notes.append(f"baseline resources gone: {gone}")
                    ctx.row.orphans += len(gone)
                return report
            time.sleep(1)
