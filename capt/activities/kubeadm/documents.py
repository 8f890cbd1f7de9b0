"""kubeadm's configuration documents for a machine: the kubeadm API version CAPI would pick for a
Kubernetes version, and the ClusterConfiguration / InitConfiguration / JoinConfiguration built
from the KubeadmConfigSpec, as CAPI's kubeadm bootstrap provider writes them."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from capt.activities.aws.errors import CaptAwsError
from capt.activities.kubeadm.tokens import BootstrapToken, init_configuration_token
from capt.rules.versions import parse_kubernetes_version
from capt.spec.models import KubeadmConfigSpec

BootstrapKind = Literal["init", "join-control-plane", "join-worker"]


KUBEADM_GROUP = "kubeadm.k8s.io"


INIT_CONFIG_PATH = "/run/kubeadm/kubeadm.yaml"


JOIN_CONFIG_PATH = "/run/kubeadm/kubeadm-join-config.yaml"


# CAPI's sentinel: written only when kubeadm succeeded, so "bootstrap succeeded" is observable.
SUCCESS_COMMAND = "mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete"


PKI_DIR = "/etc/kubernetes/pki"


# Where the boothook writes the fetched cloud-config, and the include-url part points.
BOOTSTRAP_FILE = "/etc/capt/bootstrap-userdata.txt"


MIME_BOUNDARY = "==capt-bootstrap-boundary=="


# Reads of a chunk before the boothook gives up (5 s, 10 s, ... apart: about 75 s in all).
FETCH_ATTEMPTS = 6


GZIP_MTIME = 0  # deterministic gzip output: same input, same bytes


class BootstrapError(CaptAwsError, ValueError):
    """The KubeadmConfigSpec asks for something capt cannot render (not retryable)."""

    non_retryable = True


def parse_version(version: str) -> tuple[int, int, int]:
    """rules.versions' parse, failing as a BootstrapError (not retryable)."""
    try:
        return parse_kubernetes_version(version)
    except ValueError as exc:
        raise BootstrapError(f"not a Kubernetes version: {version!r}") from exc


def kubeadm_api_version(kubernetes_version: str) -> str:
    """The kubeadm config API for a Kubernetes version, as CAPI picks it.

    Pre-releases count as their release (v1.31.0-rc.1 gets v1beta4), as CAPI compares
    "WithoutPreReleases".
    """
    major, minor, _ = parse_version(kubernetes_version)
    v = (major, minor)
    if v < (1, 15):
        raise BootstrapError(f"Kubernetes {kubernetes_version} is older than v1.15: no supported kubeadm API")
    if v < (1, 22):
        return f"{KUBEADM_GROUP}/v1beta2"
    if v < (1, 31):
        return f"{KUBEADM_GROUP}/v1beta3"
    return f"{KUBEADM_GROUP}/v1beta4"


