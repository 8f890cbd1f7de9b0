"""MachineDeployment arithmetic with CAPI's semantics — pure, deterministic, table-tested.

The MachineDeployment workflow owns its worker machines directly (there is no MachineSet object):
machines carry the *revision* (hash of the machine template) they were created from, and the
machines of one revision play the part of one CAPI MachineSet. Each reconcile the workflow builds
a `DeploymentState` (desired replicas, strategy, the machines it knows, workflow time) and asks
`plan_machine_deployment` for the next step: which machines to create in which revision and
failure domain, and which machines to delete. It applies the step (starting or deleting
MachineWorkflows), waits for something to change (a machine becoming Ready, a deletion finishing,
`next_availability_time`, an update) and asks again. A plan only ever depends on its input, so a
replayed workflow plans the same steps.

Sources followed (kubernetes-sigs/cluster-api, read to learn, not copied):
`internal/controllers/machinedeployment/mdutil/util.go` (ResolveFenceposts, MaxSurge,
MaxUnavailable, NewMSNewReplicas, GetProportion, getMachineSetFraction, FindOneActiveOrLatest,
IsSaturated), `machinedeployment_rolling.go` (reconcileNewMachineSet, reconcileOldMachineSets,
cleanupUnhealthyReplicas, scaleDownOldMachineSetsForRollingUpdate), `machinedeployment_sync.go`
(scale), `machinedeployment_rollout_ondelete.go`, `machineset/machineset_deletion_order.go`
(deletion priority) and the MachineSet remediation code (current revision only, newest first).

How a MachineSet's numbers map onto machines
--------------------------------------------
- a revision's `spec.replicas` (what it wants) is its number of machines *not* being deleted;
- its `status.replicas` is all its machines, deleting ones included — so CAPI's
  `TotalMachineSetsReplicaSum` (sum of max(spec, status)) is "every machine that exists", and the
  surge limit counts machines still being deleted, as the issue requires;
- its `status.availableReplicas` is machines not being deleted whose node has been Ready for
  `minReadySeconds` (a machine being deleted is never available, as in CAPI v1beta2).

Documented differences from CAPI
--------------------------------
- *Scaling events.* Kubernetes' Deployment controller (which CAPI's code was ported from) spreads
  a change of `replicas` proportionally over all revisions whenever the revisions were sized for a
  different replica count (`isScalingEvent`); CAPI's MachineDeployment controller only does it while
  paused and otherwise grows the newest revision. capt follows the Deployment semantics the issue
  asks for ("scaling during a rollout spreads the change proportionally"): a scaling event, or a
  paused deployment, goes through CAPI's `scale`/`GetProportion` arithmetic. CAPI keeps the sizing
  (`desired-replicas` / `max-replicas` annotations) per MachineSet; capt keeps one pair per
  deployment (`DeploymentState.sized_for`, returned in every plan for the workflow to store), which
  is the same thing because every active MachineSet is re-annotated whenever one is scaled.
- *Who is deleted.* capt is both the MachineDeployment and the MachineSet controller, so when the
  rolling step "cleans up unhealthy replicas" of an old revision it deletes exactly machines that
  are not available (CAPI scales the MachineSet down and hopes its deletion order picks them).
  Every other scale-down uses CAPI's deletion order (`deletion_order`).
- *Deletion order.* `capi_deletion_order` is CAPI v1.10's delete priorities exactly: being
  deleted, the delete-machine annotation, unhealthy (no node, failed, node not Ready, reported
  unhealthy), then Random ranks every healthy machine the same and breaks ties by name (random
  because machine names end in random characters, capt's too), Oldest/Newest map whole-second
  ages through CAPI's exponential (so a machine created this instant ranks level with an
  unhealthy one under Newest). `deletion_order` (a seeded shuffle for Random, exact creation times)
  is what deployments used before; a deployment switches at its next step
  (`DeploymentState.exact_delete_order`, patch `deployment-exact-delete-order`).
- *Failure domains.* CAPI gives every machine of a MachineSet the MachineDeployment's failure
  domain (often none). capt spreads new worker machines over the cluster's AZs with
  `rules.placement.spread` (fewest machines of the same revision first, then fewest overall, then
  AZ order) unless the MachineDeployment names one.

Invariants the planner keeps (asserted at every step by the simulation tests): the machines that
exist, deleting ones included, never exceed `replicas + maxSurge` because of a creation; the
planner's deletions never take the available machines below `replicas - maxUnavailable`; and
OnDelete never deletes a machine to roll it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import model_validator

from capt.rules.base import Frozen
from capt.rules.deletion import capi_deletion_order, deletion_order
from capt.rules.fenceposts import DeploymentStrategy
from capt.rules.machines import MachineView
from capt.rules.placement import spread


class RevisionView(Frozen):
    """A revision the deployment has used (a CAPI MachineSet): its template hash and birth time."""

    revision: str
    created: float


class ReplicaAnnotations(Frozen):
    """What the revisions were last sized for (CAPI's desired-replicas / max-replicas annotations)."""

    desired_replicas: int
    max_replicas: int


class DeploymentState(Frozen):
    replicas: int
    strategy: DeploymentStrategy = DeploymentStrategy()
    # The revision the machine template hashes to now.
    current_revision: str
    machines: tuple[MachineView, ...] = ()
    # Revisions the workflow has created, with their creation time. Revisions that machines refer to
    # but that are missing here are added with the creation time of their oldest machine. The
    # current revision "exists" only if it is listed or has machines (it is created, and returned in
    # `DeploymentPlan.record_revision`, by the first rolling step that uses it).
    revisions: tuple[RevisionView, ...] = ()
    paused: bool = False
    sized_for: ReplicaAnnotations | None = None
    # The cluster's AZs in order; `pinned_failure_domain` is the MachineDeployment's own, if any.
    failure_domains: tuple[str, ...] = ()
    pinned_failure_domain: str | None = None
    now: float = 0.0
    # Keys the Random delete policy's shuffle (use the deployment's name).
    seed: str = ""
    # CAPI's delete priorities exactly (`capi_deletion_order`); False: the order histories
    # recorded before it was used (`deletion_order`).
    exact_delete_order: bool = False

    @model_validator(mode="after")
    def _check(self) -> DeploymentState:
        if self.replicas < 0:
            raise ValueError(f"replicas must not be negative, got {self.replicas}")
        names = [m.name for m in self.machines]
        if len(names) != len(set(names)):
            raise ValueError("machine names must be unique")
        return self


class MachineToCreate(Frozen):
    revision: str
    failure_domain: str | None = None


class DeploymentPlan(Frozen):
    # "rolling": RollingUpdate step; "on_delete": OnDelete step; "scale": a scaling event or a
    # paused deployment (proportional scaling, no rollout).
    mode: Literal["rolling", "on_delete", "scale"]
    create: tuple[MachineToCreate, ...] = ()
    # Machine names, in the order they should be deleted.
    delete: tuple[str, ...] = ()
    # Each revision's machine count once the step is applied (CAPI: each MachineSet's spec.replicas).
    targets: tuple[tuple[str, int], ...] = ()
    # The current revision, when this step starts using it: the workflow adds it to its history.
    record_revision: RevisionView | None = None
    # Store and pass back as `DeploymentState.sized_for` next time.
    sized_for: ReplicaAnnotations
    notes: tuple[str, ...] = ()

    @property
    def idle(self) -> bool:
        return not self.create and not self.delete

    def target(self, revision: str) -> int:
        return dict(self.targets).get(revision, 0)


@dataclass
class _Set:
    """One revision's machines while planning (a MachineSet)."""

    revision: str
    created: float
    machines: list[MachineView] = field(default_factory=list)
    available: int = 0  # non-deleting machines available now
    target: int = 0  # spec.replicas being planned
    cleanup: int = 0  # how many of the scale-down are unavailable machines (rolling cleanup)

    @property
    def spec(self) -> int:
        return sum(1 for m in self.machines if not m.deleting)

    @property
    def status(self) -> int:
        return len(self.machines)


def _round_half_away(numerator: int, denominator: int) -> int:
    """Go's integer.RoundToInt32(n/d) for n, d > 0, in integers (no float surprises)."""
    return (2 * numerator + denominator) // (2 * denominator)


def _group(state: DeploymentState) -> dict[str, _Set]:
    sets: dict[str, _Set] = {r.revision: _Set(r.revision, r.created) for r in state.revisions}
    for m in sorted(state.machines, key=lambda m: (m.created, m.name)):
        s = sets.get(m.revision)
        if s is None:
            s = sets[m.revision] = _Set(m.revision, m.created)
        s.machines.append(m)
    for s in sets.values():
        s.available = sum(1 for m in s.machines if m.available(state.now, state.strategy.min_ready_seconds))
        s.target = s.spec
    return sets


def _is_scaling_event(state: DeploymentState, sets: Iterable[_Set]) -> bool:
    if state.sized_for is None:
        return False
    return any(s.spec > 0 for s in sets) and state.sized_for.desired_replicas != state.replicas


def _find_one_active_or_latest(new: _Set | None, olds: list[_Set]) -> _Set | None:
    if new is None and not olds:
        return None
    newest_first = sorted(olds, key=lambda s: (s.created, s.revision), reverse=True)
    active = [s for s in [*newest_first, new] if s is not None and s.spec > 0]
    if not active:
        return new if new is not None else newest_first[0]
    if len(active) == 1:
        return active[0]
    return None


def _scale(state: DeploymentState, new: _Set | None, olds: list[_Set], notes: list[str]) -> None:
    """CAPI's `scale`: size the revisions for a new replica count without rolling."""
    replicas = state.replicas
    one = _find_one_active_or_latest(new, olds)
    if one is not None:
        if one.target != replicas:
            notes.append(f"scale revision {one.revision} {one.target} -> {replicas}")
        one.target = replicas
        return
    sized = state.sized_for
    if (
        new is not None
        and new.spec == replicas
        and sized is not None
        and sized.desired_replicas == replicas
        and new.available == replicas
    ):
        # The new revision is saturated: old revisions go to zero.
        for s in olds:
            if s.spec > 0:
                notes.append(f"new revision saturated: scale old revision {s.revision} {s.spec} -> 0")
                s.target = 0
        return
    if state.strategy.type != "RollingUpdate":
        return

    surge = state.strategy.surge(replicas)
    active = [s for s in [*olds, new] if s is not None and s.spec > 0]
    if not active:
        return
    total = sum(s.spec for s in active)
    allowed_size = replicas + surge if replicas > 0 else 0
    to_add = allowed_size - total
    if to_add > 0:  # biggest first, newer first among equals
        active.sort(key=lambda s: (-s.spec, -s.created, s.revision))
    elif to_add < 0:  # biggest first, older first among equals
        active.sort(key=lambda s: (-s.spec, s.created, s.revision))
    if to_add == 0:
        return

    annotated = sized.max_replicas if sized is not None else sum(s.status for s in [*olds, new] if s)
    added = 0
    sizes: dict[str, int] = {}
    for s in active:
        proportion = 0
        if s.spec != 0 and to_add != added:
            if replicas == 0:
                fraction = -s.spec
            elif annotated <= 0:
                fraction = 0
            else:
                fraction = _round_half_away(s.spec * (replicas + surge), annotated) - s.spec
            remaining = to_add - added
            proportion = min(fraction, remaining) if to_add > 0 else max(fraction, remaining)
        sizes[s.revision] = s.spec + proportion
        added += proportion
    sizes[active[0].revision] = max(0, sizes[active[0].revision] + to_add - added)
    for s in active:
        if sizes[s.revision] != s.target:
            notes.append(f"proportional scale of revision {s.revision} {s.target} -> {sizes[s.revision]}")
        s.target = sizes[s.revision]


def _reconcile_new(state: DeploymentState, new: _Set, all_sets: list[_Set], notes: list[str]) -> None:
    """CAPI's reconcileNewMachineSet + NewMSNewReplicas (RollingUpdate and OnDelete)."""
    replicas = state.replicas
    if new.spec == replicas:
        return
    if new.spec > replicas:
        notes.append(f"scale new revision {new.revision} down {new.spec} -> {replicas}")
        new.target = replicas
        return
    existing = sum(max(s.spec, s.status) for s in all_sets)  # deleting machines count
    if state.strategy.type == "RollingUpdate":
        ceiling = replicas + state.strategy.surge(replicas)
        if existing >= ceiling:
            notes.append(f"cannot surge: {existing} machines exist, limit {ceiling}")
            return
        up = min(ceiling - existing, replicas - new.spec)
    else:
        if existing >= replicas:
            return
        up = replicas - existing
    notes.append(f"scale new revision {new.revision} up {new.spec} -> {new.spec + up}")
    new.target = new.spec + up


def _reconcile_old_rolling(state: DeploymentState, new: _Set, olds: list[_Set], notes: list[str]) -> None:
    """CAPI's reconcileOldMachineSets: clean up unavailable old machines, then scale old revisions
    down, oldest revision first, while availability stays at replicas - maxUnavailable."""
    if sum(s.target for s in olds) == 0:
        return
    all_sets = [*olds, new]
    min_available = state.replicas - state.strategy.unavailable(state.replicas)
    all_count = sum(s.target for s in all_sets)
    new_unavailable = new.target - new.available
    max_scaled_down = all_count - min_available - new_unavailable
    if max_scaled_down <= 0:
        notes.append(
            f"cannot scale old revisions down: {all_count} machines, {min_available} must stay "
            f"available, {new_unavailable} new machines not available yet"
        )
        return

    cleaned = 0
    for s in olds:
        if cleaned >= max_scaled_down:
            break
        if s.target == 0 or s.target == s.available:
            continue
        n = min(max_scaled_down - cleaned, s.target - s.available)
        notes.append(f"remove {n} unavailable machine(s) of old revision {s.revision}")
        s.target -= n
        s.cleanup += n
        cleaned += n

    available = sum(s.available for s in all_sets)
    if available <= min_available:
        return
    budget = available - min_available
    done = 0
    for s in olds:
        if done >= budget:
            break
        if s.target == 0:
            continue
        n = min(s.target, budget - done)
        notes.append(f"scale old revision {s.revision} down {s.target} -> {s.target - n}")
        s.target -= n
        done += n


def _reconcile_old_on_delete(state: DeploymentState, all_sets: list[_Set], olds: list[_Set]) -> None:
    """CAPI's reconcileOldMachineSetsOnDelete: old revisions shrink as users delete their machines
    (already true here: a revision's size is its non-deleting machines); beyond that they are only
    scaled down when the deployment has more machines than replicas."""
    excess = sum(s.target for s in all_sets) - state.replicas
    for s in olds:
        if excess <= 0:
            break
        if s.target <= 0:
            continue
        n = min(s.target, excess)
        s.target -= n
        excess -= n


def plan_machine_deployment(state: DeploymentState) -> DeploymentPlan:
    """The next step for a MachineDeployment: what to create and what to delete now.

    - paused, or a scaling event (replicas differ from what the revisions were sized for):
      CAPI's proportional `scale`; nothing is rolled;
    - RollingUpdate: grow the current revision while the machines that exist (deleting ones
      included) stay within replicas + maxSurge, then shrink old revisions — unavailable machines
      first, oldest revision first — while availability stays at replicas - maxUnavailable;
    - OnDelete: replace old machines only once a user deleted them.
    Call again after every change; an idle plan means "wait".
    """
    strategy = state.strategy
    sets = _group(state)
    current = state.current_revision
    new = sets.get(current)
    olds = sorted((s for s in sets.values() if s.revision != current), key=lambda s: (s.created, s.revision))
    notes: list[str] = []
    record: RevisionView | None = None

    # A replica change alone sizes the revisions proportionally (CAPI's scale). Not when the
    # current revision has no machines yet (the template changed in the same apply: that is a
    # rollout, and new machines come from the new revision), and never with OnDelete (CAPI grows
    # only the newest MachineSet; old ones shrink as their machines are deleted).
    scaling = new is not None and strategy.type == "RollingUpdate" and _is_scaling_event(state, sets.values())
    if state.paused or scaling:
        mode: Literal["rolling", "on_delete", "scale"] = "scale"
        notes.append("paused: scaling only" if state.paused else "scaling event: proportional scaling")
        _scale(state, new, olds, notes)
    else:
        if new is None:
            new = sets[current] = _Set(current, state.now)
            record = RevisionView(revision=current, created=state.now)
        all_sets = [*olds, new]
        _reconcile_new(state, new, all_sets, notes)
        if strategy.type == "RollingUpdate":
            mode = "rolling"
            _reconcile_old_rolling(state, new, olds, notes)
        else:
            mode = "on_delete"
            _reconcile_old_on_delete(state, all_sets, olds)

    ordered = ([new] if new is not None else []) + olds
    create, delete = _materialize(state, ordered)
    replicas = state.replicas
    return DeploymentPlan(
        mode=mode,
        create=tuple(create),
        delete=tuple(delete),
        targets=tuple((s.revision, s.target) for s in ordered),
        record_revision=record,
        sized_for=ReplicaAnnotations(
            desired_replicas=replicas, max_replicas=replicas + strategy.surge(replicas)
        ),
        notes=tuple(notes),
    )


def _materialize(state: DeploymentState, ordered: list[_Set]) -> tuple[list[MachineToCreate], list[str]]:
    """The MachineSet controller's part: turn each revision's target into creations and deletions."""
    policy, seed = state.strategy.delete_policy, state.seed
    min_ready, now = state.strategy.min_ready_seconds, state.now
    planned: list[MachineToCreate] = []
    delete: list[str] = []
    alive = [m for m in state.machines if not m.deleting]
    for s in ordered:
        members = [m for m in s.machines if not m.deleting]
        if s.target > len(members):
            count = s.target - len(members)
            if state.pinned_failure_domain is not None:
                domains: list[str | None] = [state.pinned_failure_domain] * count
            else:
                same_revision = [*members, *(c for c in planned if c.revision == s.revision)]
                domains = spread(count, state.failure_domains, [*alive, *planned], same_revision)
            planned.extend(MachineToCreate(revision=s.revision, failure_domain=fd) for fd in domains)
        elif s.target < len(members):
            count = len(members) - s.target
            unavailable = [m for m in members if not m.available(now, min_ready)]

            def order(ms: list[MachineView]) -> list[MachineView]:
                if state.exact_delete_order:
                    return capi_deletion_order(ms, policy, now)
                return deletion_order(ms, policy, seed)

            victims = order(unavailable)[: min(s.cleanup, count)]
            chosen = {m.name for m in victims}
            rest = [m for m in members if m.name not in chosen]
            victims += order(rest)[: count - len(victims)]
            delete.extend(m.name for m in victims)
    return planned, delete


class DeploymentCounts(Frozen):
    """The numbers a MachineDeployment reports (CAPI's status fields)."""

    replicas: int  # machines that exist, deleting ones included
    ready: int
    available: int
    up_to_date: int  # not-deleting machines of the current revision
    unavailable: int  # desired replicas not available (never negative)


def deployment_counts(state: DeploymentState) -> DeploymentCounts:
    min_ready, now = state.strategy.min_ready_seconds, state.now
    available = sum(1 for m in state.machines if m.available(now, min_ready))
    return DeploymentCounts(
        replicas=len(state.machines),
        ready=sum(1 for m in state.machines if m.ready),
        available=available,
        up_to_date=sum(1 for m in state.machines if m.revision == state.current_revision and not m.deleting),
        unavailable=max(state.replicas - available, 0),
    )


def deployment_complete(state: DeploymentState) -> bool:
    """CAPI's DeploymentComplete: exactly `replicas` machines, all current and available."""
    counts = deployment_counts(state)
    r = state.replicas
    return counts.replicas == r and counts.up_to_date == r and counts.available == r


def progress_deadline_exceeded(last_progress: float, now: float, deadline_seconds: int) -> bool:
    """True once a rollout has made no progress for more than `progressDeadlineSeconds`
    (Kubernetes' DeploymentTimedOut: strictly after the deadline). Reporting only: the planner
    keeps obeying maxUnavailable whatever this says."""
    return now > last_progress + deadline_seconds
