"""Activities of the HealthCheckWorkflow that talk to *other workflows* through the Temporal client.

A workflow cannot query another workflow, nor send it an Update: only signals and cancellation
cross between workflows. The health workflow needs both — each interval it must know which
machines the control plane and the machine deployments own (their `status` queries), and it
asks an owner to remediate with the owner's `remediate` Update, whose answer (accepted, or
refused and why) it must see. So both go through these two activities, which use the worker's
own client (`activity.client()`), the usual way to query or update from a workflow.

Why query rather than have owners push their machine set with a signal on every change: the
owners already publish everything in their `status` query, so nothing in the owner workflows
changes, and a query is not written to anyone's history — pushing would add one signal event
per machine change to the health workflow's history *and* to the owner's. The cost is one query
per owner per interval (served by the owner's cached workflow state on its worker), plus one
query per *booting* machine the first time it is seen (for its creation time, which the owners'
status does not carry): in steady state, no machine query at all.

The owner interface lives in one small adapter below (`_control_plane_snapshot`,
`_deployment_snapshot`, `_remediation_update`): the rest of the health code sees only
`OwnerSnapshot` / `WatchedMachine` and `RemediationOutcome`.

Idempotency: `request_remediation` executes the Update with an id derived from the request
(`update_id`), so a retried activity attempt attaches to the same Update instead of asking
twice (Temporal deduplicates Updates by id within an owner's run). A refused request (the
validator rejects a machine that is no longer the owner's) is an answer, not an error.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from capt.contracts.ids import control_plane_workflow_id, deployment_workflow_id, machine_id
from capt.contracts.machines import MachineStatus
from capt.contracts.owners import (
    ControlPlaneRemediationAnswer,
    ControlPlaneRemediationRequest,
    ControlPlaneStatus,
    DeploymentRemediationAnswer,
    DeploymentRemediationRequest,
    DeploymentStatus,
)
from capt.rules.base import Frozen
from capt.rules.intstr import IntOrPercent

OwnerKind = Literal["control-plane", "machine-deployment"]
# Phases in which a machine has not had a Ready node yet (nodeStartupTimeout applies).
BOOTING_PHASES = ("Pending", "Provisioning", "Provisioned")


class WatchedMachine(Frozen):
    """A machine as the health check sees it, whoever owns it."""

    name: str
    owner: OwnerKind
    owner_name: str  # the control plane's or the deployment's name
    role: Literal["control-plane", "worker"]
    phase: str
    instance_id: str | None = None
    node_name: str | None = None
    node_ready: bool = False
    deleting: bool = False
    message: str = ""
    # From the machine's own status query, fetched once for machines still booting.
    created_at: dt.datetime | None = None
    # The owner still marks it unhealthy (from an earlier remediation request).
    marked_unhealthy: bool = False
    # The owner's view: made from its current revision (None: the owner did not say).
    up_to_date: bool | None = None
    # The machine's annotations. capt's machines are not manifest objects and their owners'
    # status carries none: the health workflow keeps those set through its `annotate` Update and
    # adds them here before judging (capt/workflows/health/workflow.py).
    annotations: tuple[tuple[str, str], ...] = ()

    def annotation(self, key: str) -> str | None:
        return next((v for k, v in self.annotations if k == key), None)

    @property
    def booting(self) -> bool:
        return self.phase in BOOTING_PHASES


class OwnerSnapshot(Frozen):
    kind: OwnerKind
    name: str
    workflow_id: str
    found: bool  # False: the owner workflow does not exist (yet) — its machines are unknown
    # The control plane: initialized; a deployment: whether it knows its control plane is.
    control_plane_initialized: bool | None = None
    desired_replicas: int = 0
    machines: tuple[WatchedMachine, ...] = ()
    detail: str = ""


class OwnersRequest(Frozen):
    namespace: str
    cluster: str
    control_plane: bool = True
    deployments: tuple[str, ...] = ()
    # Machines whose creation time the caller already knows: not queried again.
    created_known: tuple[str, ...] = ()


class OwnersResult(Frozen):
    owners: tuple[OwnerSnapshot, ...] = ()
    machine_queries: int = 0  # how many machine status queries this call made

    def owner(self, kind: OwnerKind, name: str | None = None) -> OwnerSnapshot | None:
        return next((o for o in self.owners if o.kind == kind and (name is None or o.name == name)), None)


class RemediationCall(Frozen):
    owner: OwnerKind
    owner_workflow_id: str
    machines: tuple[str, ...]  # control plane: exactly one
    reason: str
    # Control plane: every machine of it the check finds unhealthy (quorum is judged on all).
    unhealthy_machines: tuple[str, ...] = ()
    max_in_flight: IntOrPercent | None = None
    update_id: str


class HealthyAgainCall(Frozen):
    """Machines an owner still marks unhealthy that the health check now finds healthy."""

    owner_workflow_id: str
    machines: tuple[str, ...]


class RemediationOutcome(Frozen):
    accepted: bool
    remediated: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    reason: str = ""
    # The owner rejected the request outright (validator) or is not running.
    rejected: bool = False


# --------------------------------------------------------------------------------------------
# the owner adapter


def _control_plane_snapshot(wf_id: str, s: ControlPlaneStatus) -> OwnerSnapshot:
    return OwnerSnapshot(
        kind="control-plane",
        name=s.name,
        workflow_id=wf_id,
        found=True,
        control_plane_initialized=s.initialized,
        desired_replicas=s.desired_replicas,
        machines=tuple(
            WatchedMachine(
                name=m.name,
                owner="control-plane",
                owner_name=s.name,
                role="control-plane",
                phase=m.phase,
                instance_id=m.instance_id,
                node_name=m.node_name,
                node_ready=m.node_ready,
                deleting=m.phase in ("Deleting", "Deleted"),
                message=m.message,
                marked_unhealthy=m.unhealthy,
                up_to_date=m.up_to_date,
            )
            for m in s.machines
        ),
    )


def _deployment_snapshot(wf_id: str, s: DeploymentStatus) -> OwnerSnapshot:
    return OwnerSnapshot(
        kind="machine-deployment",
        name=s.name,
        workflow_id=wf_id,
        found=True,
        control_plane_initialized=s.control_plane_initialized,
        desired_replicas=s.desired_replicas,
        machines=tuple(
            WatchedMachine(
                name=m.name,
                owner="machine-deployment",
                owner_name=s.name,
                role="worker",
                phase=m.phase,
                instance_id=m.instance_id,
                node_name=m.node_name,
                node_ready=m.node_ready,
                deleting=m.deleting or m.phase in ("Deleting", "Deleted"),
                message=m.message,
                marked_unhealthy=m.unhealthy,
                up_to_date=m.up_to_date,
            )
            for m in s.machines
        ),
    )


# The owners' query and Update, called by name (the workflow method names, which never change:
# docs/versioning.md) so that activities never import workflow code.
STATUS = "status"
REMEDIATE = "remediate"


def _remediation_update(call: RemediationCall):
    """(answer type, argument) of the owner's remediation Update."""
    if call.owner == "control-plane":
        return (
            ControlPlaneRemediationAnswer,
            ControlPlaneRemediationRequest(
                machine=call.machines[0],
                reason=call.reason,
                unhealthy_machines=call.unhealthy_machines,
            ),
        )
    return (
        DeploymentRemediationAnswer,
        DeploymentRemediationRequest(
            machines=call.machines, reason=call.reason, max_in_flight=call.max_in_flight
        ),
    )


