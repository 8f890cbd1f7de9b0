"""The loop every machine owner runs, once: the ControlPlaneWorkflow (KubeadmControlPlane) and the
MachineDeploymentWorkflow (MachineDeployment) both subclass `OwnerWorkflow`.

One turn of the loop: if the owner is being deleted, delete every machine and end; look for
machines whose workflow closed without a word (restart them); take one step towards the desired
state unless paused; publish the Web UI line and report a changed status to the ClusterWorkflow;
continue-as-new when Temporal suggests it (or after `max_iterations` turns); wait for a machine's
signal, a request, or the owner's recheck timer.

Temporal semantics worth knowing here:
- The signals defined on this base class (`machine_changed`, `machines_healthy`, `delete_all`) are
  registered on each decorated subclass: the SDK collects handlers through inheritance.
  `@workflow.run` has to sit on the decorated class itself, so each owner's `run` upserts its
  search attributes and then calls `_owner_loop`.
- Before continuing as new, the loop waits for `all_handlers_finished`, so an Update being
  handled still gets its answer; later signals and Updates reach the next run (they address the
  workflow id, not the run).
- Every hook must issue exactly the commands the inline code did before this class existed:
  the committed histories of both owners replay through it (tests/workflows/test_replay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from capt.contracts.machines import MachineStatus
    from capt.workflows.machine.models import DeleteOptions
    from capt.workflows.machine_owner import (
        DELETE_POLL,
        PATCH_OWNERS_SEE_CLOSED,
        MachineBook,
        RestartInputs,
        delete_machine,
        watch_machines,
    )


class OwnerCarry(Protocol):
    """What both owners' carried state (continue-as-new) has in common. A Protocol, not a shared
    pydantic base: a base class would reorder the fields of the encoded carries."""

    book: MachineBook
    deleting: bool
    delete_options: DeleteOptions | None
    iterations: int


class OwnerInput(Protocol):
    max_iterations: int


class OwnerWorkflow:
    """The owner loop. Subclasses set `_carry`, `_wake` and `_operation` in their
    `@workflow.init` and provide the hooks below."""

    _carry: OwnerCarry
    _wake: bool
    _operation: str
    _last_reported: Any = None
    # What the Web UI shows while every machine is being deleted.
    DELETE_OPERATION = "deleting every machine"
    # The signal the owner's status reaches its ClusterWorkflow by (a signal-handler name there).
    REPORT_SIGNAL: str

    # --- hooks ------------------------------------------------------------------------------
    def status(self) -> Any:
        raise NotImplementedError

    def _paused_operation(self) -> str | None:
        """The operation to show when paused (no machine is created or deleted), else None."""
        raise NotImplementedError

    async def _step(self) -> None:
        raise NotImplementedError

    def _publish(self) -> None:
        raise NotImplementedError

    def _owner_id(self) -> str | None:
        """The workflow to report to (the ClusterWorkflow), or None for a standalone owner."""
        raise NotImplementedError

    def _restart_inputs(self) -> RestartInputs:
        raise NotImplementedError

    def _loop_timeout(self) -> timedelta:
        """How long the loop waits for a signal or request before looking again."""
        raise NotImplementedError

    def _continue_as_new_input(self, inp: Any) -> Any:
        raise NotImplementedError

    # --- signals both owners take -------------------------------------------------------------
    @workflow.signal
    def machine_changed(self, status: MachineStatus) -> None:
        if self._carry.book.apply(status, workflow.now().timestamp()):
            self._wake = True

    @workflow.signal
    def machines_healthy(self, names: list[str]) -> None:
        """From the health check, each round it finds a machine marked unhealthy here healthy
        again: the mark no longer holds scale or rollout back."""
        if self._carry.book.clear_unhealthy(names):
            self._wake = True

    @workflow.signal
    def delete_all(self, options: DeleteOptions | None = None) -> None:
        """The cluster is being deleted: remove every machine, then end. `options` go to every
        machine (`skip_node_cleanup` when the whole cluster goes); signals without any (sent
        before DeleteOptions existed) decode as None."""
        self._carry.deleting = True
        if options is not None:
            self._carry.delete_options = options
        self._wake = True

    # --- the loop ---------------------------------------------------------------------------
    async def _owner_loop(self, inp: OwnerInput) -> Any:
        while True:
            self._wake = False
            if self._carry.deleting:
                await self._delete_everything()
                return self.status()
            if self._sees_closed_machines():
                await watch_machines(self._carry.book, self._restart_inputs())
            paused = self._paused_operation()
            if paused is None:
                await self._step()
            else:
                self._operation = paused
            self._publish()
            await self._report()
            self._carry.iterations += 1
            if workflow.info().is_continue_as_new_suggested() or self._carry.iterations >= inp.max_iterations:
                # Let running Update handlers finish so their callers get an answer, then start a
                # fresh run with the same state and an empty history.
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._carry.iterations = 0
                workflow.continue_as_new(self._continue_as_new_input(inp))
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: self._wake, timeout=self._loop_timeout())

    async def _delete_everything(self) -> None:
        self._operation = self.DELETE_OPERATION
        self._publish()
        # The rest of the cluster goes with it: no quorum to protect, delete all at once.
        book, restart = self._carry.book, self._restart_inputs()
        for name in list(book.machines):
            await delete_machine(book, name, self._carry.delete_options, restart=restart)
        if not self._sees_closed_machines():
            await workflow.wait_condition(lambda: not book.machines)
        else:
            # Bounded polls: a machine whose workflow closed meanwhile is restarted to delete.
            while book.machines:
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(lambda: not book.machines, timeout=DELETE_POLL)
                if book.machines:
                    await watch_machines(book, restart, everything=True)
                    self._publish()
        self._operation = "deleted"
        self._publish()
        await self._report()

    async def _report(self) -> None:
        """Tell the ClusterWorkflow when its status changed (a workflow cannot query another one,
        so status flows up as signals); nothing is sent while it is unchanged."""
        owner = self._owner_id()
        if not owner:
            return
        status = self.status()
        if status == self._last_reported:
            return
        self._last_reported = status
        await workflow.get_external_workflow_handle(owner).signal(self.REPORT_SIGNAL, status)

    def _sees_closed_machines(self) -> bool:
        return workflow.patched(PATCH_OWNERS_SEE_CLOSED)
