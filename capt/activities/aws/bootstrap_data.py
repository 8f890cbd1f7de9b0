"""A machine's bootstrap data (its cloud-init with the join credentials) in Secrets Manager: stored
in chunks under the machine's prefix, found again by its tags after a lost response, read by the
instance at boot, deleted with the machine."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import tags as capt_tags
from capt.activities.aws.secrets import (
    CHUNK_TAG,
    MAX_CHUNK_BYTES,
    ROLE_BOOTSTRAP_DATA,
    SIZES_TAG,
    DeleteSecretsResult,
    SecretMissing,
    _tag_map,
    _tags,
    bootstrap_machine_prefix,
    chunk_name,
    client,
    delete_secret,
    force_delete,
    get_binary,
    list_by_name_prefix,
    new_bootstrap_prefix,
    split_chunks,
    token_secret_name,
)
from capt.activities.aws.session import aws_activity


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
