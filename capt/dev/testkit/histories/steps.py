"""The recorded scenario: the user's commands on one small cluster, and which history is written
after which step (a mixin of `Recorder`)."""

from __future__ import annotations

import asyncio
import time

from capt.dev.testkit.histories.common import (
    CLUSTER_ID,
    CONTROL_PLANE_ID,
    GONE,
    GONE_ID,
    HEALTH_CAN_ID,
    HEALTH_ID,
    INFRA_ID,
    MANIFEST,
    MD_ON_DELETE,
    MD_ROLLING,
    NAME,
    NEW,
    NS,
    OLD,
    TEARDOWN_ID,
    RecordingError,
    log,
    machine_id,
    md_id,
)


class ScenarioMixin:
    """The scenario of `Recorder`."""

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
        from capt.workflows.health.workflow import HealthCheckWorkflow

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

        from capt.workflows.health.models import HealthCheckInput
        from capt.workflows.health.workflow import HealthCheckWorkflow

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
        from capt.workflows.machinedeployment.models import DeleteMachinesRequest
        from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow

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
