"""AWS Secrets Manager: the cluster's PKI, bootstrap tokens and per-machine bootstrap data.

Everything a cluster keeps secret lives here, under one per-cluster prefix, tagged as owned by
the cluster's id (contracts.names.cluster_id; tags from capt/activities/aws/tags.py, like every other capt
resource):

    capt/<namespace>/<cluster>/pki/{ca,etcd-ca,front-proxy-ca,sa,admin,admin-kubeconfig}
    capt/<namespace>/<cluster>/tokens/<machine>
    capt/<namespace>/<cluster>/bootstrap/<machine>-<random>-<n>

Workflows hold only ARNs, names and public values (the CA's public-key hash, a token's id and
expiry). Activities read the material by ARN, use it, and return none of it.

PKI and tokens have deterministic names: `ensure_*` reads the secret if it exists and creates it
otherwise (a concurrent creator's ResourceExistsException means "read theirs"), so a second run
reuses what the first made. Bootstrap data gets an unguessable name instead, as CAPA's: every node
may read and delete `capt/*/*/bootstrap/*` (it must fetch its own), but without ListSecrets a node
cannot find another machine's data — in particular a worker cannot read a control-plane machine's
CA keys. Its idempotency comes from the machine-name tag. Deleting treats "not found" as done.
"""

from __future__ import annotations

import json
import logging
import secrets as pysecrets
from collections.abc import Callable, Iterator

import yaml
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from capt.activities.aws import session
from capt.activities.aws import tags as capt_tags
from capt.activities.aws.errors import CaptAwsError, NotYetVisibleError, error_code
from capt.activities.aws.models import AwsResult
from capt.activities.aws.session import aws_activity
from capt.activities.kubeadm import pki as kpki
from capt.contracts.machines import ClusterPKIRefs

log = logging.getLogger(__name__)

ROOT = "capt"
PKI_NAMES = ("ca", "etcd-ca", "front-proxy-ca", "sa", "admin", "admin-kubeconfig")
# What a node's instance profile may read and delete: its own bootstrap data, found by name only.
NODE_READABLE_SECRET_PATTERN = f"{ROOT}/*/*/bootstrap/*"
# Secrets Manager accepts 64 KiB per secret value. CAPA stays far below an older 10 KiB limit
# (7000 bytes); capt uses 32 KiB: one chunk holds any realistic cloud-config once gzipped, and
# the boothook's base64 text stays well within what the aws CLI prints in one value.
MAX_CHUNK_BYTES = 32 * 1024
RANDOM_BYTES = 32  # 256 bits in the bootstrap-data name, as CAPA's prefix carries

# Role tag values of capt's secrets (the Name tag is the secret's name, or for bootstrap data
# the machine's name, as CAPA tags it).
ROLE_PKI = "pki"
ROLE_BOOTSTRAP_TOKEN = "bootstrap-token"
ROLE_BOOTSTRAP_DATA = "bootstrap-data"
# Bootstrap-data bookkeeping, only on those secrets: "<index>/<count>" and
# "<rendered bytes>/<stored bytes>", so a retry can tell a complete copy from a partial one.
CHUNK_TAG = "capt/bootstrap-chunk"
SIZES_TAG = "capt/bootstrap-sizes"


# --------------------------------------------------------------------------------------------
# names


def cluster_prefix(namespace: str, cluster_name: str) -> str:
    return f"{ROOT}/{namespace}/{cluster_name}"


def pki_secret_name(namespace: str, cluster_name: str, what: str) -> str:
    if what not in PKI_NAMES:
        raise ValueError(f"unknown PKI secret {what!r}")
    return f"{cluster_prefix(namespace, cluster_name)}/pki/{what}"


def token_secret_name(namespace: str, cluster_name: str, machine_name: str) -> str:
    return f"{cluster_prefix(namespace, cluster_name)}/tokens/{machine_name}"


def bootstrap_machine_prefix(namespace: str, cluster_name: str, machine_name: str) -> str:
    """Everything before the random part: what ListSecrets' name filter matches on."""
    return f"{cluster_prefix(namespace, cluster_name)}/bootstrap/{machine_name}-"


