"""The kube-system objects `kubeadm init` creates that a control-plane upgrade must move:
the kubeadm-config ConfigMap (ClusterConfiguration), the CoreDNS Deployment and the kube-proxy
DaemonSet. They live in the generic object store (simulator.resources), so capt reads and
server-side applies them like any other object; kubeadm-config's kubernetesVersion is the
cluster's version (`Cluster.version`), which a `kubeadm join --control-plane` reads."""

from __future__ import annotations

import uuid

import yaml

KUBEADM_CONFIG = ("v1", "configmaps", "kube-system", "kubeadm-config")
COREDNS = ("apps/v1", "deployments", "kube-system", "coredns")
KUBE_PROXY = ("apps/v1", "daemonsets", "kube-system", "kube-proxy")
# kubeadm's CoreDNS for the versions the simulator boots (rules.versions has the full table).
COREDNS_TAGS = {
    (1, 20): "1.7.0",
    (1, 21): "v1.8.0",
    (1, 29): "v1.11.1",
    (1, 30): "v1.11.1",
    (1, 31): "v1.11.3",
    (1, 32): "v1.11.3",
    (1, 33): "v1.12.0",
}


def _meta(name: str, created: str, rv: int) -> dict:
    return {
        "name": name,
        "namespace": "kube-system",
        "uid": str(uuid.uuid4()),
        "creationTimestamp": created,
        "resourceVersion": str(rv),
        "generation": 1,
        "managedFields": [{"manager": "kubeadm", "operation": "Update"}],
    }


def _minor(version: str) -> tuple[int, int]:
    parts = version.lstrip("v").split(".")
    return int(parts[0]), int(parts[1])


def initial_objects(cluster_name: str, version: str, created: str, next_rv) -> dict[tuple, dict]:
    """What kubeadm init leaves in kube-system for `version` (registry.k8s.io images)."""
    config = {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "ClusterConfiguration",
        "clusterName": cluster_name,
        "kubernetesVersion": version,
        "imageRepository": "registry.k8s.io",
    }
    coredns = COREDNS_TAGS.get(_minor(version), "v1.11.1")
    # Before v1.8.0 the image was registry/coredns:<tag>; since, registry/coredns/coredns:v<tag>.
    coredns_image = (
        f"registry.k8s.io/coredns:{coredns}"
        if not coredns.startswith("v")
        else (f"registry.k8s.io/coredns/coredns:{coredns}")
    )
    return {
        KUBEADM_CONFIG: {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta("kubeadm-config", created, next_rv()),
            "data": {"ClusterConfiguration": yaml.safe_dump(config, sort_keys=False)},
        },
        COREDNS: {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta("coredns", created, next_rv()),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-dns"}},
                    "spec": {"containers": [{"name": "coredns", "image": coredns_image}]},
                },
            },
        },
        KUBE_PROXY: {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta("kube-proxy", created, next_rv()),
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                    "spec": {
                        "containers": [
                            {"name": "kube-proxy", "image": f"registry.k8s.io/kube-proxy:{version}"}
                        ]
                    },
                },
            },
        },
    }


def kubernetes_version(config_map: dict) -> str | None:
    """kubeadm-config's ClusterConfiguration.kubernetesVersion."""
    raw = (config_map.get("data") or {}).get("ClusterConfiguration") or ""
    try:
        config = yaml.safe_load(raw) or {}
    except yaml.YAMLError:
        return None
    version = config.get("kubernetesVersion") if isinstance(config, dict) else None
    return version if isinstance(version, str) else None


def set_kubernetes_version(config_map: dict, version: str) -> None:
    raw = (config_map.get("data") or {}).get("ClusterConfiguration") or ""
    config = yaml.safe_load(raw) or {}
    config["kubernetesVersion"] = version
    config_map.setdefault("data", {})["ClusterConfiguration"] = yaml.safe_dump(config, sort_keys=False)


def _image(obj: dict | None) -> str:
    containers = ((obj or {}).get("spec") or {}).get("template", {}).get("spec", {}).get("containers", [])
    return containers[0].get("image", "") if containers else ""


def summary(objects: dict) -> dict:
    """For /sim/state: kubeadm-config's version and the CoreDNS and kube-proxy images."""
    config = objects.get(KUBEADM_CONFIG)
    return {
        "kubeadm_config_version": kubernetes_version(config) if config else None,
        "coredns_image": _image(objects.get(COREDNS)),
        "kube_proxy_image": _image(objects.get(KUBE_PROXY)),
    }
