"""Machine annotations the MachineHealthCheck honours, as CAPI (machinehealthcheck_targets.go:
shouldSkipRemediation, needsRemediation): one behaviour per case."""

from __future__ import annotations

import pytest

from capt.spec.models import HealthCheckSpec
from capt.workflows.health import detection as detect
from capt.workflows.health.models import MachineAnnotations, annotations_error
from tests.activities.test_health_detection import CHECK, evaluate, instance, machine, node, obs

PAUSED = {"cluster.x-k8s.io/paused": ""}
SKIP = {"cluster.x-k8s.io/skip-remediation": ""}
REMEDIATE = {"cluster.x-k8s.io/remediate-machine": ""}


def annotated(name: str, annotations: dict[str, str], **kw):
    return machine(name, annotations=tuple(sorted(annotations.items())), **kw)


@pytest.mark.parametrize(
    ("case", "annotations", "skipped"),
    [
        ("no annotation: a target", {}, None),
        ("paused: not a target", PAUSED, "machine has 'cluster.x-k8s.io/paused' annotation"),
        (
            "skip-remediation: not a target",
            SKIP,
            "machine has 'cluster.x-k8s.io/skip-remediation' annotation",
        ),
        ("the value does not matter", {"cluster.x-k8s.io/skip-remediation": "false"}, "skip-remediation"),
        ("paused is reported first when both are set", {**PAUSED, **SKIP}, "paused"),
        ("another annotation: a target", {"example.com/owner": "team-a"}, None),
    ],
)
def test_skip_reason(case, annotations, skipped) -> None:
    why = detect.skip_reason(annotated("m", annotations))
    if skipped is None:
        assert why is None, case
    else:
        assert why is not None and skipped in why, case


def test_skipped_machines_are_not_judged_counted_or_remediated() -> None:
    # Three machines; the two with broken instances are paused / skip-remediation.
    machines = [
        annotated("a", PAUSED),
        annotated("b", SKIP),
        machine("c"),
    ]
    ev = evaluate(
        CHECK.model_copy(update={"max_unhealthy": 0}), machines, obs(1000, [instance("c")], [node("c")])
    )
    assert [v.machine for v in ev.verdicts] == ["c"]
    assert (ev.expected, ev.healthy) == (1, 1) and ev.allowed  # they do not count against maxUnhealthy
    assert ev.remediate == ()
    assert [name for name, _ in ev.skipped] == ["a", "b"]


def test_remediate_machine_annotation_makes_a_healthy_machine_unhealthy() -> None:
    v = detect.assess(annotated("m", REMEDIATE), CHECK, obs(1000, [instance()], [node()]))
    assert v.state == "unhealthy" and v.reasons == (
        "HasRemediateMachineAnnotation: marked for remediation via the cluster.x-k8s.io/remediate-machine annotation",
    )


def test_remediate_machine_annotation_does_not_override_deleting() -> None:
    v = detect.assess(annotated("m", REMEDIATE, phase="Deleting", deleting=True), CHECK, obs(1000, [], []))
    assert v.state == "deleting"


def test_skip_remediation_wins_over_remediate_machine() -> None:
    ev = evaluate(CHECK, [annotated("m", {**SKIP, **REMEDIATE})], obs(1000, [instance()], [node()]))
    assert ev.verdicts == () and ev.remediate == ()


def test_marked_machines_go_first_among_candidates() -> None:
    # w0 was detected first, but w1 carries remediate-machine: with maxInFlight 1, w1 goes.
    machines = [machine("w0", instance_id="i-gone"), annotated("w1", REMEDIATE)]
    check = CHECK.model_copy(update={"max_in_flight": 1})
    ev = evaluate(
        check, machines, obs(1000, [instance("w1")], [node("w1")]), unhealthy_since={"w0": 1.0, "w1": 900.0}
    )
    assert ev.remediate == ("w1",) and ev.deferred == ("w0",)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (MachineAnnotations(machine="m", annotations=REMEDIATE), None),
        (MachineAnnotations(machine="m", annotations={"cluster.x-k8s.io/paused": None}), None),
        (MachineAnnotations(machine="", annotations=REMEDIATE), "name the machine"),
        (MachineAnnotations(machine="m", annotations={}), "at least one"),
        (MachineAnnotations(machine="m", annotations={"bad key!": ""}), "not a valid annotation key"),
        (MachineAnnotations(machine="m", annotations={"Example.com/x": ""}), "not a valid annotation key"),
    ],
)
def test_annotations_error(change, error) -> None:
    got = annotations_error(change)
    assert (got is None) if error is None else (got is not None and error in got)


def test_health_check_spec_is_unchanged_by_annotations() -> None:
    # Annotations live on machines (the health workflow's record), not in the check's spec.
    assert "annotations" not in HealthCheckSpec.model_fields
