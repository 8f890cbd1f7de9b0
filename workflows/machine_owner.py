"""Bookkeeping shared by the workflows that own MachineWorkflows (control plane, deployments).

An owner starts each machine as a child workflow with `ParentClosePolicy.ABANDON` — machines
must outlive the owner's run, because the owner continues-as-new to keep its history small
and a closing parent would otherwise take its children with it. The machines report every
phase change back with the `machine_changed` signal, and the owner asks one to go with the
machine's `request_delete` signal. `MachineBook` is the owner's record of all that; it is
plain data so it can be carried across continue-as-new.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from workflows.machine import MachineWorkflow
    from workflows.machine_models import MachineInput, MachineStatus, machine_workflow_id
    from workflows.rollout import MachineView

# CAPI's random machine-name suffix alphabet (no vowels: no accidental words).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class OwnedMachine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: MachineStatus
    workflow_id: str
    created: float  # workflow-clock seconds
    delete_sent: bool = False
    marked_for_deletion: bool = False
    unhealthy: bool = False
    unhealthy_reason: str = ""

    def view(self) -> MachineView:
        s = self.status
        ready_since = s.running_at.timestamp() if (s.node_ready and s.running_at) else None
        return MachineView(
            name=s.name,
            revision=s.revision,
            created=self.created,
            failure_domain=s.failure_domain,
            node_name=s.node_name,
            ready_since=ready_since,
            deleting=self.delete_sent or s.phase in ("Deleting", "Deleted"),
            marked_for_deletion=self.marked_for_deletion,
            healthy=not self.unhealthy and s.phase != "Failed",
            # capt does not watch etcd and the static pods separately: a machine the health
            # check found unhealthy (instance gone, node NotReady) is presumed to take its etcd
            # member and control-plane pods down with it — the conservative reading for quorum.
            components_healthy=not self.unhealthy,
            etcd_member_healthy=not self.unhealthy,
        )


class MachineBook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    machines: dict[str, OwnedMachine] = {}
    # Names of machines that finished deleting (kept short: last 50), for describe.
    deleted: list[str] = []

    def live(self) -> list[OwnedMachine]:
        return [m for m in self.machines.values() if m.status.phase != "Deleted"]

    def views(self) -> list[MachineView]:
        return [m.view() for m in self.live()]

    def apply(self, status: MachineStatus) -> bool:
        """Record a machine's report. Returns True if it changed anything."""
        owned = self.machines.get(status.name)
        if owned is None or owned.status == status:
            return False
        owned.status = status
        if status.phase == "Deleted":
            del self.machines[status.name]
            self.deleted = (self.deleted + [status.name])[-50:]
        return True


def new_machine_name(prefix: str) -> str:
    """`<prefix>-<5 random chars>`; `workflow.random()` is replay-safe."""
    rnd = workflow.random()
    return f"{prefix}-" + "".join(rnd.choice(_SUFFIX_ALPHABET) for _ in range(5))


def revision_of(*parts: BaseModel | str | None) -> str:
    """A short, stable hash of what machines are made from (template, version, config)."""
    digest = hashlib.sha256()
    for part in parts:
        text = part.model_dump_json() if isinstance(part, BaseModel) else str(part)
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:10]


async def start_machine(book: MachineBook, inp: MachineInput) -> None:
    wf_id = machine_workflow_id(inp.cluster, inp.name)
    book.machines[inp.name] = OwnedMachine(
        status=MachineStatus(
            name=inp.name,
            role=inp.role,
            revision=inp.revision,
            version=inp.version,
            deployment=inp.deployment,
            failure_domain=inp.failure_domain,
            created_at=workflow.now(),
        ),
        workflow_id=wf_id,
        created=workflow.now().timestamp(),
    )
    await workflow.start_child_workflow(
        MachineWorkflow.run,
        inp,
        id=wf_id,
        parent_close_policy=ParentClosePolicy.ABANDON,
        static_summary=f"{inp.role} machine {inp.name} ({inp.failure_domain or 'any AZ'}, {inp.version})",
    )


async def delete_machine(book: MachineBook, name: str) -> None:
    owned = book.machines.get(name)
    if owned is None or owned.delete_sent:
        return
    owned.delete_sent = True
    await workflow.get_external_workflow_handle(owned.workflow_id).signal(MachineWorkflow.request_delete)
