"""`capt dev sim …` against a running admin endpoint, and the simulator's place in the stack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from capt.activities.workload.transport import parse_resolve, resolve_target
from capt.dev.simulator.server import AdminServer, serve_in_thread
from capt.dev.stack.cli import dev
from capt.dev.stack.config import DevConfig, save_config
from capt.dev.stack.services import build_services
from tests.support.sim_helpers import Sim


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Sim, Path]]:
    sim = Sim(boot_delay=1.0, ready_delay=1.0)
    sim.launch(1, "cp-0", "init")
    sim.run(3)
    server = AdminServer(("127.0.0.1", 0), sim.world)
    serve_in_thread(server, "admin-cli-test")
    save_config(DevConfig(state_dir=tmp_path, sim_port=server.server_address[1]))
    try:
        yield sim, tmp_path
    finally:
        server.shutdown()
        server.server_close()


def invoke(state_dir: Path, *args: str):
    return CliRunner().invoke(dev, ["sim", *args, "--state-dir", str(state_dir)])


def test_status(running) -> None:
    sim, state_dir = running
    text = invoke(state_dir, "status")
    assert text.exit_code == 0, text.output
    assert (
        "cluster capi-quickstart" in text.output and "Ready=True" in text.output and "joined" in text.output
    )
    data = json.loads(invoke(state_dir, "status", "-o", "json").output)
    assert data["machines"][0]["machine"] == "cp-0"


def test_fault_knobs_reach_the_simulator(running) -> None:
    sim, state_dir = running
    assert invoke(state_dir, "never-ready", "md-0").exit_code == 0
    assert invoke(state_dir, "slow-boot", "md-1", "--seconds", "45").exit_code == 0
    assert invoke(state_dir, "api-5xx", "capi-quickstart", "--count", "3").exit_code == 0
    assert invoke(state_dir, "etcd-unhealthy", "cp-0").exit_code == 0
    assert invoke(state_dir, "not-ready", "cp-0").exit_code == 0
    f = sim.world.faults
    assert (f.never_ready, f.slow_boot, f.api_5xx, f.etcd_unhealthy, f.not_ready) == (
        {"md-0"},
        {"md-1": 45.0},
        {"capi-quickstart": 3},
        {"cp-0"},
        {"cp-0"},
    )
    assert invoke(state_dir, "not-ready", "cp-0", "--off").exit_code == 0
    assert sim.world.faults.not_ready == set()
    bad = invoke(state_dir, "slow-boot", "md-2")
    assert bad.exit_code != 0 and "seconds" in bad.output
    assert invoke(state_dir, "clear").exit_code == 0
    assert sim.world.faults.to_dict() == {
        "never-ready": [],
        "not-ready": [],
        "slow-boot": {},
        "etcd-unhealthy": [],
        "api-5xx": {},
        "ccm-down": [],
        "csi-down": [],
    }
    assert invoke(state_dir, "set", "boot_delay=7", "ready-delay=2").exit_code == 0
    assert (sim.world.settings.boot_delay, sim.world.settings.ready_delay) == (7.0, 2.0)
    assert invoke(state_dir, "set", "nonsense=1").exit_code != 0


def test_cloud_controller_knobs_and_status(running) -> None:
    from capt.dev.stack.sim_cli import render_status

    sim, state_dir = running
    assert invoke(state_dir, "ccm-down", "capi-quickstart").exit_code == 0
    assert invoke(state_dir, "csi-down", "team-a.prod").exit_code == 0
    assert (sim.world.faults.ccm_down, sim.world.faults.csi_down) == ({"capi-quickstart"}, {"team-a.prod"})
    assert invoke(state_dir, "ccm-down", "capi-quickstart", "--off").exit_code == 0
    assert sim.world.faults.ccm_down == set()
    sim.cluster.cloud = {
        "cluster_id": "team-a.prod",
        "vpc_id": "vpc-1",
        "ccm": "up",
        "csi": "down",
        "error": "",
        "load_balancers": {"default/web": "a123"},
        "volumes": {"pvc-1": "vol-1"},
    }
    text = render_status(sim.world.snapshot())
    assert "cloud id team-a.prod vpc vpc-1: ccm up, csi down" in text
    assert "service default/web -> ELB a123" in text and "pvc-1 -> vol-1" in text


def test_a_stopped_simulator_is_one_clear_line(tmp_path: Path) -> None:
    save_config(DevConfig(state_dir=tmp_path, sim_port=1))
    result = invoke(tmp_path, "status")
    assert result.exit_code == 1 and "capt dev up" in result.output


def test_the_stack_runs_the_simulator_before_the_worker_and_wires_the_worker_to_it(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path, moto_port=15000, sim_api_port=16001, sim_port=16002)
    services = {s.name: s for s in build_services(cfg)}
    assert list(services) == ["temporal", "codec", "moto", "simulator", "worker"]
    moto = services["moto"]
    assert (
        moto.argv[1:3] == ["-m", "capt.dev.simulator.motoserver"] and str(tmp_path / "amis.json") in moto.argv
    )
    simulator = services["simulator"]
    assert {p.number for p in simulator.ports} == {16001, 16002}
    assert simulator.env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:15000"
    worker_env = services["worker"].env
    assert worker_env["AWS_ENDPOINT_URL_SSM"] == "http://127.0.0.1:16002"
    mapping = parse_resolve(worker_env["CAPT_RESOLVE"])
    lb = "c1-apiserver-123.ap-northeast-2.elb.amazonaws.com"
    assert resolve_target(lb, 6443, mapping) == ("127.0.0.1", 16001)
