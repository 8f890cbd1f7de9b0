"""Bootstrap data: the cloud-init that turns an EC2 instance into a Kubernetes node with kubeadm.

Three kinds, as CAPI's kubeadm bootstrap provider renders them:

- ``init``: the first control-plane machine. The cluster's CA, etcd CA, front-proxy CA and
  service-account keys are written under /etc/kubernetes/pki, then ``kubeadm init`` runs with a
  ClusterConfiguration + InitConfiguration.
- ``join-control-plane``: further control-plane machines. The same key material, then
  ``kubeadm join`` with a JoinConfiguration that has a ``controlPlane`` section (the config-file
  form of ``kubeadm join --control-plane``).
- ``join-worker``: workers. No key material, only a JoinConfiguration with bootstrap-token
  discovery pinned to the CA's public-key hash.

The output is a ``## template: jinja`` cloud-config, as CAPI emits: cloud-init renders it on the
instance, so ``{{ ds.meta_data.local_hostname }}`` in the manifest's nodeRegistration becomes the
instance's hostname there. Our own templates (templates/*.j2) use other delimiters so that our
rendering never consumes cloud-init's.

Because the rendered data holds keys and a token it never goes into EC2 user data: the activity
`prepare_bootstrap_data` stores it gzipped (chunked if large) in Secrets Manager, and the user data
is only a boothook (`render_user_data`) that fetches it with the instance profile, deletes it and
lets cloud-init include it — CAPA's secrets backend.

Pure functions first (render, kubeadm documents, user data), the activity at the end.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from capt.activities.aws import bootstrap_data, idempotent, token_secrets, user_secrets
from capt.activities.aws import secrets as sm
from capt.activities.aws.errors import CaptAwsError
from capt.activities.aws.models import AwsResult
from capt.activities.aws.secrets import ClusterPKIRefs
from capt.activities.aws.session import aws_activity
from capt.activities.kubeadm.pki import ClusterPKI
from capt.activities.kubeadm.tokens import BootstrapToken, init_configuration_token
from capt.rules.versions import parse_kubernetes_version
from capt.spec.models import ClusterSpec, KubeadmConfigSpec

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


# --------------------------------------------------------------------------------------------
# kubeadm API version and documents


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


# --------------------------------------------------------------------------------------------
# cloud-config


def _q(value: Any) -> str:
    """A YAML flow scalar/collection for any JSON-able value (JSON is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


_NOT_LITERAL = re.compile(r"[\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u0085\u2028\u2029\ufeff]")


def _block(text: Any, indent: int) -> str:
    """`text` as a YAML literal block scalar whose lines are indented by `indent` spaces.

    Falls back to a quoted scalar where a literal block could not carry the text exactly:
    leading whitespace on the first line, carriage returns or other non-printables, empty text.
    """
    text = str(text)
    if not text or text[0] in " \t\n" or _NOT_LITERAL.search(text) or text.strip() == "":
        return _q(text)
    if text.endswith("\n\n"):
        chomp = "+"
    elif text.endswith("\n"):
        chomp = ""
    else:
        chomp = "-"
    pad = " " * indent
    body = text[:-1] if text.endswith("\n") else text
    lines = [(pad + line) if line else "" for line in body.split("\n")]
    return "|" + chomp + "\n" + "\n".join(lines)


def _sh(value: Any) -> str:
    return shlex.quote("" if value is None else str(value))


def template_environment() -> jinja2.Environment:
    """Jinja for our templates, with delimiters that cannot collide with cloud-init's Jinja."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("capt.templates", ""),
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<@",
        variable_end_string="@>",
        comment_start_string="<#",
        comment_end_string="#>",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    env.filters["q"] = _q
    env.filters["block"] = _block
    env.filters["sh"] = _sh
    return env


_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = template_environment()
    return _ENV


def _file(path: str, content: str, permissions: str, owner: str = "root:root") -> dict:
    return {
        "path": path,
        "content": content,
        "owner": owner,
        "permissions": permissions,
        "encoding": None,
        "append": False,
    }


def pki_files(pki: ClusterPKI) -> list[dict]:
    """The shared key material under /etc/kubernetes/pki, with kubeadm's file modes."""
    return [
        _file(f"{PKI_DIR}/ca.crt", pki.ca.cert, "0644"),
        _file(f"{PKI_DIR}/ca.key", pki.ca.key, "0600"),
        _file(f"{PKI_DIR}/etcd/ca.crt", pki.etcd_ca.cert, "0644"),
        _file(f"{PKI_DIR}/etcd/ca.key", pki.etcd_ca.key, "0600"),
        _file(f"{PKI_DIR}/front-proxy-ca.crt", pki.front_proxy_ca.cert, "0644"),
        _file(f"{PKI_DIR}/front-proxy-ca.key", pki.front_proxy_ca.key, "0600"),
        _file(f"{PKI_DIR}/sa.pub", pki.sa.pub, "0644"),
        _file(f"{PKI_DIR}/sa.key", pki.sa.key, "0600"),
    ]


def _permissions(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BootstrapError(f"file permissions must be a string like '0644', got {value!r}")
    if isinstance(value, int):
        # YAML 1.1 reads an unquoted 0644 as the octal integer 420.
        return f"{value:04o}"
    return str(value)


SecretValues = dict[tuple[str, str], bytes]  # (Secret name, key) -> value


def secret_refs(spec: KubeadmConfigSpec) -> list[tuple[str, str]]:
    """Every (Secret name, key) the spec's files and users reference, in order, once each."""
    seen: dict[tuple[str, str], None] = {}
    sources = [f.get("contentFrom") for f in spec.files] + [u.get("passwdFrom") for u in spec.users]
    for source in sources:
        secret = source.get("secret") if isinstance(source, dict) else None
        if isinstance(secret, dict) and secret.get("name") and secret.get("key"):
            seen.setdefault((str(secret["name"]), str(secret["key"])), None)
    return list(seen)


def _secret_value(what: str, source: Any, secrets: SecretValues) -> bytes:
    secret = source.get("secret") if isinstance(source, dict) else None
    ref = (str(secret.get("name")), str(secret.get("key"))) if isinstance(secret, dict) else None
    if ref is None or ref not in secrets:
        raise BootstrapError(f"{what}: the referenced Secret value {ref} was not read")
    return secrets[ref]


def user_files(spec: KubeadmConfigSpec, secrets: SecretValues | None = None) -> list[dict]:
    out = []
    for f in spec.files:
        content = str(f.get("content") or "")
        encoding = f.get("encoding") or None
        if f.get("contentFrom"):
            # CAPI writes the Secret's value as the file's content, with the file's encoding.
            value = _secret_value(f"file {f.get('path')}", f["contentFrom"], secrets or {})
            try:
                content = value.decode()
            except UnicodeDecodeError:
                if encoding:
                    raise BootstrapError(
                        f"file {f.get('path')}: the Secret's value is binary; leave encoding unset"
                    ) from None
                content, encoding = base64.b64encode(value).decode(), "b64"
        out.append(
            {
                "path": str(f["path"]),
                "content": content,
                "owner": f.get("owner") or None,
                "permissions": _permissions(f.get("permissions")),
                "encoding": encoding,
                "append": bool(f.get("append", False)),
            }
        )
    return out


# CAPI User (camelCase) -> cloud-init users entry.
_USER_FIELDS = (
    ("gecos", "gecos"),
    ("groups", "groups"),
    ("homeDir", "homedir"),
    ("primaryGroup", "primary_group"),
    ("shell", "shell"),
    ("passwd", "passwd"),
    ("lockPassword", "lock_passwd"),
    ("sudo", "sudo"),
    ("sshAuthorizedKeys", "ssh_authorized_keys"),
)


def cloud_init_users(spec: KubeadmConfigSpec, secrets: SecretValues | None = None) -> list[dict]:
    users = []
    for u in spec.users:
        if not u.get("name"):
            raise BootstrapError("every user needs a name")
        passwd = u.get("passwd")
        if u.get("passwdFrom"):
            passwd = _secret_value(f"user {u['name']}", u["passwdFrom"], secrets or {}).decode()
        fields: list[tuple[str, Any]] = []
        for src, dst in _USER_FIELDS:
            value = passwd if src == "passwd" else u.get(src)
            if value is None or value == "" or value == []:
                continue
            if dst == "ssh_authorized_keys":
                value = [str(k) for k in value]
            fields.append((dst, value))
        inactive = u.get("inactive")
        if isinstance(inactive, str) and inactive:
            fields.append(("inactive", inactive))
        # A boolean `inactive` (CAPI's type) is ignored by cloud-init's useradd (it takes a number
        # of days as a string) and invalid in its schema; it is left out rather than guessed.
        users.append({"name": str(u["name"]), "fields": fields})
    return users


def _ntp(spec: KubeadmConfigSpec) -> dict | None:
    if not spec.ntp:
        return None
    servers = [str(s) for s in spec.ntp.get("servers") or []]
    enabled = spec.ntp.get("enabled")
    if enabled is None and not servers:
        return None
    return {"enabled": enabled, "servers": servers}


def join_command(spec: KubeadmConfigSpec) -> str:
    cmd = f"kubeadm join --config {JOIN_CONFIG_PATH}"
    if spec.use_experimental_retry_join:
        # CAPI's useExperimentalRetryJoin: retry a failed join after a reset (transient API or
        # etcd trouble while the control plane is still settling).
        cmd = (
            f"for i in 1 2 3 4 5; do {cmd} && break; "
            '[ "$i" -eq 5 ] && exit 1; kubeadm reset -f; sleep 10; done'
        )
    return cmd


@dataclass(frozen=True)
class RenderInput:
    """Everything a cloud-config needs, secrets included: exists only inside an activity."""

    kind: BootstrapKind
    kubeadm: KubeadmConfigSpec
    inputs: KubeadmInputs
    pki: ClusterPKI | None = None
    # The values of the Secrets the kubeadm spec references (read from Secrets Manager).
    secrets: SecretValues | None = None


def kubeadm_documents(r: RenderInput) -> list[dict]:
    if r.kind == "init":
        return [cluster_configuration(r.kubeadm, r.inputs), init_configuration(r.kubeadm, r.inputs)]
    return [join_configuration(r.kubeadm, r.inputs, control_plane=r.kind == "join-control-plane")]


_TEMPLATES: dict[str, str] = {
    "init": "kubeadm_init.j2",
    "join-control-plane": "kubeadm_join_control_plane.j2",
    "join-worker": "kubeadm_join_worker.j2",
}


def render_cloud_config(r: RenderInput) -> str:
    """The `## template: jinja` cloud-config for one machine (holds secrets: store, never log)."""
    if r.kubeadm.format != "cloud-config":
        raise BootstrapError(f"bootstrap format {r.kubeadm.format!r} is not supported (cloud-config only)")
    files: list[dict] = []
    if r.kind in ("init", "join-control-plane"):
        if r.pki is None:
            raise BootstrapError(f"{r.kind} needs the cluster PKI")
        files += pki_files(r.pki)
    files += user_files(r.kubeadm, r.secrets)
    context = {
        "write_files": files,
        "kubeadm_config_path": INIT_CONFIG_PATH if r.kind == "init" else JOIN_CONFIG_PATH,
        "kubeadm_config": dump_documents(kubeadm_documents(r)),
        "join_command": join_command(r.kubeadm),
        "success_command": SUCCESS_COMMAND,
        "pre_kubeadm_commands": list(r.kubeadm.pre_kubeadm_commands),
        "post_kubeadm_commands": list(r.kubeadm.post_kubeadm_commands),
        "ntp": _ntp(r.kubeadm),
        "users": cloud_init_users(r.kubeadm, r.secrets),
        "mounts": [list(m) for m in r.kubeadm.mounts],
    }
    return _env().get_template(_TEMPLATES[r.kind]).render(**context)


# --------------------------------------------------------------------------------------------
# user data: the boothook


def render_boothook(
    *,
    secret_prefix: str,
    chunks: int,
    region: str,
    endpoint_url: str | None = None,
    file: str = BOOTSTRAP_FILE,
    attempts: int = FETCH_ATTEMPTS,
) -> str:
    if chunks < 1 or attempts < 1:
        raise ValueError("at least one chunk and one attempt")
    return (
        _env()
        .get_template("boothook.sh.j2")
        .render(
            region=region,
            endpoint=endpoint_url or "",
            prefix=secret_prefix,
            chunks=int(chunks),
            file=file,
            attempts=int(attempts),
        )
    )


def render_user_data(
    *,
    secret_prefix: str,
    chunks: int,
    region: str,
    endpoint_url: str | None = None,
    file: str = BOOTSTRAP_FILE,
) -> str:
    """The EC2 user data: a MIME document with the boothook and an include of the file it writes.

    Deterministic for the same arguments (RunInstances with the same ClientToken must be sent the
    same parameters). Holds no key and no token: only the secrets' name prefix and count.
    """
    boothook = render_boothook(
        secret_prefix=secret_prefix, chunks=chunks, region=region, endpoint_url=endpoint_url, file=file
    )
    return (
        _env()
        .get_template("user_data.mime.j2")
        .render(boundary=MIME_BOUNDARY, boothook=boothook.rstrip("\n"), file=file)
    )


def compress(cloud_config: str) -> bytes:
    return gzip.compress(cloud_config.encode(), compresslevel=9, mtime=GZIP_MTIME)


# --------------------------------------------------------------------------------------------
# the activity


class BootstrapRequest(BaseModel):
    """One machine's bootstrap. Names and ARNs only: the keys and token are read inside."""

    model_config = ConfigDict(frozen=True)

    cluster_name: str
    namespace: str = "default"
    region: str
    machine_name: str
    kind: BootstrapKind
    kubernetes_version: str
    kubeadm: KubeadmConfigSpec
    endpoint_host: str
    endpoint_port: int = 6443
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    service_domain: str = "cluster.local"
    # From ensure_cluster_pki.
    pki: ClusterPKIRefs
    # From ensure_bootstrap_token: required for joins; optional for init (kubeadm init then
    # creates that token itself, so the next machines can join at once).
    token_secret_arn: str | None = None
    additional_tags: tuple[tuple[str, str], ...] = ()
    # The cluster's id in AWS (plan.names.cluster_id): the stored data is tagged as owned by it.
    # kubeadm's clusterName stays `cluster_name`. None (recorded before ids were namespaced): the
    # name.
    cluster_id: str | None = None


class BootstrapRefs(AwsResult):
    """Where the machine's bootstrap data is and how big things are; no secret in here."""

    secret_prefix: str
    secret_arns: tuple[str, ...]
    chunks: int
    rendered_bytes: int  # the cloud-config before gzip
    stored_bytes: int  # gzipped, what Secrets Manager holds
    user_data_bytes: int  # the boothook MIME document (no endpoint override)
    reused: bool = False


def bootstrap_request_for(
    cluster: ClusterSpec,
    *,
    machine_name: str,
    kind: BootstrapKind,
    endpoint_host: str,
    pki: ClusterPKIRefs,
    token_secret_arn: str | None = None,
    deployment: str | None = None,
    kubernetes_version: str | None = None,
) -> BootstrapRequest:
    """Build a BootstrapRequest from the cluster spec: the control plane's KubeadmConfigSpec for
    control-plane machines, the named MachineDeployment's for workers."""
    if kind == "join-worker":
        if deployment is None:
            raise ValueError("a worker needs its MachineDeployment's name")
        md = cluster.deployment(deployment)
        kubeadm, version, tags = md.bootstrap, md.version, md.machine_template.additional_tags
    else:
        cp = cluster.control_plane
        kubeadm, version, tags = cp.kubeadm, cp.version, cp.machine_template.additional_tags
    return BootstrapRequest(
        cluster_name=cluster.name,
        namespace=cluster.namespace,
        region=cluster.region,
        machine_name=machine_name,
        kind=kind,
        kubernetes_version=kubernetes_version or version,
        kubeadm=kubeadm,
        endpoint_host=cluster.control_plane_endpoint_host or endpoint_host,
        endpoint_port=cluster.control_plane_endpoint_port,
        pod_cidrs=cluster.network.pod_cidrs,
        service_cidrs=cluster.network.service_cidrs,
        service_domain=cluster.network.service_domain,
        pki=pki,
        token_secret_arn=token_secret_arn,
        additional_tags=tuple(cluster.additional_tags) + tuple(tags),
    )


@aws_activity
def prepare_bootstrap_data(req: BootstrapRequest) -> BootstrapRefs:
    """Read the PKI (and token) from Secrets Manager, render the cloud-config, store it gzipped
    and chunked under a fresh unguessable prefix. Idempotent: a retry finds the machine's
    complete set by its tags and returns it instead of storing another."""
    client = sm.client(req.region)
    existing = bootstrap_data.find_bootstrap_data(
        client, req.namespace, req.cluster_name, req.machine_name, owner=req.cluster_id
    )
    if existing is not None:
        return _refs(existing, req.region, reused=True)
    # A retry may follow an attempt that stored a copy ListSecrets does not show yet.
    idempotent.before_create(f"bootstrap data of {req.machine_name}")

    token = token_secrets.read_bootstrap_token(client, req.token_secret_arn) if req.token_secret_arn else None
    if req.kind != "init" and token is None:
        raise BootstrapError(f"{req.kind} for {req.machine_name} needs token_secret_arn")
    pki = sm.read_cluster_pki(client, req.pki) if req.kind != "join-worker" else None
    user_values = {
        (name, key): user_secrets.read_value(req.region, req.namespace, req.cluster_name, name, key)
        for name, key in secret_refs(req.kubeadm)
    }
    rendered = render_cloud_config(
        RenderInput(
            kind=req.kind,
            kubeadm=req.kubeadm,
            pki=pki,
            secrets=user_values,
            inputs=KubeadmInputs(
                cluster_name=req.cluster_name,
                kubernetes_version=req.kubernetes_version,
                endpoint_host=req.endpoint_host,
                endpoint_port=req.endpoint_port,
                pod_cidrs=req.pod_cidrs,
                service_cidrs=req.service_cidrs,
                service_domain=req.service_domain,
                ca_cert_hash=req.pki.ca_cert_hash,
                token=token,
            ),
        )
    )
    data = compress(rendered)
    stored = bootstrap_data.store_bootstrap_data(
        client,
        namespace=req.namespace,
        cluster_name=req.cluster_name,
        machine_name=req.machine_name,
        data=data,
        rendered_bytes=len(rendered.encode()),
        additional_tags=req.additional_tags,
        owner=req.cluster_id,
    )
    refs = _refs(stored, req.region)
    activity.logger.info(
        "stored bootstrap data for %s (%s): %d bytes rendered, %d stored in %d chunk(s), user data %d bytes",
        req.machine_name,
        req.kind,
        refs.rendered_bytes,
        refs.stored_bytes,
        refs.chunks,
        refs.user_data_bytes,
    )
    return refs


def _refs(stored: bootstrap_data.StoredBootstrapData, region: str, reused: bool = False) -> BootstrapRefs:
    chunks = len(stored.secret_arns)
    user_data = render_user_data(secret_prefix=stored.secret_prefix, chunks=chunks, region=region)
    return BootstrapRefs(
        secret_prefix=stored.secret_prefix,
        secret_arns=stored.secret_arns,
        chunks=chunks,
        rendered_bytes=stored.rendered_bytes,
        stored_bytes=stored.stored_bytes,
        user_data_bytes=len(user_data.encode()),
        reused=reused,
    )
