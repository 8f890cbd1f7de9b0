"""The chaos suite: worker kill -9 at precise points, Temporal server kill -9, AWS faults — each
scenario a small cluster's lifecycle on the local stack, every phase ending with the account audit.

    python -m capt.dev.testkit.chaos [--seed N] [--scenario ID ...] [--list] [--report PATH]
    make chaos

One local stack (Temporal dev server on SQLite, moto, the workload simulator, a worker) on free
ports in a temporary state dir, shared by the scenarios, which run one after another. A scenario
is a cluster's lifecycle (create → [scale | upgrade] → delete); some phases carry a chaos point:

- `kill=<activity>:<before|after>:<nth>`: the phase's worker runs with CAPT_CHAOS_KILL
  (activities/kill_points.py) and kills itself -9 right before its nth execution of the activity
  starts, or right after it returned (side effect done, result never reported);
- a history trigger: the runner watches a workflow's history and, at the nth event of a type
  after the phase began, kills -9 the worker (a workflow-task boundary) or the Temporal dev
  server (restarted on its SQLite file);
- a scenario-wide worker environment, e.g. CAPT_AWS_FAULTS (activities/aws/faults.py).

When the worker dies the runner starts a new one (the devstack starts what is missing) without
the kill point. The dead worker's started activity attempts would be retried once their
start-to-close timeout (90 s for AWS calls) expires; the runner fails them at once by activity
id instead — the same retryable failure, sooner (`--wait-timeouts` waits them out) — and resets
the workflows' sticky queues (what a worker does on a graceful shutdown).

A phase passes when: its chaos point fired as planned; the cluster converged within the phase's
timeout (Ready with the desired machines Running at the desired version, every simulated node
Ready at that kubelet version, one healthy etcd member per control-plane machine; or, for a
delete, the cluster workflow completed Deleted); and the account audit (activities/aws/audit.py)
finds 0 duplicates, 0 orphans and nothing missing (after a delete: exactly the baseline taken
before the create). One row per chaos phase (and per failed plain phase) goes to the table, which
is printed and written to the report; the exit status is non-zero if any row failed, and the seed
is printed with the command that re-runs the failed scenarios.

The seed drives the AWS fault injector's RNG and the cluster names; kill points are fixed per
scenario, so a kill scenario is reproduced by its id alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Literal

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from capt.activities import kill_points
from capt.activities.aws import audit, faults
from capt.client import codec
from capt.contracts.ids import cluster_workflow_id, control_plane_workflow_id, deployment_workflow_id
from capt.contracts.names import cluster_id
from capt.dev.paths import REPO_ROOT
from capt.dev.stack import procs, stack
from capt.dev.stack.config import DevConfig
from capt.dev.stack.services import Service, build_services
from capt.dev.testkit import history_sizes as histories
from capt.plan.cluster import build_plan
from capt.spec.loader import load_manifest
from capt.spec.models import ClusterSpec
from capt.workflows.cluster import (
    ClusterStatus,
    ClusterWorkflow,
    ScaleControlPlaneRequest,
    ScaleDeploymentRequest,
    UpgradeRequest,
)

ROOT = REPO_ROOT

log = logging.getLogger("capt.chaos")

EXAMPLE = ROOT / "examples" / "capi-quickstart.yaml"
VERSION, UPGRADE_VERSION = "v1.20.5", "v1.21.2"
DEFAULT_REPORT = Path(".capt-chaos") / "report.md"
# The simulator's knobs, tuned down for speed (docs/simulator.md); capt's own timings are untouched.
SIM_SETTINGS = {"boot_delay": 1, "ready_delay": 1, "poll_interval": 1, "node_gone_delay": 5}
PHASE_TIMEOUT = 300.0
FAULTS_PHASE_TIMEOUT = 900.0
# A converged cluster's last clean-ups (a machine deleting its bootstrap secret right after it
# reported Running) may trail its status: the audit is repeated for this long until clean.
AUDIT_SETTLE = 20.0
POLL = 0.5
SERVER_DOWN_SECONDS = 3.0
FAULTS = "lost=0.1,throttle=0.3,seed={seed},ops=mutating"

Op = Literal["create", "scale-md", "scale-cp", "upgrade", "delete"]


# --------------------------------------------------------------------------------------------
# scenarios


@dataclass(frozen=True)
class Trigger:
    """Kill -9 `target` at the nth `event` type in `workflow`'s history after the phase began."""

    target: Literal["worker", "temporal"]
    workflow: Literal["cluster", "infra", "controlplane", "md"]
    event: str
    nth: int = 1

    def __str__(self) -> str:
        what = "Temporal server" if self.target == "temporal" else "worker"
        return f"{what} at {self.workflow} {self.event}#{self.nth}"


