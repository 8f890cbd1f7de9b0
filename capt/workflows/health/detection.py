"""MachineHealthCheck detection — pure, deterministic, table-tested.

Given what one interval observed (the owners' machines, the cluster's EC2 instances from one
DescribeInstances, the workload cluster's Nodes from one list) and what the health workflow
remembers (when it first saw a machine or a node condition), decide for each machine whether it
is healthy, unhealthy (and why), or neither (booting within its budget, being deleted). Then,
per MachineHealthCheck, count as CAPI does and pick what to remediate. No I/O, no clocks: `now`
is passed in (the workflow's `workflow.now()`).

CAPI's rules (internal/controllers/machinehealthcheck/machinehealthcheck_targets.go,
needsRemediation), as capt applies them:

1. A machine that has failed (MachineWorkflow phase Failed: e.g. its instance died while
   provisioning) is unhealthy.
2. capt's own instance check (CAPA marks such machines failed): its instance is terminated,
   shutting-down or stopped, or missing from the cluster's instances → unhealthy.
3. Its node was known (the owner recorded a node name) and is gone from the workload cluster →
   unhealthy (CAPI: NodeNotFound). Not judged when the API server was unreachable.
4. A worker is not penalized further before the control plane is initialized.
5. No Ready node yet (the machine never reached Running) for longer than nodeStartupTimeout,
   counted from the latest of machine creation, its instance's launch (infrastructure ready) and
   the control plane's initialization → unhealthy (NodeStartupTimeout). 0 disables it.
6. A node condition listed in unhealthyConditions whose status has held longer than its timeout
   (since the condition's lastTransitionTime, or since the health check first saw it when the
   node reports none) → unhealthy. Holding exactly the timeout is not yet unhealthy (CAPI:
   lastTransitionTime + timeout is before now). Only judged when the node is found; a condition
   the node does not report, or reports with another status, never matches.
7. A machine condition listed in unhealthyMachineConditions (v1beta2 MHC) likewise (CAPI reason
   UnhealthyMachine). capt's machines carry no conditions list: `machine_conditions` derives
   CAPI's v1beta2 machine conditions from what their status does carry (`spec.models.
   MACHINE_CONDITION_TYPES`), and, having no lastTransitionTime, a condition's clock starts when
   the health check first sees it hold (kept across intervals like rule 6's fallback). As in
   CAPI, judged after rule 4 (a worker is not judged before the control plane is initialized).

Before rule 1, as CAPI: a machine carrying the `cluster.x-k8s.io/remediate-machine` annotation
is unhealthy (HasRemediateMachineAnnotation), and goes first among the candidates. A machine
carrying `cluster.x-k8s.io/paused` or `cluster.x-k8s.io/skip-remediation` is not a target at all
(CAPI's shouldSkipRemediation): not judged, not counted in `expected`, never remediated.

Healthy = not unhealthy, not being deleted, and has a node (seen in the node list, or reported
by its owner when the API server could not be listed). Per check, `expected` is the number of
machines the selector matches and `unhealthy = expected - healthy` (booting and deleting
machines count, as in CAPI); `rules.health.max_unhealthy_allows` then decides whether
remediation may proceed at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from capt.activities.aws.instances import InstanceInfo
from capt.activities.owners import WatchedMachine
from capt.activities.workload.objects import NodeCondition, NodeInfo
from capt.rules.base import Frozen
from capt.rules.health import RemediationAllowance, limit_in_flight, max_unhealthy_allows
from capt.spec.models import MACHINE_CONDITION_TYPES, HealthCheckSpec

GONE_STATES = ("terminated", "shutting-down", "stopped")

# Reason codes (CAPI's where they exist).
MACHINE_FAILED = "MachineFailed"
INSTANCE_GONE = "InstanceGone"
NODE_NOT_FOUND = "NodeNotFound"
NODE_STARTUP_TIMEOUT = "NodeStartupTimeout"
UNHEALTHY_CONDITION = "UnhealthyNodeCondition"
UNHEALTHY_MACHINE_CONDITION = "UnhealthyMachine"
HAS_REMEDIATE_ANNOTATION = "HasRemediateMachineAnnotation"

REMEDIATE_MACHINE_ANNOTATION = "cluster.x-k8s.io/remediate-machine"
SKIP_REMEDIATION_ANNOTATION = "cluster.x-k8s.io/skip-remediation"
PAUSED_ANNOTATION = "cluster.x-k8s.io/paused"


def skip_reason(m: WatchedMachine) -> str | None:
    """CAPI's shouldSkipRemediation: the annotation's presence counts, whatever its value."""
    for key in (PAUSED_ANNOTATION, SKIP_REMEDIATION_ANNOTATION):
        if m.annotation(key) is not None:
            return f"machine has {key!r} annotation"
    return None


def marked_for_remediation(m: WatchedMachine) -> bool:
    return m.annotation(REMEDIATE_MACHINE_ANNOTATION) is not None


class Observation(Frozen):
    """One interval's view of the cluster's machines' infrastructure."""

    now: dt.datetime
    # instance id -> instance; None when DescribeInstances could not be done this interval.
    instances: dict[str, InstanceInfo] | None
    # Nodes by instance id (from the providerID) and by name; None when the API was unreachable.
    nodes: tuple[NodeInfo, ...] | None
    control_plane_initialized: bool = True
    # When the health workflow saw the control plane become initialized (None: before it looked).
    control_plane_initialized_at: dt.datetime | None = None

    def node_of(self, m: WatchedMachine) -> NodeInfo | None:
        if self.nodes is None:
            return None
        for n in self.nodes:
            if m.instance_id and n.instance_id == m.instance_id:
                return n
        for n in self.nodes:
            if m.node_name and n.name == m.node_name:
                return n
        return None


