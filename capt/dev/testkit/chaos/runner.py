"""`Runner`: runs the scenarios' phases against the stack (start the operation, tend the chaos
point, converge, audit) and salvages what a failed phase left."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from capt.activities import kill_points
from capt.activities.aws import audit, faults
from capt.client import codec
from capt.contracts.ids import cluster_workflow_id
from capt.dev.testkit.chaos.context import PhaseContext, PhaseFailed, Want
from capt.dev.testkit.chaos.convergence import ConvergenceMixin
from capt.dev.testkit.chaos.deaths import WorkerDeathsMixin
from capt.dev.testkit.chaos.report import Row
from capt.dev.testkit.chaos.scenarios import EXAMPLE, VERSION, Phase, Scenario
from capt.dev.testkit.chaos.stack import ChaosStack
from capt.spec.loader import load_manifest
from capt.spec.models import ClusterSpec
from capt.workflows.cluster.models import (
    ClusterStatus,
    ScaleControlPlaneRequest,
    ScaleDeploymentRequest,
    UpgradeRequest,
)
from capt.workflows.cluster.workflow import ClusterWorkflow

log = logging.getLogger("capt.chaos")


class Runner(WorkerDeathsMixin, ConvergenceMixin):
    def __init__(
        self,
        chaos_stack: ChaosStack,
        seed: int,
        *,
        expedite: bool = True,
        faults_spec: str | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.faults = faults_spec
        self.stack = chaos_stack
        self.seed = seed
        self.expedite = expedite
        self.echo = echo
        self.client: Client | None = None
        self.hostname = socket.gethostname()
        self.worker_exits = 0

    # -- plumbing --------------------------------------------------------------------------
    async def connect(self) -> Client:
        if self.client is None:
            self.client = await Client.connect(
                self.stack.cfg.temporal_address,
                namespace=self.stack.cfg.namespace,
                # The stack's payload keys (the worker and the CLI encrypt with them).
                data_converter=codec.converter_from_env(self.stack.cfg.client_env()),
            )
        return self.client

    def spec_for(self, sc: Scenario) -> ClusterSpec:
        name = f"chaos-{sc.id}-{self.seed % 10000}"
        text = EXAMPLE.read_text().replace("capi-quickstart", name)
        spec = load_manifest(text, env={}).spec
        spec = spec.model_copy(
            update={
                "control_plane": spec.control_plane.model_copy(update={"replicas": sc.cp}),
                "machine_deployments": tuple(
                    md.model_copy(update={"replicas": sc.md}) for md in spec.machine_deployments
                ),
            }
        )
        return spec

    def zones(self, region: str) -> list[str]:
        from capt.activities.aws import session

        out = session.client("ec2", region).describe_availability_zones(
            Filters=[{"Name": "state", "Values": ["available"]}]
        )["AvailabilityZones"]
        return sorted(
            z["ZoneName"] for z in out if z.get("ZoneType", "availability-zone") == "availability-zone"
        )

    async def status(self, spec: ClusterSpec) -> tuple[WorkflowExecutionStatus | None, ClusterStatus | None]:
        client = await self.connect()
        handle = client.get_workflow_handle_for(
            ClusterWorkflow.run, cluster_workflow_id(spec.namespace, spec.name)
        )
        try:
            desc = await handle.describe(rpc_timeout=timedelta(seconds=5))
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                return desc.status, await handle.result(rpc_timeout=timedelta(seconds=5))
            if desc.status != WorkflowExecutionStatus.RUNNING:
                return desc.status, None
            return desc.status, await handle.query(ClusterWorkflow.status, rpc_timeout=timedelta(seconds=5))
        except (TimeoutError, RPCError, RuntimeError) as err:
            log.debug("status of %s not available: %s", spec.name, err)
            return None, None

    # -- phases ------------------------------------------------------------------------------
    async def start_op(self, spec: ClusterSpec, phase: Phase, want: Want) -> None:
        from capt.client import clusters

        client = await self.connect()
        ns, name = spec.namespace, spec.name
        if phase.op == "create":
            await clusters.apply(client, spec)
        elif phase.op == "scale-md":
            await clusters.update(
                client,
                ns,
                name,
                "scale_deployment",
                ScaleDeploymentRequest(deployment=spec.machine_deployments[0].name, replicas=want.md),
            )
        elif phase.op == "scale-cp":
            await clusters.update(
                client, ns, name, "scale_control_plane", ScaleControlPlaneRequest(replicas=want.cp)
            )
        elif phase.op == "upgrade":
            await clusters.update(client, ns, name, "upgrade", UpgradeRequest(version=want.version))
        elif phase.op == "delete":
            await clusters.update(client, ns, name, "delete")

    async def run_scenario(self, sc: Scenario) -> list[Row]:
        spec = self.spec_for(sc)
        rows: list[Row] = []
        base_env = {k: v.format(seed=self.seed) for k, v in sc.worker_env.items()}
        if self.faults and faults.ENV_VAR in base_env:
            base_env[faults.ENV_VAR] = f"{self.faults},seed={self.seed}"
        self.stack.restart_worker(base_env)
        baseline = audit.take_inventory(spec.region)
        want = Want(cp=sc.cp, md=sc.md, version=VERSION)
        self.echo(f"\n=== {sc.id}: {sc.about}\n    cluster {spec.namespace}/{spec.name}, seed {self.seed}")
        for phase in sc.phases:
            if phase.op == "scale-md":
                want = replace(want, md=int(phase.value))  # type: ignore[arg-type]
            elif phase.op == "scale-cp":
                want = replace(want, cp=int(phase.value))  # type: ignore[arg-type]
            elif phase.op == "upgrade":
                want = replace(want, version=str(phase.value))
            target = None if phase.op == "delete" else want
            row = Row(
                sc.id,
                self.seed,
                str(phase),
                phase.chaos or ("faults " + base_env[faults.ENV_VAR] if base_env else ""),
            )
            ctx = PhaseContext(spec=spec, phase=phase, row=row, base_env=base_env, timeout=sc.timeout)
            env = dict(base_env)
            if phase.kill:
                env[kill_points.ENV_VAR] = phase.kill
            if env != self.stack.worker_env or self.stack.record("worker") is None:
                self.stack.restart_worker(env)
            ctx.worker = self.stack.record("worker")
            ctx.worker_log_offset = self.stack.log_size("worker")
            fault_offset = ctx.worker_log_offset
            t0 = time.monotonic()
            try:
                await self.start_op(spec, phase, want)
                await self.converge(ctx, target)
                row.converged = True
            except PhaseFailed as err:
                row.notes.append(str(err))
            except Exception as err:  # noqa: BLE001 - a crash of one phase is a failed row, not a crashed run
                log.exception("phase %s of %s", phase, sc.id)
                row.notes.append(f"{type(err).__name__}: {err}")
            row.seconds = time.monotonic() - t0
            if phase.kill and not ctx.kill_fired:
                row.fired = False
                row.notes.append(f"kill point {phase.kill} was not reached")
            if phase.trigger and not ctx.trigger_fired:
                row.fired = False
                row.notes.append(f"trigger ({phase.trigger}) never fired")
            if ctx.unexpected_exits:
                row.converged = False
            if base_env:
                kinds = Counter(re.findall(r"capt-fault: (\S+)", self._worker_logs_since(fault_offset)))
                row.notes.append(
                    f"{sum(kinds.values())} AWS faults injected ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"
                )
            if row.converged:
                report = self.audit(ctx, baseline, target)
                row.duplicates += len(report.duplicates)
                row.orphans += len(report.orphans)
                row.missing += len(report.missing)
                if not report.clean:
                    row.notes.append(report.summary().replace("\n", " /"))
            self.echo(
                f"  {str(phase):<14} {phase.chaos or '(no chaos)':<44} "
                f"{'ok' if row.ok else 'FAILED'} in {row.seconds:.0f}s {'; '.join(row.notes)}"
            )
            if phase.chaos or base_env or not row.ok:
                rows.append(row)
            if not row.converged:
                # Later phases would only pile up on this one; clean up best-effort for the next scenario.
                await self.salvage(spec)
                break
        if self.stack.worker_env:
            self.stack.restart_worker({})
        strays = self.stack.strays()
        if strays:
            # A worker a kill or restart left behind would keep running activities unseen.
            row = Row(sc.id, self.seed, "after", "stray processes")
            row.notes.append(f"processes of this stack no service owns: {strays}")
            rows.append(row)
            self.echo(f"  FAILED: stray processes {strays}")
        return rows

    def _worker_logs_since(self, offset: int) -> str:
        # Restarts append to the same log file, so one read from the phase's start covers them.
        return self.stack.log_since("worker", offset)

    async def salvage(self, spec: ClusterSpec) -> None:
        """After a failed phase: ask for the delete and give it a while, so the next scenario starts
        from a clean account (its own baseline is taken anyway)."""
        from capt.client import clusters

        self.stack.restart_worker({})
        with contextlib.suppress(Exception):
            client = await self.connect()
            await clusters.update(client, spec.namespace, spec.name, "delete")
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                wf_status, _ = await self.status(spec)
                if wf_status not in (WorkflowExecutionStatus.RUNNING, None):
                    return
                await asyncio.sleep(2)