def new_bootstrap_prefix(namespace: str, cluster_name: str, machine_name: str) -> str:
    return bootstrap_machine_prefix(namespace, cluster_name, machine_name) + pysecrets.token_hex(RANDOM_BYTES)


def chunk_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def split_chunks(data: bytes, size: int = MAX_CHUNK_BYTES) -> list[bytes]:
    """`data` in pieces of at most `size` bytes; at least one piece (possibly empty)."""
    if size < 1:
        raise ValueError("chunk size must be positive")
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


# --------------------------------------------------------------------------------------------
# tags


def _tags(
    cluster_name: str,
    name: str,
    role: str,
    *,
    extra: dict[str, str] | None = None,
    additional: tuple[tuple[str, str], ...] = (),
) -> list[dict[str, str]]:
    """Secrets Manager's tag list: the cluster's owned tags, as on every capt resource."""
    built = capt_tags.build(cluster_name, name, role, additional=additional, extra=extra)
    return capt_tags.as_list(dict(sorted(built.items())))


def _tag_map(secret: dict) -> dict[str, str]:
    return capt_tags.as_dict(secret.get("Tags"))


# --------------------------------------------------------------------------------------------
# low-level Secrets Manager helpers (no secret values in logs or errors)


def client(region: str | None = None):
    """A Secrets Manager client (standard AWS env: endpoint, credentials; calls are counted)."""
    return session.client("secretsmanager", region)


def _code(err: ClientError) -> str:
    return error_code(err) or ""


def is_not_found(err: ClientError) -> bool:
    return _code(err) == "ResourceNotFoundException"


class SecretScheduledForDeletion(CaptAwsError):
    """The name is still held by a secret being deleted (retryable: AWS frees it shortly)."""

    non_retryable = False


class SecretMissing(CaptAwsError):
    """A secret capt stored is not there (deleted out of band, or not readable yet: retryable)."""

    non_retryable = False


def describe(sm, secret_id: str) -> dict | None:
    try:
        return sm.describe_secret(SecretId=secret_id)
    except ClientError as err:
        if is_not_found(err):
            return None
        raise


def get_string(sm, secret_id: str) -> str | None:
    try:
        return sm.get_secret_value(SecretId=secret_id)["SecretString"]
    except ClientError as err:
        if is_not_found(err):
            return None
        raise


def get_binary(sm, secret_id: str) -> bytes | None:
    try:
        return sm.get_secret_value(SecretId=secret_id)["SecretBinary"]
    except ClientError as err:
        if is_not_found(err):
            return None
        raise


def ensure_string_secret(
    sm, name: str, make: Callable[[], str], tags: list[dict[str, str]], description: str
) -> tuple[str, str, bool]:
    """(arn, value, created): the existing secret's value, or `make()` stored under `name`.

    Race-safe: if another run created it in between, its value is read and ours discarded.
    """
    existing = describe(sm, name)
    if existing is not None:
        if existing.get("DeletedDate"):
            raise SecretScheduledForDeletion(f"secret {name} is scheduled for deletion")
        value = get_string(sm, existing["ARN"])
        if value is not None:
            return existing["ARN"], value, False
    value = make()
    try:
        resp = sm.create_secret(Name=name, SecretString=value, Tags=tags, Description=description)
        return resp["ARN"], value, True
    except ClientError as err:
        if _code(err) == "ResourceExistsException":
            theirs = describe(sm, name)
            value = get_string(sm, name) if theirs else None
            if theirs and value is not None:
                return theirs["ARN"], value, False
            # Created by an attempt whose answer was lost, and reads do not show it yet: its
            # value is the one to use, so wait for it rather than give up.
            raise NotYetVisibleError(f"secret {name} exists but is not readable yet") from err
        if _code(err) == "InvalidRequestException" and "deletion" in str(err).lower():
            raise SecretScheduledForDeletion(f"secret {name} is scheduled for deletion") from None
        raise


