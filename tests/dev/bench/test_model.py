"""The latency model's arithmetic (capt/dev/bench/model.py): the create's lower bound, CAPA's order, the
rollout bound — table tests over the model's fields."""

from __future__ import annotations

from dataclasses import replace

import pytest

from capt.dev.bench import model

LAT = model.load()


def test_the_latency_file_names_every_field_and_the_issue_figures():
    assert (LAT.vpc, LAT.subnet, LAT.nat_gateway, LAT.classic_elb, LAT.nlb) == (1, 1, 120, 60, 180)
    assert (LAT.instance_pending, LAT.kubeadm_init, LAT.kubeadm_join) == (15, 45, 30)


def test_a_latency_file_missing_a_field_is_refused(tmp_path):
    path = tmp_path / "lat.toml"
    path.write_text("[aws]\nvpc = 1\n")
    with pytest.raises(ValueError, match="missing latencies"):
        model.load(path)


@pytest.mark.parametrize(
    ("changes", "lb", "cp", "workers", "bound"),
    [
        # VPC 1 + subnet 1 + NAT 120 + route 1 + CP1 (15 + 45) + CP2 (15 + 30) + CP3 (15 + 30)
        ({}, "classic", 3, 3, 273),
        # An NLB (180 s from t=2) answers before CP1's init ends (183): off the path.
        ({}, "nlb", 3, 0, 273),
        # A load balancer slower than that chain holds CP1 back by the difference.
        ({"nlb": 400}, "nlb", 3, 0, 2 + 400 + 45 + 45),
        # One control-plane machine: the workers' join is the end of the path.
        ({}, "classic", 1, 5, 123 + 60 + 45),
        ({}, "classic", 1, 0, 123 + 60),
        # A NAT gateway that comes up at once: the EIP/subnet (2 s) + route, then the machines.
        ({"nat_gateway": 0}, "classic", 3, 0, max(3 + 60, 2 + 60) + 90),
    ],
)
def test_lower_bound(changes, lb, cp, workers, bound):
    steps = model.lower_bound(replace(LAT, **changes), lb, cp, workers)
    assert model.bound_seconds(steps) == bound
    assert all(s.end >= s.start for s in steps)


@pytest.mark.parametrize("lb", ["classic", "nlb"])
@pytest.mark.parametrize(("cp", "workers"), [(1, 0), (3, 3), (3, 50)])
def test_capa_order_is_never_faster_than_the_bound(lb, cp, workers):
    capa = model.bound_seconds(model.capa_order(LAT, lb, control_plane=cp, workers=workers))
    assert capa > model.bound_seconds(model.lower_bound(LAT, lb, cp, workers))


def test_capa_order_requeues_the_load_balancer_in_whole_intervals():
    steps = {s.name: s for s in model.capa_order(replace(LAT, classic_elb=61), "classic")}
    lb = steps["load balancer (requeued)"]
    assert lb.end - lb.start == 75  # 61 s rounded up to the next 15-s requeue


@pytest.mark.parametrize(
    ("replicas", "surge", "waves"), [(500, 1, 500), (500, 50, 10), (500, 51, 10), (3, 10, 1), (1, 0, 1)]
)
def test_rollout_bound_is_waves_of_one_joining_machine(replicas, surge, waves):
    assert model.rollout_bound(LAT, replicas, surge) == waves * LAT.joining_machine
