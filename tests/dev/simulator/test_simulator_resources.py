"""simulator.resources: discovery and server-side apply of generic objects, through
simulator.kubeapi; and capt's real `apply_addons` core applying the CAPA template's
ClusterResourceSets to the simulator over mutual TLS."""

from __future__ import annotations

import json

import yaml

from capt.activities.workload import addons as wad
from capt.dev.simulator import kubeapi
from capt.spec.loader import load_file
from tests.dev.simulator.test_simulator_kubeapi import MASTERS, cluster_with_worker, served, workload_client  # noqa: F401
from tests.spec.test_spec_loader import CLUSTERCTL_VARS
from tests.support.paths import CAPA_TEMPLATE

APPLY = "application/apply-patch+yaml"


def call(sim, method: str, path: str, body: object = None, ctype: str = "application/json"):
    data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    return kubeapi.handle(sim.world, sim.cluster, method, path, data, ctype, MASTERS)


def test_discovery_core_and_groups() -> None:
    sim, _, _ = cluster_with_worker()
    core = call(sim, "GET", "/api/v1")
    assert core.status == 200 and core.body["kind"] == "APIResourceList"
    by_name = {r["name"]: r for r in core.body["resources"]}
    assert by_name["serviceaccounts"]["namespaced"] and by_name["serviceaccounts"]["kind"] == "ServiceAccount"
    assert not by_name["namespaces"]["namespaced"] and "pods/eviction" in by_name
    for gv, kind, plural, namespaced in [
        ("apps/v1", "DaemonSet", "daemonsets", True),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
        ("storage.k8s.io/v1", "CSIDriver", "csidrivers", False),
        ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    ]:
        doc = call(sim, "GET", f"/apis/{gv}").body
        assert doc["groupVersion"] == gv
        assert {(r["kind"], r["name"], r["namespaced"]) for r in doc["resources"]} >= {
            (kind, plural, namespaced)
        }
    assert call(sim, "GET", "/apis/example.com/v1").status == 404


def test_server_side_apply_creates_then_replaces_and_get_returns_it() -> None:
    sim, _, _ = cluster_with_worker()
    path = "/apis/apps/v1/namespaces/kube-system/daemonsets/ccm?fieldManager=capt&force=true"
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ccm"}, "spec": {"x": 1}}
    first = call(sim, "PATCH", path, yaml.safe_dump(ds).encode(), APPLY)  # a YAML body
    assert first.status == 201 and first.body["metadata"]["namespace"] == "kube-system"
    uid, rv = first.body["metadata"]["uid"], first.body["metadata"]["resourceVersion"]
    same = call(sim, "PATCH", path, ds, APPLY)  # a JSON body (JSON is YAML)
    assert same.status == 200 and same.body["metadata"]["resourceVersion"] == rv
    changed = call(sim, "PATCH", path, {**ds, "spec": {"x": 2}}, APPLY)
    assert changed.status == 200 and changed.body["metadata"]["uid"] == uid
    assert changed.body["metadata"]["resourceVersion"] != rv and changed.body["metadata"]["generation"] == 2
    got = call(sim, "GET", "/apis/apps/v1/namespaces/kube-system/daemonsets/ccm")
    assert got.status == 200 and got.body["spec"] == {"x": 2}
    listed = call(sim, "GET", "/apis/apps/v1/namespaces/kube-system/daemonsets").body
    # kube-proxy is kubeadm's (simulator.kube_system), there from kubeadm init.
    assert [o["metadata"]["name"] for o in listed["items"]] == ["ccm", "kube-proxy"]
    assert call(sim, "GET", "/apis/apps/v1/namespaces/default/daemonsets/ccm").status == 404
    # Cluster-scoped objects have no namespace in the path; a namespaced path for them is 404.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}
    base = "/apis/rbac.authorization.k8s.io/v1"
    assert call(sim, "PATCH", f"{base}/clusterroles/r?fieldManager=capt", role, APPLY).status == 201
    assert (
        call(sim, "PATCH", f"{base}/namespaces/default/clusterroles/r?fieldManager=capt", role, APPLY).status
        == 404
    )
    assert "namespace" not in call(sim, "GET", f"{base}/clusterroles/r").body["metadata"]


