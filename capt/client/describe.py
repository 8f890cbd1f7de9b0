"""`capt describe cluster` and `capt get clusters`: a clusterctl-like tree, a table, and JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import groupby

from capt.workflows.cluster.models import ClusterStatus


def as_json(s: ClusterStatus) -> dict:
    cp = s.control_plane
    machines = []
    if cp:
        machines += [
            {
                "name": m.name,
                "role": "control-plane",
                "deployment": None,
                "phase": m.phase,
                "instanceId": m.instance_id,
                "availabilityZone": m.availability_zone,
                "version": m.version,
                "nodeName": m.node_name,
                "nodeReady": m.node_ready,
                # Why a machine is Failed or unhealthy (AWS's code and message for a refused create).
                "message": m.message,
            }
            for m in cp.machines
        ]
    for d in s.deployments:
        machines += [
            {
                "name": m.name,
                "role": "worker",
                "deployment": d.name,
                "phase": m.phase,
                "instanceId": m.instance_id,
                "availabilityZone": m.availability_zone,
                "version": d.version if m.up_to_date else None,
                "nodeName": m.node_name,
                "nodeReady": m.node_ready,
                # Why a machine is Failed or unhealthy (AWS's code and message for a refused create).
                "message": m.message,
            }
            for m in d.machines
        ]
    return {
        "name": s.name,
        "namespace": s.namespace,
        "clusterId": s.cluster_id or s.name,
        "region": s.region,
        "phase": s.phase,
        "message": s.message,
        "paused": s.paused,
        "endpoint": s.endpoint,
        "infrastructure": s.infrastructure.model_dump(mode="json"),
        "controlPlane": {
            "name": cp.name,
            "replicas": cp.desired_replicas,
            "current": cp.replicas,
            "ready": cp.ready_replicas,
            "upToDate": cp.up_to_date_replicas,
            "version": cp.version,
            "initialized": cp.initialized,
            "operation": cp.operation,
        }
        if cp
        else None,
        "deployments": [
            {
                "name": d.name,
                "replicas": d.desired_replicas,
                "current": d.replicas,
                "ready": d.ready_replicas,
                "available": d.available_replicas,
                "upToDate": d.up_to_date_replicas,
                "revision": d.revision,
                "version": d.version,
                "phase": d.phase,
            }
            for d in s.deployments
        ],
        "machines": machines,
        "readyMachines": s.ready_machines,
        "desiredMachines": s.desired_machines,
        "events": s.events,
        "blocked": [b.model_dump(mode="json") for b in s.blocked],
    }


def _row(
    rows: list[tuple[str, str, str, str, str]],
    name: str,
    ready: bool | None,
    reason: str = "",
    since: str = "",
    message: str = "",
) -> None:
    rows.append((name, "" if ready is None else str(ready), reason, since, message))


def _since(when: datetime | None, now: datetime) -> str:
    if when is None:
        return ""
    seconds = int((now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _machine_rows(rows, prefix: str, machines: list, now: datetime) -> None:
    """Machines in the same state are grouped, as clusterctl does."""

    def state(m):
        return (
            m.phase,
            m.node_ready,
            getattr(m, "up_to_date", True),
            m.message if m.phase != "Running" else "",
        )

    groups = [(k, list(g)) for k, g in groupby(sorted(machines, key=state), key=state)]
    for i, ((phase, ready, up_to_date, message), members) in enumerate(groups):
        branch = "└─" if i == len(groups) - 1 else "├─"
        reason = "" if ready else phase
        detail = message or ("" if up_to_date else "outdated")
        if len(members) == 1:
            m = members[0]
            label = f"Machine/{m.name}"
            detail = " ".join(x for x in (m.availability_zone or "", m.instance_id or "", detail) if x)
        else:
            label = f"{len(members)} Machines..."
            detail = (detail + " " if detail else "") + "See " + ", ".join(m.name for m in members)
        since = _since(getattr(members[0], "since", None), now)
        _row(rows, f"{prefix}{branch}{label}", ready, reason, since, detail)


def tree(s: ClusterStatus, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    rows: list[tuple[str, str, str, str, str]] = []
    ready = s.phase == "Ready"
    since = _age(s.phase_since, now) if s.phase_since else ""
    _row(rows, f"Cluster/{s.name}", ready, "" if ready else s.phase, since, s.message)
    infra = s.infrastructure
    _row(
        rows,
        f"├─ClusterInfrastructure - AWSCluster/{s.name}",
        infra.vpc_id is not None,
        "" if infra.vpc_id else "Provisioning",
        "",
        " ".join(
            x
            for x in (
                f"id {s.cluster_id}" if s.cluster_id else "",
                infra.vpc_id or "",
                f"{len(infra.availability_zones)} AZs" if infra.availability_zones else "",
                infra.endpoint or "",
            )
            if x
        ),
    )
    cp = s.control_plane
    workers_branch = "└─Workers"
    if cp:
        _row(
            rows,
            f"├─ControlPlane - KubeadmControlPlane/{cp.name}",
            cp.ready,
            ""
            if cp.ready
            else (
                "Paused" if cp.paused else "ScalingUp" if cp.replicas < cp.desired_replicas else "Updating"
            ),
            "",
            f"{cp.ready_replicas}/{cp.desired_replicas} ready, {cp.up_to_date_replicas} up to date, {cp.version}"
            + ("" if cp.ready else f" — {cp.operation}"),
        )
        _machine_rows(rows, "│ ", cp.machines, now)
    if s.deployments:
        _row(rows, workers_branch, None)
        for i, d in enumerate(s.deployments):
            last = i == len(s.deployments) - 1
            d_ready = d.ready_replicas == d.desired_replicas == d.up_to_date_replicas == d.replicas
            _row(
                rows,
                f"  {'└─' if last else '├─'}MachineDeployment/{d.name}",
                d_ready,
                "" if d_ready else d.phase,
                "",
                f"{d.ready_replicas}/{d.desired_replicas} ready, {d.available_replicas} available, "
                f"{d.up_to_date_replicas} up to date, {d.version}",
            )
            _machine_rows(rows, "    " if last else "  │ ", d.machines, now)
    for i, b in enumerate(s.blocked):
        _row(
            rows,
            f"{'└─' if i == len(s.blocked) - 1 else '├─'}Blocked/{b.resource_id}",
            False,
            b.resource_kind,
            "",
            b.text(),
        )
    widths = [
        max(len(r[i]) for r in rows + [("NAME", "READY", "REASON", "SINCE", "MESSAGE")]) for i in range(4)
    ]
    header = ("NAME", "READY", "REASON", "SINCE", "MESSAGE")
    lines = [
        "  ".join(col.ljust(w) for col, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def table(clusters: list[ClusterStatus]) -> str:
    header = ("NAMESPACE", "NAME", "PHASE", "VERSION", "READY", "ENDPOINT")
    rows = [header] + [
        (
            s.namespace,
            s.name,
            s.phase,
            s.version,
            f"{s.ready_machines}/{s.desired_machines}",
            s.endpoint or "",
        )
        for s in clusters
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def machines_table(statuses: list[ClusterStatus]) -> str:
    """`capt get machines`: one line per machine of every cluster given."""
    rows = [("NAME", "CLUSTER", "ROLE", "PHASE", "VERSION", "NODE", "AZ", "INSTANCE")]
    for s in statuses:
        for m in as_json(s)["machines"]:
            rows.append(
                (
                    m["name"],
                    f"{s.namespace}/{s.name}",
                    m["role"],
                    m["phase"],
                    m["version"] or "-",
                    m["nodeName"] or "-",
                    m["availabilityZone"] or "-",
                    m["instanceId"] or "-",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _age(started: datetime | None, now: datetime) -> str:
    if started is None:
        return "-"
    seconds = int((now - started).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def rows_table(rows: list[dict], now: datetime | None = None) -> str:
    """`capt get clusters`: the visibility rows (client.clusters.cluster_rows) as a table."""
    now = now or datetime.now(UTC)
    out = [("NAMESPACE", "NAME", "PHASE", "VERSION", "READY", "AGE")]
    for r in rows:
        ready = "-" if r["readyMachines"] is None else str(r["readyMachines"])
        out.append(
            (r["namespace"], r["name"], r["phase"], r["version"] or "-", ready, _age(r["started"], now))
        )
    widths = [max(len(row[i]) for row in out) for i in range(len(out[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in out)