@dataclass(frozen=True)
class Phase:
    op: Op
    value: int | str | None = None
    kill: str | None = None  # CAPT_CHAOS_KILL for this phase's worker
    trigger: Trigger | None = None

    @property
    def chaos(self) -> str:
        return self.kill or (str(self.trigger) if self.trigger else "")

    def __str__(self) -> str:
        return self.op + (f" {self.value}" if self.value is not None else "")


@dataclass(frozen=True)
class Scenario:
    id: str
    about: str
    phases: tuple[Phase, ...]
    cp: int = 1
    md: int = 1
    worker_env: dict[str, str] = field(default_factory=dict)  # for the whole lifecycle
    timeout: float = PHASE_TIMEOUT

    @property
    def chaos_points(self) -> int:
        return sum(1 for p in self.phases if p.chaos)


def K(activity: str, when: str, nth: int = 1) -> str:
    return f"{activity}:{when}:{nth}"


def _server_trigger(workflow: str) -> Trigger:
    return Trigger("temporal", workflow, "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED", 1)  # type: ignore[arg-type]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "vpc",
        "create: after the VPC is created; delete: after DeleteVpc",
        (Phase("create", kill=K("ensure_vpc", "after")), Phase("delete", kill=K("delete_vpc", "after"))),
    ),
    Scenario(
        "nat",
        "create: after CreateNatGateway; delete: after DeleteNatGateway",
        (
            Phase("create", kill=K("ensure_nat_gateway", "after")),
            Phase("delete", kill=K("delete_nat_gateway", "after")),
        ),
    ),
    Scenario(
        "api-lb",
        "create: after the API load balancer is created; delete: after DeleteLoadBalancer",
        (
            Phase("create", kill=K("ensure_load_balancer", "after")),
            Phase("delete", kill=K("delete_load_balancer", "after")),
        ),
    ),
    Scenario(
        "cp1",
        "create: after RunInstances of the first control-plane machine; delete: after TerminateInstances",
        (
            Phase("create", kill=K("ensure_instance", "after", 1)),
            Phase("delete", kill=K("terminate_instance", "after")),
        ),
    ),
    Scenario(
        "secrets",
        "create: after the cluster PKI is put in Secrets Manager; delete: after the cluster's secrets are deleted",
        (
            Phase("create", kill=K("ensure_cluster_pki", "after")),
            Phase("delete", kill=K("delete_cluster_secrets", "after")),
        ),
    ),
    Scenario(
        "join-before",
        "create: before the joining worker machine's RunInstances; delete: after the NAT's address is released",
        (
            Phase("create", kill=K("ensure_instance", "before", 2)),
            Phase("delete", kill=K("release_eip", "after")),
        ),
    ),
    Scenario(
        "join-after",
        "create: after the joining worker's RunInstances; scale 1→2: after its bootstrap data is stored; "
        "delete: after a security group is deleted",
        (
            Phase("create", kill=K("ensure_instance", "after", 2)),
            Phase("scale-md", 2, kill=K("prepare_bootstrap_data", "after")),
            Phase("delete", kill=K("delete_security_group", "after")),
        ),
    ),
    Scenario(
        "scale",
        "create: after the join token's Secret is created in the workload cluster; scale 1→2: after the "
        "new machine's RunInstances; 2→1: after TerminateInstances; delete: before the first subnet is deleted",
        (
            Phase("create", kill=K("create_bootstrap_token_secret", "after")),
            Phase("scale-md", 2, kill=K("ensure_instance", "after")),
            Phase("scale-md", 1, kill=K("terminate_instance", "after")),
            Phase("delete", kill=K("delete_subnet", "before")),
        ),
    ),
    Scenario(
        "cp-scale",
        "create: after a Running machine's bootstrap data is deleted; control plane 1→3: before the second "
        "joining control plane's RunInstances; 3→1: after the first etcd member removal is sent (SSM); "
        "delete: after the teardown terminated the cluster's instances by tag (cluster deletion skips drain)",
        (
            Phase("create", kill=K("delete_bootstrap_data", "after")),
            Phase("scale-cp", 3, kill=K("ensure_instance", "before", 2)),
            Phase("scale-cp", 1, kill=K("send_etcd_member_removal", "after")),
            Phase("delete", kill=K("terminate_cluster_instances", "after")),
        ),
    ),
    Scenario(
        "cp-rollout",
        "upgrade: control plane rollout, after the old member's etcd removal is confirmed; "
        "delete: after the control plane instance is deregistered from the API load balancer",
        (
            Phase("create"),
            Phase("upgrade", UPGRADE_VERSION, kill=K("check_etcd_member_removal", "after")),
            Phase("delete", kill=K("deregister_from_load_balancer", "after")),
        ),
    ),
    Scenario(
        "md-surge",
        "create (MD 2): after the control plane joins the API load balancer; upgrade: after the MD surge "
        "instance's RunInstances; delete: after a route table is deleted",
        (
            Phase("create", kill=K("register_with_load_balancer", "after")),
            Phase("upgrade", UPGRADE_VERSION, kill=K("ensure_instance", "after", 2)),
            Phase("delete", kill=K("delete_route_table", "after")),
        ),
        md=2,
    ),
    Scenario(
        "md-retire",
        "create (MD 2): after a worker's join token is stored; upgrade: after an old worker's instance is "
        "terminated; delete: after the IGW is deleted",
        (
            Phase("create", kill=K("ensure_bootstrap_token", "after")),
            Phase("upgrade", UPGRADE_VERSION, kill=K("terminate_instance", "after", 2)),
            Phase("delete", kill=K("delete_internet_gateway", "after")),
        ),
        md=2,
    ),
    Scenario(
        "wft-boundary",
        "workflow-task boundaries: worker kill -9 when the control plane starts its machine (create) "
        "and when the deployment starts its surge machine (upgrade, MD 2)",
        (
            Phase(
                "create",
                trigger=Trigger("worker", "controlplane", "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED"),
            ),
            Phase(
                "upgrade",
                UPGRADE_VERSION,
                trigger=Trigger("worker", "md", "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED"),
            ),
            Phase("delete"),
        ),
        md=2,
    ),
    Scenario(
        "server-create",
        "Temporal dev server kill -9 + restart mid-create (when the first machine workflow starts)",
        (Phase("create", trigger=_server_trigger("controlplane")), Phase("delete")),
    ),
    Scenario(
        "server-rollout",
        "Temporal dev server kill -9 + restart mid-rolling-update (MD 2, when the surge machine starts)",
        (Phase("create"), Phase("upgrade", UPGRADE_VERSION, trigger=_server_trigger("md")), Phase("delete")),
        md=2,
    ),
    Scenario(
        "aws-faults",
        "10 % lost responses and 30 % throttling on every mutating AWS call: create → upgrade → delete",
        (Phase("create"), Phase("upgrade", UPGRADE_VERSION), Phase("delete")),
        worker_env={faults.ENV_VAR: FAULTS},
        timeout=FAULTS_PHASE_TIMEOUT,
    ),
)


