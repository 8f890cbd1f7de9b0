"""`capt apply` of a changed manifest: what is forwarded, what is refused."""

import pytest

from capt.spec.loader import load_file
from capt.workflows.cluster.changes import ChangeRejected, plan_changes
from tests.support.paths import QUICKSTART


@pytest.fixture(scope="module")
def running():
    return load_file(QUICKSTART, env={}).spec


def with_cp(spec, **changes):
    return spec.model_copy(update={"control_plane": spec.control_plane.model_copy(update=changes)})


def with_md(spec, **changes):
    mds = tuple(md.model_copy(update=changes) for md in spec.machine_deployments)
    return spec.model_copy(update={"machine_deployments": mds})


def test_same_spec_changes_nothing(running):
    changes = plan_changes(running, running)
    assert changes.empty and changes.summary() == "nothing"


def test_scaling_a_deployment_is_forwarded_to_it_only(running):
    changes = plan_changes(running, with_md(running, replicas=5))
    assert [md.replicas for md in changes.deployments_changed] == [5]
    assert changes.control_plane is None and not changes.deployments_added


def test_control_plane_version_change_is_flagged(running):
    changes = plan_changes(running, with_md(with_cp(running, version="v1.21.1"), version="v1.21.1"))
    assert changes.control_plane is not None and changes.control_plane_version_change
    assert changes.deployments_changed[0].version == "v1.21.1"


def test_added_and_removed_deployments(running):
    md = running.machine_deployments[0]
    renamed = running.model_copy(update={"machine_deployments": (md.model_copy(update={"name": "md-1"}),)})
    changes = plan_changes(running, renamed)
    assert [d.name for d in changes.deployments_added] == ["md-1"]
    assert changes.deployments_removed == (md.name,)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda s: s.model_copy(update={"region": "us-east-1"}), "region cannot be changed"),
        (lambda s: s.model_copy(update={"name": "other"}), "cluster name cannot be changed"),
        (
            lambda s: s.model_copy(
                update={"network": s.network.model_copy(update={"vpc_cidr": "10.1.0.0/16"})}
            ),
            "VPC CIDR cannot be changed",
        ),
        (
            lambda s: s.model_copy(
                update={"network": s.network.model_copy(update={"pod_cidrs": ("172.20.0.0/16",)})}
            ),
            "pod CIDRs cannot be changed",
        ),
        (lambda s: with_cp(s, replicas=4), "even number"),
        (lambda s: with_cp(s, version="v1.22.0"), "one minor version at a time"),
        (lambda s: with_cp(s, version="v1.19.9"), "cannot downgrade"),
        (lambda s: with_md(s, version="v1.21.0"), "newer than the control plane"),
        (lambda s: with_md(s, replicas=-1), "must not be negative"),
        (lambda s: with_md(s, version="v1.16.0"), "more than 3 minor versions older"),
        (lambda s: with_md(s, version="v1.20.6"), "newer than the control plane"),
        (lambda s: with_cp(s, replicas=1, max_surge=0), "at least 3"),
    ],
)
def test_rejected_changes(running, mutate, message):
    with pytest.raises(ChangeRejected, match=message):
        plan_changes(running, mutate(running))


def test_version_checked_against_machines_still_rolling(running):
    # The control plane is mid-upgrade v1.20 → v1.21 (some machines still on v1.20.5): v1.22
    # would put machines two minors apart.
    spec = with_cp(running, version="v1.21.1")
    with pytest.raises(ChangeRejected, match="machines still run v1.20.5"):
        plan_changes(spec, with_cp(spec, version="v1.22.0"), running_cp_versions=("v1.20.5", "v1.21.1"))
    assert plan_changes(
        spec, with_cp(spec, version="v1.22.0"), running_cp_versions=("v1.21.1",)
    ).control_plane


def test_every_reason_is_listed(running):
    bad = with_cp(running.model_copy(update={"region": "us-east-1"}), replicas=2)
    with pytest.raises(ChangeRejected) as info:
        plan_changes(running, bad)
    assert "region" in str(info.value) and "even" in str(info.value)
