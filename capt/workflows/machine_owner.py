"""Bookkeeping shared by the workflows that own MachineWorkflows (control plane, deployments).

An owner starts each machine as a child workflow with `ParentClosePolicy.ABANDON` — machines
must outlive the owner's run, because the owner continues-as-new to keep its history small
and a closing parent would otherwise take its children with it. The machines report every
phase change back with the `machine_changed` signal, and the owner asks one to go with the
machine's `request_delete` signal. `MachineBook` is the owner's record of all that; it is
plain data so it can be carried across continue-as-new.

Machines that close without a word (patched `owners-see-closed-machines`). A machine workflow
that failed, was terminated or timed out sends nothing, and an ABANDON child of an earlier run
reports nothing to this one. So owners look: `watch_machines` describes, in one activity call,
the machine workflows they have not heard from for `SILENT_SECONDS` (at most every
`CHECK_EVERY_SECONDS`), and books each closed one `Failed` with "machine workflow <status>:
<reason>". Deleting such a machine (`delete_machine`) starts its workflow id again in delete
mode (`MachineInput.mode="delete"`), which only removes what the machine left; a signal that
finds no workflow does the same. Waiting for machines to go (`delete_all`) polls every
`DELETE_POLL` and describes every machine still booked, so a machine that dies while deleting
is restarted instead of waited for forever; after `MAX_DELETE_RESTARTS` the owner forgets it
(listed in `MachineBook.abandoned`) so that the owner can finish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import timedelta

from pydantic import BaseModel, ConfigDict
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from capt.rules.base import Frozen

with workflow.unsafe.imports_passed_through():
    from capt.activities import temporal_tree
    from capt.contracts.machines import MachineStatus
    from capt.rules.machines import MachineView
    from capt.spec.models import KubeadmConfigSpec, MachineTemplate
    from capt.workflows.machine.models import ClusterContext, DeleteOptions, MachineInput, machine_workflow_id
    from capt.workflows.machine.workflow import MachineWorkflow

# workflow.patched id (docs/versioning.md), used by ControlPlaneWorkflow and
# MachineDeploymentWorkflow: look for machine workflows that closed without reporting, restart
# the deletion of closed machines, and wait for deletions in bounded polls.
PATCH_OWNERS_SEE_CLOSED = "owners-see-closed-machines"
# A machine not heard from for this long is described (a Running machine is silent for good).
SILENT_SECONDS = 120.0
# At most one describe of the silent machines this often (outside deletion).
CHECK_EVERY_SECONDS = 120.0
# While waiting for machines to go: describe every one still booked this often.
DELETE_POLL = timedelta(seconds=30)
# Delete-mode restarts of one machine before the owner gives up on it.
MAX_DELETE_RESTARTS = 3
DESCRIBE_CALL = dict(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=3),
)

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
    # Workflow-clock seconds of the machine's last report (None: none since `created`).
    heard: float | None = None
    # The machine's workflow closed without deleting the machine ("failed", "terminated",
    # "timed_out", "not_found", ...): booked Failed; deleting it restarts the workflow id.
    closed: str = ""
    delete_restarts: int = 0
    # What the delete was asked with (passed on when the deletion is restarted).
    delete_options: DeleteOptions | None = None
    # The node as the owner last saw it (observe_nodes): NotReady now, or Ready again since when.
    # Both unset: the machine's own report (Ready since it ran) stands.
    node_not_ready: bool = False
    node_ready_since: float | None = None

    def view(self) -> MachineView:
        s = self.status
        ready_since = s.running_at.timestamp() if (s.node_ready and s.running_at) else None
        if self.node_not_ready:
            ready_since = None
        elif ready_since is not None and self.node_ready_since is not None:
            ready_since = max(ready_since, self.node_ready_since)
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
    # When `watch_machines` last described machines (workflow-clock seconds).
    checked_at: float | None = None
    # "<machine>: <why>" for machines given up on after MAX_DELETE_RESTARTS (last 20).
    abandoned: list[str] = []

    def live(self) -> list[OwnedMachine]:
        return [m for m in self.machines.values() if m.status.phase != "Deleted"]

    def views(self) -> list[MachineView]:
        return [m.view() for m in self.live()]

    def clear_unhealthy(self, names: Iterable[str]) -> bool:
        """The health check finds these machines healthy again (or no check selects them any
        more): drop the marks a remediation request left, so scale and rollout stop waiting on
        them (CAPI's MHC re-evaluates HealthCheckSucceeded every round). True if any changed."""
        changed = False
        for name in names:
            owned = self.machines.get(name)
            if owned is not None and owned.unhealthy:
                owned.unhealthy, owned.unhealthy_reason = False, ""
                changed = True
        return changed

    def observe_nodes(self, ready: dict[str, bool], now: float) -> bool:
        """Record the nodes' current Ready state (machine name -> Ready) so availability is
        re-evaluated (CAPI: a Machine is available while its node is Ready for minReadySeconds),
        not latched when the machine first ran. A node Ready again counts from now."""
        changed = False
        for name, is_ready in ready.items():
            owned = self.machines.get(name)
            if owned is None:
                continue
            if not is_ready and not owned.node_not_ready:
                owned.node_not_ready, changed = True, True
            elif is_ready and owned.node_not_ready:
                owned.node_not_ready, owned.node_ready_since, changed = False, now, True
        return changed

    def apply(self, status: MachineStatus, now: float | None = None) -> bool:
        """Record a machine's report. Returns True if it changed anything."""
        owned = self.machines.get(status.name)
        if owned is None:
            return False
        if now is not None:
            owned.heard = now
        if owned.closed and status.phase not in ("Deleting", "Deleted"):
            # A report its workflow sent before it closed: the machine stays booked Failed.
            return False
        if owned.status == status:
            return False
        owned.status = status
        if status.phase == "Deleted":
            del self.machines[status.name]
            self.deleted = (self.deleted + [status.name])[-50:]
        return True

    def watched(self) -> list[OwnedMachine]:
        """Machines whose workflow should be running: not found closed, not Deleted."""
        return [m for m in self.machines.values() if not m.closed and m.status.phase != "Deleted"]

    def silent(self, now: float) -> list[OwnedMachine]:
        return [m for m in self.watched() if now - (m.heard or m.created) >= SILENT_SECONDS]

    def next_check(self) -> float | None:
        """When `watch_machines` will next have something to describe (None: nothing to watch)."""
        watched = self.watched()
        if not watched:
            return None
        due = min((m.heard or m.created) + SILENT_SECONDS for m in watched)
        if self.checked_at is not None:
            due = max(due, self.checked_at + CHECK_EVERY_SECONDS)
        return due

    def book_closed(self, owned: OwnedMachine, state: temporal_tree.WorkflowState) -> None:
        what = state.status.replace("_", " ")
        reason = f"machine workflow {what}: {state.reason}" if state.reason else f"machine workflow {what}"
        owned.closed = state.status
        owned.status = owned.status.model_copy(
            update={"phase": "Failed", "failure_reason": reason, "message": reason, "node_ready": False}
        )


class RestartInputs(Frozen):
    """What an owner gives `delete_machine` to restart a closed machine in delete mode; the
    template and kubeadm config are only there because MachineInput requires them."""

    cluster: ClusterContext
    template: MachineTemplate
    kubeadm: KubeadmConfigSpec
    node_drain_timeout_seconds: int = 300


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


async def delete_machine(
    book: MachineBook,
    name: str,
    options: DeleteOptions | None = None,
    *,
    restart: RestartInputs | None = None,
) -> None:
    """Ask a machine to go. With `restart` (and once patched `owners-see-closed-machines`): a
    machine whose workflow closed is restarted in delete mode, and a machine already asked to
    go is asked again if the new options skip the node cleanup and the first ones did not."""
    owned = book.machines.get(name)
    if owned is None:
        return
    if restart is None or not workflow.patched(PATCH_OWNERS_SEE_CLOSED):
        if owned.delete_sent:
            return
        owned.delete_sent = True
        await workflow.get_external_workflow_handle(owned.workflow_id).signal(MachineWorkflow.request_delete)
        return
    if owned.delete_sent:
        skipping = owned.delete_options is not None and owned.delete_options.skip_node_cleanup
        if options is None or not options.skip_node_cleanup or skipping:
            return
        # Asked again, now without node cleanup: tell a running machine (a closed one gets the
        # options when watch_machines restarts it).
        owned.delete_options = options
        if owned.closed:
            return
    else:
        owned.delete_sent = True
        if options is not None:
            owned.delete_options = options
        if owned.closed:
            await _restart_for_delete(book, owned, restart)
            return
    try:
        await _signal_delete(owned.workflow_id, options)
    except ApplicationError as err:
        # No running workflow took the signal: it closed (or never started).
        book.book_closed(
            owned,
            temporal_tree.WorkflowState(workflow_id=owned.workflow_id, status="not_found", reason=str(err)),
        )
        await _restart_for_delete(book, owned, restart)


async def _restart_for_delete(book: MachineBook, owned: OwnedMachine, restart: RestartInputs) -> None:
    s = owned.status
    if owned.delete_restarts >= MAX_DELETE_RESTARTS:
        # Never block the owner: forget the machine. Its instance, if any, carries the cluster's
        # tags, where the cluster's deletion finds it.
        workflow.logger.warning("giving up on deleting machine %s: %s", s.name, s.failure_reason)
        del book.machines[s.name]
        book.abandoned = (book.abandoned + [f"{s.name}: {s.failure_reason or owned.closed}"])[-20:]
        return
    owned.delete_restarts += 1
    owned.closed = ""
    owned.heard = workflow.now().timestamp()
    inp = MachineInput(
        cluster=restart.cluster,
        name=s.name,
        role=s.role,
        bootstrap_kind="join-control-plane" if s.role == "control-plane" else "join-worker",
        owner_workflow_id=workflow.info().workflow_id,
        failure_domain=s.failure_domain,
        version=s.version,
        revision=s.revision,
        template=restart.template,
        kubeadm=restart.kubeadm,
        node_drain_timeout_seconds=restart.node_drain_timeout_seconds,
        deployment=s.deployment,
        mode="delete",
        instance_id=s.instance_id,
        node_name=s.node_name,
        delete_options=owned.delete_options,
    )
    try:
        await workflow.start_child_workflow(
            MachineWorkflow.run,
            inp,
            id=owned.workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"delete {s.role} machine {s.name} (attempt {owned.delete_restarts})",
        )
    except WorkflowAlreadyStartedError:
        # It runs after all (started again meanwhile): ask it to go instead.
        try:
            await _signal_delete(owned.workflow_id, owned.delete_options)
        except ApplicationError as err:  # closed again meanwhile: the next watch sees it
            workflow.logger.warning("could not ask machine %s to go: %s", s.name, err)


async def _signal_delete(workflow_id: str, options: DeleteOptions | None) -> None:
    """`request_delete`, with no argument when there are no options (as before DeleteOptions)."""
    handle = workflow.get_external_workflow_handle(workflow_id)
    if options is None:
        await handle.signal(MachineWorkflow.request_delete)
    else:
        await handle.signal(MachineWorkflow.request_delete, options)


async def watch_machines(book: MachineBook, restart: RestartInputs, *, everything: bool = False) -> bool:
    """Describe the machine workflows not heard from for SILENT_SECONDS (every watched one when
    `everything`, as while deleting), book the closed ones Failed, and restart the deletion of
    closed machines already asked to go. Only call it once patched `owners-see-closed-machines`.
    Returns True if the book changed."""
    now = workflow.now().timestamp()
    if not everything and book.checked_at is not None and now < book.checked_at + CHECK_EVERY_SECONDS:
        return False
    candidates = book.watched() if everything else book.silent(now)
    if not candidates:
        return False
    book.checked_at = now
    # A machine restarted while the describe runs (an Update deleting it) is not judged on it.
    restarts = {m.workflow_id: m.delete_restarts for m in candidates}
    try:
        result = await workflow.execute_activity(
            temporal_tree.describe_machine_workflows,
            temporal_tree.WorkflowsRequest(workflow_ids=tuple(sorted(restarts))),
            summary=f"describe {len(restarts)} machine workflow(s)",
            **DESCRIBE_CALL,
        )
    except ActivityError as err:
        workflow.logger.warning("could not describe machine workflows: %s", err.cause or err)
        return False
    by_id = {m.workflow_id: m for m in book.machines.values()}
    changed = False
    for state in result.workflows:
        owned = by_id.get(state.workflow_id)
        if (
            owned is None
            or owned.closed
            or owned.delete_restarts != restarts.get(state.workflow_id)
            or not state.closed
        ):
            continue
        changed = True
        if state.final is not None and state.final.phase == "Deleted":
            book.apply(state.final, now)  # it finished; its last report was lost
            continue
        book.book_closed(owned, state)
        if owned.delete_sent:
            await _restart_for_delete(book, owned, restart)
    return changed