def scenario(id_: str) -> Scenario:
    for s in SCENARIOS:
        if s.id == id_:
            return s
    raise KeyError(id_)


# --------------------------------------------------------------------------------------------
# the stack


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


CHAOS_VARS = (kill_points.ENV_VAR, faults.ENV_VAR)


class ChaosStack:
    """The local stack in a state dir of its own, with the worker's environment under control."""

    def __init__(self, cfg: DevConfig) -> None:
        self.cfg = cfg
        self.worker_env: dict[str, str] = {}

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> ChaosStack:
        grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
        return cls(
            DevConfig(
                state_dir=state_dir,
                temporal_port=grpc,
                ui_port=ui,
                moto_port=moto,
                codec_port=codec_port,
                sim_api_port=sim_api,
                sim_port=sim,
            )
        )

    def services(self) -> list[Service]:
        services = build_services(self.cfg)
        for svc in services:
            env = {k: v for k, v in svc.env.items() if k not in CHAOS_VARS}
            if svc.name == "worker":
                env.update(self.worker_env)
            svc.env = env
        return services

    def up(self) -> None:
        """Start whatever is not running (the others are left alone)."""
        stack.up(self.cfg, self.services(), echo=lambda line: log.info("devstack: %s", line))

    def down(self) -> list[str]:
        """Stop the stack; returns the strays `down` had to kill (the services' own are not)."""
        outcomes = stack.down(
            self.cfg, self.services(), grace=10, echo=lambda line: log.info("devstack: %s", line)
        )
        return [
            name
            for name, outcome in outcomes.items()
            if name.startswith("stray") and outcome != "not-running"
        ]

    def record(self, name: str) -> procs.PidRecord | None:
        return stack.running_record(self.cfg, name)

    def pid(self, name: str) -> int | None:
        record = self.record(name)
        return record.pid if record else None

    def log_path(self, name: str) -> Path:
        return stack.log_path(self.cfg, name)

    def log_size(self, name: str) -> int:
        try:
            return self.log_path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, name: str, offset: int) -> str:
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def kill9(self, name: str) -> int | None:
        record = self.record(name)
        if record is None:
            return None
        procs._signal(record, signal.SIGKILL)  # the service's process group
        procs.wait_gone(record, 10.0)
        return record.pid

    def strays(self) -> list[str]:
        """Processes this stack started (their environment carries its mark) that none of its
        running services owns: a worker a restart failed to stop, a helper that escaped. Each as
        "pid command"."""
        services = [r for r in (self.record(svc.name) for svc in self.services()) if r]
        return [
            f"{pid} {' '.join(procs.read_cmdline(pid) or ['?'])[:80]}"
            for pid in procs.strays(self.cfg.state_dir, services)
        ]

    def restart_worker(self, env: dict[str, str]) -> None:
        """A new worker with `env` (graceful stop of the running one, if any)."""
        t0 = time.monotonic()
        record = self.record("worker")
        if record is not None:
            procs.terminate(record, 35.0)
        self.worker_env = dict(env)
        self.up()
        log.info("worker restarted with %s in %.1fs", env or "no chaos", time.monotonic() - t0)

    def sim_settings(self, settings: dict[str, float]) -> None:
        req = urllib.request.Request(
            f"{self.cfg.sim_url}/sim/settings",
            data=json.dumps(settings).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass

    def sim_state(self) -> dict:
        with urllib.request.urlopen(f"{self.cfg.sim_url}/sim/state", timeout=10) as resp:
            return json.loads(resp.read())


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Row:
    scenario: str
    seed: int
    phase: str
    point: str
    converged: bool = False
    duplicates: int = 0
    orphans: int = 0
    missing: int = 0
    seconds: float = 0.0
    fired: bool = True  # the chaos point happened
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.converged and self.fired and not (self.duplicates or self.orphans or self.missing)


def render_rows(rows: list[Row]) -> str:
    lines = [
        "| scenario | seed | phase | kill point | converged | duplicates | orphans | time | result | notes |",
        "|---|---:|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        notes = "; ".join(r.notes).replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {r.scenario} | {r.seed} | {r.phase} | {r.point or '-'} | {'yes' if r.converged else 'NO'} "
            f"| {r.duplicates} | {r.orphans}{f' (+{r.missing} missing)' if r.missing else ''} | {r.seconds:.0f}s "
            f"| {'ok' if r.ok else 'FAILED'} | {notes} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the runner


@dataclass
class Want:
    cp: int
    md: int
    version: str

    def total(self) -> int:
        return self.cp + self.md


class PhaseFailed(Exception):
    pass


class Runner:
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

    # -- worker deaths, triggers -----------------------------------------------------------
    async def tend(self, ctx: PhaseContext) -> None:
        """Restart what died (worker, Temporal); fire the phase's history trigger when due."""
        record = ctx.worker
        if record is not None and not procs.is_ours(record):
            await self.on_worker_death(ctx, record)
        if self.stack.record("temporal") is None:
            ctx.row.notes.append("Temporal server found dead: restarted")
            self.stack.up()
            ctx.worker = self.stack.record("worker")
        trig = ctx.phase.trigger
        if trig is not None and not ctx.trigger_fired and await self.trigger_due(ctx, trig):
            ctx.trigger_fired = True
            if trig.target == "worker":
                pid = self.stack.kill9("worker")
                ctx.row.notes.append(f"worker {pid} killed -9 by the runner")
                ctx.expected_deaths.add(pid or -1)
                if ctx.worker is not None:
                    await self.on_worker_death(ctx, ctx.worker)
            else:
                pid = self.stack.kill9("temporal")
                t0 = time.monotonic()
                await asyncio.sleep(SERVER_DOWN_SECONDS)
                self.stack.up()
                ctx.row.notes.append(
                    f"Temporal server {pid} killed -9, restarted on its SQLite file in {time.monotonic() - t0:.0f}s"
                )
                ctx.worker = self.stack.record("worker")

    async def on_worker_death(self, ctx: PhaseContext, record: procs.PidRecord) -> None:
        pid = record.pid
        text = self.stack.log_since("worker", ctx.worker_log_offset)
        planned = re.search(rf"capt-chaos: kill -9 of worker pid {pid} at (\S+)", text)
        if planned:
            ctx.kill_fired = planned.group(1)
            ctx.row.notes.append(f"worker {pid} killed itself at {planned.group(1)}")
        elif pid not in ctx.expected_deaths:
            self.worker_exits += 1
            ctx.row.notes.append(f"worker {pid} exited unexpectedly")
            ctx.unexpected_exits += 1
        # A new worker, without the kill point (the scenario's environment stays).
        ctx.worker_log_offset = self.stack.log_size("worker")
        self.stack.restart_worker(ctx.base_env)
        ctx.worker = self.stack.record("worker")
        if self.expedite:
            failed = await self.fail_attempts_of(f"{pid}@{self.hostname}")
            if failed:
                ctx.row.notes.append(f"{failed} started attempt(s) of the dead worker failed by id")

    async def fail_attempts_of(self, identity: str) -> int:
        """Fail, by activity id, the attempts a dead worker had started (retryably: Temporal retries
        them as their start-to-close timeout would, only sooner); reset every sticky queue."""
        client = await self.connect()
        failed = 0
        for _ in range(3):
            try:
                async for wf in client.list_workflows('ExecutionStatus = "Running"'):
                    desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
                    for pa in desc.raw_description.pending_activities:
                        if (
                            pa.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                            and pa.last_worker_identity == identity
                        ):
                            handle = client.get_async_activity_handle(
                                workflow_id=wf.id, run_id=wf.run_id, activity_id=pa.activity_id
                            )
                            with contextlib.suppress(RPCError):
                                await handle.fail(
                                    ApplicationError(f"worker {identity} was killed", type="WorkerKilled")
                                )
                                failed += 1
                    with contextlib.suppress(RPCError):
                        await client.workflow_service.reset_sticky_task_queue(
                            ResetStickyTaskQueueRequest(
                                namespace=client.namespace,
                                execution=WorkflowExecution(workflow_id=wf.id, run_id=wf.run_id),
                            )
                        )
                return failed
            except RPCError as err:
                log.warning("listing workflows to expedite retries failed (%s); again", err)
                await asyncio.sleep(1)
        return failed

    async def trigger_due(self, ctx: PhaseContext, trig: Trigger) -> bool:
        count = await self.count_events(ctx.spec, trig)
        if count is None:
            return False
        if ctx.trigger_base is None:
            ctx.trigger_base = count
        return count - ctx.trigger_base >= trig.nth

    def workflow_id(self, spec: ClusterSpec, which: str) -> str:
        return {
            "cluster": cluster_workflow_id(spec.namespace, spec.name),
            "infra": f"infra/{spec.namespace}/{spec.name}",
            "controlplane": control_plane_workflow_id(spec.namespace, spec.name),
            "md": deployment_workflow_id(spec.namespace, spec.name, spec.machine_deployments[0].name),
        }[which]

    async def count_events(self, spec: ClusterSpec, trig: Trigger) -> int | None:
        client = await self.connect()
        try:
            history = await client.get_workflow_handle(self.workflow_id(spec, trig.workflow)).fetch_history(
                rpc_timeout=timedelta(seconds=5)
            )
        except RPCError as err:
            if "not found" in str(err).lower():
                return 0
            return None
        except (TimeoutError, RuntimeError):
            return None
        wanted = EventType.Value(trig.event)
        return sum(1 for e in history.events if e.event_type == wanted)

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
    def audit(self, ctx: PhaseContext, baseline: audit.Inventory, want: Want | None) -> audit.AuditReport:
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
                desired = [audit.desired_from_plan(plan, machines)]
            report = audit.compare(baseline, now, desired)
            gone = sorted(baseline.keys() - now.keys())
            if (report.clean and not gone) or time.monotonic() >= deadline:
                if gone:
                    ctx.row.notes.append(f"baseline resources gone: {gone}")
                    ctx.row.orphans += len(gone)
                return report
            time.sleep(1)

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


@dataclass
class PhaseContext:
    spec: ClusterSpec
    phase: Phase
    row: Row
    base_env: dict[str, str]
    timeout: float
    worker: procs.PidRecord | None = None
    worker_log_offset: int = 0
    kill_fired: str | None = None
    trigger_fired: bool = False
    trigger_base: int | None = None
    expected_deaths: set[int] = field(default_factory=set)
    unexpected_exits: int = 0
    status: ClusterStatus | None = None


# --------------------------------------------------------------------------------------------
# main


def client_environ(cfg: DevConfig) -> None:
    """This process talks to the stack like `eval "$(capt dev env)"` would set it up."""
    for key in [k for k in os.environ if k.startswith(("AWS_", "TEMPORAL_")) or k in CHAOS_VARS]:
        del os.environ[key]
    os.environ.update(cfg.client_env())


async def run(args: argparse.Namespace) -> int:
    selected = [scenario(s) for s in args.scenario] if args.scenario else list(SCENARIOS)
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="capt-chaos-"))
    chaos = ChaosStack.on_free_ports(state_dir.resolve())
    client_environ(chaos.cfg)
    report_path = Path(args.report)
    points = sum(s.chaos_points for s in selected)
    print(
        f"chaos: seed {args.seed}, {len(selected)} scenario(s), {points} chaos point(s); stack in {state_dir} "
        f"(Temporal {chaos.cfg.temporal_address}, Web UI {chaos.cfg.ui_url})"
    )
    t0 = time.monotonic()
    rows: list[Row] = []
    sizes: list[histories.HistorySize] = []
    failed_setup = None
    runner = Runner(chaos, args.seed, expedite=not args.wait_timeouts, faults_spec=args.faults)
    try:
        chaos.up()
        chaos.sim_settings(SIM_SETTINGS)
        for sc in selected:
            rows += await runner.run_scenario(sc)
        client = await runner.connect()
        sizes = await histories.largest_histories(client)
    except Exception as err:  # noqa: BLE001
        log.exception("chaos run aborted")
        failed_setup = f"{type(err).__name__}: {err}"
    finally:
        elapsed = time.monotonic() - t0
        ok = failed_setup is None and all(r.ok for r in rows)
        if not args.keep_stack:
            strays = chaos.down()
            if strays:
                # Started for this run, owned by no service: `down` killed them; a leak to report.
                failed_setup = (failed_setup or "") + f" stray processes of this stack at down: {strays}"
        ok = ok and failed_setup is None
        text = render_report(args.seed, rows, sizes, elapsed, failed_setup, selected)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(text)
        print("\n" + text)
        print(f"report: {report_path}")
        if ok and not args.keep_stack and not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        elif not ok:
            print(f"logs of the stack: {state_dir}")
    if not ok:
        again = " ".join(f"--scenario {s}" for s in dict.fromkeys(r.scenario for r in rows if not r.ok))
        print(
            f"\nCHAOS FAILED with seed {args.seed}; re-run: python -m capt.dev.testkit.chaos --seed {args.seed} {again}"
        )
        return 1
    return 0


