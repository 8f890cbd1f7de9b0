"""The AWS-calls benchmark's tables and its part of docs/BENCHMARKS.md: section, summary rows
and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capt.dev.bench import results
from capt.dev.bench.aws_calls.ops import operation
from capt.dev.bench.aws_calls.steady import CAPT_HEALTH_INTERVAL_SECONDS, capa_poll_per_hour


def render_tables(data: dict[str, Any]) -> str:
    net = data["network"]
    lines = [
        "network (reference cluster)",
        f"{'phase':<14} {'total':>6} {'mutating':>9} {'reads':>6} {'minimum':>8}",
    ]
    for phase, d in net.items():
        lines.append(
            f"{phase:<14} {d['total']:>6} {d['mutating']:>9} {d['reads']:>6} {d.get('mutating_minimum', ''):>8}"
        )
    again = net["create again"]["mutating_by_operation"]
    lines.append(f"create again, mutating: {again or 'none'}")
    lines.append(f"create beyond the mutating minimum: {net['create']['beyond_minimum'] or 'nothing'}")
    lines += ["", "one machine (AWS calls)", f"{'machine':<40} {'total':>6} {'mutating':>9} {'reads':>6}"]
    for kind, d in data["machine_create"].items():
        lines.append(f"{'create: ' + kind:<40} {d['total']:>6g} {d['mutating']:>9g} {d['reads']:>6g}")
    for label, d in (
        ("create: worker (deployment)", data["worker_create_deployment"]),
        ("delete: worker", data["worker_delete"]),
    ):
        lines.append(f"{label:<40} {d['total']:>6g} {d['mutating']:>9g} {d['reads']:>6g}")
    up = data["rolling_upgrade"]
    lines += [
        "",
        f"rolling upgrade of {up['workers']} workers: {up['total']:.0f} AWS calls ({up['mutating']:.0f} mutating),"
        f" {up['per_replaced_machine']['total']:.1f} per replaced machine",
        "",
        "steady state per hour (health check)",
        f"{'cluster':<8} {'capt':>6} {'CAPA model (10 min)':>20} {'per-machine poll (30 s)':>24}",
    ]
    for r in data["steady_state"]:
        lines.append(
            f"{r['cluster']:<8} {r['per_hour']:>6.0f} {r['capa_sync_period_per_hour']:>20.0f}"
            f" {r['per_machine_poll_30s_per_hour']:>24.0f}"
        )
    return "\n".join(lines)


def section(data: dict[str, Any]) -> str:
    net = data["network"]
    create, again, delete = net["create"], net["create again"], net["delete"]
    steady = {r["cluster"]: r for r in data["steady_state"]}
    small, big = steady.get("3+3"), steady.get("3+50")
    up = data["rolling_upgrade"]
    mc = data["machine_create"]
    lines = [
        "## 2. AWS API calls per operation",
        "",
        "Anchor: [CAPA #1764](https://github.com/kubernetes-sigs/cluster-api-provider-aws/issues/1764) — per-machine"
        " Describe calls were ~80 % of an account's API calls. Every figure is botocore's count of the real"
        " activities' requests against in-process moto (`capt/dev/bench/aws_calls/`), multiplied by how often the"
        " workflows run each activity on the time-skipping server.",
        "",
        "### Network (reference cluster)",
        "",
        "| phase | AWS calls | mutating | reads | mutating minimum | total / minimum |",
        "|---|---:|---:|---:|---:|---:|",
        f"| create | {create['total']} | {create['mutating']} | {create['reads']} | {create['mutating_minimum']}"
        f" | {create['total'] / max(create['mutating_minimum'], 1):.2f} |",
        f"| create again | {again['total']} | {again['mutating']} | {again['reads']} | 0 | — |",
        f"| delete | {delete['total']} | {delete['mutating']} | {delete['reads']} | | |",
        "",
        "The mutating minimum is a census of what the create left behind: one call per resource, plus one per"
        " setting a create call cannot carry and that differs from AWS's default (a VPC's DNS hostnames, a subnet's"
        " public IPs, each route and route-table association, one Authorize per security group with ingress rules,"
        " a load balancer's health check and cross-zone setting); tags are free (create calls carry them)."
        f" The create made {create['mutating']} mutating calls against a minimum of {create['mutating_minimum']}"
        f" Made minus minimum, per operation: {_beyond(create['beyond_minimum'])}.",
        "",
        f"Create again made {again['creating']} creating calls and {again['mutating']} mutating calls"
        f" ({_ops(again['mutating_by_operation']) or 'none'}): "
        + (
            "attribute writes made unconditionally because setting a value again changes nothing"
            " (one call either way; reading first would cost the same call)."
            if again["mutating"]
            else "a re-run only reads."
        ),
        "",
        "### Per machine",
        "",
        "| machine | AWS calls | mutating | reads | RunInstances |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, d in mc.items():
        lines.append(
            f"| create: {kind} (3+3 create) | {d['total']:g} | {d['mutating']:g} | {d['reads']:g} | {d['run_instances']:g} |"
        )
    for label, d in (
        ("create: worker (MachineDeployment)", data["worker_create_deployment"]),
        ("delete: worker", data["worker_delete"]),
    ):
        lines.append(
            f"| {label} | {d['total']:g} | {d['mutating']:g} | {d['reads']:g} | {d['aws_calls'].get('ec2:RunInstances', 0):g} |"
        )
    kinds = list(mc)
    lines += [
        "",
        "Each activity's calls, measured once against moto, and how often a machine's create ran it in the 3+3"
        " create (the fake cloud's count over the latency model's boot and join times; `describe_instance` is the"
        " poll until the instance runs):",
        "",
        "| activity (case) | AWS calls per execution | " + " | ".join(f"per {k}" for k in kinds) + " |",
        "|---|---|" + "---:|" * len(kinds),
    ]
    for label, ops in data["activity_costs"].items():
        per = [mc[k]["executions"].get(label, 0) for k in kinds]
        lines.append(
            f"| `{label}` | {', '.join(f'{operation(o)} {n}' for o, n in ops.items())} | "
            + " | ".join(f"{n:g}" if n else "" for n in per)
            + " |"
        )
    lines += [
        "",
        "Measured but not run by these creates: `refresh_bootstrap_token` (a join pending past 5 minutes),"
        " `lookup_machine_instance` (deleting a machine whose workflow never recorded its instance),"
        " `deregister_from_load_balancer` and the second-call cases (retries, deletes)."
        " moto shows a new instance at once: `ensure_instance`'s wait until DescribeInstances knows it took one"
        " call here and may take a few more in AWS (every 2 s, up to 10).",
        "",
        "Not measured against moto (counted as executions, not AWS calls): "
        + "; ".join(f"`{k}` ({v})" for k, v in data["not_measured"].items())
        + ". A control-plane machine's delete (etcd member removal over SSM) is not run.",
        "",
        "### Steady state and rolling upgrade",
        "",
        "| cluster | capt health check / h | CAPA model: 1 DescribeInstances per machine per 10 min / h |"
        " per-machine poll every 30 s / h |",
        "|---|---:|---:|---:|",
    ]
    for r in data["steady_state"]:
        lines.append(
            f"| {r['cluster']} | {r['per_hour']:.0f} | {r['capa_sync_period_per_hour']:.0f}"
            f" | {r['per_machine_poll_30s_per_hour']:.0f} |"
        )
    if small and big:
        lines += [
            "",
            f"3+50 vs 3+3: {big['per_hour'] / small['per_hour']:.2f}× for capt (one cluster-wide DescribeInstances per"
            f" check), {big['capa_sync_period_per_hour'] / small['capa_sync_period_per_hour']:.2f}× for a per-machine"
            f" poll. capt's check runs every {data['capa_model']['capt_health_interval_seconds']} s, so at CAPA's"
            f" default sync period a per-machine poll is cheaper below"
            f" {small['per_hour'] * data['capa_model']['sync_period_minutes'] * 60 / 3600:.0f} machines"
            " and dearer above; at the same 30 s detection interval it costs one call per machine per check."
            " The model is a floor for CAPA: it counts only AWSMachine's DescribeInstances per periodic reconcile,"
            " not reconciles triggered by events or requeues, nor AWSCluster's network describes."
            " Not in capt's figure: `list_workload_nodes` reads the workload cluster's credentials from Secrets"
            " Manager when its 300 s TLS-context cache misses (at most 24 GetSecretValue per hour per worker"
            " process, also flat in machine count).",
        ]
    lines += [
        "",
        f"A rolling upgrade of {up['workers']} workers (maxSurge 1, maxUnavailable 0) made {up['total']:.0f} AWS calls"
        f" ({up['mutating']:.0f} mutating): {up['per_replaced_machine']['total']:.1f} per replaced machine"
        f" ({up['per_replaced_machine']['mutating']:.1f} mutating).",
        "",
    ]
    return "\n".join(lines)


# Why a create's mutating calls differ from the census, where the reason is known.
BEYOND_MINIMUM_REASONS = {
    ("ModifyVpcAttribute", 1): "capt also sets DNS support, which a new VPC already has",
    ("RevokeSecurityGroupIngress", -1): "moto's default security group lacks AWS's rule letting the group's"
    " own traffic in, so capt had nothing to revoke; in AWS it makes this call too: one mutating call more"
    " than measured, which the minimum already counts",
}


def _beyond(beyond: dict[str, int]) -> str:
    if not beyond:
        return "nothing"
    return "; ".join(
        f"{op} {n:+d}"
        + (f" ({BEYOND_MINIMUM_REASONS[(op, n)]})" if (op, n) in BEYOND_MINIMUM_REASONS else "")
        for op, n in beyond.items()
    )


def _ops(ops: dict[str, Any]) -> str:
    return ", ".join(
        f"{operation(k)} {v:+g}" if isinstance(v, int) and v < 0 else f"{operation(k)} {v:g}"
        for k, v in ops.items()
    )


def summary(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    create, again = data["network"]["create"], data["network"]["create again"]
    steady = {r["cluster"]: r for r in data["steady_state"]}
    up = data["rolling_upgrade"]
    rows = [
        (
            "network create: AWS calls",
            f"mutating minimum {create['mutating_minimum']} (census of what it made)",
            f"{create['total']} ({create['mutating']} mutating)",
            f"{create['total'] / max(create['mutating_minimum'], 1):.2f}× the minimum"
            f" (mutating {create['mutating'] / max(create['mutating_minimum'], 1):.2f}×)",
        ),
        (
            "network create again",
            "0 creating calls",
            f"{again['total']} ({again['creating']} creating, {again['mutating']} attribute re-sets)",
            f"{again['total'] / max(create['total'], 1):.2f}× the create",
        ),
    ]
    if "3+3" in steady and "3+50" in steady:
        small, big = steady["3+3"], steady["3+50"]
        rows.append(
            (
                "health check AWS calls per hour, 3+50 vs 3+3",
                "CAPA #1764: per-machine Describe calls ~80 % of an account's calls; per-machine poll"
                f" (1 per machine per {data['capa_model']['sync_period_minutes']} min)"
                f" {small['capa_sync_period_per_hour']:.0f} → {big['capa_sync_period_per_hour']:.0f}",
                f"{small['per_hour']:.0f} → {big['per_hour']:.0f}",
                f"{big['per_hour'] / small['per_hour']:.2f}× (per-machine poll"
                f" {big['capa_sync_period_per_hour'] / small['capa_sync_period_per_hour']:.2f}×)",
            )
        )
    rows.append(
        (
            f"rolling upgrade of {up['workers']} workers: AWS calls",
            "—",
            f"{up['total']:.0f} ({up['mutating']:.0f} mutating)",
            f"{up['per_replaced_machine']['total']:.1f} per replaced machine",
        )
    )
    return rows


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    # Steady state: capt's measured points and flat line against the per-machine poll models.
    steady = data["steady_state"]
    capt = steady[0]["per_hour"]
    most = max(r["machines"] for r in steady)
    xs = list(range(1, max(100, most) + 1))
    sync = data["capa_model"]["sync_period_minutes"] * 60
    right.plot(xs, [capt] * len(xs), color="#2a7ab0", label="capt health check (cluster-wide describe)")
    right.scatter([r["machines"] for r in steady], [r["per_hour"] for r in steady], color="#2a7ab0", zorder=3)
    right.plot(
        xs,
        [capa_poll_per_hour(x, sync) for x in xs],
        color="#e8a87c",
        label=f"per-machine poll every {sync // 60} min",
    )
    right.plot(
        xs,
        [capa_poll_per_hour(x, CAPT_HEALTH_INTERVAL_SECONDS) for x in xs],
        color="#c38d9e",
        linestyle="--",
        label=f"per-machine poll every {CAPT_HEALTH_INTERVAL_SECONDS} s",
    )
    right.set_yscale("log")
    right.set_xlabel("machines in the cluster")
    right.set_ylabel("AWS calls per hour")
    right.set_title("steady state", fontsize=10)
    right.legend(fontsize=7)
    # Per operation: mutating vs reads.
    bars = [(f"network {p}", d["mutating"], d["reads"]) for p, d in data["network"].items()]
    for kind, d in data["machine_create"].items():
        bars.append((f"create {kind}", d["mutating"], d["reads"]))
    bars.append(("delete worker", data["worker_delete"]["mutating"], data["worker_delete"]["reads"]))
    per = data["rolling_upgrade"]["per_replaced_machine"]
    bars.append(("upgrade, per replaced worker", per["mutating"], per["reads"]))
    ys = list(range(len(bars)))[::-1]
    left.barh(ys, [b[1] for b in bars], color="#c0392b", label="mutating")
    left.barh(ys, [b[2] for b in bars], left=[b[1] for b in bars], color="#bbbbbb", label="reads")
    minimum = data["network"]["create"]["mutating_minimum"]
    left.plot(
        [minimum, minimum], [ys[0] - 0.4, ys[0] + 0.4], color="black", linewidth=2, label="mutating minimum"
    )
    left.set_yticks(ys, [b[0] for b in bars], fontsize=7)
    left.set_xlabel("AWS calls")
    left.set_title("AWS calls per operation", fontsize=10)
    left.legend(fontsize=7)
    fig.tight_layout()
    results.IMAGES.mkdir(parents=True, exist_ok=True)
    path = results.IMAGES / "bench-aws-calls.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
