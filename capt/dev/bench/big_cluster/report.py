"""The big-cluster benchmark's table and its part of docs/BENCHMARKS.md: section and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capt.dev.bench import results

OWNER_TYPES = ("MachineDeploymentWorkflow", "ControlPlaneWorkflow")


def table(runs: list[dict[str, Any]]) -> str:
    lines = [f"{'N':>5} {'phase':<24} {'simulated':>10} {'bound':>8} {'ratio':>6} {'wall':>7}"]
    for r in runs:
        c = r["create"]
        lines.append(
            f"{r['workers']:>5} {'create 3+N':<24} {c['seconds']:>9.0f}s {c['bound_seconds']:>7.0f}s"
            f" {c['ratio']:>6.2f} {c['wall_seconds']:>6.1f}s"
        )
        for ro in r["rollouts"]:
            lines.append(
                f"{r['workers']:>5} {'rollout maxSurge ' + str(ro['max_surge']):<24} {ro['seconds']:>9.0f}s"
                f" {ro['bound_seconds']:>7.0f}s {ro['ratio']:>6.2f} {ro['wall_seconds']:>6.1f}s"
            )
    lines.append("")
    lines.append(
        f"{'N':>5} {'workflow type':<28} {'runs':>5} {'max events':>10} {'max bytes':>11} {'wf tasks':>9}"
    )
    for r in runs:
        for name, h in r["histories"].items():
            lines.append(
                f"{r['workers']:>5} {name:<28} {h['runs']:>5} {h['max_events']:>10} {h['max_bytes']:>11,}"
                f" {h['workflow_tasks']:>9}"
            )
    return "\n".join(lines)


def section(data: dict[str, Any]) -> str:
    runs = data["runs"]
    lat = data.get("latencies", {})
    lines = [
        '<a id="big-cluster"></a>',
        "## One big cluster: 3 + N machines, created and rolled (simulated time)",
        "",
        "Cluster API's scale work aims at one cluster of 3 control-plane machines + 500 workers"
        " (kubernetes-sigs/cluster-api #8814, #13305). Here a ControlPlaneWorkflow (3 machines) and a"
        " MachineDeploymentWorkflow (N workers) over real MachineWorkflows run on the time-skipping test"
        " server with the fake cloud under the latency model (boot"
        f" {lat.get('instance_pending', '?')} s, kubeadm init {lat.get('kubeadm_init', '?')} s, join"
        f" {lat.get('kubeadm_join', '?')} s, terminate {lat.get('instance_terminate', '?')} s). The"
        " ClusterWorkflow is replaced by a stand-in that receives the owners' status signals as it does"
        " and relays the control plane's initialization to the deployment; the network (benchmark 1)"
        " and the health check are not part of this run. The deployment is created, rolled to a new"
        " version with maxSurge 1, then with maxSurge 10 % (maxUnavailable 0 both times).",
        "",
        "Bounds: the create, CP1 boot + init then two joins (workers join in parallel once CP1 is"
        " Ready); a rollout, `ceil(N / surge) × (instance_pending + kubeadm_join)` (each wave a new"
        " machine booting and joining; the old one's drain and termination overlap the next wave).",
        "",
        "| N | phase | simulated | bound | ratio | per wave | wall |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        c = r["create"]
        lines.append(
            f"| {r['workers']} | create 3+{r['workers']} | {c['seconds']:.0f} s | {c['bound_seconds']:.0f} s"
            f" | **{c['ratio']:.2f}** | | {c['wall_seconds']:.1f} s |"
        )
        for ro in r["rollouts"]:
            lines.append(
                f"| {r['workers']} | rollout, maxSurge {ro['max_surge']} ({ro['surge_machines']}),"
                f" {ro['waves']} waves | {ro['seconds']:.0f} s | {ro['bound_seconds']:.0f} s"
                f" | **{ro['ratio']:.2f}** | {ro['seconds_per_wave']:.1f} s | {ro['wall_seconds']:.1f} s |"
            )
    for r in runs:
        if r.get("incomplete"):
            lines.append(f"| {r['workers']} | not complete | {r['incomplete']} | | | | |")
    lines += [
        "",
        "Histories per workflow type (every run of every workflow; `max` is the largest single run,"
        " which is what Temporal's limits of 51,200 events / 50 MB per run apply to; warnings at"
        " 10,240 events / 10 MB):",
        "",
        "| N | workflow type | workflows | runs | max events | max bytes | total events | total bytes"
        " | workflow tasks | activities |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        for name, h in r["histories"].items():
            lines.append(
                f"| {r['workers']} | {name} | {h['workflows']} | {h['runs']} | {h['max_events']:,}"
                f" | {h['max_bytes']:,} | {h['total_events']:,} | {h['total_bytes']:,}"
                f" | {h['workflow_tasks']:,} | {h['activities']:,} |"
            )
    lines += ["", *_history_comparison(runs), ""]
    sig_rows = []
    for r in runs:
        s = r["owner_signals"]
        for name in sorted(s["count"]):
            sig_rows.append(
                f"| {r['workers']} | {name} | {s['count'][name]:,} | {s['bytes'][name]:,}"
                f" | {s['largest_bytes'][name]:,} |"
            )
    lines += [
        "Status signals to the owner (what the ClusterWorkflow records in its history):",
        "",
        "| N | signal | count | bytes | largest |",
        "|---:|---|---:|---:|---:|",
        *sig_rows,
        "",
    ]
    lines += ["![machines per version during the rollouts](img/bench-big-cluster.png)", ""]
    return "\n".join(lines)


def _history_comparison(runs: list[dict[str, Any]]) -> list[str]:
    """A sentence comparing the owners' largest run across N (continue-as-new keeps it bounded)."""
    if len(runs) < 2:
        return []
    small, big = min(runs, key=lambda r: r["workers"]), max(runs, key=lambda r: r["workers"])
    parts = []
    for t in OWNER_TYPES:
        a, b = small["histories"].get(t), big["histories"].get(t)
        if a and b:
            parts.append(
                f"{t}: largest run {a['max_events']:,} events / {a['max_bytes']:,} B at N={small['workers']}"
                f" ({a['runs']} runs) vs {b['max_events']:,} events / {b['max_bytes']:,} B at"
                f" N={big['workers']} ({b['runs']} runs)"
            )
    return ["Continue-as-new: " + "; ".join(parts) + "."] if parts else []


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.6 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        samples = r["samples"]
        versions = sorted({v for *_, by in samples for v in by})
        ts = [s[0] for s in samples]
        for v in versions:
            ax.step(ts, [s[3].get(v, 0) for s in samples], where="post", label=f"machines at {v}")
        ax.step(
            ts, [s[2] for s in samples], where="post", color="#444444", linestyle=":", label="Ready nodes"
        )
        for ro in r["rollouts"]:
            ax.axvspan(ro["start_seconds"], ro["start_seconds"] + ro["seconds"], color="#dddddd", alpha=0.4)
            ax.text(
                ro["start_seconds"],
                r["workers"] * 1.02,
                f"maxSurge {ro['max_surge']}: {ro['seconds']:.0f} s ({ro['ratio']:.2f}× bound)",
                fontsize=7,
            )
        ax.set_xlabel("seconds (simulated)")
        ax.set_ylabel("machines")
        ax.set_title(f"3 + {r['workers']}: create, rollout maxSurge 1, rollout maxSurge 10 %", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    results.IMAGES.mkdir(parents=True, exist_ok=True)
    path = results.IMAGES / "bench-big-cluster.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