class Verdict(Frozen):
    machine: str
    owner: str  # "control-plane/<name>" or "machine-deployment/<name>"
    state: str  # "healthy", "unhealthy", "deleting", "starting" (no node yet, within budget)
    reasons: tuple[str, ...] = ()

    @property
    def unhealthy(self) -> bool:
        return self.state == "unhealthy"

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


def owner_key(m: WatchedMachine) -> str:
    return f"{m.owner}/{m.owner_name}"


def condition_key(machine: str, type_: str, status: str) -> str:
    return f"{machine}|{type_}|{status}"


def node_conditions(node: NodeInfo) -> tuple[NodeCondition, ...]:
    """The node's conditions; a NodeInfo built without them still has its Ready condition."""
    if node.conditions:
        return node.conditions
    return (NodeCondition(type="Ready", status=node.ready_status, since=node.ready_since),)


class MachineCondition(Frozen):
    type: str
    status: str  # True, False, Unknown


def machine_conditions(m: WatchedMachine, node: NodeInfo | None = None) -> tuple[MachineCondition, ...]:
    """CAPI's v1beta2 machine conditions, as far as capt's machine status carries them:

    - BootstrapConfigReady: True once past Pending (capt renders the bootstrap data before it
      launches the instance);
    - InfrastructureReady: True when the instance runs (phase Provisioned or Running; a Deleting
      machine keeps the instance it had), else False;
    - NodeReady: the Ready condition of the node found this interval; without one in view, what
      the owner reports (True, or False when it knows a node that is not Ready); False without a
      node (CAPI: the node does not exist yet);
    - UpToDate: the owner's view (made from its current revision); not reported when unknown;
    - Deleting: True while it is being deleted, else False.
    """
    running = m.phase in ("Provisioned", "Running") or (m.deleting and m.instance_id is not None)
    if node is not None:
        ready = next((c.status for c in node_conditions(node) if c.type == "Ready"), "Unknown")
    else:
        ready = "True" if m.node_ready else "False"
    conds = [
        MachineCondition(type="BootstrapConfigReady", status="False" if m.phase == "Pending" else "True"),
        MachineCondition(type="InfrastructureReady", status="True" if running else "False"),
        MachineCondition(type="NodeReady", status=ready),
    ]
    if m.up_to_date is not None:
        conds.append(MachineCondition(type="UpToDate", status="True" if m.up_to_date else "False"))
    conds.append(MachineCondition(type="Deleting", status="True" if m.deleting else "False"))
    assert {c.type for c in conds} <= set(MACHINE_CONDITION_TYPES)
    return tuple(conds)


