"""What a control-plane upgrade must move besides the machines (CAPI's KubeadmControlPlane does the
same in its upgrade step, before it creates the first machine of the new version):

- the `kube-system/kubeadm-config` ConfigMap's ClusterConfiguration: `kubernetesVersion` (and
  `imageRepository` when the manifest sets one) — `kubeadm join --control-plane` reads it, so a
  machine joined after the change runs the new control-plane images;
- the `kube-system/coredns` Deployment's image: the tag the manifest pins
  (`clusterConfiguration.dns.imageTag`), else kubeadm's CoreDNS for the target minor
  (`rules.versions.COREDNS_BY_MINOR`); never a downgrade;
- the `kube-system/kube-proxy` DaemonSet's image: `<repository>/kube-proxy:<version>`.

Each object is read, changed and server-side applied whole (`fieldManager=capt`, `force`), which
is what CAPI's client.Update does; an object that is already right is not written, so the
activity is idempotent and a retry after a lost answer changes nothing. A missing object is
reported, not an error (a cluster may run another DNS or no kube-proxy).
"""

from __future__ import annotations

import copy
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from capt.activities.aws.models import AwsResult
from capt.activities.aws.session import aws_activity
from capt.activities.workload.activities import WorkloadAccess, connect
from capt.activities.workload.client import WorkloadClient, _path, api_path
from capt.rules.versions import default_coredns_tag, newer_image_tag

APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "capt"
DEFAULT_REPOSITORY = "registry.k8s.io"
Outcome = Literal["updated", "unchanged", "missing"]


class ComponentsRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    access: WorkloadAccess
    version: str  # the control plane's target Kubernetes version
    image_repository: str | None = None  # clusterConfiguration.imageRepository
    coredns_image_tag: str | None = None  # clusterConfiguration.dns.imageTag
    coredns_image_repository: str | None = None  # clusterConfiguration.dns.imageRepository


class ComponentsResult(AwsResult):
    kubeadm_config: Outcome
    coredns: Outcome
    kube_proxy: Outcome
    # The images the objects name afterwards ("" when missing).
    coredns_image: str = ""
    kube_proxy_image: str = ""


def split_image(image: str) -> tuple[str, str]:
    """ "registry.k8s.io/coredns/coredns:v1.11.1" -> ("registry.k8s.io/coredns/coredns", "v1.11.1")."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, ""
    return name, tag


def kubeadm_config_changed(cm: dict, req: ComponentsRequest) -> dict | None:
    """The ConfigMap with the new ClusterConfiguration, or None when it already says so."""
    raw = (cm.get("data") or {}).get("ClusterConfiguration") or ""
    config = yaml.safe_load(raw) or {}
    want = {"kubernetesVersion": req.version}
    if req.image_repository:
        want["imageRepository"] = req.image_repository
    if all(config.get(k) == v for k, v in want.items()):
        return None
    config.update(want)
    out = copy.deepcopy(cm)
    out.setdefault("data", {})["ClusterConfiguration"] = yaml.safe_dump(config, sort_keys=False)
    return out


def coredns_changed(deployment: dict, req: ComponentsRequest) -> dict | None:
    """The Deployment with the target CoreDNS image, or None (already there, or older)."""
    out = copy.deepcopy(deployment)
    for c in out.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        if c.get("name") != "coredns":
            continue
        repository, tag = split_image(c.get("image", ""))
        target = req.coredns_image_tag or default_coredns_tag(req.version)
        to_repository = req.coredns_image_repository or repository
        if req.image_repository and not req.coredns_image_repository:
            to_repository = f"{req.image_repository}/coredns"
        if (
            target is not None
            and target.startswith("v")
            and to_repository.endswith("/coredns")
            and not to_repository.endswith("/coredns/coredns")
        ):
            to_repository += "/coredns"  # CoreDNS v1.8.0 moved to <registry>/coredns/coredns
        if target is None or (tag == target and to_repository == repository):
            return None
        if tag != target and not newer_image_tag(tag, target):
            return None  # CAPI refuses to downgrade CoreDNS
        c["image"] = f"{to_repository}:{target}"
        return out
    return None


def kube_proxy_changed(daemonset: dict, req: ComponentsRequest) -> dict | None:
    out = copy.deepcopy(daemonset)
    for c in out.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        if c.get("name") != "kube-proxy":
            continue
        repository, _ = split_image(c.get("image", ""))
        if req.image_repository:
            repository = f"{req.image_repository}/kube-proxy"
        image = f"{repository or DEFAULT_REPOSITORY + '/kube-proxy'}:{req.version}"
        if c.get("image") == image:
            return None
        c["image"] = image
        return out
    return None


def _image_of(obj: dict | None, container: str) -> str:
    for c in (obj or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        if c.get("name") == container:
            return c.get("image", "")
    return ""


def _get(client: WorkloadClient, gv: str, plural: str, name: str) -> dict | None:
    resp = client.request("GET", _path(*api_path(gv), "namespaces", "kube-system", plural, name), ok=(404,))
    if resp.status == 404:
        return None
    if resp.status != 200:
        raise client._unexpected("GET", plural, resp)
    return resp.json()


def _apply(client: WorkloadClient, gv: str, plural: str, obj: dict) -> dict:
    body = {k: v for k, v in obj.items() if k != "status"}
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")
    }
    body["metadata"] = meta
    path = _path(
        *api_path(gv),
        "namespaces",
        "kube-system",
        plural,
        meta["name"],
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
    )
    resp = client.request("PATCH", path, body=body, content_type=APPLY_PATCH)
    if resp.status not in (200, 201):
        raise client._unexpected("PATCH", path, resp)
    return resp.json()


@aws_activity
def upgrade_cluster_components(req: ComponentsRequest) -> ComponentsResult:
    """Move kubeadm-config, CoreDNS and kube-proxy to the control plane's target version."""
    with connect(req.access) as client:
        return upgrade_components(client, req)


def upgrade_components(client: WorkloadClient, req: ComponentsRequest) -> ComponentsResult:
    outcomes: dict[str, Outcome] = {}
    objects: dict[str, dict | None] = {}
    for key, gv, plural, name, change in (
        ("kubeadm_config", "v1", "configmaps", "kubeadm-config", kubeadm_config_changed),
        ("coredns", "apps/v1", "deployments", "coredns", coredns_changed),
        ("kube_proxy", "apps/v1", "daemonsets", "kube-proxy", kube_proxy_changed),
    ):
        current = _get(client, gv, plural, name)
        if current is None:
            outcomes[key], objects[key] = "missing", None
            continue
        changed = change(current, req)
        if changed is None:
            outcomes[key], objects[key] = "unchanged", current
            continue
        objects[key] = _apply(client, gv, plural, changed)
        outcomes[key] = "updated"
    return ComponentsResult(
        kubeadm_config=outcomes["kubeadm_config"],
        coredns=outcomes["coredns"],
        kube_proxy=outcomes["kube_proxy"],
        coredns_image=_image_of(objects["coredns"], "coredns"),
        kube_proxy_image=_image_of(objects["kube_proxy"], "kube-proxy"),
    )
