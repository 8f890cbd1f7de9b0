"""AWS Secrets Manager: the cluster's PKI, bootstrap tokens and per-machine bootstrap data.

Everything a cluster keeps secret lives here, under one per-cluster prefix, tagged as owned by
the cluster's id (plan.names.cluster_id; tags from activities/aws/tags.py, like every other capt
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

import datetime as dt
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
from capt.activities.kubeadm import tokens as ktokens

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
    # The cluster's id in AWS (plan.names.cluster_id): the secrets are tagged as owned by it.
    # Their names keep namespace and name. None (recorded before ids were namespaced): the name.
    cluster_id: str | None = None

    @property
    def owner(self) -> str:
        return self.cluster_id or self.cluster_name


class ClusterPKIRefs(AwsResult):
    """Where the cluster's secrets are, and the CA's public-key hash (public by design)."""

    ca_arn: str
    etcd_ca_arn: str
    front_proxy_ca_arn: str
    sa_arn: str
    admin_arn: str
    kubeconfig_arn: str | None = None
    ca_cert_hash: str
    created: tuple[str, ...] = ()  # which of PKI_NAMES this run created (the rest were reused)


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
# bootstrap tokens (one per joining machine, as CAPI's KubeadmConfig has)


class BootstrapTokenRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster_name: str
    namespace: str = "default"
    region: str
    machine_name: str
    ttl_seconds: int = int(ktokens.DEFAULT_TTL.total_seconds())
    additional_tags: tuple[tuple[str, str], ...] = ()
    # The cluster's id in AWS (the owned tag); None: the name (see ClusterPKIRequest).
    cluster_id: str | None = None

    @property
    def owner(self) -> str:
        return self.cluster_id or self.cluster_name


class BootstrapTokenRefreshRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    region: str
    secret_arn: str
    ttl_seconds: int = int(ktokens.DEFAULT_TTL.total_seconds())


class BootstrapTokenRef(AwsResult):
    """Where the token is, its id (public: it names the bootstrap-token Secret) and expiry."""

    secret_arn: str
    token_id: str
    expiration: dt.datetime
    created: bool = False


def _token_json(token: ktokens.BootstrapToken) -> str:
    return json.dumps({"token": token.value, "expiration": ktokens.rfc3339(token.expiration)})


def _token(text: str) -> ktokens.BootstrapToken:
    d = json.loads(text)
    return ktokens.parse_token(d["token"], ktokens.parse_rfc3339(d["expiration"]))


def read_bootstrap_token(sm, secret_arn: str) -> ktokens.BootstrapToken:
    return _token(_required(sm, secret_arn))


def ensure_token(sm, req: BootstrapTokenRequest, now: dt.datetime) -> BootstrapTokenRef:
    name = token_secret_name(req.namespace, req.cluster_name, req.machine_name)
    arn, value, created = ensure_string_secret(
        sm,
        name,
        lambda: _token_json(ktokens.new_token(now, dt.timedelta(seconds=req.ttl_seconds))),
        _tags(
            req.owner,
            req.machine_name,
            ROLE_BOOTSTRAP_TOKEN,
            extra={capt_tags.MACHINE_TAG: req.machine_name},
            additional=req.additional_tags,
        ),
        f"capt: kubeadm bootstrap token for machine {req.machine_name}",
    )
    token = _token(value)
    return BootstrapTokenRef(secret_arn=arn, token_id=token.id, expiration=token.expiration, created=created)


def refresh_token(sm, req: BootstrapTokenRefreshRequest, now: dt.datetime) -> BootstrapTokenRef:
    token = read_bootstrap_token(sm, req.secret_arn)
    new = ktokens.refreshed(token, now, dt.timedelta(seconds=req.ttl_seconds))
    if new.expiration != token.expiration:
        sm.put_secret_value(SecretId=req.secret_arn, SecretString=_token_json(new))
    return BootstrapTokenRef(secret_arn=req.secret_arn, token_id=new.id, expiration=new.expiration)


@aws_activity
def ensure_bootstrap_token(req: BootstrapTokenRequest) -> BootstrapTokenRef:
    """A kubeadm bootstrap token for one joining machine, created once and stored; the token
    itself stays in Secrets Manager (the workload client posts its Secret from there)."""
    return ensure_token(client(req.region), req, dt.datetime.now(dt.UTC))


@aws_activity
def refresh_bootstrap_token(req: BootstrapTokenRefreshRequest) -> BootstrapTokenRef:
    """Extend a stored token's expiry to now + TTL (the workload Secret is updated separately)."""
    return refresh_token(client(req.region), req, dt.datetime.now(dt.UTC))