def render_report(
    seed: int,
    rows: list[Row],
    sizes: list[histories.HistorySize],
    elapsed: float,
    failed_setup: str | None,
    selected: list[Scenario],
) -> str:
    passed = sum(r.ok for r in rows)
    lines = [
        "# capt chaos report",
        "",
        f"seed {seed} · {len(selected)} scenario(s) · {len(rows)} row(s), {passed} ok, {len(rows) - passed} failed "
        f"· wall time {elapsed / 60:.1f} min",
        "",
    ]
    if failed_setup:
        lines += [f"**run aborted:** {failed_setup}", ""]
    lines += [render_rows(rows), ""]
    if sizes:
        lines += [
            f"## Largest history per workflow type (warning limits: {histories.WARN_EVENTS:,} events / 10 MB)",
            "",
            histories.render_table(sizes),
            "",
        ]
    lines += ["## Scenarios", ""]
    lines += [f"- **{s.id}**: {s.about}" for s in selected]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m capt.dev.testkit.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--report", default=str(DEFAULT_REPORT), help=f"markdown report [{DEFAULT_REPORT}]")
    parser.add_argument("--state-dir", help="the stack's state dir (default: a new temporary one)")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running at the end")
    parser.add_argument(
        "--wait-timeouts",
        action="store_true",
        help="let a killed worker's activities time out (90 s) instead of failing them by id at once",
    )
    parser.add_argument(
        "--faults",
        help="the AWS faults scenario's CAPT_AWS_FAULTS without the seed, e.g. 'lost=0.5,ops=all' "
        "[lost=0.1,throttle=0.3,ops=mutating]",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.id:<15} {s.chaos_points} point(s)  {s.about}")
        print(f"{sum(s.chaos_points for s in SCENARIOS)} chaos points in {len(SCENARIOS)} scenarios")
        return 0
    unknown = [s for s in args.scenario if s not in {x.id for x in SCENARIOS}]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; see --list")
    if args.faults:
        faults.FaultSpec.parse(args.faults)  # fail fast on a typo
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 100_000)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