def test_apply_refusals() -> None:
    sim, _, _ = cluster_with_worker()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    url = "/api/v1/namespaces/default/configmaps/c"
    assert call(sim, "PATCH", url + "?fieldManager=capt", cm, "application/merge-patch+json").status == 415
    assert call(sim, "PATCH", url, cm, APPLY).status == 422  # fieldManager is required
    assert (
        call(sim, "PATCH", url + "?fieldManager=capt", {**cm, "metadata": {"name": "d"}}, APPLY).status == 400
    )
    assert call(sim, "PATCH", url + "?fieldManager=capt", {**cm, "kind": "Secret"}, APPLY).status == 400
    # A namespace that does not exist, until it is applied.
    other = "/api/v1/namespaces/addons/configmaps/c?fieldManager=capt"
    assert call(sim, "PATCH", other, cm, APPLY).status == 404
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "addons"}}
    assert call(sim, "PATCH", "/api/v1/namespaces/addons?fieldManager=capt", ns, APPLY).status == 201
    assert call(sim, "PATCH", other, cm, APPLY).status == 201
    # Another manager's object needs force.
    assert call(sim, "PATCH", url + "?fieldManager=kubectl", cm, APPLY).status == 201
    assert call(sim, "PATCH", url + "?fieldManager=capt", cm, APPLY).status == 409
    assert call(sim, "PATCH", url + "?fieldManager=capt&force=true", cm, APPLY).status == 200


def test_an_applied_crd_is_discovered_and_its_objects_applied() -> None:
    sim, _, _ = cluster_with_worker()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1"}],
        },
    }
    url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com?fieldManager=capt"
    assert call(sim, "PATCH", url, crd, APPLY).status == 201
    doc = call(sim, "GET", "/apis/example.com/v1").body
    assert [(r["kind"], r["name"], r["namespaced"]) for r in doc["resources"]] == [
        ("Widget", "widgets", True)
    ]
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert (
        call(
            sim, "PATCH", "/apis/example.com/v1/namespaces/default/widgets/w?fieldManager=capt", w, APPLY
        ).status
        == 201
    )


def test_capt_applies_the_capa_templates_addons_over_mtls(served) -> None:  # noqa: F811
    sim, port, _, _ = served
    addons = load_file(CAPA_TEMPLATE, CLUSTERCTL_VARS, env={}).spec.addons
    assert {a.name for a in addons} == {"crs-ccm", "crs-csi"}
    docs = wad.addon_documents(addons)
    with workload_client(port) as client:
        first = wad.apply_all(client, docs)
        again = wad.apply_all(client, docs)
    assert first.failures == () and len(first.applied) == len(docs) > 10
    assert {o.action for o in first.applied} == {"created"}
    assert {o.action for o in again.applied} == {"configured"}
    kinds = {o.kind for o in first.applied}
    assert {"DaemonSet", "ServiceAccount", "ClusterRole", "CSIDriver", "Deployment"} <= kinds
    kubeadm_made = {("v1", "kube-system", "kubeadm-config"), ("apps/v1", "kube-system", "coredns")}
    kubeadm_made.add(("apps/v1", "kube-system", "kube-proxy"))
    stored = {(gv, ns, name) for gv, _, ns, name in sim.cluster.objects} - kubeadm_made
    stored |= {("v1", ns, name) for ns, name in sim.cluster.secrets if name == "aws-secret"}
    assert {(o.api_version, o.namespace or "", o.name) for o in first.applied} == stored
    csi = next(o for o in first.applied if o.kind == "CSIDriver")
    assert csi.namespace is None


