"""apply_addons against the local fake TLS API server of test_workload_client: discovery,
namespaced vs cluster-scoped paths, the server-side apply request, bad documents."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from capt.activities.aws.secrets import ClusterPKIRefs
from capt.activities.workload import addons as wad
from capt.activities.workload import transport
from capt.activities.workload.activities import WorkloadAccess
from capt.spec.models import AddonSpec
from tests.activities.workload.test_workload_client import LB_HOST, client_for, material, server  # noqa: F401

DISCOVERY = {
    "api/v1": [
        {"name": "serviceaccounts", "namespaced": True, "kind": "ServiceAccount"},
        {"name": "pods/eviction", "namespaced": True, "kind": "Eviction"},
    ],
    "apis/apps/v1": [{"name": "daemonsets", "namespaced": True, "kind": "DaemonSet"}],
    "apis/rbac.authorization.k8s.io/v1": [
        {"name": "clusterroles", "namespaced": False, "kind": "ClusterRole"}
    ],
}

DOCS = """---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ccm
---
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ccm
  namespace: kube-system
spec: {template: {metadata: {annotations: {at: 2024-01-01}}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: csi
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ccm
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w
"""


def install_api(kube) -> dict:
    """Discovery and server-side apply on top of the fake's own routes; returns the store."""
    store: dict[str, dict] = {}
    original = kube.handle

    def handle(method: str, url: str, content_type: str | None, body: bytes):
        parts = urlsplit(url)
        path = parts.path.strip("/")
        if method == "GET" and path in DISCOVERY:
            with kube.lock:
                kube.requests.append((method, url, content_type))
            return 200, {"kind": "APIResourceList", "groupVersion": path, "resources": DISCOVERY[path]}
        if method == "PATCH":
            with kube.lock:
                kube.requests.append((method, url, content_type))
            query = parse_qs(parts.query)
            assert content_type == "application/apply-patch+yaml"
            assert query == {"fieldManager": ["capt"], "force": ["true"]}
            created = path not in store
            store[path] = json.loads(body)
            return (201 if created else 200), store[path]
        return original(method, url, content_type, body)

    kube.handle = handle
    return store


def addon(text: str = DOCS, name: str = "crs-ccm") -> AddonSpec:
    return AddonSpec(name=name, config_maps=(("ccm-addon", (("ccm.yaml", text),)),))


def test_discovery_paths_and_server_side_apply(server, material) -> None:  # noqa: F811
    store = install_api(server.kube)
    docs = wad.addon_documents((addon(),))
    assert len(docs) == 5  # the empty document is skipped
    with client_for(server, material) as client:
        first = wad.apply_all(client, docs)
        again = wad.apply_all(client, docs)
    assert [(o.kind, o.namespace, o.name, o.action) for o in first.applied] == [
        ("ServiceAccount", "default", "ccm", "created"),  # no namespace: default, as kubectl
        ("DaemonSet", "kube-system", "ccm", "created"),
        ("DaemonSet", "kube-system", "csi", "created"),
        ("ClusterRole", None, "ccm", "created"),
    ]
    assert {o.action for o in again.applied} == {"configured"}
    [failure] = first.failures
    assert (failure.kind, failure.name, failure.config_map, failure.key) == (
        "Widget",
        "w",
        "ccm-addon",
        "ccm.yaml",
    )
    assert "does not serve example.com/v1" in failure.reason
    assert sorted(store) == [
        "api/v1/namespaces/default/serviceaccounts/ccm",
        "apis/apps/v1/namespaces/kube-system/daemonsets/ccm",
        "apis/apps/v1/namespaces/kube-system/daemonsets/csi",
        "apis/rbac.authorization.k8s.io/v1/clusterroles/ccm",
    ]
    assert store["api/v1/namespaces/default/serviceaccounts/ccm"]["metadata"] == {
        "name": "ccm",
        "namespace": "default",
    }
    annotations = store["apis/apps/v1/namespaces/kube-system/daemonsets/ccm"]["spec"]["template"]["metadata"]
    assert annotations == {"annotations": {"at": "2024-01-01"}}  # a YAML date is sent as its text
    # Discovery: one GET per group/version per call (two calls here).
    gets = [u for m, u, _ in server.kube.requests if m == "GET"]
    assert sorted(gets) == sorted(
        2 * ["/api/v1", "/apis/apps/v1", "/apis/rbac.authorization.k8s.io/v1", "/apis/example.com/v1"]
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("kind: A\nmetadata: {name: a}\n", "has no apiVersion"),
        ("apiVersion: v1\nkind: A\nmetadata: {}\n", "has no metadata.name"),
        ("apiVersion: v1\nmetadata: {name: a}\n", "has no kind"),
        ("apiVersion: v1\nkind: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "not a mapping"),
    ],
)
def test_bad_documents_are_non_retryable_and_named(text: str, problem: str) -> None:
    with pytest.raises(wad.AddonDocumentError, match=problem) as info:
        wad.addon_documents((addon("apiVersion: v1\nkind: A\nmetadata: {name: ok}\n---\n" + text),))
    assert "ConfigMap ccm-addon, key ccm.yaml" in str(info.value)
    # Through the activity: a non-retryable ApplicationError before any connection is made.
    access = WorkloadAccess(
        region="ap-northeast-2",
        endpoint_host=LB_HOST,
        pki=ClusterPKIRefs(
            ca_arn="a",
            etcd_ca_arn="b",
            front_proxy_ca_arn="c",
            sa_arn="d",
            admin_arn="e",
            ca_cert_hash="sha256:0",
        ),
    )
    with pytest.raises(ApplicationError) as app:
        ActivityEnvironment().run(
            wad.apply_addons, wad.ApplyAddonsRequest(access=access, addons=(addon(text + "\n"),))
        )
    assert app.value.non_retryable and "ccm-addon" in str(app.value)


def test_unreachable_api_is_retryable(server, material) -> None:  # noqa: F811
    docs = wad.addon_documents((addon(),))
    client = client_for(server, material, timeout=2)
    server.httpd.shutdown()
    server.httpd.server_close()
    with client, pytest.raises(transport.WorkloadUnreachable) as info:
        wad.apply_all(client, docs)
    assert info.value.non_retryable is False
