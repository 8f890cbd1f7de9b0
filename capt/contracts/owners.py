"""The owners' interface: what the ControlPlaneWorkflow and the MachineDeploymentWorkflow answer
to their `status` query and take and return in their `remediate` Update.

The health check's activity (capt/activities/owners.py) and the client read these without
importing the workflows. The class names are free to change (payloads carry no class names);
field names, defaults and model_config are a payload contract (docs/versioning.md).
"""

from __future__ import annotations

from pydantic import BaseModel

from capt.rules.intstr import IntOrPercent

# --- the control plane (KubeadmControlPlane) ---------------------------------------------------


class ControlPlaneRemediationRequest(BaseModel):
    machine: str
    reason: str = ""
    # Every machine of this control plane the health check currently finds unhealthy (the
    # target included): etcd quorum is judged counting all of them, as CAPI does.
    unhealthy_machines: tuple[str, ...] = ()


class ControlPlaneRemediationAnswer(BaseModel):
    accepted: bool
    reason: str
    # The machine the decision was about: CAPI's order may pick another unhealthy machine than
    # the one the request named ("" in answers recorded before).
    machine: str = ""


class ControlPlaneMachine(BaseModel):
    name: str
    phase: str
    availability_zone: str | None
    instance_id: str | None
    node_name: str | None
    node_ready: bool
    version: str
    up_to_date: bool
    unhealthy: bool
    message: str


class ControlPlaneStatus(BaseModel):
    name: str
    desired_replicas: int
    replicas: int
    ready_replicas: int
    up_to_date_replicas: int
    version: str
    initialized: bool
    ready: bool  # initialized, every desired machine up to date and Ready, nothing to do
    paused: bool = False
    operation: str
    last_refusal: str
    last_remediation: str = ""
    machines: list[ControlPlaneMachine]


# --- a machine deployment -----------------------------------------------------------------------


class DeploymentRemediationRequest(BaseModel):
    """From the health workflow: these machines are unhealthy. `machine` is a shorthand for one."""

    machines: tuple[str, ...] = ()
    machine: str | None = None
    reason: str = ""
    max_in_flight: IntOrPercent | None = None

    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.machines, *([self.machine] if self.machine else [])]))


class DeploymentRemediationAnswer(BaseModel):
    accepted: bool  # at least one machine is being replaced
    remediated: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()  # maxInFlight reached: ask again later
    skipped: tuple[str, ...] = ()  # old revision: the rollout replaces them
    reason: str = ""


class Condition(BaseModel):
    type: str
    status: bool
    reason: str
    message: str = ""


class DeploymentMachine(BaseModel):
    name: str
    phase: str
    revision: str
    up_to_date: bool
    availability_zone: str | None
    instance_id: str | None
    node_name: str | None
    node_ready: bool
    available: bool
    unhealthy: bool
    deleting: bool
    message: str


class RevisionSummary(BaseModel):
    number: int
    revision: str
    version: str
    machine_template: str
    bootstrap_template: str
    failure_domain: str | None
    current: bool
    machines: int


class DeploymentStatus(BaseModel):
    name: str
    cluster: str
    phase: str  # WaitingForControlPlane, ScalingUp, ScalingDown, Running, Deleting, Deleted
    desired_replicas: int
    replicas: int  # machines that exist, deleting ones included
    ready_replicas: int
    available_replicas: int
    up_to_date_replicas: int
    unavailable_replicas: int
    revision: str
    version: str
    paused: bool  # the deployment's own spec.paused: rollouts wait, scaling applies
    cluster_paused: bool  # the whole cluster is paused: nothing is created or deleted
    strategy: str
    control_plane_initialized: bool
    control_plane_version: str | None
    conditions: list[Condition]
    revisions: list[RevisionSummary]
    machines: list[DeploymentMachine]
    operation: str
    last_remediation: str

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