# --------------------------------------------------------------------------------------------
# bootstrap data: gzipped cloud-config, chunked, under an unguessable prefix


class StoredBootstrapData(BaseModel):
    model_config = ConfigDict(frozen=True)

    secret_prefix: str
    secret_arns: tuple[str, ...]
    rendered_bytes: int
    stored_bytes: int


def store_bootstrap_data(
    sm,
    *,
    namespace: str,
    cluster_name: str,
    machine_name: str,
    data: bytes,
    rendered_bytes: int,
    additional_tags: tuple[tuple[str, str], ...] = (),
    chunk_size: int = MAX_CHUNK_BYTES,
    owner: str | None = None,
) -> StoredBootstrapData:
    """Store `data` (already gzipped) as `<prefix>-0 … <prefix>-<n-1>` under a fresh random prefix.

    Every chunk is tagged with the machine's name (Name, as CAPA does, and capt's machine tag),
    its index and the count, so `find_bootstrap_data` can tell a complete copy from the leftovers
    of an attempt that died half-way. `owner` is the cluster id the chunks are owned by (default:
    the name).
    """
    prefix = new_bootstrap_prefix(namespace, cluster_name, machine_name)
    chunks = split_chunks(data, chunk_size)
    arns = []
    for i, chunk in enumerate(chunks):
        tags = _tags(
            owner or cluster_name,
            machine_name,
            ROLE_BOOTSTRAP_DATA,
            extra={
                capt_tags.MACHINE_TAG: machine_name,
                CHUNK_TAG: f"{i}/{len(chunks)}",
                SIZES_TAG: f"{rendered_bytes}/{len(data)}",
            },
            additional=additional_tags,
        )
        resp = sm.create_secret(
            Name=chunk_name(prefix, i),
            SecretBinary=chunk,
            Tags=tags,
            Description=f"capt: bootstrap data for machine {machine_name}, chunk {i + 1} of {len(chunks)}",
        )
        arns.append(resp["ARN"])
    return StoredBootstrapData(
        secret_prefix=prefix, secret_arns=tuple(arns), rendered_bytes=rendered_bytes, stored_bytes=len(data)
    )


def _groups(
    sm, namespace: str, cluster_name: str, machine_name: str, owner: str | None = None
) -> dict[str, list[dict]]:
    """This machine's bootstrap-data secrets (owned by `owner`, the cluster id; default the name),
    grouped by prefix (one group per stored copy)."""
    groups: dict[str, list[dict]] = {}
    for s in list_by_name_prefix(sm, bootstrap_machine_prefix(namespace, cluster_name, machine_name)):
        tags = _tag_map(s)
        # The name filter is a prefix ("m-1" also matches "m-1-x-…"); the tags are exact.
        if (
            s.get("DeletedDate")
            or not capt_tags.is_owned(tags, owner or cluster_name)
            or tags.get(capt_tags.MACHINE_TAG) != machine_name
            or tags.get(capt_tags.ROLE_TAG) != ROLE_BOOTSTRAP_DATA
        ):
            continue
        prefix, _, _ = s["Name"].rpartition("-")
        groups.setdefault(prefix, []).append(s)
    return groups