def force_delete(sm, secret_id: str) -> None:
    """Delete now, without a recovery window, so the name is free again; gone already is fine.

    (With ForceDeleteWithoutRecovery, AWS answers success even for a secret that does not exist;
    ResourceNotFoundException is handled all the same.)
    """
    try:
        sm.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
    except ClientError as err:
        if not is_not_found(err):
            raise


def delete_secret(sm, secret_id: str) -> bool:
    """Force-delete a secret known only by name or ARN. True if it existed."""
    existing = describe(sm, secret_id)
    if existing is None or existing.get("DeletedDate"):
        return False
    force_delete(sm, existing["ARN"])
    return True


def list_by_name_prefix(sm, prefix: str) -> Iterator[dict]:
    """Secrets whose name starts with `prefix` (ListSecrets' name filter is a prefix match; the
    result is checked client-side too, as emulators differ)."""
    paginator = sm.get_paginator("list_secrets")
    for page in paginator.paginate(Filters=[{"Key": "name", "Values": [prefix]}]):
        for s in page.get("SecretList", []):
            if s["Name"].startswith(prefix):
                yield s


# --------------------------------------------------------------------------------------------
# cluster PKI


class ClusterPKIRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster_name: str
    namespace: str = "default"
    region: str
    # Known once the load balancer exists; the admin kubeconfig is (re)written when it is given.
    endpoint_host: str | None = None
    endpoint_port: int = 6443
    additional_tags: tuple[tuple[str, str], ...] = ()
    # The cluster's id in AWS (contracts.names.cluster_id): the secrets are tagged as owned by it.
    # Their names keep namespace and name. None (recorded before ids were namespaced): the name.
    cluster_id: str | None = None

    @property
    def owner(self) -> str:
        return self.cluster_id or self.cluster_name


def _keypair_json(kp: kpki.KeyPair) -> str:
    return json.dumps({"cert": kp.cert, "key": kp.key})


def _keypair(text: str) -> kpki.KeyPair:
    d = json.loads(text)
    return kpki.KeyPair(cert=d["cert"], key=d["key"])


def _sa_json(sa: kpki.ServiceAccountKeys) -> str:
    return json.dumps({"key": sa.key, "pub": sa.pub})


def _sa(text: str) -> kpki.ServiceAccountKeys:
    d = json.loads(text)
    return kpki.ServiceAccountKeys(key=d["key"], pub=d["pub"])


def _server_of(kubeconfig: str) -> str | None:
    try:
        return yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"]
    except (KeyError, IndexError, TypeError, yaml.YAMLError):
        return None


def ensure_pki(sm, req: ClusterPKIRequest) -> ClusterPKIRefs:
    ns, name = req.namespace, req.cluster_name
    created: list[str] = []

    def ensure(what: str, make: Callable[[], str]) -> tuple[str, str]:
        secret_name = pki_secret_name(ns, name, what)
        arn, value, was_created = ensure_string_secret(
            sm,
            secret_name,
            make,
            _tags(req.owner, secret_name, ROLE_PKI, additional=req.additional_tags),
            f"capt: {what} of cluster {ns}/{name}",
        )
        if was_created:
            created.append(what)
        return arn, value

    ca_arn, ca_text = ensure("ca", lambda: _keypair_json(kpki.new_ca(kpki.CLUSTER_CA_CN)))
    etcd_arn, _ = ensure("etcd-ca", lambda: _keypair_json(kpki.new_ca(kpki.ETCD_CA_CN)))
    fp_arn, _ = ensure("front-proxy-ca", lambda: _keypair_json(kpki.new_ca(kpki.FRONT_PROXY_CA_CN)))
    sa_arn, _ = ensure("sa", lambda: _sa_json(kpki.new_service_account_keys()))
    # The admin certificate is issued by the *stored* CA, so a run that died after creating the
    # CA (or lost a race to another run) still ends with a matching pair.
    ca = _keypair(ca_text)
    admin_arn, admin_text = ensure("admin", lambda: _keypair_json(kpki.issue_admin_cert(ca)))
    kubeconfig_arn = None
    if req.endpoint_host:
        kubeconfig = kpki.admin_kubeconfig(
            name, kpki.endpoint_url(req.endpoint_host, req.endpoint_port), ca.cert, _keypair(admin_text)
        )
        kubeconfig_arn, stored = ensure("admin-kubeconfig", lambda: kubeconfig)
        if _server_of(stored) != _server_of(kubeconfig):
            # The endpoint changed (e.g. a new load balancer): same credentials, new server.
            sm.put_secret_value(SecretId=kubeconfig_arn, SecretString=kubeconfig)
    return ClusterPKIRefs(
        ca_arn=ca_arn,
        etcd_ca_arn=etcd_arn,
        front_proxy_ca_arn=fp_arn,
        sa_arn=sa_arn,
        admin_arn=admin_arn,
        kubeconfig_arn=kubeconfig_arn,
        ca_cert_hash=kpki.ca_cert_hash(ca.cert),
        created=tuple(created),
    )


