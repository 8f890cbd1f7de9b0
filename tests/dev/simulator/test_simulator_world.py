"""simulator.world: instances boot, join and fail as on AWS — with capt's real bootstrap data, a
fake clock and a fake AWS."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from capt.dev.simulator import kubeapi
from capt.dev.testkit import bootstrap_reference as ref
from tests.support.sim_helpers import Sim

DEFAULTS = dict(boot_delay=3.0, ready_delay=3.0, node_gone_delay=20.0, reregister_delay=10.0)


def ready(sim: Sim, name: str) -> str:
    return sim.cluster.nodes[name].ready_status


def init_cluster(sim: Sim):
    cp = sim.launch(1, "cp-0", "init")
    sim.run(7)
    assert ready(sim, cp.private_dns) == "True"
    return cp


def test_init_boots_after_its_delay_and_becomes_ready() -> None:
    sim = Sim(**DEFAULTS)
    cp = sim.launch(1, "cp-0", "init")
    sim.step()
    assert sim.machine(cp).phase == "waiting"
    sim.step(2.5)
    assert sim.machine(cp).phase == "waiting" and not sim.world.clusters
    sim.step(0.5)  # boot delay reached: boothook, cloud-init, kubeadm init
    m = sim.machine(cp)
    assert m.phase == "joined" and m.booted
    # The boothook read every chunk and deleted it, as the real one does.
    assert not sim.aws.secrets and len(sim.aws.deleted) > 1
    cluster = sim.cluster
    assert (cluster.name, cluster.version, cluster.endpoint_port) == (
        "capi-quickstart",
        ref.reference_cluster().control_plane.version,
        6443,
    )
    assert cluster.ca_cert == ref.cluster_pki().ca.cert
    node = cluster.nodes[cp.private_dns]  # named by `{{ ds.meta_data.local_hostname }}`
    assert node.provider_id == f"aws:///{cp.availability_zone}/{cp.instance_id}"
    assert node.control_plane and node.ready_status == "False"
    assert [m.name for m in cluster.etcd.members.values()] == [cp.private_dns]
    assert sim.world.api_cluster(ref.ENDPOINT.upper()) is cluster
    sim.run(3)
    assert ready(sim, cp.private_dns) == "True"
    # coredns (tolerating the control-plane taint) lands on the only Ready node.
    coredns = [p for (ns, _), p in cluster.pods.items() if p.name.startswith("coredns-")]
    assert len(coredns) == 2 and {p.node_name for p in coredns} == {cp.private_dns}


def test_worker_join_waits_for_its_token_then_joins(caplog: pytest.LogCaptureFixture) -> None:
    sim = Sim(**DEFAULTS)
    init_cluster(sim)
    token = sim.new_token()
    w = sim.launch(2, "md-0", "join-worker", token=token)
    with caplog.at_level(logging.WARNING, "capt.simulator"):
        sim.run(4)
    m = sim.machine(w)
    assert m.phase == "joining" and "no JWS signed token" in m.reason
    assert sum("no JWS signed token" in r.getMessage() for r in caplog.records) == 1  # logged once
    sim.token_secret(token)
    sim.run(6)
    assert sim.machine(w).phase == "joined"
    node = sim.cluster.nodes[w.private_dns]
    assert not node.control_plane and node.taints == []
    sim.run(4)
    assert ready(sim, w.private_dns) == "True"
    assert len(sim.cluster.etcd.members) == 1  # workers have no etcd member


def test_control_plane_join_adds_an_etcd_member() -> None:
    sim = Sim(**DEFAULTS)
    init_cluster(sim)
    token = sim.new_token()
    sim.token_secret(token)
    cp1 = sim.launch(2, "cp-1", "join-control-plane", token=token)
    sim.run(4)
    assert sim.machine(cp1).phase == "joined"
    assert {m.name for m in sim.cluster.etcd.members.values()} == {
        cp1.private_dns,
        "ip-10-0-1-1.ap-northeast-2.compute.internal",
    }
    assert sim.world.etcd_quorum(sim.cluster)


def test_wrong_ca_hash_never_joins_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    sim = Sim(**DEFAULTS)
    init_cluster(sim)
    token = sim.new_token()
    sim.token_secret(token)
    w = sim.launch(2, "md-bad", "join-worker", token=token, ca_hash="sha256:" + "f" * 64)
    with caplog.at_level(logging.WARNING, "capt.simulator"):
        sim.run(30)
    m = sim.machine(w)
    assert m.phase == "failed" and "none of the public keys" in m.reason
    assert w.private_dns not in sim.cluster.nodes
    logged = [r.getMessage() for r in caplog.records if "md-bad" in r.getMessage()]
    assert (
        len(logged) == 1
        and "kubeadm join refused: cluster CA found in cluster-info ConfigMap is invalid" in logged[0]
    )
    assert token.secret not in logged[0]  # never the token's secret half


def test_transient_refusal_gives_up_at_the_join_timeout() -> None:
    sim = Sim(**DEFAULTS, join_timeout=20.0)
    init_cluster(sim)
    w = sim.launch(2, "md-0", "join-worker", token=sim.new_token())  # its Secret never comes
    sim.run(15)
    assert sim.machine(w).phase == "joining"
    sim.run(15)
    m = sim.machine(w)
    assert m.phase == "failed" and "gave up after 20s" in m.reason


def test_missing_chunk_is_retried_like_the_boothook_then_fails() -> None:
    sim = Sim(**DEFAULTS)
    cp = sim.launch(1, "cp-0", "init")
    saved = dict(sim.aws.secrets)
    sim.aws.secrets.clear()
    sim.step()
    sim.step(3)
    m = sim.machine(cp)
    assert m.fetch_attempts == 1 and m.phase == "waiting"
    sim.step(4)  # the boothook sleeps 5 s after the first failure
    assert m.fetch_attempts == 1
    sim.step(1)
    assert m.fetch_attempts == 2
    sim.aws.secrets.update(saved)  # e.g. Secrets Manager caught up
    sim.step(10)
    assert m.phase == "joined"

    sim2 = Sim(**DEFAULTS)
    cp2 = sim2.launch(1, "cp-0", "init")
    sim2.aws.secrets.clear()
    sim2.run(3 + 5 + 10 + 15 + 20 + 25 + 2)
    m2 = sim2.machine(cp2)
    assert m2.phase == "failed" and "could not read chunk 0" in m2.reason and m2.fetch_attempts == 6


def test_terminated_instance_takes_its_node_away() -> None:
    sim = Sim(**DEFAULTS)
    init_cluster(sim)
    token = sim.new_token()
    sim.token_secret(token)
    w = sim.launch(2, "md-0", "join-worker", token=token)
    sim.run(8)
    assert ready(sim, w.private_dns) == "True"
    sim.set_state(w, "terminated")
    sim.step(0.5)
    assert ready(sim, w.private_dns) == "Unknown"
    assert sim.cluster.nodes[w.private_dns].ready_reason == "NodeStatusUnknown"
    sim.run(19)
    assert w.private_dns in sim.cluster.nodes
    sim.run(1.5)
    assert w.private_dns not in sim.cluster.nodes
    assert not [p for p in sim.cluster.pods.values() if p.node_name == w.private_dns]


def test_stopped_instance_recovers_when_started_and_a_deleted_instance_goes_like_terminated() -> None:
    sim = Sim(**DEFAULTS)
    cp = init_cluster(sim)
    sim.set_state(cp, "stopped")
    sim.step(1)
    assert ready(sim, cp.private_dns) == "Unknown"
    assert sim.world.api_cluster(ref.ENDPOINT) is None  # its only control plane is down
    sim.set_state(cp, "running")
    sim.step(1)
    assert sim.world.api_cluster(ref.ENDPOINT) is not None
    sim.run(3.5)
    assert ready(sim, cp.private_dns) == "True"
    sim.forget(cp)  # no longer listed at all
    sim.step(1)
    assert ready(sim, cp.private_dns) == "Unknown"
    sim.run(21)
    assert cp.private_dns not in sim.cluster.nodes


def test_node_deleted_through_the_api_comes_back_while_its_kubelet_runs() -> None:
    sim = Sim(**DEFAULTS)
    cp = init_cluster(sim)
    assert sim.world.delete_node(sim.cluster, cp.private_dns)
    sim.run(9)
    assert cp.private_dns not in sim.cluster.nodes
    sim.run(2)
    assert cp.private_dns in sim.cluster.nodes


def test_second_init_while_the_api_is_up_is_refused() -> None:
    sim = Sim(**DEFAULTS)
    init_cluster(sim)
    again = sim.launch(2, "cp-x", "init")
    sim.run(4)
    m = sim.machine(again)
    assert m.phase == "failed" and "a control plane already answers" in m.reason


# --------------------------------------------------------------------------------------------
# faults


def test_never_ready_set_before_the_machine_exists() -> None:
    sim = Sim(**DEFAULTS)
    sim.world.set_fault("never-ready", "cp-0")
    cp = sim.launch(1, "cp-0", "init")
    sim.run(20)
    node = sim.cluster.nodes[cp.private_dns]
    assert node.ready_status == "False" and "cni plugin not initialized" in node.ready_message
    sim.world.set_fault("never-ready", "cp-0", enabled=False)
    sim.run(1)
    assert ready(sim, cp.private_dns) == "True"


def test_not_ready_and_back() -> None:
    sim = Sim(**DEFAULTS)
    cp = init_cluster(sim)
    sim.world.set_fault("not-ready", cp.private_dns)
    sim.step(0.5)
    assert ready(sim, cp.private_dns) == "False"
    sim.world.clear_faults()
    sim.run(2.5)
    assert ready(sim, cp.private_dns) == "False"
    sim.run(1)
    assert ready(sim, cp.private_dns) == "True"


def test_slow_boot() -> None:
    sim = Sim(**DEFAULTS)
    sim.world.set_fault("slow-boot", "cp-0", seconds=30)
    cp = sim.launch(1, "cp-0", "init")
    sim.run(29)
    assert sim.machine(cp).phase == "waiting"
    sim.run(2)
    assert sim.machine(cp).phase == "joined"
    with pytest.raises(ValueError, match="seconds"):
        sim.world.set_fault("slow-boot", "cp-1")


def test_unhealthy_etcd_member_costs_the_quorum_of_a_single_member_cluster() -> None:
    sim = Sim(**DEFAULTS)
    cp = init_cluster(sim)
    sim.world.set_fault("etcd-unhealthy", "cp-0")
    reply = kubeapi.handle(sim.world, sim.cluster, "GET", "/readyz", b"", "", ())
    assert reply.status == 500 and "etcd failed" in reply.body
    nodes = kubeapi.handle(sim.world, sim.cluster, "GET", "/api/v1/nodes", b"", "", ("system:masters",))
    assert nodes.status == 500
    sim.world.set_fault("etcd-unhealthy", "cp-0", enabled=False)
    assert kubeapi.handle(sim.world, sim.cluster, "GET", "/readyz", b"", "", ()).status == 200
    assert cp.private_dns in sim.cluster.nodes


def test_api_5xx_for_a_number_of_requests() -> None:
    sim = Sim(**DEFAULTS)
    init_cluster(sim)
    sim.world.set_fault("api-5xx", "capi-quickstart", count=2)
    codes = [
        kubeapi.handle(sim.world, sim.cluster, "GET", "/api/v1/nodes", b"", "", ("system:masters",)).status
        for _ in range(3)
    ]
    assert codes == [503, 503, 200]
    sim.world.set_fault("api-5xx", ref.ENDPOINT.lower())
    assert kubeapi.handle(sim.world, sim.cluster, "GET", "/readyz", b"", "", ()).status == 500
    with pytest.raises(ValueError, match="unknown fault"):
        sim.world.set_fault("meteor", "x")


def test_snapshot_names_machines_nodes_and_members() -> None:
    sim = Sim(**DEFAULTS)
    cp = init_cluster(sim)
    state = sim.world.snapshot()
    assert state["machines"][0]["phase"] == "joined" and state["machines"][0]["node"] == cp.private_dns
    cluster = state["clusters"][0]
    assert cluster["api_up"] and cluster["etcd_quorum"]
    assert [n["ready"] for n in cluster["nodes"]] == ["True"]
    # The admin endpoint shows states, never key material or tokens.
    token = sim.new_token()
    sim.token_secret(token)
    text = json.dumps(sim.world.snapshot())
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text and token.secret not in text
    assert f"bootstrap-token-{token.id}" in text


def test_a_reused_ip_takes_over_a_notready_namesake_but_not_a_stale_etcd_member() -> None:
    sim = Sim(**DEFAULTS)
    cp = init_cluster(sim)
    token = sim.new_token()
    sim.token_secret(token)
    cp1 = sim.launch(2, "cp-1", "join-control-plane", token=token)
    w = sim.launch(3, "md-0", "join-worker", token=token)
    sim.run(8)
    # Both instances terminate; new ones get the same private IPs (and so the same node names).
    sim.set_state(cp1, "terminated")
    sim.set_state(w, "terminated")
    sim.step(1)
    w2 = replace(w, instance_id="i-00000000000000013", machine="md-1")
    cp2 = replace(cp1, instance_id="i-00000000000000012", machine="cp-2")
    for new, kind in ((w2, "join-worker"), (cp2, "join-control-plane")):
        sim.bootstrap(new, kind, token=token)
        sim.views[new.instance_id] = new
    sim.run(5)
    assert sim.machine(w2).phase == "joined"
    node = sim.cluster.nodes[w2.private_dns]
    assert node.instance_id == w2.instance_id and node.provider_id.endswith(w2.instance_id)
    # cp-1's etcd member was never removed: etcd refuses a member on its peer URL.
    m = sim.machine(cp2)
    assert m.phase == "failed" and "Peer URLs already exists" in m.reason
    assert sim.machine(cp1).view.state == "terminated" and sim.machine(w).view.state == "terminated"
    assert cp.private_dns in sim.cluster.nodes