def _normalize_version(version: str) -> str:
    parse_version(version)
    return version if version.startswith("v") else f"v{version}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _args(value: Any, as_list: bool) -> Any:
    """extraArgs are a map up to kubeadm v1beta3 and a list of {name, value} from v1beta4 on.

    Manifests may hold either (CAPI v1beta1 maps, CAPI v1beta2 lists); convert to the target's.
    With a list turned into a map, a later duplicate name wins.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        pairs = [(str(k), "" if v is None else str(v)) for k, v in value.items()]
        if as_list:
            pairs.sort()
    elif isinstance(value, list):
        pairs = [(str(a["name"]), str(a.get("value", ""))) for a in value]
    else:
        raise BootstrapError(f"extraArgs must be a map or a list, got {type(value).__name__}")
    if as_list:
        return [{"name": k, "value": v} for k, v in pairs]
    return dict(pairs)


def _convert_args(doc: dict, path: tuple[str, ...], as_list: bool) -> None:
    node: Any = doc
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict) and path[-1] in node:
        node[path[-1]] = _args(node[path[-1]], as_list)


@dataclass(frozen=True)
class KubeadmInputs:
    """What capt owns in the kubeadm documents (the rest comes from the manifest as written)."""

    cluster_name: str
    kubernetes_version: str
    endpoint_host: str
    endpoint_port: int
    pod_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]
    service_domain: str
    ca_cert_hash: str
    # Secret: only inside the activity, never in its arguments or results.
    token: BootstrapToken | None = None

    @property
    def endpoint(self) -> str:
        return _host_port(self.endpoint_host, self.endpoint_port)


def cluster_configuration(spec: KubeadmConfigSpec, inp: KubeadmInputs) -> dict:
    api = kubeadm_api_version(inp.kubernetes_version)
    v4 = api.endswith("v1beta4")
    doc = copy.deepcopy(dict(spec.cluster_configuration))
    doc.pop("apiVersion", None)
    doc.pop("kind", None)
    # The machine's version always wins (a KCP rollout changes it); the rest only fills blanks,
    # as CAPI does, so a manifest may pin e.g. its own controlPlaneEndpoint.
    doc["kubernetesVersion"] = _normalize_version(inp.kubernetes_version)
    doc.setdefault("clusterName", inp.cluster_name)
    if not doc.get("controlPlaneEndpoint"):
        doc["controlPlaneEndpoint"] = inp.endpoint
    networking = dict(doc.get("networking") or {})
    if not networking.get("podSubnet") and inp.pod_cidrs:
        networking["podSubnet"] = ",".join(inp.pod_cidrs)
    if not networking.get("serviceSubnet") and inp.service_cidrs:
        networking["serviceSubnet"] = ",".join(inp.service_cidrs)
    if not networking.get("dnsDomain"):
        networking["dnsDomain"] = inp.service_domain
    doc["networking"] = networking
    for component in ("apiServer", "controllerManager", "scheduler"):
        _convert_args(doc, (component, "extraArgs"), v4)
    _convert_args(doc, ("etcd", "local", "extraArgs"), v4)
    if not api.endswith("v1beta2"):
        # v1beta3 dropped dns.type (CoreDNS is the only choice).
        dns = doc.get("dns")
        if isinstance(dns, dict):
            dns.pop("type", None)
    if v4 and isinstance(doc.get("apiServer"), dict):
        # v1beta4 moved apiServer.timeoutForControlPlane to InitConfiguration.timeouts.
        doc["apiServer"].pop("timeoutForControlPlane", None)
    return {"apiVersion": api, "kind": "ClusterConfiguration", **_drop_empty(doc)}


def _node_registration(nr: Any, v4: bool) -> dict:
    nr = copy.deepcopy(dict(nr or {}))
    if "kubeletExtraArgs" in nr:
        nr["kubeletExtraArgs"] = _args(nr["kubeletExtraArgs"], v4)
    return nr


def init_configuration(spec: KubeadmConfigSpec, inp: KubeadmInputs) -> dict:
    api = kubeadm_api_version(inp.kubernetes_version)
    v4 = api.endswith("v1beta4")
    doc = copy.deepcopy(dict(spec.init_configuration))
    doc.pop("apiVersion", None)
    doc.pop("kind", None)
    doc["nodeRegistration"] = _node_registration(doc.get("nodeRegistration"), v4)
    if inp.token is not None:
        # `kubeadm init` creates this token's Secret itself, so the next machines can join
        # before capt ever talks to the new API server.
        doc["bootstrapTokens"] = [init_configuration_token(inp.token)]
    if v4:
        timeout = (spec.cluster_configuration.get("apiServer") or {}).get("timeoutForControlPlane")
        if timeout:
            doc.setdefault("timeouts", {}).setdefault("controlPlaneComponentHealthCheck", timeout)
    return {"apiVersion": api, "kind": "InitConfiguration", **_drop_empty(doc)}


def join_configuration(spec: KubeadmConfigSpec, inp: KubeadmInputs, *, control_plane: bool) -> dict:
    api = kubeadm_api_version(inp.kubernetes_version)
    v4 = api.endswith("v1beta4")
    doc = copy.deepcopy(dict(spec.join_configuration))
    doc.pop("apiVersion", None)
    doc.pop("kind", None)
    doc["nodeRegistration"] = _node_registration(doc.get("nodeRegistration"), v4)
    if control_plane:
        doc["controlPlane"] = doc.get("controlPlane") or {}
    else:
        doc.pop("controlPlane", None)
    discovery = dict(doc.get("discovery") or {})
    if not discovery.get("file"):
        if inp.token is None:
            raise BootstrapError("a join needs a bootstrap token (or discovery.file in the manifest)")
        bt = dict(discovery.get("bootstrapToken") or {})
        bt["apiServerEndpoint"] = bt.get("apiServerEndpoint") or inp.endpoint
        bt["token"] = inp.token.value
        bt["caCertHashes"] = list(bt.get("caCertHashes") or []) or [inp.ca_cert_hash]
        bt["unsafeSkipCAVerification"] = False
        discovery["bootstrapToken"] = bt
    if v4 and "timeout" in discovery:
        doc.setdefault("timeouts", {}).setdefault("discovery", discovery.pop("timeout"))
    doc["discovery"] = discovery
    return {"apiVersion": api, "kind": "JoinConfiguration", **_drop_empty(doc, keep=("controlPlane",))}


def _drop_empty(doc: dict, keep: tuple[str, ...] = ()) -> dict:
    """Drop top-level keys whose value is empty (None, {}, []) — kubeadm defaults them."""
    return {k: v for k, v in doc.items() if k in keep or v not in (None, {}, [])}


def dump_documents(docs: list[dict]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False, default_flow_style=False) for d in docs)
