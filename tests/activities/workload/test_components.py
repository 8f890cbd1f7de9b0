"""kubeadm-config, CoreDNS and kube-proxy follow a control-plane upgrade (issue 18): the pure
changes as tables, then the activity's core against the simulator's API server over mTLS."""

from __future__ import annotations

import pytest
import yaml

from capt.activities.workload import components as comp
from capt.dev.simulator import kube_system
from capt.rules.versions import default_coredns_tag, newer_image_tag
from tests.dev.simulator.test_simulator_kubeapi import served, workload_client  # noqa: F401


def request(version: str, **kw) -> comp.ComponentsRequest:
    access = {
        "region": "us-east-1",
        "endpoint_host": "h",
        "pki": dict.fromkeys(
            ("ca_arn", "etcd_ca_arn", "front_proxy_ca_arn", "sa_arn", "admin_arn", "ca_cert_hash"), "x"
        ),
    }
    return comp.ComponentsRequest.model_validate({"access": access, "version": version, **kw})


def deployment(image: str, container: str = "coredns") -> dict:
    return {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}}


def image(obj: dict | None) -> str | None:
    return None if obj is None else obj["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.mark.parametrize(
    ("current", "req", "want"),
    [
        # the target minor's kubeadm CoreDNS
        (
            "registry.k8s.io/coredns/coredns:v1.11.1",
            request("v1.31.0"),
            "registry.k8s.io/coredns/coredns:v1.11.3",
        ),
        # already there: unchanged
        ("registry.k8s.io/coredns/coredns:v1.11.3", request("v1.32.1"), None),
        # never a downgrade (a newer CoreDNS installed by hand stays)
        ("registry.k8s.io/coredns/coredns:v1.12.0", request("v1.31.0"), None),
        # a pinned dns.imageTag wins over the table
        (
            "registry.k8s.io/coredns/coredns:v1.11.1",
            request("v1.31.0", coredns_image_tag="v1.11.4"),
            "registry.k8s.io/coredns/coredns:v1.11.4",
        ),
        # 1.7.0 -> v1.8.0 moves to the coredns/coredns path
        ("registry.k8s.io/coredns:1.7.0", request("v1.21.2"), "registry.k8s.io/coredns/coredns:v1.8.0"),
        # imageRepository moves it to the mirror
        (
            "registry.k8s.io/coredns/coredns:v1.11.1",
            request("v1.31.0", image_repository="mirror.example.com/k8s"),
            "mirror.example.com/k8s/coredns/coredns:v1.11.3",
        ),
        # a minor outside kubeadm's table: left alone
        ("registry.k8s.io/coredns/coredns:v1.11.1", request("v1.99.0"), None),
    ],
)
def test_coredns(current, req, want) -> None:
    assert image(comp.coredns_changed(deployment(current), req)) == want


@pytest.mark.parametrize(
    ("current", "req", "want"),
    [
        ("registry.k8s.io/kube-proxy:v1.30.2", request("v1.31.0"), "registry.k8s.io/kube-proxy:v1.31.0"),
        ("registry.k8s.io/kube-proxy:v1.31.0", request("v1.31.0"), None),
        (
            "registry.k8s.io/kube-proxy:v1.30.2",
            request("v1.31.0", image_repository="mirror.example.com/k8s"),
            "mirror.example.com/k8s/kube-proxy:v1.31.0",
        ),
    ],
)
def test_kube_proxy(current, req, want) -> None:
    assert image(comp.kube_proxy_changed(deployment(current, "kube-proxy"), req)) == want


def test_kubeadm_config() -> None:
    cm = {
        "data": {"ClusterConfiguration": yaml.safe_dump({"kubernetesVersion": "v1.30.2", "clusterName": "c"})}
    }
    changed = comp.kubeadm_config_changed(cm, request("v1.31.0"))
    config = yaml.safe_load(changed["data"]["ClusterConfiguration"])
    assert config == {"kubernetesVersion": "v1.31.0", "clusterName": "c"}
    assert comp.kubeadm_config_changed(changed, request("v1.31.0")) is None
    mirrored = comp.kubeadm_config_changed(changed, request("v1.31.0", image_repository="m.example.com"))
    assert yaml.safe_load(mirrored["data"]["ClusterConfiguration"])["imageRepository"] == "m.example.com"


@pytest.mark.parametrize(
    ("current", "target", "newer"),
    [
        ("v1.11.1", "v1.11.3", True),
        ("v1.11.3", "v1.11.3", False),
        ("1.7.0", "v1.8.0", True),
        ("latest", "v1.8.0", True),
        ("v1.8.0", "latest", False),
        ("v1.12.0", "v1.11.3", False),
    ],
)
def test_newer_image_tag(current, target, newer) -> None:
    assert newer_image_tag(current, target) is newer


def test_default_coredns_tag() -> None:
    assert default_coredns_tag("v1.30.2") == "v1.11.1" and default_coredns_tag("v1.31.0") == "v1.11.3"
    assert default_coredns_tag("v1.5.0") is None


def test_upgrade_against_the_simulator_is_idempotent(served) -> None:  # noqa: F811
    """kubeadm init's objects in the simulator move to the next minor; the cluster version (what
    the next control-plane join reads) follows kubeadm-config; a second call changes nothing."""
    sim, port, _, _ = served
    before = sim.cluster.version
    major, minor = (int(x) for x in before.lstrip("v").split(".")[:2])
    target = f"v{major}.{minor + 1}.0"
    with workload_client(port) as client:
        first = comp.upgrade_components(client, request(target))
        again = comp.upgrade_components(client, request(target))
    assert (first.kubeadm_config, first.kube_proxy) == ("updated", "updated")
    assert first.kube_proxy_image == f"registry.k8s.io/kube-proxy:{target}"
    assert (again.kubeadm_config, again.coredns, again.kube_proxy) == ("unchanged", "unchanged", "unchanged")
    assert sim.cluster.version == target
    stored = sim.cluster.objects[kube_system.KUBEADM_CONFIG]
    assert kube_system.kubernetes_version(stored) == target
    assert image(sim.cluster.objects[kube_system.KUBE_PROXY]) == f"registry.k8s.io/kube-proxy:{target}"
    assert image(sim.cluster.objects[kube_system.COREDNS]) == first.coredns_image


def test_the_simulators_kubeadm_init_coredns_matches_kubeadms_table() -> None:
    """What the simulator boots is what kubeadm would install (spec.versions' table)."""
    for (major, minor), tag in kube_system.COREDNS_TAGS.items():
        assert default_coredns_tag(f"v{major}.{minor}.0") == tag