def machine_condition_key(machine: str, type_: str, status: str) -> str:
    return condition_key(machine, f"machine:{type_}", status)


def observed_conditions(
    machines: Iterable[WatchedMachine],
    obs: Observation,
    checks: Sequence[HealthCheckSpec],
    previous: Mapping[str, float],
) -> dict[str, float]:
    """When each (machine, condition type, status) named by some check's unhealthyConditions was
    first seen holding — kept across intervals (and continue-as-new) for nodes that report no
    lastTransitionTime — and each (machine, machine condition, status) named by some check's
    unhealthyMachineConditions (machines never report one). A condition no longer holding is
    forgotten. Unreachable API: node conditions kept as they were."""
    wanted = {(c.type, c.status) for check in checks for c in check.unhealthy_conditions}
    wanted_machine = {(c.type, c.status) for check in checks for c in check.unhealthy_machine_conditions}
    now = obs.now.timestamp()
    seen: dict[str, float] = {}
    if obs.nodes is None:
        seen.update({k: v for k, v in previous.items() if "|machine:" not in k})
    for m in machines:
        node = obs.node_of(m)
        if wanted_machine:
            for mc in machine_conditions(m, node):
                if (mc.type, mc.status) in wanted_machine:
                    key = machine_condition_key(m.name, mc.type, mc.status)
                    seen[key] = previous.get(key, now)
        if node is None:
            continue
        for c in node_conditions(node):
            if (c.type, c.status) in wanted:
                key = condition_key(m.name, c.type, c.status)
                seen[key] = previous.get(key, now)
    return seen


def _seconds(delta: dt.timedelta) -> float:
    return delta.total_seconds()


def startup_began(m: WatchedMachine, obs: Observation, first_seen: float | None) -> dt.datetime:
    """The latest of machine creation (its own record, else when the health check first saw it),
    its instance's launch, and — for a worker — the control plane's initialization."""
    candidates: list[dt.datetime] = []
    if m.created_at is not None:
        candidates.append(m.created_at)
    elif first_seen is not None:
        candidates.append(dt.datetime.fromtimestamp(first_seen, dt.UTC))
    inst = obs.instances.get(m.instance_id) if obs.instances is not None and m.instance_id else None
    if inst is not None and inst.launch_time is not None:
        candidates.append(inst.launch_time)
    if m.role == "worker" and obs.control_plane_initialized_at is not None:
        candidates.append(obs.control_plane_initialized_at)
    return max(candidates, default=obs.now)