def _outcome(
    call: RemediationCall, answer: ControlPlaneRemediationAnswer | DeploymentRemediationAnswer
) -> RemediationOutcome:
    if not isinstance(answer, ControlPlaneRemediationAnswer):
        return RemediationOutcome(
            accepted=answer.accepted,
            remediated=answer.remediated,
            deferred=answer.deferred,
            skipped=answer.skipped,
            reason=answer.reason,
        )
    machine = (answer.machine or call.machines[0],)
    return RemediationOutcome(
        accepted=answer.accepted,
        remediated=machine if answer.accepted else (),
        deferred=() if answer.accepted else machine,
        reason=answer.reason,
    )


# --------------------------------------------------------------------------------------------
# activities


def _not_found(err: BaseException) -> bool:
    return isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND


@activity.defn
async def query_machine_owners(req: OwnersRequest) -> OwnersResult:
    """The machines of the cluster's control plane and of the named deployments, through their
    `status` queries; creation times of still-booting machines from their own status query."""
    client = activity.client()
    owners: list[OwnerSnapshot] = []
    if req.control_plane:
        wf_id = control_plane_workflow_id(req.namespace, req.cluster)
        try:
            status = await client.get_workflow_handle(wf_id).query(STATUS, result_type=ControlPlaneStatus)
            owners.append(_control_plane_snapshot(wf_id, status))
        except RPCError as err:
            if not _not_found(err):
                raise
            owners.append(OwnerSnapshot(kind="control-plane", name="", workflow_id=wf_id, found=False))
    for name in req.deployments:
        wf_id = deployment_workflow_id(req.namespace, req.cluster, name)
        try:
            status = await client.get_workflow_handle(wf_id).query(STATUS, result_type=DeploymentStatus)
            owners.append(_deployment_snapshot(wf_id, status))
        except RPCError as err:
            if not _not_found(err):
                raise
            owners.append(OwnerSnapshot(kind="machine-deployment", name=name, workflow_id=wf_id, found=False))

    # Creation time, for nodeStartupTimeout: only machines still booting, and only once.
    known = set(req.created_known)
    queries = 0
    result: list[OwnerSnapshot] = []
    for owner in owners:
        machines = []
        for m in owner.machines:
            if m.booting and m.name not in known:
                queries += 1
                try:
                    ms = await client.get_workflow_handle(
                        machine_id(req.namespace, req.cluster, m.name)
                    ).query(STATUS, result_type=MachineStatus)
                    m = m.model_copy(update={"created_at": ms.created_at})
                except RPCError as err:
                    if not _not_found(err):
                        raise
            machines.append(m)
        result.append(owner.model_copy(update={"machines": tuple(machines)}))
    return OwnersResult(owners=tuple(result), machine_queries=queries)