def _required(sm, arn: str) -> str:
    value = get_string(sm, arn)
    if value is None:
        raise SecretMissing(f"secret {arn} not found")
    return value


def read_cluster_pki(sm, refs: ClusterPKIRefs) -> kpki.ClusterPKI:
    """The key material, for use inside an activity only."""
    return kpki.ClusterPKI(
        ca=_keypair(_required(sm, refs.ca_arn)),
        etcd_ca=_keypair(_required(sm, refs.etcd_ca_arn)),
        front_proxy_ca=_keypair(_required(sm, refs.front_proxy_ca_arn)),
        sa=_sa(_required(sm, refs.sa_arn)),
    )


def read_cluster_ca(region: str, namespace: str, cluster: str) -> kpki.KeyPair | None:
    """The cluster's CA key pair, for an operator's `capt kubeconfig` (which signs a short-lived
    admin certificate with it); None before the cluster's PKI exists."""
    text = get_string(client(region), pki_secret_name(namespace, cluster, "ca"))
    return None if text is None else _keypair(text)


def read_admin_credentials(sm, refs: ClusterPKIRefs) -> tuple[str, kpki.KeyPair]:
    """(CA certificate, admin key pair) for the workload-cluster client."""
    return _keypair(_required(sm, refs.ca_arn)).cert, _keypair(_required(sm, refs.admin_arn))


@aws_activity
def ensure_cluster_pki(req: ClusterPKIRequest) -> ClusterPKIRefs:
    """Generate the cluster's CAs, service-account keys and admin credentials once; reuse them
    on every later run. Returns ARNs and the CA hash only."""
    refs = ensure_pki(client(req.region), req)
    log.info(
        "cluster PKI for %s/%s: created %s, reused the rest",
        req.namespace,
        req.cluster_name,
        ", ".join(refs.created) or "nothing",
    )
    return refs


# --------------------------------------------------------------------------------------------
# bootstrap data: gzipped cloud-config, chunked, under an unguessable prefix


class DeleteSecretsResult(AwsResult):
    deleted: int


class DeleteClusterSecretsRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster_name: str
    namespace: str = "default"
    region: str
    # The cluster's AWS id, which its owned tag carries; None = the name (clusters created
    # before ids were namespaced).
    cluster_id: str | None = None


def delete_all(sm, namespace: str, cluster_name: str, cluster_id: str | None = None) -> int:
    prefix = cluster_prefix(namespace, cluster_name) + "/"
    owner = cluster_id or cluster_name
    owned = [s for s in list_by_name_prefix(sm, prefix) if capt_tags.is_owned(_tag_map(s), owner)]
    for s in owned:
        force_delete(sm, s["ARN"])
    return len(owned)


@aws_activity
def delete_cluster_secrets(req: DeleteClusterSecretsRequest) -> DeleteSecretsResult:
    """Cluster deletion: every secret the cluster owns under its prefix (PKI, tokens, bootstrap
    data). Secrets without the owned tag are left alone, as everywhere in capt."""
    return DeleteSecretsResult(
        deleted=delete_all(client(req.region), req.namespace, req.cluster_name, req.cluster_id)
    )
