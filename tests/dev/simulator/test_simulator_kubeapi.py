"""simulator.kubeapi and simulator.server: the Kubernetes API subset, answered as kube-apiserver
does, and served over mutual TLS to capt's real workload client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from capt.activities.kubeadm import pki, tokens
from capt.activities.workload import client as wc
from capt.activities.workload import drain as wdrain
from capt.activities.workload import transport
from capt.dev.simulator import kubeapi, kubeapi_objects
from capt.dev.simulator.server import KubeServer, serve_in_thread
from capt.dev.simulator.world.state import _issue_serving_cert
from capt.dev.testkit import bootstrap_reference as ref
from tests.support.sim_helpers import Sim

MASTERS = ("system:masters",)


def cluster_with_worker() -> tuple[Sim, str, str]:
    sim = Sim(boot_delay=1.0, ready_delay=1.0, pod_grace=1.0)
    cp = sim.launch(1, "cp-0", "init")
    sim.run(3)
    token = sim.new_token()
    sim.token_secret(token)
    w = sim.launch(2, "md-0", "join-worker", token=token)
    sim.run(4)
    assert {n.ready_status for n in sim.cluster.nodes.values()} == {"True"}
    return sim, cp.private_dns, w.private_dns


def call(
    sim: Sim, method: str, path: str, body: object = None, ctype: str = "application/json", groups=MASTERS
):
    data = json.dumps(body).encode() if body is not None else b""
    return kubeapi.handle(sim.world, sim.cluster, method, path, data, ctype, groups)


# --------------------------------------------------------------------------------------------
# selectors and pagination


@pytest.mark.parametrize(
    "selector, labels, match",
    [
        ("a", {"a": ""}, True),
        ("!a", {"a": "1"}, False),
        ("a=1,b!=2", {"a": "1", "b": "3"}, True),
        ("a==1", {"a": "2"}, False),
        ("a in (1, 2),c notin (x)", {"a": "2"}, True),
        ("a in (1,2)", {}, False),
        ("node-role.kubernetes.io/control-plane", {"node-role.kubernetes.io/control-plane": ""}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict, match: bool) -> None:
    assert kubeapi_objects.labels_match(labels, kubeapi_objects.parse_label_selector(selector)) is match


def test_node_list_filters_and_pages() -> None:
    sim, cp, w = cluster_with_worker()
    assert [n["metadata"]["name"] for n in call(sim, "GET", "/api/v1/nodes").body["items"]] == sorted([cp, w])
    only_cp = call(sim, "GET", "/api/v1/nodes?labelSelector=node-role.kubernetes.io%2Fcontrol-plane").body
    assert [n["metadata"]["name"] for n in only_cp["items"]] == [cp]
    by_name = call(sim, "GET", f"/api/v1/nodes?fieldSelector=metadata.name%3D{w}").body
    assert [n["metadata"]["name"] for n in by_name["items"]] == [w]
    assert call(sim, "GET", "/api/v1/nodes?fieldSelector=spec.nodeName%3Dx").status == 400
    page1 = call(sim, "GET", "/api/v1/nodes?limit=1").body
    token = page1["metadata"]["continue"]
    page2 = call(sim, "GET", f"/api/v1/nodes?limit=1&continue={token}").body
    assert [page1["items"][0]["metadata"]["name"], page2["items"][0]["metadata"]["name"]] == sorted([cp, w])
    assert "continue" not in page2["metadata"]


def test_node_object_carries_what_capt_reads() -> None:
    from capt.activities.workload.objects import node_info

    sim, cp, _ = cluster_with_worker()
    info = node_info(call(sim, "GET", f"/api/v1/nodes/{cp}").body)
    assert info.ready and info.control_plane and info.instance_id == "i-00000000000000001"
    assert (
        info.availability_zone == "ap-northeast-2a"
        and info.kubelet_version == ref.reference_cluster().control_plane.version
    )
    assert call(sim, "GET", "/api/v1/nodes/nope").status == 404


# --------------------------------------------------------------------------------------------
# cordon, delete, evict


def test_cordon_with_a_merge_patch() -> None:
    sim, _, w = cluster_with_worker()
    reply = call(
        sim, "PATCH", f"/api/v1/nodes/{w}", {"spec": {"unschedulable": True}}, "application/merge-patch+json"
    )
    assert reply.status == 200 and reply.body["spec"]["unschedulable"] is True
    assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}.items() <= reply.body["spec"][
        "taints"
    ][0].items()
    back = call(
        sim, "PATCH", f"/api/v1/nodes/{w}", {"spec": {"unschedulable": None}}, "application/merge-patch+json"
    )
    assert "unschedulable" not in back.body["spec"] and "taints" not in back.body["spec"]
    assert (
        call(sim, "PATCH", f"/api/v1/nodes/{w}", [{"op": "add"}], "application/json-patch+json").status == 415
    )
    assert call(sim, "PATCH", "/api/v1/nodes/nope", {}, "application/merge-patch+json").status == 404


def test_delete_node() -> None:
    sim, _, w = cluster_with_worker()
    assert call(sim, "DELETE", f"/api/v1/nodes/{w}").status == 200
    assert call(sim, "DELETE", f"/api/v1/nodes/{w}").status == 404
    assert call(sim, "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{w}").body["items"] == []


def test_eviction_terminates_the_pod_and_its_replicaset_replaces_it() -> None:
    sim, cp, w = cluster_with_worker()
    # Make coredns run on the worker: cordon the control plane and evict them there.
    call(
        sim, "PATCH", f"/api/v1/nodes/{cp}", {"spec": {"unschedulable": True}}, "application/merge-patch+json"
    )
    for pod in call(sim, "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{cp}").body["items"]:
        if pod["metadata"]["name"].startswith("coredns-"):
            assert (
                call(
                    sim,
                    "POST",
                    f"/api/v1/namespaces/kube-system/pods/{pod['metadata']['name']}/eviction",
                    {
                        "kind": "Eviction",
                        "apiVersion": "policy/v1",
                        "metadata": {"name": pod["metadata"]["name"]},
                    },
                ).status
                == 201
            )
    sim.run(2)
    on_worker = call(sim, "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{w}").body["items"]
    coredns = [p for p in on_worker if p["metadata"]["name"].startswith("coredns-")]
    assert len(coredns) == 2
    name = coredns[0]["metadata"]["name"]
    evicted = call(
        sim,
        "POST",
        f"/api/v1/namespaces/kube-system/pods/{name}/eviction",
        {"kind": "Eviction", "metadata": {"name": name}},
    )
    assert evicted.status == 201
    assert call(sim, "GET", f"/api/v1/namespaces/kube-system/pods/{name}").body["metadata"][
        "deletionTimestamp"
    ]
    sim.run(1.5)
    assert call(sim, "GET", f"/api/v1/namespaces/kube-system/pods/{name}").status == 404
    assert (
        call(sim, "POST", f"/api/v1/namespaces/kube-system/pods/{name}/eviction", {"kind": "Eviction"}).status
        == 404
    )
    assert call(sim, "POST", "/api/v1/namespaces/nope/pods/x/eviction", {"kind": "Eviction"}).status == 404
    assert len([p for p in sim.cluster.pods.values() if p.name.startswith("coredns-")]) == 2


# --------------------------------------------------------------------------------------------
# secrets, auth


def test_secret_create_conflict_replace() -> None:
    sim, _, _ = cluster_with_worker()
    token = sim.new_token()
    secret = tokens.bootstrap_token_secret(token)
    coll = "/api/v1/namespaces/kube-system/secrets"
    created = call(sim, "POST", coll, secret)
    assert created.status == 201 and created.body["metadata"]["uid"]
    conflict = call(sim, "POST", coll, secret)
    assert (conflict.status, conflict.body["reason"]) == (409, "AlreadyExists")
    replaced = call(sim, "PUT", f"{coll}/{token.secret_name}", secret)
    assert replaced.status == 200 and replaced.body["metadata"]["uid"] == created.body["metadata"]["uid"]
    assert call(sim, "PUT", f"{coll}/other", {**secret, "metadata": {"name": "other"}}).status == 404
    assert call(sim, "PUT", f"{coll}/other", secret).status == 400  # name mismatch
    assert call(sim, "POST", "/api/v1/namespaces/default/secrets", secret).status == 400  # namespace mismatch
    listed = call(sim, "GET", f"{coll}?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken").body["items"]
    assert token.secret_name in [s["metadata"]["name"] for s in listed]
    assert call(sim, "DELETE", f"{coll}/{token.secret_name}").status == 200


def test_only_system_masters_may_act_and_readyz_is_open() -> None:
    sim, _, _ = cluster_with_worker()
    assert call(sim, "GET", "/api/v1/nodes", groups=("system:nodes",)).status == 403
    assert call(sim, "GET", "/readyz", groups=()).status == 200
    assert call(sim, "GET", "/apis/apps/v1/widgets").status == 404
    assert call(sim, "GET", "/apis/apps/v1/deployments").status == 200  # across namespaces
    assert call(sim, "PUT", "/api/v1/nodes").status == 405


# --------------------------------------------------------------------------------------------
# over mutual TLS, with the worker's client


@pytest.fixture
def served() -> Iterator[tuple[Sim, int, str, str]]:
    sim, cp, w = cluster_with_worker()
    cluster = sim.cluster
    cluster.serving = _issue_serving_cert(cluster.ca_cert, cluster.ca_key, cluster.key)
    server = KubeServer(("127.0.0.1", 0), sim.world)
    serve_in_thread(server, "kube-test")
    try:
        yield sim, server.server_address[1], cp, w
    finally:
        server.shutdown()
        server.server_close()


def workload_client(port: int, host: str = ref.ENDPOINT, ca=None, admin_ca=None) -> wc.WorkloadClient:
    ca = ca or ref.cluster_pki().ca
    admin = pki.issue_admin_cert(admin_ca or ca)
    return wc.WorkloadClient.for_endpoint(
        host,
        6443,
        transport.tls_context(ca.cert, admin.cert, admin.key),
        resolve=f"*:*=127.0.0.1:{port}",
        timeout=5,
    )


def test_the_workers_client_cordons_drains_and_publishes_tokens(served) -> None:
    sim, port, cp, w = served
    with workload_client(port) as client:
        assert client.readyz()[0]
        assert {n["metadata"]["name"] for n in client.list_nodes()} == {cp, w}
        # Put coredns on the worker, then drain the worker as a machine deletion does.
        client.set_unschedulable(cp, True)
        for pod in client.list_pods_on_node(cp):
            if pod["metadata"]["name"].startswith("coredns-"):
                client.evict("kube-system", pod["metadata"]["name"])
        sim.run(2)
        client.set_unschedulable(cp, False)

        def sleep(seconds: float) -> None:
            sim.run(seconds)

        report = wdrain.drain(client, w, timeout=30, interval=1, sleep=sleep)
        assert (
            report.drained
            and len(report.evicted) == 2
            and report.skipped
            == [
                f"kube-system/{next(p.name for p in sim.cluster.pods.values() if p.name.startswith('kube-proxy') and p.node_name == w)}"
            ]
        )
        assert client.get_node(w)["spec"]["unschedulable"] is True
        token = sim.new_token()
        assert client.create_or_replace_secret(tokens.bootstrap_token_secret(token)) == "created"
        assert client.create_or_replace_secret(tokens.bootstrap_token_secret(token)) == "replaced"
        assert client.delete_node(w) and not client.delete_node(w)


def test_tls_picks_the_cluster_by_name_and_checks_the_client_certificate(served) -> None:
    sim, port, _, _ = served
    with pytest.raises(transport.WorkloadUnreachable), workload_client(port, host="other.example") as client:
        client.readyz()
    stranger = pki.new_ca("kubernetes")
    with pytest.raises(transport.WorkloadAuthError), workload_client(port, admin_ca=stranger) as client:
        client.list_nodes()
    with (
        pytest.raises(transport.WorkloadTLSError),
        workload_client(port, ca=stranger) as client,
    ):  # not our server's CA
        client.readyz()
    sim.world.set_fault("api-5xx", "capi-quickstart", count=1)
    with workload_client(port) as client:
        with pytest.raises(transport.WorkloadServerError):
            client.list_nodes()
        assert client.list_nodes()