def assess(
    m: WatchedMachine,
    check: HealthCheckSpec,
    obs: Observation,
    *,
    first_seen: float | None = None,
    condition_first_seen: Mapping[str, float] | None = None,
) -> Verdict:
    """One machine against one check (rules 1–6 of the module docstring)."""
    owner = owner_key(m)
    if m.deleting:
        return Verdict(machine=m.name, owner=owner, state="deleting")
    if marked_for_remediation(m):
        return Verdict(
            machine=m.name,
            owner=owner,
            state="unhealthy",
            reasons=(
                f"{HAS_REMEDIATE_ANNOTATION}: marked for remediation via the {REMEDIATE_MACHINE_ANNOTATION} annotation",
            ),
        )
    reasons: list[str] = []
    if m.phase == "Failed":
        reasons.append(f"{MACHINE_FAILED}: {m.message or 'the machine failed'}")
    if obs.instances is not None and m.instance_id:
        inst = obs.instances.get(m.instance_id)
        if inst is None:
            reasons.append(f"{INSTANCE_GONE}: instance {m.instance_id} not found")
        elif inst.state in GONE_STATES:
            reasons.append(f"{INSTANCE_GONE}: instance {m.instance_id} is {inst.state}")
    node = obs.node_of(m)
    if obs.nodes is not None and m.node_name and node is None:
        reasons.append(f"{NODE_NOT_FOUND}: node {m.node_name} is gone")
    if reasons:
        return Verdict(machine=m.name, owner=owner, state="unhealthy", reasons=tuple(reasons))

    if m.role == "worker" and not obs.control_plane_initialized:
        return Verdict(machine=m.name, owner=owner, state="starting")

    held = condition_first_seen or {}
    if check.unhealthy_machine_conditions:
        current = {c.type: c.status for c in machine_conditions(m, node)}
        for umc in check.unhealthy_machine_conditions:
            if current.get(umc.type) != umc.status:
                continue
            t = held.get(machine_condition_key(m.name, umc.type, umc.status))
            if t is None:
                continue  # first sighting: the clock starts now
            if _seconds(obs.now - dt.datetime.fromtimestamp(t, dt.UTC)) > umc.timeout_seconds:
                reasons.append(
                    f"{UNHEALTHY_MACHINE_CONDITION}: machine {m.name} reports {umc.type}={umc.status} "
                    f"for more than {umc.timeout_seconds}s (since {dt.datetime.fromtimestamp(t, dt.UTC).isoformat()})"
                )

    # CAPI: nodeStartupTimeout applies while the machine has no node (no nodeRef); a node that
    # registered but is not Ready is judged by unhealthyConditions instead.
    if m.booting and node is None and m.node_name is None:
        timeout = check.node_startup_timeout_seconds
        began = startup_began(m, obs, first_seen)
        waited = _seconds(obs.now - began)
        if timeout > 0 and waited > timeout:
            what = "no node" if node is None else f"node {node.name} not Ready"
            reasons.append(
                f"{NODE_STARTUP_TIMEOUT}: {what} {int(waited)}s after {began.isoformat()} "
                f"(nodeStartupTimeout {timeout}s)"
            )

    if node is not None:
        for uc in check.unhealthy_conditions:
            c = next((c for c in node_conditions(node) if c.type == uc.type), None)
            if c is None or c.status != uc.status:
                continue
            since = c.since
            if since is None and (t := held.get(condition_key(m.name, c.type, c.status))) is not None:
                since = dt.datetime.fromtimestamp(t, dt.UTC)
            if since is None:
                continue  # first sighting without a transition time: the clock starts now
            if _seconds(obs.now - since) > uc.timeout_seconds:
                reasons.append(
                    f"{UNHEALTHY_CONDITION}: node {node.name} reports {uc.type}={uc.status} "
                    f"for more than {uc.timeout_seconds}s (since {since.isoformat()})"
                )
    if reasons:
        return Verdict(machine=m.name, owner=owner, state="unhealthy", reasons=tuple(reasons))
    has_node = node is not None if obs.nodes is not None else bool(m.node_name)
    return Verdict(machine=m.name, owner=owner, state="healthy" if has_node else "starting")


def covered(check: HealthCheckSpec, m: WatchedMachine) -> bool:
    """Does the check's (resolved) selector match the machine's owner?"""
    if m.owner == "control-plane":
        return check.control_plane
    return m.owner_name in check.machine_deployments


class CheckEvaluation(Frozen):
    check: str
    expected: int
    healthy: int
    verdicts: tuple[Verdict, ...]
    allowance: tuple[bool, int, str]  # RemediationAllowance as plain data
    # Unhealthy machines to ask owners about now (maxInFlight applied), in priority order.
    remediate: tuple[str, ...] = ()
    # Unhealthy machines waiting for a free maxInFlight slot, and why.
    deferred: tuple[str, ...] = ()
    in_flight: tuple[str, ...] = ()
    note: str = ""
    # Machines the selector matches that are not targets (paused / skip-remediation), and why.
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def allowed(self) -> bool:
        return self.allowance[0]

    @property
    def reason(self) -> str:
        return self.allowance[2]

    @property
    def unhealthy(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.unhealthy)


