"""A manifest that uses every way capt takes user secrets, with marker values to scan for.

The quickstart cluster (1 control plane, 1 worker) plus: a Secret referenced by a control-plane
file (`files[].contentFrom`), a user password (`users[].passwdFrom`), a worker file, a
ClusterResourceSet that applies a Secret of type addons.cluster.x-k8s.io/resource-set, and an
inline file whose content is the (non-secret) INLINE marker.
"""

from __future__ import annotations

import base64

import yaml

from tests.support.paths import QUICKSTART

FILE_SECRET = "capt-marker-file-secret-7d1c0e"
PASSWD_SECRET = "capt-marker-passwd-3a9f51"
WORKER_SECRET = "capt-marker-worker-secret-88b2"
CRS_SECRET = "capt-marker-crs-secret-51be4a"
INLINE = "capt-marker-inline-c0de42"
# What a history, a log or user data must never hold.
SECRET_MARKERS = (FILE_SECRET, PASSWD_SECRET, WORKER_SECRET, CRS_SECRET)

CRS_OBJECT = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: from-a-secret
  namespace: kube-system
data:
  value: {CRS_SECRET}
"""


def secret_docs(namespace: str) -> list[dict]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "node-files", "namespace": namespace},
            "type": "Opaque",
            "data": {"audit.yaml": base64.b64encode(FILE_SECRET.encode()).decode()},
            "stringData": {"worker.conf": WORKER_SECRET, "passwd": PASSWD_SECRET},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "addon-objects", "namespace": namespace},
            "type": "addons.cluster.x-k8s.io/resource-set",
            "stringData": {"objects.yaml": CRS_OBJECT},
        },
        {
            "apiVersion": "addons.cluster.x-k8s.io/v1beta1",
            "kind": "ClusterResourceSet",
            "metadata": {"name": "secret-addons", "namespace": namespace},
            "spec": {
                "clusterSelector": {"matchLabels": {"capt-secrets": "yes"}},
                "resources": [{"kind": "Secret", "name": "addon-objects"}],
            },
        },
    ]


def secret_manifest(name: str = "capi-quickstart", namespace: str = "capi-quickstart") -> str:
    text = QUICKSTART.read_text().replace("namespace: capi-quickstart", f"namespace: {namespace}")
    docs = [d for d in yaml.safe_load_all(text.replace("capi-quickstart", name)) if d]
    for d in docs:
        kind, spec = d["kind"], d.get("spec", {})
        if kind == "Cluster":
            d["metadata"].setdefault("labels", {})["capt-secrets"] = "yes"
        if kind == "KubeadmControlPlane":
            spec["replicas"] = 1
            kcs = spec["kubeadmConfigSpec"]
            kcs["files"] = [
                {
                    "path": "/etc/kubernetes/audit.yaml",
                    "owner": "root:root",
                    "permissions": "0600",
                    "contentFrom": {"secret": {"name": "node-files", "key": "audit.yaml"}},
                },
                {"path": "/etc/capt-inline.txt", "content": INLINE},
            ]
            kcs["users"] = [
                {"name": "ops", "passwdFrom": {"secret": {"name": "node-files", "key": "passwd"}}}
            ]
        if kind == "MachineDeployment":
            spec["replicas"] = 1
        if kind == "KubeadmConfigTemplate":
            spec["template"]["spec"]["files"] = [
                {
                    "path": "/etc/worker.conf",
                    "contentFrom": {"secret": {"name": "node-files", "key": "worker.conf"}},
                }
            ]
    return yaml.safe_dump_all(docs + secret_docs(namespace), sort_keys=False)
