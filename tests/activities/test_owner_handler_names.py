"""The health activities reach the owners' `status` query and `remediate` Update by name, so that
activities never import workflow code (import-linter). These names must stay the workflows'
handler names: a renamed handler would make every health round fail at run time."""

from __future__ import annotations

from temporalio.workflow import _Definition

from capt.activities import owners as health
from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
from capt.workflows.machine.workflow import MachineWorkflow
from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow


def test_the_owners_answer_the_names_the_health_activities_call() -> None:
    for cls in (ControlPlaneWorkflow, MachineDeploymentWorkflow):
        definition = _Definition.must_from_class(cls)
        assert health.STATUS in definition.queries, cls.__name__
        assert health.REMEDIATE in definition.updates, cls.__name__
    assert health.STATUS in _Definition.must_from_class(MachineWorkflow).queries


def test_the_answer_types_are_the_ones_the_owners_return() -> None:
    cp_ret = ControlPlaneWorkflow.remediate.__annotations__["return"]
    md_ret = MachineDeploymentWorkflow.remediate.__annotations__["return"]
    call = dict(owner_workflow_id="x", machines=("m",), reason="r", update_id="u")
    assert (
        health._remediation_update(health.RemediationCall(owner="control-plane", **call))[0].__name__
        == cp_ret
    )
    assert (
        health._remediation_update(health.RemediationCall(owner="machine-deployment", **call))[0].__name__
        == md_ret
    )