def _complete(prefix: str, secrets_: list[dict]) -> StoredBootstrapData | None:
    by_index: dict[int, dict] = {}
    total = None
    sizes = None
    for s in secrets_:
        tags = _tag_map(s)
        try:
            index, count = (int(x) for x in tags[CHUNK_TAG].split("/"))
            rendered, stored = (int(x) for x in tags[SIZES_TAG].split("/"))
        except (KeyError, ValueError):
            return None
        if s["Name"] != chunk_name(prefix, index) or (total is not None and count != total):
            return None
        total, sizes = count, (rendered, stored)
        by_index[index] = s
    if total is None or sizes is None or sorted(by_index) != list(range(total)):
        return None
    return StoredBootstrapData(
        secret_prefix=prefix,
        secret_arns=tuple(by_index[i]["ARN"] for i in range(total)),
        rendered_bytes=sizes[0],
        stored_bytes=sizes[1],
    )


def find_bootstrap_data(
    sm, namespace: str, cluster_name: str, machine_name: str, owner: str | None = None
) -> StoredBootstrapData | None:
    """A complete stored copy of this machine's bootstrap data, if an earlier attempt made one
    (the first by name if, after overlapping attempts, there are several)."""
    for prefix, group in sorted(_groups(sm, namespace, cluster_name, machine_name, owner).items()):
        complete = _complete(prefix, group)
        if complete is not None:
            return complete
    return None


def read_bootstrap_data(sm, stored: StoredBootstrapData) -> bytes:
    """The stored (gzipped) bytes, chunks joined in order — what the boothook reassembles."""
    parts = []
    for arn in stored.secret_arns:
        chunk = get_binary(sm, arn)
        if chunk is None:
            raise SecretMissing(f"bootstrap chunk {arn} not found")
        parts.append(chunk)
    return b"".join(parts)


def delete_machine_bootstrap(
    sm,
    namespace: str,
    cluster_name: str,
    machine_name: str,
    secret_prefix: str | None = None,
    chunks: int = 0,
    owner: str | None = None,
) -> int:
    """Delete every stored copy of the machine's bootstrap data and its token; returns how many
    existed. The known prefix is deleted by name too: a just-created secret may not be listed
    yet (ListSecrets is eventually consistent)."""
    if secret_prefix and not secret_prefix.startswith(
        bootstrap_machine_prefix(namespace, cluster_name, machine_name)
    ):
        raise ValueError(f"{secret_prefix!r} is not a bootstrap prefix of machine {machine_name}")
    listed = sorted(
        s["Name"]
        for group in _groups(sm, namespace, cluster_name, machine_name, owner).values()
        for s in group
    )
    for name in listed:
        force_delete(sm, name)
    others = {chunk_name(secret_prefix, i) for i in range(chunks)} if secret_prefix else set()
    others.add(token_secret_name(namespace, cluster_name, machine_name))
    return len(listed) + sum(delete_secret(sm, name) for name in sorted(others - set(listed)))


class DeleteBootstrapDataRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    cluster_name: str
    namespace: str = "default"
    region: str
    machine_name: str
    secret_prefix: str | None = None
    chunks: int = 0
    # The cluster's id in AWS (the owned tag); None: the name (see ClusterPKIRequest).
    cluster_id: str | None = None


class DeleteSecretsResult(AwsResult):
    deleted: int


@aws_activity
def delete_bootstrap_data(req: DeleteBootstrapDataRequest) -> DeleteSecretsResult:
    """Once the node joined, or the machine is deleted: its bootstrap data and token go.
    Already gone (the boothook deletes what it fetched) counts as success."""
    n = delete_machine_bootstrap(
        client(req.region),
        req.namespace,
        req.cluster_name,
        req.machine_name,
        req.secret_prefix,
        req.chunks,
        owner=req.cluster_id,
    )
    return DeleteSecretsResult(deleted=n)


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