def evaluate_check(
    check: HealthCheckSpec,
    machines: Sequence[WatchedMachine],
    obs: Observation,
    *,
    first_seen: Mapping[str, float],
    condition_first_seen: Mapping[str, float],
    unhealthy_since: Mapping[str, float],
    in_flight: Iterable[str],
) -> CheckEvaluation:
    """Assess the check's machines, apply maxUnhealthy / unhealthyRange, then maxInFlight.

    `in_flight`: machines whose remediation an owner accepted and which still exist; they are
    not asked about again and they take maxInFlight slots. Candidates go oldest detection first
    (then by name), so a machine waiting longest is remediated first — after the ones marked with
    the remediate-machine annotation.
    """
    matched = [m for m in machines if covered(check, m)]
    skipped = tuple((m.name, why) for m in matched if (why := skip_reason(m)) is not None)
    targets = [m for m in matched if skip_reason(m) is None]
    verdicts = tuple(
        assess(
            m,
            check,
            obs,
            first_seen=first_seen.get(m.name),
            condition_first_seen=condition_first_seen,
        )
        for m in targets
    )
    expected = len(targets)
    healthy = sum(1 for v in verdicts if v.healthy)
    allowance: RemediationAllowance = max_unhealthy_allows(
        check.max_unhealthy, check.unhealthy_range, expected, expected - healthy
    )
    names = {m.name for m in targets}
    flying = tuple(sorted(n for n in set(in_flight) if n in names))
    if not allowance.allowed or not check.remediation_enabled:
        return CheckEvaluation(
            check=check.name,
            expected=expected,
            healthy=healthy,
            verdicts=verdicts,
            allowance=tuple(allowance),  # type: ignore[arg-type]
            in_flight=flying,
            note="" if check.remediation_enabled else "remediation disabled for this check",
            skipped=skipped,
        )
    marked = {m.name for m in targets if marked_for_remediation(m)}
    candidates = sorted(
        (v.machine for v in verdicts if v.unhealthy and v.machine not in flying),
        key=lambda n: (n not in marked, unhealthy_since.get(n, obs.now.timestamp()), n),
    )
    limited = limit_in_flight(candidates, check.max_in_flight, expected, len(flying))
    return CheckEvaluation(
        check=check.name,
        expected=expected,
        healthy=healthy,
        verdicts=verdicts,
        allowance=tuple(allowance),  # type: ignore[arg-type]
        remediate=limited.start,
        deferred=limited.deferred,
        in_flight=flying,
        note=limited.reason,
        skipped=skipped,
    )


def healthy_again(
    machines: Sequence[WatchedMachine], evaluations: Sequence[CheckEvaluation], *, observed: bool
) -> dict[str, tuple[str, ...]]:
    """Owner key -> machines the owner still marks unhealthy that are not unhealthy now.

    A mark is left by a remediation request and, like CAPI's HealthCheckSucceeded condition, it
    must follow each round's verdict: dropped when a check finds the machine healthy, or when no
    check selects it any more (only after a complete observation: `observed`). A machine some
    check still finds unhealthy, one still starting, and one being deleted keep their marks.
    """
    verdicts: dict[str, list[Verdict]] = {}
    for ev in evaluations:
        for v in ev.verdicts:
            verdicts.setdefault(v.machine, []).append(v)
    found: dict[str, list[str]] = {}
    for m in machines:
        if not m.marked_unhealthy or m.deleting:
            continue
        seen = verdicts.get(m.name, [])
        if any(v.unhealthy for v in seen):
            continue
        if any(v.healthy for v in seen) or (not seen and observed):
            found.setdefault(owner_key(m), []).append(m.name)
    return {owner: tuple(sorted(names)) for owner, names in sorted(found.items())}