@activity.defn
async def request_remediation(call: RemediationCall) -> RemediationOutcome:
    """Ask an owner to remediate machines with its `remediate` Update and return its answer."""
    answer_type, arg = _remediation_update(call)
    handle = activity.client().get_workflow_handle(call.owner_workflow_id)
    try:
        answer = await handle.execute_update(REMEDIATE, arg, id=call.update_id, result_type=answer_type)
    except WorkflowUpdateFailedError as err:
        # The owner's validator (or handler) refused: e.g. the machine is already gone, or the
        # owner is being deleted. Nothing happened; the health check sees it next interval.
        return RemediationOutcome(
            accepted=False, deferred=call.machines, reason=str(err.cause or err), rejected=True
        )
    except RPCError as err:
        if not _not_found(err):
            raise
        return RemediationOutcome(
            accepted=False,
            deferred=call.machines,
            reason=f"{call.owner_workflow_id} is not running",
            rejected=True,
        )
    return _outcome(call, answer)


@activity.defn
async def report_healthy_again(call: HealthyAgainCall) -> None:
    """Signal the owner (`machines_healthy`) so it drops its unhealthy marks. An owner that is not
    running has no marks to drop."""
    handle = activity.client().get_workflow_handle(call.owner_workflow_id)
    try:
        await handle.signal("machines_healthy", list(call.machines))
    except RPCError as err:
        if not _not_found(err):
            raise


HEALTH_ACTIVITIES = [query_machine_owners, request_remediation, report_healthy_again]
