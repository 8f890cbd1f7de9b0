"""HealthCheckWorkflow's `annotate` Update on the time-skipping server: a machine annotated
`cluster.x-k8s.io/remediate-machine` is replaced although healthy; one annotated
`cluster.x-k8s.io/skip-remediation` is left alone although its instance is gone (CAPI)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from capt.spec.models import HealthCheckSpec
from capt.workflows.health.models import MachineAnnotations
from capt.workflows.health.workflow import HealthCheckWorkflow
from tests.support.context import running_worker
from tests.workflows.test_health import WORKFLOWS, Cluster, events_for, settled


async def test_annotations_mark_and_skip_machines(time_skipping_env, task_queue):
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 3)
        await c.start_health(HealthCheckSpec(name="workers", machine_deployments=("md-0",)))
        before = await c.wait_md("md-0", settled(3), "md-0 ready")
        await c.wait_health(lambda s: s.check("workers").healthy == 3, "3 healthy")
        marked, skipped = before.machines[0].name, before.machines[1].name

        # An invalid request is refused before it enters history.
        with pytest.raises(WorkflowUpdateFailedError):
            await c.health().execute_update(
                HealthCheckWorkflow.annotate, MachineAnnotations(machine=marked, annotations={"bad key!": ""})
            )

        status = await c.health().execute_update(
            HealthCheckWorkflow.annotate,
            MachineAnnotations(machine=skipped, annotations={"cluster.x-k8s.io/skip-remediation": ""}),
        )
        assert status.annotations == {skipped: {"cluster.x-k8s.io/skip-remediation": ""}}
        c.cloud.vanish(skipped, await c.now())
        await c.health().execute_update(
            HealthCheckWorkflow.annotate,
            MachineAnnotations(machine=marked, annotations={"cluster.x-k8s.io/remediate-machine": ""}),
        )

        detected = await c.wait_event("detected", marked, step=2)
        assert "HasRemediateMachineAnnotation" in detected.message
        await c.wait_event("accepted", marked, step=2)
        await c.wait_event("finished", marked)
        status = await c.health_status()
        # The marked machine is gone, and its annotations with it.
        assert marked not in status.annotations
        report = status.check("workers")
        assert [s.split(":")[0] for s in report.skipped] == [skipped]
        assert skipped not in {m.machine for m in report.machines}
        kinds = events_for(status, skipped)
        assert "skipped" in kinds and "detected" not in kinds and "accepted" not in kinds
        md = await c.md_status("md-0")
        assert skipped in {m.name for m in md.machines}  # never remediated

        # Removing the annotation makes it a target again: then it is replaced.
        await c.health().execute_update(
            HealthCheckWorkflow.annotate,
            MachineAnnotations(machine=skipped, annotations={"cluster.x-k8s.io/skip-remediation": None}),
        )
        await c.wait_event("accepted", skipped, step=2)
