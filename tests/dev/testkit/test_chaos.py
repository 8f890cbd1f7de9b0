"""The chaos suite's definitions (capt/dev/testkit/chaos/), checked without a stack: every kill point
names a registered activity, the suite covers what issue 14 asks, the report renders."""

from __future__ import annotations

from capt.activities import kill_points
from capt.activities.aws import faults
from capt.activities.registry import ACTIVITIES
from capt.dev.testkit import history_sizes as histories
from capt.dev.testkit.chaos import cli as chaos_cli
from capt.dev.testkit.chaos import report as chaos_report
from capt.dev.testkit.chaos import scenarios as chaos_scenarios


def test_every_kill_point_names_a_registered_activity():
    names = {getattr(a, "__temporal_activity_definition").name for a in ACTIVITIES}
    for sc in chaos_scenarios.SCENARIOS:
        for phase in sc.phases:
            if phase.kill:
                (point,) = kill_points.parse_points(phase.kill)
                assert point.activity in names, (sc.id, phase.kill)


def test_the_suite_covers_the_issue():
    worker_kills = [
        (sc, p)
        for sc in chaos_scenarios.SCENARIOS
        for p in sc.phases
        if p.kill or (p.trigger and p.trigger.target == "worker")
    ]
    assert len(worker_kills) >= 20
    assert {p.op for _, p in worker_kills} >= {"create", "scale-md", "scale-cp", "upgrade", "delete"}
    # Rolling updates need a rollout with a surge: the MD kills run with 2 workers.
    assert all(sc.md >= 2 for sc, p in worker_kills if p.op == "upgrade" and sc.id.startswith("md-"))
    server = [
        p
        for sc in chaos_scenarios.SCENARIOS
        for p in sc.phases
        if p.trigger and p.trigger.target == "temporal"
    ]
    assert {p.op for p in server} == {"create", "upgrade"}
    faulty = [sc for sc in chaos_scenarios.SCENARIOS if faults.ENV_VAR in sc.worker_env]
    assert len(faulty) == 1
    spec = faults.FaultSpec.parse(faulty[0].worker_env[faults.ENV_VAR].format(seed=1))
    assert (spec.lost, spec.throttle, spec.ops) == (0.1, 0.3, "mutating")
    assert len({sc.id for sc in chaos_scenarios.SCENARIOS}) == len(chaos_scenarios.SCENARIOS)


def test_rows_and_report_render():
    rows = [
        chaos_report.Row("vpc", 7, "create", "ensure_vpc:after:1", converged=True, seconds=12.3),
        chaos_report.Row(
            "vpc", 7, "delete", "delete_vpc:after:1", converged=True, orphans=1, notes=["orphan a|b"]
        ),
    ]
    assert rows[0].ok and not rows[1].ok
    table = chaos_report.render_rows(rows)
    assert "| vpc | 7 | create | ensure_vpc:after:1 | yes | 0 | 0 | 12s | ok |" in table
    assert "FAILED | orphan a/b |" in table
    sizes = [histories.HistorySize("ClusterWorkflow", "cluster/x/y", "r", 340, 128_000, runs=3)]
    report = chaos_report.render_report(7, rows, sizes, 90.0, None, [chaos_scenarios.scenario("vpc")])
    assert "1 ok, 1 failed" in report and "| ClusterWorkflow | 3 | 340 | 128,000 | 3.3% |" in report


def test_list(capsys):
    assert chaos_cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "aws-faults" in out and "chaos points in" in out
