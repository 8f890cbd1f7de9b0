"""The user's own secrets: the `Secret` documents a manifest references, in Secrets Manager.

    capt/<namespace>/<cluster>/user/<Secret name>   JSON {key: base64 value}

The CLI stores them (`store`) before it starts or updates the cluster's workflow, so no value ever
travels in a workflow input, an activity argument or a result; workflows carry only the Secret's
name, and the activities that need a value (the bootstrap renderer for `files[].contentFrom` and
`users[].passwdFrom`, the addon applier for ClusterResourceSet Secrets) `read` it here. They are
tagged as owned by the cluster's id like every capt secret, so the cluster's deletion
(`secrets.delete_all`) removes them with the rest.

Storing is idempotent: an unchanged value is left alone (no new version), a changed one is put as
a new version; a secret at that name that the cluster does not own is never overwritten.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from botocore.exceptions import ClientError

from capt.activities import redaction
from capt.activities.aws import secrets as sm
from capt.activities.aws import tags as capt_tags
from capt.activities.aws.errors import ConflictError

ROLE_USER_SECRET = "user-secret"


def user_secret_name(namespace: str, cluster_name: str, secret: str) -> str:
    return f"{sm.cluster_prefix(namespace, cluster_name)}/user/{secret}"


def _encode(values: Mapping[str, bytes]) -> str:
    return json.dumps({k: base64.b64encode(v).decode() for k, v in sorted(values.items())}, sort_keys=True)


def _decode(text: str) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in json.loads(text).items()}


def store(
    region: str | None,
    namespace: str,
    cluster_name: str,
    owner: str,
    secrets: Mapping[str, Mapping[str, bytes]],
    additional_tags: tuple[tuple[str, str], ...] = (),
) -> dict[str, str]:
    """Create or update each Secret under the cluster's prefix; {Secret name: current VersionId}
    (the version changes only when the value does)."""
    client = sm.client(region)
    versions: dict[str, str] = {}
    for name, values in sorted(secrets.items()):
        for value in values.values():
            redaction.register(value)
        secret_id = user_secret_name(namespace, cluster_name, name)
        body = _encode(values)
        existing = sm.describe(client, secret_id)
        if existing is not None and existing.get("DeletedDate"):
            raise sm.SecretScheduledForDeletion(f"secret {secret_id} is scheduled for deletion")
        if existing is None:
            try:
                resp = client.create_secret(
                    Name=secret_id,
                    SecretString=body,
                    Tags=sm._tags(owner, secret_id, ROLE_USER_SECRET, additional=additional_tags),
                    Description=f"capt: Secret {name} of cluster {namespace}/{cluster_name}",
                )
                versions[name] = resp["VersionId"]
                continue
            except ClientError as err:
                if sm._code(err) != "ResourceExistsException":
                    raise
                existing = sm.describe(client, secret_id)
                if existing is None:
                    raise
        if not capt_tags.is_owned(sm._tag_map(existing), owner):
            raise ConflictError(
                f"secret {secret_id} exists but is not owned by cluster {owner}; capt will not overwrite it"
            )
        current = client.get_secret_value(SecretId=existing["ARN"])
        if current.get("SecretString") != body:
            current = client.put_secret_value(SecretId=existing["ARN"], SecretString=body)
        versions[name] = current["VersionId"]
    return versions


def read(region: str | None, namespace: str, cluster_name: str, name: str) -> dict[str, bytes]:
    """One stored Secret's values; SecretMissing (retryable) when it is not there."""
    client = sm.client(region)
    secret_id = user_secret_name(namespace, cluster_name, name)
    text = sm.get_string(client, secret_id)
    if text is None:
        raise sm.SecretMissing(
            f"Secret {name} of cluster {namespace}/{cluster_name} is not in Secrets Manager "
            f"({secret_id}); `capt apply` stores it before the cluster starts"
        )
    values = _decode(text)
    for value in values.values():
        redaction.register(value)
    return values


def read_value(region: str | None, namespace: str, cluster_name: str, name: str, key: str) -> bytes:
    values = read(region, namespace, cluster_name, name)
    if key not in values:
        raise ConflictError(f"Secret {name} of cluster {namespace}/{cluster_name} has no key {key!r}")
    return values[key]
