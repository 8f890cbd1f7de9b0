"""A MachineHealthCheck with a remediation template (spec.remediationTemplate / v1beta2
spec.remediation.templateRef) on the time-skipping server: the unhealthy machine gets an external
remediation request in the health workflow's status, the owner is never asked, the machine is not
deleted; the request is withdrawn once the machine is healthy again."""

from __future__ import annotations

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from capt.spec.models import HealthCheckSpec, RemediationTemplateRef
from capt.workflows.health.models import PATCH_EXTERNAL_REMEDIATION
from capt.workflows.health.workflow import HealthCheckWorkflow
from tests.support.context import running_worker
from tests.workflows.test_health import NOT_READY_120S, WORKFLOWS, Cluster, events_for, settled

TEMPLATE = RemediationTemplateRef(api_version="remediation.example.com/v1", kind="TicketTemplate", name="ops")


async def test_remediation_template_records_a_request_and_keeps_the_machine(time_skipping_env, task_queue):
    c = Cluster(time_skipping_env, task_queue)
    async with running_worker(c.env, task_queue, WORKFLOWS, c.activities()):
        await c.start_deployment("md-0", 2)
        await c.start_health(
            HealthCheckSpec(
                name="workers",
                machine_deployments=("md-0",),
                unhealthy_conditions=NOT_READY_120S,
                remediation_template=TEMPLATE,
            )
        )
        before = await c.wait_md("md-0", settled(2), "md-0 ready")
        await c.wait_health(lambda s: s.check("workers").healthy == 2, "2 healthy")
        victim = before.machines[0].name
        c.fakes.node_not_ready(victim, await c.now())

        event = await c.wait_event("external-remediation", victim, step=5)
        assert "TicketTemplate/ops (remediation.example.com/v1)" in event.message
        status = await c.health_status()
        (req,) = status.external_remediations
        assert (req.machine, req.check, req.template) == (
            victim,
            "workers",
            "TicketTemplate/ops (remediation.example.com/v1)",
        )
        assert "UnhealthyNodeCondition" in req.reason
        report = status.check("workers")
        assert report.external == [victim] and report.in_flight == []
        assert next(m for m in report.machines if m.machine == victim).remediation == "external"

        # Some intervals later: still one request, the machine still there, the owner never asked.
        await c.env.sleep(120)
        status = await c.health_status()
        assert events_for(status, victim).count("external-remediation") == 1
        md = await c.md_status("md-0")
        assert victim in {m.name for m in md.machines} and md.last_remediation == ""

        # Healthy again: the request is withdrawn.
        c.fakes.node_ready_again(victim)
        await c.wait_event("external-remediation-withdrawn", victim, step=5)
        assert (await c.health_status()).external_remediations == []

        history = await c.health().fetch_history()
        scheduled = {
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        assert "request_remediation" not in scheduled
        markers = [
            str(e.marker_recorded_event_attributes)
            for e in history.events
            if e.HasField("marker_recorded_event_attributes")
        ]
        assert any(PATCH_EXTERNAL_REMEDIATION in m for m in markers)
        await Replayer(
            workflows=[HealthCheckWorkflow], data_converter=pydantic_data_converter
        ).replay_workflow(history)