def test_delete_honours_finalizers_and_a_reapply_keeps_what_the_server_owns() -> None:
    sim, _, _ = cluster_with_worker()
    url = "/api/v1/namespaces/default/configmaps/held"
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/x"]},
    }
    assert call(sim, "PATCH", url + "?fieldManager=capt", cm, APPLY).status == 201
    first = call(sim, "DELETE", url)
    assert first.status == 200 and first.body["metadata"]["deletionTimestamp"]
    again = call(sim, "DELETE", url)  # idempotent: the same deletionTimestamp
    assert again.body["metadata"]["deletionTimestamp"] == first.body["metadata"]["deletionTimestamp"]
    kept = call(sim, "PATCH", url + "?fieldManager=capt", {**cm, "metadata": {"name": "held"}}, APPLY)
    assert kept.body["metadata"]["deletionTimestamp"] and kept.body["metadata"]["finalizers"] == [
        "example.com/x"
    ]
    from capt.dev.simulator import storage

    key = ("v1", "configmaps", "default", "held")
    assert storage.remove_finalizer(sim.cluster, key, "example.com/x")
    assert call(sim, "GET", url).status == 404


def test_services_get_node_ports_and_keep_them_and_their_status_across_applies() -> None:
    sim, _, _ = cluster_with_worker()
    url = "/api/v1/namespaces/default/services/web?fieldManager=capt"
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]},
    }
    created = call(sim, "PATCH", url, svc, APPLY).body
    ports = [p["nodePort"] for p in created["spec"]["ports"]]
    assert len(set(ports)) == 2 and all(30000 <= p <= 32767 for p in ports)
    assert created["spec"]["clusterIP"].startswith("10.") and created["status"] == {"loadBalancer": {}}
    sim.cluster.objects[("v1", "services", "default", "web")]["status"] = {
        "loadBalancer": {"ingress": [{"hostname": "a.elb"}]}
    }
    again = call(sim, "PATCH", url, svc, APPLY).body
    assert [p["nodePort"] for p in again["spec"]["ports"]] == ports
    assert again["status"]["loadBalancer"]["ingress"] == [{"hostname": "a.elb"}]
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # unchanged


def test_namespaced_kinds_list_across_namespaces_with_pagination() -> None:
    sim, _, _ = cluster_with_worker()
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
    call(sim, "PATCH", "/api/v1/namespaces/team?fieldManager=capt", ns, APPLY)
    for namespace, name in (("default", "a"), ("team", "b"), ("team", "c")):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        url = f"/api/v1/namespaces/{namespace}/configmaps/{name}?fieldManager=capt"
        assert call(sim, "PATCH", url, cm, APPLY).status == 201
    everything = call(sim, "GET", "/api/v1/configmaps").body
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything["items"]] == [
        ("default", "a"),
        ("kube-system", "kubeadm-config"),  # kubeadm init's
        ("team", "b"),
        ("team", "c"),
    ]
    page = call(sim, "GET", "/api/v1/configmaps?limit=2").body
    assert len(page["items"]) == 2 and page["metadata"]["remainingItemCount"] == 2
    rest = call(sim, "GET", f"/api/v1/configmaps?limit=3&continue={page['metadata']['continue']}").body
    assert [o["metadata"]["name"] for o in rest["items"]] == ["b", "c"] and "continue" not in rest["metadata"]
    assert call(sim, "GET", "/api/v1/configmaps?continue=junk").status == 400
    assert [
        o["metadata"]["name"] for o in call(sim, "GET", "/api/v1/namespaces/team/configmaps").body["items"]
    ] == [
        "b",
        "c",
    ]


def test_pods_created_through_the_api_keep_their_volumes_in_an_applied_namespace() -> None:
    sim, _, _ = cluster_with_worker()
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    call(sim, "PATCH", "/api/v1/namespaces/apps?fieldManager=capt", ns, APPLY)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "db"},
        "spec": {
            "containers": [{"name": "db", "image": "postgres"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }
    created = call(sim, "POST", "/api/v1/namespaces/apps/pods", pod)
    assert created.status == 201 and created.body["spec"]["volumes"] == pod["spec"]["volumes"]
    assert call(sim, "POST", "/api/v1/namespaces/apps/pods", pod).status == 409
    applied = call(sim, "PATCH", "/api/v1/namespaces/apps/pods/db?fieldManager=capt", pod, APPLY)
    assert applied.status == 200
    sim.run(1)
    # Its claim does not exist: the scheduler leaves it Pending.
    assert call(sim, "GET", "/api/v1/namespaces/apps/pods/db").body["status"]["phase"] == "Pending"
    listed = call(sim, "GET", "/api/v1/pods").body["items"]
    assert ("apps", "db") in {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed}
