"""The scale benchmark's part of docs/BENCHMARKS.md: its section, summary rows and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capt.dev.bench import results
from capt.dev.bench.scale.settings import FULL_CREATE, FULL_STEADY, PROFILE_NOTE

# --------------------------------------------------------------------------------------------
# the report


def _ms(q: dict | None, key: str) -> str:
    v = (q or {}).get(key)
    if v is None:
        return "–"
    return "> 60 s" if v == float("inf") else f"{v:g} ms"


def _s(v: float | None) -> str:
    return "–" if v is None else f"{v} s"


def _settings(r: dict[str, Any]) -> str:
    env = r.get("worker_env") or {}
    return "".join(f", {k.removeprefix('CAPT_').lower()}={v}" for k, v in sorted(env.items()))


def _net(c: dict[str, Any], who: str) -> float:
    return c.get(f"{who}_cpu_s_per_cluster_net", c[f"{who}_cpu_s_per_cluster"])


def _cpu(c: dict[str, Any], who: str) -> str:
    gross, net = c[f"{who}_cpu_s_per_cluster"], _net(c, who)
    return f"{gross}" if c["size"] == c["new_clusters"] else f"{gross} (net {net})"


def _ratio(capt: float | None, anchor: float) -> str:
    if not capt:
        return "–"
    return f"{anchor / capt:.1f}× less" if capt <= anchor else f"{capt / anchor:.1f}× more"


def section(data: dict[str, Any]) -> str:
    lines = [
        "## 3. Many clusters on one worker and one dev server (local stack)",
        "",
        "Clusters of 1 control-plane machine (+ 0 or 1 worker machine), each in a namespace of its own, applied"
        " at once in cumulative steps on one local stack with ONE worker process; the simulator's delays are"
        f" {data['simulator_settings']} (seconds), so the figures measure capt, Temporal and the emulated AWS more"
        " than waiting. CPU is /proc utime+stime of each process and its descendants; moto and the simulator"
        " stand in for AWS and the clusters' nodes and share the same cores. Apply→Ready is per cluster (its"
        " ClusterStatus.phase_since); latencies are the SDK's Prometheus histograms (bucket upper bounds).",
        "",
        "| run | clusters | new (CP+W) | all Ready after | apply→Ready p50 / p99 | worker CPU-s / cluster |"
        " server CPU-s / cluster | moto+sim CPU-s / cluster | cores busy | peak RSS worker / server |"
        " workflow tasks/s |",
        "|---|---:|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in data["runs"]:
        for c in r["creates"]:
            ready = (
                f"{c['wall_seconds']:.0f} s"
                if c["all_ready"]
                else f"**{c['ready']}/{c['size']} Ready after {c['wall_seconds']:.0f} s**"
            )
            lines.append(
                f"| {r['label']}{_settings(r)} | {c['size']} | {c['new_clusters']} (1+{r['workers_per_cluster']}) | {ready}"
                f" | {_s(c['time_to_ready_p50'])} / {_s(c['time_to_ready_p99'])} | {_cpu(c, 'worker')}"
                f" | {_cpu(c, 'server')} | {c['emulation_cpu_s_per_cluster']} | {c['cores_busy']}"
                f" | {c['peak_rss_mib']['worker']} / {c['peak_rss_mib']['temporal']} MiB"
                f" | {c['workflow_tasks_per_second']} |"
            )
    if any(c["size"] > c["new_clusters"] for r in data["runs"] for c in r["creates"]):
        lines += [
            "",
            "A step's CPU includes what the clusters that already existed cost meanwhile; (net …) takes that out at"
            " the previous steady state's rate.",
        ]
    idles = [(r, s) for r in data["runs"] for s in r["idle"]]
    if idles:
        lines += [
            "",
            "Steady state (nothing changing: the health rounds, the owners' rechecks, continue-as-new):",
            "",
            "| clusters | running workflows | seconds | worker % of a core | server % of a core | per cluster (worker + server) |"
            " RSS worker / server | WFT schedule-to-start p50 / p99 | WFT execution p50 / p99 | health round p50 / p99 |",
            "|---:|---:|---:|---:|---:|---:|---|---|---|---|",
        ]
        for r, s in idles:
            pct = s["cpu_pct_of_a_core"]
            hr = s["health_rounds"]
            rounds = (
                f"{hr['p50_s']} s / {hr['p99_s']} s ({hr['rounds']} rounds in {hr['sampled']} clusters)"
                if hr.get("rounds")
                else f"– ({hr.get('note', '')})"
            )
            lines.append(
                f"| {s['size']} (1+{r['workers_per_cluster']}) | {s.get('running_workflows', '–')} | {s['seconds']:.0f} | {pct['worker']} | {pct['temporal']}"
                f" | {(pct['worker'] + pct['temporal']) / s['size']:.3f} % | {s['rss_mib']['worker']} / {s['rss_mib']['temporal']} MiB"
                f" | {_ms(s['workflow_task_schedule_to_start_ms'], 'p50')} / {_ms(s['workflow_task_schedule_to_start_ms'], 'p99')}"
                f" | {_ms(s['workflow_task_execution_ms'], 'p50')} / {_ms(s['workflow_task_execution_ms'], 'p99')}"
                f" | {rounds} |"
            )
        lines += [
            "",
            "A health round is the health workflow's timer firing → its next interval's timer started (the"
            " observation activities and the verdict in between), from a sample of the health workflows' histories;"
            " HealthStatus itself exposes no round timing.",
        ]
    lines += ["", "**Against the anchors**", ""]
    lines += _anchor_lines(data)
    for r in data["runs"]:
        for h in r.get("histories") or []:
            if not h["window"].startswith("create"):
                continue
            pc = h["per_cluster"]
            top = ", ".join(f"{a} {n:g}" for a, n in list(h["activities_per_cluster"].items())[:6])
            types = ", ".join(f"{t} {c.get('workflow_tasks', 0):g}" for t, c in h["by_workflow_type"].items())
            lines.append(
                f"- History of {h['window']} (1+{r['workers_per_cluster']}), per new cluster:"
                f" {pc.get('workflow_tasks', 0):g} workflow tasks ({types}), {pc.get('activities', 0):g} activities"
                f" (most: {top}), {pc.get('timers', 0):g} timers, {pc.get('events', 0):g} events."
            )
    if data.get("note"):
        lines += ["", f"_Note on this run:_ {data['note']}"]
    lines += ["", PROFILE_NOTE]
    stopped = [r["stopped"] for r in data["runs"] if r.get("stopped")]
    if stopped:
        lines += ["", *(f"**Not reached:** {s}." for s in stopped)]
    if not data.get("full"):
        lines += [
            "",
            f"These are not the issue's full sizes (`python -m capt.dev.bench scale --full`: {FULL_CREATE:,} single-node"
            f" clusters, then steady state at {', '.join(map(str, FULL_STEADY))} clusters of 1+1).",
        ]
    lines += ["", "![scale: cost](img/bench-scale-cost.png) ![scale: time](img/bench-scale-time.png)"]
    return "\n".join(lines)


def _anchor_lines(data: dict[str, Any]) -> list[str]:
    b, m, sdk = data["baseline"], data["metal3"], data["sdk_benchmark"]
    out = []
    creates = [(r, c) for r in data["runs"] for c in r["creates"]]
    idles = [(r, s) for r in data["runs"] for s in r["idle"]]
    # Before this wave: 20 clusters of 1+1 applied at once.
    like = [(r, c) for r, c in creates if r["workers_per_cluster"] == b["workers_per_cluster"]]
    out.append(
        f"- Before this wave (the old code): {b['clusters']} clusters of 1 CP + 1 worker applied at once were all"
        f" Ready in {b['ready_seconds']} s, costing the worker {b['worker_cpu_s_per_cluster']} CPU-s and the"
        f" Temporal dev server {b['server_cpu_s_per_cluster']} CPU-s per cluster; idle, {b['clusters']} clusters kept"
        f" the worker at {b['idle_worker_pct']} % and the server at {b['idle_server_pct']} % of a core."
    )
    for r, c in like or creates[:1]:
        if not c["all_ready"]:
            out.append(
                f"  - now, {c['new_clusters']} new clusters of 1+{r['workers_per_cluster']}: {c['ready']} of {c['size']}"
                f" Ready after {c['wall_seconds']:.0f} s (cut off: no cost per cluster to compare)."
            )
            continue
        shape = f"1+{r['workers_per_cluster']}"
        wall = (
            f"all Ready in {c['wall_seconds']:.0f} s"
            + (
                f" ({_ratio(c['wall_seconds'], b['ready_seconds'])} than 73 s)"
                if c["new_clusters"] == b["clusters"]
                else ""
            )
            if c["all_ready"]
            else f"{c['ready']} Ready after {c['wall_seconds']:.0f} s"
        )
        w, sv = _net(c, "worker"), _net(c, "server")
        net = " net of the existing clusters' steady state" if c["size"] > c["new_clusters"] else ""
        out.append(
            f"  - now, {c['new_clusters']} new clusters of {shape}: {wall}; per cluster{net}, worker {w} CPU-s"
            f" ({_ratio(w, b['worker_cpu_s_per_cluster'])}), server {sv} ({_ratio(sv, b['server_cpu_s_per_cluster'])})."
        )
    for r, s in idles:
        pct = s["cpu_pct_of_a_core"]
        bw, bs = b["idle_worker_pct"] / b["clusters"], b["idle_server_pct"] / b["clusters"]
        w, sv = pct["worker"] / s["size"], pct["temporal"] / s["size"]
        out.append(
            f"  - idle at {s['size']} clusters of 1+{r['workers_per_cluster']}: worker {pct['worker']} %, server"
            f" {pct['temporal']} % of a core, i.e. {w:.3f} % and {sv:.3f} % per cluster against {bw:.3f} % and"
            f" {bs:.3f} % before ({_ratio(w, bw)}, {_ratio(sv, bs)})."
        )
    rate = m["clusters"] / (m["minutes"] * 60)
    core_s = m["cores"] * m["minutes"] * 60 / m["clusters"]
    out.append(
        f"- metal3: {m['clusters']:,} single-node in-memory clusters in ~{m['minutes']} min on a {m['cores']}-core"
        f" laptop, i.e. {rate * 60:.0f} clusters/min and at most {core_s:.1f} core-s per cluster (if every core was busy)."
    )
    for r, c in creates:
        if not c["all_ready"] or c["new_clusters"] < 10:
            continue
        capt_rate = c["new_clusters"] / c["wall_seconds"]
        cost = sum(c["cpu_seconds"].values()) / c["new_clusters"]
        out.append(
            f"  - capt, {c['new_clusters']} new clusters of 1+{r['workers_per_cluster']} on {data.get('machine', {}).get('cores', 2)} cores"
            f" (AWS and nodes emulated on the same cores): {capt_rate * 60:.0f} clusters/min ({capt_rate / rate:.2f}× metal3's rate),"
            f" {cost:.2f} CPU-s per cluster all processes included ({_ratio(cost, core_s)} than metal3's bound)."
        )
    out.append(
        f"- Temporal Python SDK benchmark: ~{sdk['workflows_per_second']} {sdk['what']}. capt's single worker"
        " sustained "
        + (
            ", ".join(
                f"{c['workflow_tasks_per_second']} workflow tasks/s creating {c['new_clusters']}"
                for _, c in creates
            )
            or "–"
        )
        + " (each task a real one: replaying, deciding, encoding payloads; a trivial workflow is 1–2 tasks)."
    )
    return out


def summary(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    b = data["baseline"]
    creates = [
        (r, c) for r in data["runs"] for c in r["creates"] if r["workers_per_cluster"] == 1 and c["all_ready"]
    ]
    if creates:
        same = [(r, c) for r, c in creates if c["new_clusters"] == b["clusters"]]
        r, c = (same or creates)[-1]
        per = _net(c, "worker") + _net(c, "server")
        base = b["worker_cpu_s_per_cluster"] + b["server_cpu_s_per_cluster"]
        rows.append(
            (
                f"create cost, {c['new_clusters']} clusters of 1+1 at once (worker + server CPU-s per cluster)",
                f"{base:g} before this wave (20 clusters)",
                f"{per:.2f}",
                _ratio(per, base),
            )
        )
    idles = [(r, s) for r in data["runs"] for s in r["idle"] if r["workers_per_cluster"] == 1]
    if idles:
        r, s = idles[-1]
        pct = s["cpu_pct_of_a_core"]["worker"] + s["cpu_pct_of_a_core"]["temporal"]
        base_per = (b["idle_worker_pct"] + b["idle_server_pct"]) / b["clusters"]
        per = pct / s["size"]
        rows.append(
            (
                f"idle cost at {s['size']} clusters of 1+1 (worker + server, % of a core per cluster)",
                f"{base_per:.3f} before this wave (20 clusters)",
                f"{per:.3f}",
                _ratio(per, base_per),
            )
        )
    return rows


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results.IMAGES.mkdir(parents=True, exist_ok=True)
    b = data["baseline"]
    paths = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, r in enumerate(data["runs"]):
        cs = [c for c in r["creates"] if c["all_ready"]]  # a step cut off by its deadline has no cost
        if not cs:
            continue
        x = [c["size"] for c in cs]
        tag = f" (1+{r['workers_per_cluster']})"
        ax1.plot(
            x,
            [_net(c, "worker") for c in cs],
            "o-",
            color="C0",
            alpha=1 - 0.4 * i,
            label="worker" + tag,
        )
        ax1.plot(
            x,
            [_net(c, "server") for c in cs],
            "s-",
            color="C1",
            alpha=1 - 0.4 * i,
            label="dev server" + tag,
        )
        ax1.plot(
            x,
            [c["emulation_cpu_s_per_cluster"] for c in cs],
            "^--",
            color="C2",
            alpha=1 - 0.4 * i,
            label="moto+sim" + tag,
        )
    ax1.axhline(b["worker_cpu_s_per_cluster"], color="C0", linestyle=":", linewidth=1)
    ax1.axhline(b["server_cpu_s_per_cluster"], color="C1", linestyle=":", linewidth=1)
    ax1.set_xlabel("clusters")
    ax1.set_ylabel("CPU-s per new cluster, net (dotted: before)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=7)
    ax1.set_title("create cost", fontsize=9)
    idles = [(r, s) for r in data["runs"] for s in r["idle"]]
    if idles:
        x = [s["size"] for _, s in idles]
        ax2.plot(x, [s["cpu_pct_of_a_core"]["worker"] for _, s in idles], "o-", label="worker")
        ax2.plot(x, [s["cpu_pct_of_a_core"]["temporal"] for _, s in idles], "s-", label="dev server")
        ax2.plot([b["clusters"]], [b["idle_worker_pct"]], "o", mfc="none", color="C0", label="worker before")
        ax2.plot([b["clusters"]], [b["idle_server_pct"]], "s", mfc="none", color="C1", label="server before")
        ax2.set_xlabel("clusters")
        ax2.set_ylabel("% of a core, idle")
        ax2.set_ylim(bottom=0)
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "no steady state measured", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_title("steady-state cost", fontsize=9)
    fig.tight_layout()
    path = results.IMAGES / "bench-scale-cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, r in enumerate(data["runs"]):
        cs = [c for c in r["creates"] if c["all_ready"]]
        if not r["creates"]:
            continue
        x = [c["size"] for c in cs]
        tag = f" (1+{r['workers_per_cluster']})"
        ax1.plot(x, [c["wall_seconds"] for c in cs], "o-", color=f"C{3 * i}", label="all Ready" + tag)
        ax1.plot(
            x,
            [c["time_to_ready_p99"] or 0 for c in cs],
            "s--",
            color=f"C{3 * i + 1}",
            label="apply→Ready p99" + tag,
        )
        ax1.plot(
            x,
            [c["time_to_ready_p50"] or 0 for c in cs],
            "^:",
            color=f"C{3 * i + 2}",
            label="apply→Ready p50" + tag,
        )
        for c in r["creates"]:
            t = [p[0] for p in c["timeline"]]
            cut = "" if c["all_ready"] else " (cut off)"
            ax2.plot(t, [p[1] for p in c["timeline"]], label=f"{c['size']} clusters{tag}{cut}")
    ax1.plot([b["clusters"]], [b["ready_seconds"]], "*", color="k", label="before (20 × 1+1)")
    ax1.set_xlabel("clusters")
    ax1.set_ylabel("seconds")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=7)
    ax1.set_title("time to Ready", fontsize=9)
    ax2.set_xlabel("seconds since the step's apply")
    ax2.set_ylabel("clusters Ready")
    ax2.legend(fontsize=7)
    ax2.set_title("Ready over time", fontsize=9)
    fig.tight_layout()
    path = results.IMAGES / "bench-scale-time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths
