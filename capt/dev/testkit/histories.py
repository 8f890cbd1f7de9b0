"""Record the workflow histories that tests/workflows/test_replay.py replays (`make histories`).

    .venv/bin/python -m capt.dev.testkit.histories [--out tests/histories] [--keep-stack]

Starts its own local stack (`capt dev up` in a fresh state dir, on free ports; its worker is
versioned, as the stack's always is), then drives one small cluster through every path worth
replaying as a user would: `capt apply`, `capt scale`, `capt upgrade`, `capt delete cluster`,
an EC2 instance terminated with boto3 against the emulated endpoint (remediation), a machine of
the OnDelete deployment deleted with the deployment's `delete_machines` Update (CAPI's
`kubectl delete machine`). After each step it fetches the histories that step completed
(`fetch_history()`, one run each), checks that each replays on this checkout's workflow code,
and writes it to `<out>/<WorkflowType>/<path>.json`, one event per line. Long-running workflows
are recorded as snapshots: ClusterWorkflow/create.json is the cluster's history once it is Ready,
upgrade.json the same workflow's history once the upgrade is done, and so on.

The cluster (tests/histories/manifests/hist.yaml): 1 control plane (scaled to 3 and back), md-0
(RollingUpdate) and md-1 (OnDelete) with one worker each, a MachineHealthCheck on md-0.

Files the recorder does not write are left alone: a history recorded before a `workflow.patched`
change (docs/versioning.md) stays committed until the patch is retired. `<out>/index.json` lists
every file with its workflow id, run id, event count, size and the build that recorded it.

At the end it prints what it wrote and, per workflow type, the largest history it saw in the
namespace (events and bytes). The stack is stopped whatever happens (unless --keep-stack); its
state dir (logs) is kept when a step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

DEFAULT_OUT = ROOT / "tests" / "histories"
MANIFEST = DEFAULT_OUT / "manifests" / "hist.yaml"
BIN = Path(sys.executable).parent

NS = NAME = "hist"
MD_ROLLING, MD_ON_DELETE = "hist-md-0", "hist-md-1"
OLD, NEW = "v1.20.5", "v1.21.2"
CLUSTER_ID = f"cluster/{NS}/{NAME}"
CONTROL_PLANE_ID = f"controlplane/{NS}/{NAME}"
HEALTH_ID = f"health/{NS}/{NAME}"
INFRA_ID = f"infra/{NS}/{NAME}"
TEARDOWN_ID = f"teardown/{NS}/{NAME}"
# A cluster that has no workflow (never created, or its workflow's history is gone): `capt delete
# --region` runs the teardown on its own, as `cluster/<ns>/<name>`.
GONE = f"{NAME}-gone"
GONE_ID = f"cluster/{NS}/{GONE}"
# A second health check over the same cluster that continues-as-new after two 1-second intervals
# (the cluster's own does so after 100 intervals of 30 s).
HEALTH_CAN_ID = f"health/{NS}/{NAME}-continue-as-new"


def md_id(md: str) -> str:
    return f"md/{NS}/{NAME}/{md}"


def machine_id(machine: str) -> str:
    return f"machine/{NS}/{NAME}/{machine}"


class RecordingError(RuntimeError):
    pass


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# --- the local stack -----------------------------------------------------------------------------


class Stack:
    """`capt dev up|env|down` (as `python -m devstack`) in its own state dir, on free ports."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env: dict[str, str] = {}

    def dev(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
        return subprocess.run(
            [sys.executable, "-m", "capt.dev.stack", *args, "--state-dir", str(self.state_dir)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def up(self) -> None:
        grpc, ui, moto, sim_api, sim = free_ports(5)
        done = self.dev(
            "up",
            # Plaintext payloads: CI replays the committed histories without a key (the codec's
            # own tests replay encrypted ones).
            "--insecure-plaintext",
            *("--temporal-port", str(grpc), "--ui-port", str(ui), "--moto-port", str(moto)),
            *("--sim-api-port", str(sim_api), "--sim-port", str(sim)),
        )
        if done.returncode != 0:
            raise RecordingError(f"capt dev up failed:\n{done.stdout}{done.stderr}")
        log("local stack up: " + " | ".join(line.split(" [")[0] for line in done.stdout.splitlines()[:4]))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
        for line in self.dev("env").stdout.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'\"")
        self.env = env

    def down(self) -> list[str]:
        """Stop the stack; returns the lines of the strays `down` had to kill (processes the
        stack started that no service owned any more)."""
        done = self.dev("down", "--timeout", "10", timeout=120)
        log("local stack down" + ("" if done.returncode == 0 else f" (failed: {done.stderr.strip()})"))
        strays = [
            line
            for line in done.stdout.splitlines()
            if line.startswith("stray") and "not running" not in line
        ]
        for line in strays:
            log(f"LEAK: {line}")
        return strays

    def build_id(self) -> str:
        ready = json.loads((self.state_dir / "worker.ready").read_text())
        deployment = ready.get("deployment") or {}
        return f"{deployment.get('name', '')}.{deployment.get('build_id', '')}".strip(".") or "unversioned"


# --- the recording -------------------------------------------------------------------------------


@dataclass
class Recorded:
    path: str  # relative to the output dir
    workflow_type: str
    workflow_id: str
    run_id: str
    events: int
    bytes: int
    note: str


@dataclass
class Recorder:
    stack: Stack
    out: Path
    client: object = None  # temporalio.client.Client, connected in run()
    written: list[Recorded] = field(default_factory=list)

    # --- the user's commands ---------------------------------------------------------------
    def capt(self, *args: str, timeout: float = 900) -> str:
        t0 = time.monotonic()
        done = subprocess.run(
            [str(BIN / "capt"), *args],
            env=self.stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RecordingError(
                f"capt {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        log(f"capt {' '.join(args)} [{time.monotonic() - t0:.0f}s]")
        return done.stdout

    def describe(self) -> dict:
        return json.loads(self.capt_quiet("describe", "cluster", NAME, "-n", NS, "-o", "json"))

    def capt_quiet(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "capt"), *args],
            env=self.stack.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RecordingError(f"capt {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    async def wait_for(self, what: str, check: Callable[[dict], bool], timeout: float = 600) -> dict:
        t0 = time.monotonic()
        while True:
            state = await asyncio.to_thread(self.describe)
            if check(state):
                log(f"{what} [{time.monotonic() - t0:.0f}s]")
                return state
            if state["phase"] == "Failed":
                raise RecordingError(f"waiting for {what}: the cluster failed: {state['message']}")
            if time.monotonic() - t0 > timeout:
                raise RecordingError(f"timed out waiting for {what}: {state['phase']}: {state['message']}")
            await asyncio.sleep(2)

    async def wait_closed(self, workflow_id: str, run_id: str | None = None, timeout: float = 300) -> None:
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.result(follow_runs=False), timeout)

    # --- histories ----------------------------------------------------------------------------
    async def record(self, rel: str, workflow_id: str, note: str, run_id: str | None = None) -> Recorded:
        from temporalio.client import WorkflowHistory

        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        desc = await handle.describe()
        history = await self.client.get_workflow_handle(workflow_id, run_id=desc.run_id).fetch_history()
        await replay_or_fail(history, rel)
        text = history_json(history)
        # What is committed reads back as what was fetched.
        assert len(WorkflowHistory.from_json(workflow_id, text).events) == len(history.events)
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        item = Recorded(
            rel, desc.workflow_type, workflow_id, desc.run_id, len(history.events), len(text), note
        )
        self.written = [w for w in self.written if w.path != rel] + [item]
        log(f"  wrote {rel}: {item.events} events, {item.bytes} bytes ({desc.status.name.lower()})")
        return item

    async def runs(self, workflow_id: str) -> list:
        """Every run of a workflow id, oldest first."""
        found = [wf async for wf in self.client.list_workflows(f'WorkflowId = "{workflow_id}"')]
        return sorted(found, key=lambda wf: wf.start_time)

    # --- the scenario -------------------------------------------------------------------------
    async def run(self) -> None:
        from temporalio.client import Client
        from temporalio.contrib.pydantic import pydantic_data_converter

        self.client = await Client.connect(
            self.stack.env["TEMPORAL_ADDRESS"],
            namespace=self.stack.env.get("TEMPORAL_NAMESPACE", "default"),
            data_converter=pydantic_data_converter,
        )
        await self.create()
        await self.remediate()
        await self.health_continue_as_new()
        await self.upgrade()
        await self.scale()
        await self.delete()

    async def create(self) -> None:
        log("== create")
        self.capt("apply", "-f", str(MANIFEST), "--wait", "--timeout", "15m")
        infra_create = (await self.runs(INFRA_ID))[0]
        await self.wait_closed(INFRA_ID, infra_create.run_id)
        await self.record("ClusterWorkflow/create.json", CLUSTER_ID, "cluster created, Ready (snapshot)")
        await self.record(
            "InfrastructureWorkflow/create.json", INFRA_ID, "network + API LB created", infra_create.run_id
        )

    async def remediate(self) -> None:
        log("== remediation: terminate md-0's instance")
        import boto3

        state = self.describe()
        victim = next(m for m in state["machines"] if m["deployment"] == MD_ROLLING)
        ec2 = boto3.client(
            "ec2",
            endpoint_url=self.stack.env["AWS_ENDPOINT_URL"],
            region_name=self.stack.env["AWS_REGION"],
            aws_access_key_id=self.stack.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.stack.env["AWS_SECRET_ACCESS_KEY"],
        )
        ec2.terminate_instances(InstanceIds=[victim["instanceId"]])

        def replaced(s: dict) -> bool:
            md0 = [m for m in s["machines"] if m["deployment"] == MD_ROLLING]
            return (
                s["phase"] == "Ready"
                and victim["name"] not in {m["name"] for m in md0}
                and len(md0) == 1
                and md0[0]["nodeReady"]
            )

        await self.wait_for(f"{victim['name']} remediated and replaced", replaced, timeout=300)
        await self.wait_closed(machine_id(victim["name"]))
        # The health check notes the remediation finished once it no longer sees the machine.
        from capt.workflows.health import HealthCheckWorkflow

        health = self.client.get_workflow_handle(HEALTH_ID)
        t0 = time.monotonic()
        while True:
            status = await health.query(HealthCheckWorkflow.status)
            if any(e.kind == "finished" and e.machine == victim["name"] for e in status.events):
                break
            if time.monotonic() - t0 > 120:
                raise RecordingError(
                    f"the health check did not see the remediation of {victim['name']} finish"
                )
            await asyncio.sleep(2)
        await self.record(
            "HealthCheckWorkflow/remediation.json",
            HEALTH_ID,
            "detects a terminated instance, remediation done",
        )
        await self.record(
            "MachineWorkflow/remediated.json",
            machine_id(victim["name"]),
            "a worker whose instance was terminated, deleted by the deployment's remediation",
        )

    async def health_continue_as_new(self) -> None:
        log("== health check that continues as new")
        from temporalio.api.enums.v1 import EventType

        from capt.workflows.health import HealthCheckInput, HealthCheckWorkflow

        first = (await self.client.get_workflow_handle(HEALTH_ID).fetch_history()).events[0]
        assert first.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        started = first.workflow_execution_started_event_attributes
        (inp,) = await self.client.data_converter.decode(started.input.payloads, [HealthCheckInput])
        inp = inp.model_copy(update={"interval_seconds": 1.0, "max_iterations": 2, "carry": None})
        handle = await self.client.start_workflow(
            HealthCheckWorkflow.run, inp, id=HEALTH_CAN_ID, task_queue=started.task_queue.name
        )
        t0 = time.monotonic()
        while True:
            status = await self.client.get_workflow_handle(HEALTH_CAN_ID).query(HealthCheckWorkflow.status)
            if status.runs >= 2 and status.iterations >= 3:
                break
            if time.monotonic() - t0 > 120:
                raise RecordingError("the health check did not continue as new")
            await asyncio.sleep(0.5)
        await self.client.get_workflow_handle(HEALTH_CAN_ID).signal(HealthCheckWorkflow.stop)
        await self.wait_closed(HEALTH_CAN_ID)
        runs = await self.runs(HEALTH_CAN_ID)
        assert runs[0].run_id == handle.result_run_id
        await self.record(
            "HealthCheckWorkflow/continue-as-new.json",
            HEALTH_CAN_ID,
            "first run: two intervals, then continue-as-new",
            runs[0].run_id,
        )
        await self.record(
            "HealthCheckWorkflow/continued.json",
            HEALTH_CAN_ID,
            "second run: starts from the carried state",
            runs[1].run_id,
        )

    async def upgrade(self) -> None:
        log(f"== upgrade {OLD} -> {NEW}")
        before = self.describe()
        old_cp = next(m["name"] for m in before["machines"] if m["role"] == "control-plane")
        old_md0 = next(m["name"] for m in before["machines"] if m["deployment"] == MD_ROLLING)
        old_md1 = next(m["name"] for m in before["machines"] if m["deployment"] == MD_ON_DELETE)
        self.capt("upgrade", NAME, "--version", NEW, "-n", NS)

        def rolled(s: dict) -> bool:
            ms = s["machines"]
            return (
                s["controlPlane"]["version"] == NEW
                and all(m["version"] == NEW and m["nodeReady"] for m in ms if m["deployment"] != MD_ON_DELETE)
                and old_cp not in {m["name"] for m in ms}
                and old_md0 not in {m["name"] for m in ms}
                and old_md1 in {m["name"] for m in ms}
            )

        await self.wait_for("control plane and md-0 upgraded; md-1 (OnDelete) still old", rolled)
        from capt.workflows.machine_deployment import DeleteMachinesRequest, MachineDeploymentWorkflow

        await self.client.get_workflow_handle(md_id(MD_ON_DELETE)).execute_update(
            MachineDeploymentWorkflow.delete_machines, DeleteMachinesRequest(machines=(old_md1,))
        )
        log(f"deleted {old_md1} (delete_machines Update): OnDelete replaces it at {NEW}")
        await self.wait_for(
            "cluster Ready at the new version",
            lambda s: s["phase"] == "Ready" and all(m["version"] == NEW for m in s["machines"]),
        )
        for name in (old_cp, old_md0, old_md1):
            await self.wait_closed(machine_id(name))
        await self.record(
            "ClusterWorkflow/upgrade.json", CLUSTER_ID, f"... then upgraded to {NEW} (snapshot)"
        )
        await self.record(
            "ControlPlaneWorkflow/upgrade.json", CONTROL_PLANE_ID, "1 machine rolled (snapshot)"
        )
        await self.record(
            "MachineDeploymentWorkflow/rolling-update.json",
            md_id(MD_ROLLING),
            "remediation, then a RollingUpdate rollout (snapshot)",
        )
        await self.record(
            "MachineDeploymentWorkflow/on-delete.json",
            md_id(MD_ON_DELETE),
            "OnDelete: the old machine deleted by the user, replaced at the new revision (snapshot)",
        )
        await self.record(
            "MachineWorkflow/normal.json",
            machine_id(old_md0),
            "a worker created, Running, deleted by a rollout",
        )
        await self.record(
            "MachineWorkflow/control-plane.json",
            machine_id(old_cp),
            "the first control-plane machine (kubeadm init), deleted by the KCP rollout",
        )

    async def scale(self) -> None:
        log("== scale")
        for replicas in (3, 1):
            self.capt(
                "scale",
                "controlplane",
                NAME,
                "--replicas",
                str(replicas),
                "-n",
                NS,
                "--wait",
                "--timeout",
                "10m",
            )
            # Also here, whatever `--wait` waited for: the control plane's machines themselves.
            await self.wait_for(
                f"control plane at {replicas} Ready machines",
                lambda s, n=replicas: (
                    s["phase"] == "Ready"
                    and s["controlPlane"]["ready"] == s["controlPlane"]["replicas"] == n
                    and [m["nodeReady"] for m in s["machines"] if m["role"] == "control-plane"] == [True] * n
                ),
            )
        self.capt(
            "scale",
            "machinedeployment",
            NAME,
            MD_ROLLING,
            "--replicas",
            "2",
            "-n",
            NS,
            "--wait",
            "--timeout",
            "10m",
        )
        await self.record("ClusterWorkflow/scale.json", CLUSTER_ID, "... then scaled (snapshot)")
        await self.record(
            "ControlPlaneWorkflow/scale.json", CONTROL_PLANE_ID, "... then scaled 1 -> 3 -> 1 (snapshot)"
        )

    async def delete(self) -> None:
        log("== delete")
        self.capt("delete", "cluster", NAME, "-n", NS, "--wait", "--timeout", "10m")
        await self.wait_closed(CLUSTER_ID)
        await self.wait_closed(TEARDOWN_ID)
        await self.record("ClusterWorkflow/delete.json", CLUSTER_ID, "the whole life, ending with delete")
        await self.record(
            "ClusterTeardownWorkflow/child.json",
            TEARDOWN_ID,
            "the ClusterWorkflow's deletion: workload objects, owners, instances, the sweep, secrets, proof",
        )
        await self.record("ControlPlaneWorkflow/delete.json", CONTROL_PLANE_ID, "the whole life, deleted")
        await self.record(
            "MachineDeploymentWorkflow/delete.json", md_id(MD_ROLLING), "the whole life of md-0, deleted"
        )
        # Since teardown-v2 the InfrastructureWorkflow no longer deletes: its delete.json (recorded
        # before) stays committed for deletions that began on older builds.
        infra_runs = await self.runs(INFRA_ID)
        if len(infra_runs) > 1:
            await self.record(
                "InfrastructureWorkflow/delete.json",
                INFRA_ID,
                "network + API LB deleted",
                infra_runs[-1].run_id,
            )
        log("== delete a cluster that has no workflow (capt delete --region)")
        self.capt("delete", "cluster", GONE, "-n", NS, "--region", self.stack.env["AWS_REGION"], "--wait")
        await self.wait_closed(GONE_ID)
        await self.record(
            "ClusterTeardownWorkflow/standalone.json",
            GONE_ID,
            "capt delete of a cluster without a workflow: the teardown on its own, from its id only",
        )

    # --- summary ----------------------------------------------------------------------------
    async def largest_per_type(self) -> dict[str, tuple[int, int, str]]:
        """Per workflow type: (events, bytes, workflow id) of the largest run in the namespace."""
        largest: dict[str, tuple[int, int, str]] = {}
        async for wf in self.client.list_workflows():
            history = await self.client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            size = (len(history.events), len(history_json(history)), wf.id)
            if size > largest.get(wf.workflow_type, (0, 0, "")):
                largest[wf.workflow_type] = size
        return largest


def history_json(history) -> str:
    """The history as `WorkflowHistory.to_json()` has it, one event per line (small diffs, no
    indentation bytes); `WorkflowHistory.from_json` reads it back."""
    events = json.loads(history.to_json())["events"]
    return '{"events": [\n' + ",\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n]}\n"


async def replay_or_fail(history, what: str) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from capt.worker import registered

    workflows, _ = registered()
    result = await Replayer(workflows=workflows, data_converter=pydantic_data_converter).replay_workflow(
        history, raise_on_replay_failure=False
    )
    if result.replay_failure is not None:
        raise RecordingError(f"{what}: a fresh recording does not replay: {result.replay_failure}")


def write_index(out: Path, written: list[Recorded], build: str) -> Path:
    """index.json: what each history file is; entries of files this run did not write (kept
    pre-patch histories) stay as they were."""
    path = out / "index.json"
    index = json.loads(path.read_text()) if path.exists() else {}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    for w in written:
        index[w.path] = {
            "workflow_type": w.workflow_type,
            "workflow_id": w.workflow_id,
            "events": w.events,
            "bytes": w.bytes,
            "recorded": now,
            "build": build,
            "path": w.note,
        }
    index = {k: v for k, v in sorted(index.items()) if (out / k).exists()}
    path.write_text(json.dumps(index, indent=2) + "\n")
    return path


async def amain(out: Path, keep_stack: bool) -> int:
    t0 = time.monotonic()
    state_dir = Path(tempfile.mkdtemp(prefix="capt-histories-"))
    stack = Stack(state_dir)
    recorder = Recorder(stack, out)
    failed = True
    try:
        stack.up()
        build = stack.build_id()
        log(f"worker version {build}")
        await recorder.run()
        largest = await recorder.largest_per_type()
        failed = False
    finally:
        if failed:
            log(f"FAILED; the stack's logs are in {state_dir}")
        if not keep_stack:
            if stack.down():
                failed = True  # the recording is fine, but the stack leaked a process: say so
            if not failed:
                shutil.rmtree(state_dir, ignore_errors=True)
    index = write_index(out, recorder.written, build)
    shown = index.relative_to(ROOT) if index.is_relative_to(ROOT) else index
    print(f"\nwrote {len(recorder.written)} histories under {out} (index: {shown}):")
    for w in sorted(recorder.written, key=lambda w: w.path):
        print(f"  {w.path:<48} {w.events:>5} events {w.bytes:>9,} bytes")
    total = sum(p.stat().st_size for p in out.rglob("*.json"))
    print(f"  total of every committed history file: {total:,} bytes")
    print("\nlargest history per workflow type in the namespace:")
    for wf_type, (events, size, wf_id) in sorted(largest.items()):
        print(f"  {wf_type:<28} {events:>5} events {size:>9,} bytes  {wf_id}")
    print(f"\nmake histories: {time.monotonic() - t0:.0f}s")
    if failed:
        print("error: the local stack left processes running (killed; see LEAK above)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m capt.dev.testkit.histories", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep-stack", action="store_true", help="leave the local stack running (debugging)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args.out.resolve(), args.keep_stack))
    except RecordingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
