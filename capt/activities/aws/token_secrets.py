"""The cluster's kubeadm bootstrap token in Secrets Manager: created once, refreshed before it
expires, read by the activities that render join data (never put in a workflow history)."""

from __future__ import annotations

import datetime as dt
import json

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import tags as capt_tags
from capt.activities.aws.models import AwsResult
from capt.activities.aws.secrets import (
    ROLE_BOOTSTRAP_TOKEN,
    _required,
    _tags,
    client,
    ensure_string_secret,
    token_secret_name,
)
from capt.activities.aws.session import aws_activity
from capt.activities.kubeadm import tokens as ktokens


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
