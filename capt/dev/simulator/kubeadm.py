"""What `kubeadm init` and `kubeadm join` would accept — pure functions, no I/O.

The checks follow kubeadm's own order and wording where it matters, and decide whether a failure
is *permanent* (kubeadm exits: bad config, CA pin mismatch, version skew, missing certificates) or
*transient* (kubeadm keeps retrying discovery until its timeout: no API server at the endpoint yet,
bootstrap token not (yet) known, expired or not matching). The simulator retries transient
failures until the join timeout and logs the reason either way.

Independent of capt's own PKI code on purpose: the CA public-key hash is computed here from the
certificate, so a bug in the worker's hash shows up as a refused join, as on AWS.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from capt.dev.simulator.cloudinit import KubeadmTask

TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")
IMAGE_VERSION = re.compile(r"-v?(\d+\.\d+\.\d+)(?:-|$)")
DEFAULT_TOKEN_TTL = dt.timedelta(hours=24)  # kubeadm's default for InitConfiguration tokens
CONTROL_PLANE_PKI = (
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
)
# The oldest kubelet minor a control plane accepts (Kubernetes' version skew policy since v1.28).
KUBELET_MAX_MINOR_SKEW = 3


# --------------------------------------------------------------------------------------------
# small helpers


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    m = VERSION.match((text or "").strip())
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def normalize_version(text: str) -> str:
    v = parse_version(text)
    return f"v{v[0]}.{v[1]}.{v[2]}" if v else text


def version_from_image_name(name: str | None) -> str | None:
    """The Kubernetes version a CAPA image carries in its name (`capa-ami-<os>-v1.31.2-<stamp>`)."""
    m = IMAGE_VERSION.search(name or "")
    return f"v{m.group(1)}" if m else None


def ca_cert_hash(cert_pem: str) -> str:
    """kubeadm's `sha256:<hex>` of the certificate's DER SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def key_matches_cert(cert_pem: str, key_pem: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def split_endpoint(text: str, default_port: int = 6443) -> tuple[str, int] | None:
    text = (text or "").strip()
    if not text:
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, ""
    if not host:
        return None
    try:
        return host.lower(), int(port) if port else default_port
    except ValueError:
        return None


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(dt.UTC)
    except ValueError:
        return None


def _parse_duration(text: str | None) -> dt.timedelta | None:
    """Go durations as kubeadm writes a token ttl ("24h0m0s", "15m", "90s")."""
    if not text:
        return None
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", str(text)):
        total += float(number) * {"h": 3600, "m": 60, "s": 1}[unit]
    return dt.timedelta(seconds=total) if total else None


# --------------------------------------------------------------------------------------------
# bootstrap tokens as the API server knows them (kube-system Secrets)


@dataclass(frozen=True)
class TokenFacts:
    id: str
    secret: str
    expiration: dt.datetime | None
    authentication: bool
    signing: bool


def token_from_secret(secret: dict) -> TokenFacts | None:
    """A `bootstrap.kubernetes.io/token` Secret → its token (None if it is not one)."""
    if secret.get("type") != "bootstrap.kubernetes.io/token":
        return None
    raw = dict(secret.get("data") or {})
    data: dict[str, str] = {}
    for k, v in raw.items():
        try:
            data[k] = base64.b64decode(str(v)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    for k, v in (secret.get("stringData") or {}).items():
        data[k] = str(v)
    if not data.get("token-id") or not data.get("token-secret"):
        return None
    return TokenFacts(
        id=data["token-id"],
        secret=data["token-secret"],
        expiration=_parse_time(data.get("expiration")),
        authentication=data.get("usage-bootstrap-authentication") == "true",
        signing=data.get("usage-bootstrap-signing") == "true",
    )


def init_tokens(init: dict | None, now: dt.datetime) -> list[TokenFacts]:
    """The tokens `kubeadm init` creates from InitConfiguration.bootstrapTokens."""
    out = []
    for entry in (init or {}).get("bootstrapTokens") or []:
        m = TOKEN.match(str(entry.get("token", "")))
        if not m:
            continue
        expires = _parse_time(entry.get("expires"))
        if expires is None:
            expires = now + (_parse_duration(entry.get("ttl")) or DEFAULT_TOKEN_TTL)
        usages = entry.get("usages") or ["signing", "authentication"]
        out.append(
            TokenFacts(
                id=m.group(1),
                secret=m.group(2),
                expiration=expires,
                authentication="authentication" in usages,
                signing="signing" in usages,
            )
        )
    return out


def token_secret(token: TokenFacts, description: str = "") -> dict:
    """The Secret kubeadm init writes for a token."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = {"token-id": token.id, "token-secret": token.secret}
    if token.expiration is not None:
        data["expiration"] = token.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    if token.authentication:
        data["usage-bootstrap-authentication"] = "true"
    if token.signing:
        data["usage-bootstrap-signing"] = "true"
    data["auth-extra-groups"] = "system:bootstrappers:kubeadm:default-node-token"
    if description:
        data["description"] = description
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": f"bootstrap-token-{token.id}", "namespace": "kube-system"},
        "data": {k: b64(v) for k, v in data.items()},
    }


# --------------------------------------------------------------------------------------------
# verdicts


class Refused(Exception):
    """kubeadm would not do it. `permanent`: it exits; otherwise it keeps retrying discovery."""

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class NodeRegistration:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict, ...] | None = None  # None: kubeadm's default for the role


def _extra_args(nr: dict) -> dict[str, str]:
    args = nr.get("kubeletExtraArgs")
    if isinstance(args, list):  # v1beta4: [{name, value}]
        return {str(a.get("name")): str(a.get("value", "")) for a in args if isinstance(a, dict)}
    if isinstance(args, dict):
        return {str(k): "" if v is None else str(v) for k, v in args.items()}
    return {}


def node_registration(doc: dict | None, hostname: str) -> NodeRegistration:
    """nodeRegistration → the Node's name (default: the hostname, lowercased, as kubeadm does),
    extra labels (kubelet's --node-labels) and taints."""
    nr = dict((doc or {}).get("nodeRegistration") or {})
    name = str(nr.get("name") or hostname).strip().lower()
    if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        raise Refused(f"nodeRegistration.name {name!r} is not a valid node name (DNS-1123 subdomain)")
    labels: dict[str, str] = {}
    for pair in filter(None, _extra_args(nr).get("node-labels", "").split(",")):
        k, _, v = pair.partition("=")
        labels[k.strip()] = v.strip()
    taints = nr.get("taints")
    return NodeRegistration(
        name=name, labels=labels, taints=None if taints is None else tuple(dict(t) for t in taints)
    )


@dataclass(frozen=True)
class InitPlan:
    cluster_name: str
    version: str  # the control plane's (ClusterConfiguration.kubernetesVersion)
    kubelet_version: str  # the image's kubelet
    endpoint_host: str
    endpoint_port: int
    ca_cert: str | None  # None: no CA in the bootstrap data, kubeadm generates its own
    ca_key: str | None
    node: NodeRegistration
    tokens: tuple[TokenFacts, ...]
    warnings: tuple[str, ...] = ()


def plan_init(task: KubeadmTask, *, hostname: str, image_version: str | None, now: dt.datetime) -> InitPlan:
    """What `kubeadm init --config` would do with this task, or Refused."""
    cc = task.document("ClusterConfiguration")
    init = task.document("InitConfiguration")
    if cc is None:
        raise Refused(f"{task.config_path} has no ClusterConfiguration")
    version = parse_version(cc.get("kubernetesVersion"))
    if version is None:
        raise Refused(
            f"ClusterConfiguration.kubernetesVersion {cc.get('kubernetesVersion')!r} is not a version"
        )
    endpoint = split_endpoint(str(cc.get("controlPlaneEndpoint") or ""))
    if endpoint is None:
        raise Refused(
            "ClusterConfiguration has no controlPlaneEndpoint: joins could not find this control plane"
        )
    warnings: list[str] = []
    kubelet = normalize_version(str(cc["kubernetesVersion"]))
    if image_version is not None:
        image = parse_version(image_version)
        assert image is not None
        if image[:2] != version[:2]:
            raise Refused(
                f"the image's kubeadm/kubelet {image_version} cannot init a control plane of "
                f"{cc['kubernetesVersion']} (a different minor version)"
            )
        if image != version:
            warnings.append(f"image is {image_version}, control plane {cc['kubernetesVersion']}")
        kubelet = normalize_version(image_version)
    ca_cert, ca_key = task.pki("ca.crt"), task.pki("ca.key")
    if not ca_cert or not ca_key:
        warnings.append(
            "no cluster CA in the bootstrap data: kubeadm generates its own, so capt's admin "
            "credentials and CA hash will not match this cluster"
        )
        ca_cert = ca_key = None
    elif not key_matches_cert(ca_cert, ca_key):
        raise Refused("/etc/kubernetes/pki/ca.key does not match /etc/kubernetes/pki/ca.crt")
    return InitPlan(
        cluster_name=str(cc.get("clusterName") or "kubernetes"),
        version=normalize_version(str(cc["kubernetesVersion"])),
        kubelet_version=kubelet,
        endpoint_host=endpoint[0],
        endpoint_port=endpoint[1],
        ca_cert=ca_cert,
        ca_key=ca_key,
        node=node_registration(init, hostname),
        tokens=tuple(init_tokens(init, now)),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class ClusterFacts:
    """What a joining node can learn about the cluster at an endpoint."""

    name: str
    endpoint_host: str
    endpoint_port: int
    ca_cert: str
    version: str  # kubeadm-config's kubernetesVersion
    tokens: dict[str, TokenFacts]
    # node name -> (providerID, Ready) of an existing Node of that name
    node_owner: Callable[[str], tuple[str, bool] | None] = lambda _name: None
    # peer host -> name of an etcd member that already has https://<host>:2380
    etcd_peer: Callable[[str], str | None] = lambda _host: None


@dataclass(frozen=True)
class JoinPlan:
    cluster: ClusterFacts
    control_plane: bool
    kubelet_version: str
    node: NodeRegistration
    token_id: str
    warnings: tuple[str, ...] = ()
    bumps_version_to: str | None = None  # a control-plane join of the next minor (an upgrade)


def plan_join(
    task: KubeadmTask,
    *,
    hostname: str,
    provider_id: str,
    peer_host: str = "",
    image_version: str | None,
    find_cluster: Callable[[str, int], ClusterFacts | None],
    now: dt.datetime,
) -> JoinPlan:
    """What `kubeadm join --config` would do with this task, or Refused (transient or permanent)."""
    join = task.document("JoinConfiguration")
    if join is None:
        raise Refused(f"{task.config_path} has no JoinConfiguration")
    discovery = dict(join.get("discovery") or {})
    if discovery.get("file"):
        raise Refused("discovery.file is not supported by the simulator (only bootstrap-token discovery)")
    bt = dict(discovery.get("bootstrapToken") or {})
    token_text = str(bt.get("token") or "")
    m = TOKEN.match(token_text)
    if not m:
        raise Refused("discovery.bootstrapToken.token is missing or not of the form [a-z0-9]{6}.[a-z0-9]{16}")
    token_id, token_secret_part = m.group(1), m.group(2)
    hashes = [str(h) for h in bt.get("caCertHashes") or []]
    if not hashes and not bt.get("unsafeSkipCAVerification"):
        raise Refused(
            "discovery.bootstrapToken has no caCertHashes and unsafeSkipCAVerification is not set: "
            "token-based discovery without a CA pin is refused"
        )
    endpoint = split_endpoint(str(bt.get("apiServerEndpoint") or ""))
    if endpoint is None:
        raise Refused("discovery.bootstrapToken.apiServerEndpoint is missing")
    cluster = find_cluster(*endpoint)
    if cluster is None:
        raise Refused(
            f"could not reach the API server at https://{endpoint[0]}:{endpoint[1]}: "
            "no initialized control plane answers there",
            permanent=False,
        )
    # Token discovery: the cluster-info ConfigMap must carry a JWS signature for this token id,
    # made with its secret; kubeadm retries until the token shows up or discovery times out.
    known = cluster.tokens.get(token_id)
    if known is None or not known.signing:
        raise Refused(
            f"there is no JWS signed token in the cluster-info ConfigMap for token id {token_id!r}: "
            "it is invalid for this cluster or has expired",
            permanent=False,
        )
    if known.secret != token_secret_part:
        raise Refused(
            f"failed to verify JWS signature of cluster-info for token id {token_id!r}: "
            "the token's secret does not match the cluster's",
            permanent=False,
        )
    if known.expiration is not None and known.expiration <= now:
        raise Refused(
            f"bootstrap token {token_id!r} expired at {known.expiration:%Y-%m-%dT%H:%M:%SZ}", permanent=False
        )
    warnings: list[str] = []
    actual = ca_cert_hash(cluster.ca_cert)
    if hashes and actual not in hashes:
        raise Refused(
            f"cluster CA found in cluster-info ConfigMap is invalid: none of the public keys "
            f"{', '.join(hashes)} are pinned by the cluster CA ({actual})"
        )
    if not hashes:
        warnings.append("joining without CA pinning (unsafeSkipCAVerification)")
    if not known.authentication:
        raise Refused(
            f"bootstrap token {token_id!r} is not usable for authentication: TLS bootstrap Unauthorized"
        )

    control_plane = join.get("controlPlane") is not None
    cluster_v = parse_version(cluster.version)
    kubelet = normalize_version(image_version) if image_version else cluster.version
    kv = parse_version(kubelet)
    bump = None
    if cluster_v is not None and kv is not None:
        if control_plane:
            if kv[:2] not in (cluster_v[:2], (cluster_v[0], cluster_v[1] + 1)):
                raise Refused(
                    f"kubeadm {kubelet} cannot join a control plane of {cluster.version}: "
                    "a new control-plane member must be the same or the next minor version"
                )
            if kv[:2] > cluster_v[:2]:
                bump = kubelet
        else:
            if kv[:2] > cluster_v[:2]:
                raise Refused(
                    f"kubelet version {kubelet} is higher than the control plane version {cluster.version}: "
                    "unsupported version skew (upgrade the control plane first)"
                )
            if kv[0] != cluster_v[0] or cluster_v[1] - kv[1] > KUBELET_MAX_MINOR_SKEW:
                raise Refused(
                    f"kubelet version {kubelet} is more than {KUBELET_MAX_MINOR_SKEW} minor versions "
                    f"older than the control plane {cluster.version}"
                )
    if control_plane:
        missing = [f for f in CONTROL_PLANE_PKI if not task.pki(f)]
        if missing:
            raise Refused(
                "control-plane join: missing "
                + ", ".join(f"/etc/kubernetes/pki/{f}" for f in missing)
                + " (and no certificateKey to download them)"
            )
        ca = task.pki("ca.crt") or ""
        try:
            same = ca_cert_hash(ca) == actual
        except ValueError:
            same = False
        if not same:
            raise Refused("control-plane join: /etc/kubernetes/pki/ca.crt is not the cluster's CA")
        if not key_matches_cert(ca, task.pki("ca.key") or ""):
            raise Refused("control-plane join: /etc/kubernetes/pki/ca.key does not match ca.crt")
    node = node_registration(join, hostname)
    owner = cluster.node_owner(node.name)
    if owner is not None and owner[0] != provider_id and owner[1]:
        # kubeadm refuses only a Ready namesake; a NotReady one is taken over by the new kubelet.
        raise Refused(
            f"a Node with name {node.name!r} and status Ready already exists in the cluster "
            f"(providerID {owner[0]}): delete it or change the name of the joining node"
        )
    if control_plane and peer_host:
        stale = cluster.etcd_peer(peer_host)
        if stale is not None:
            raise Refused(
                f"etcd member add failed: etcdserver: Peer URLs already exists (https://{peer_host}:2380 "
                f"belongs to member {stale!r}, which was never removed)"
            )
    return JoinPlan(
        cluster=cluster,
        control_plane=control_plane,
        kubelet_version=kubelet,
        node=node,
        token_id=token_id,
        warnings=tuple(warnings),
        bumps_version_to=bump,
    )
