"""kubeadm bootstrap tokens — pure functions, no I/O.

A bootstrap token `<id>.<secret>` (`[a-z0-9]{6}.[a-z0-9]{16}`) lets a new node authenticate to the
API server as `system:bootstrap:<id>` (group `system:bootstrappers:kubeadm:default-node-token`)
long enough to fetch the cluster-info ConfigMap and have its kubelet client certificate signed.
The API server knows a token by a Secret `bootstrap-token-<id>` in kube-system; it stops working
at the Secret's `expiration`. The id is public (it names the Secret); the secret part is not.

Like CAPI, capt uses a short TTL (15 minutes) and extends a token while its machine is still
joining, so a leaked token is useless soon after the node joined.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from dataclasses import dataclass

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
TOKEN_ID_LENGTH = 6
TOKEN_SECRET_LENGTH = 16
TOKEN_PATTERN = re.compile(r"\b([a-z0-9]{6})\.([a-z0-9]{16})\b")
_TOKEN_EXACT = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")

# CAPI's default bootstrap token TTL (bootstrap/kubeadm DefaultTokenTTL).
DEFAULT_TTL = dt.timedelta(minutes=15)
DEFAULT_GROUP = "system:bootstrappers:kubeadm:default-node-token"
DEFAULT_USAGES = ("signing", "authentication")
SECRET_NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"


class TokenFormatError(ValueError):
    pass


@dataclass(frozen=True)
class BootstrapToken:
    id: str
    secret: str
    expiration: dt.datetime  # timezone-aware UTC

    def __post_init__(self) -> None:
        if not _TOKEN_EXACT.match(f"{self.id}.{self.secret}"):
            raise TokenFormatError("bootstrap token does not match [a-z0-9]{6}.[a-z0-9]{16}")
        if self.expiration.tzinfo is None:
            raise ValueError("expiration must be timezone-aware")

    @property
    def value(self) -> str:
        """The token as kubeadm takes it (`kubeadm join --token`, JoinConfiguration)."""
        return f"{self.id}.{self.secret}"

    @property
    def secret_name(self) -> str:
        return f"bootstrap-token-{self.id}"

    def __repr__(self) -> str:  # never print the secret half
        return f"BootstrapToken(id={self.id!r}, expiration={rfc3339(self.expiration)!r})"

    __str__ = __repr__


def _random(n: int) -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(n))


def new_token(now: dt.datetime, ttl: dt.timedelta = DEFAULT_TTL) -> BootstrapToken:
    if ttl <= dt.timedelta(0):
        raise ValueError("ttl must be positive")
    return BootstrapToken(
        id=_random(TOKEN_ID_LENGTH), secret=_random(TOKEN_SECRET_LENGTH), expiration=now + ttl
    )


def parse_token(value: str, expiration: dt.datetime) -> BootstrapToken:
    m = _TOKEN_EXACT.match(value)
    if not m:
        raise TokenFormatError("bootstrap token does not match [a-z0-9]{6}.[a-z0-9]{16}")
    return BootstrapToken(id=m.group(1), secret=m.group(2), expiration=expiration)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def is_expired(token: BootstrapToken, now: dt.datetime) -> bool:
    return now >= token.expiration


def refresh_due(token: BootstrapToken, now: dt.datetime, ttl: dt.timedelta = DEFAULT_TTL) -> bool:
    """True once a third of the TTL has passed since the last refresh (CAPI re-checks every ttl/3).

    Refreshing then keeps at least two thirds of a TTL of validity ahead of a joining machine.
    """
    return token.expiration - now <= ttl * 2 / 3


def refreshed(token: BootstrapToken, now: dt.datetime, ttl: dt.timedelta = DEFAULT_TTL) -> BootstrapToken:
    """The same token, valid for another `ttl` from `now` (never shortened)."""
    return BootstrapToken(id=token.id, secret=token.secret, expiration=max(token.expiration, now + ttl))


def bootstrap_token_secret(token: BootstrapToken, description: str = "") -> dict:
    """The kube-system Secret that makes the API server accept `token` (a later issue posts it).

    `data` is base64 as the API serves it, so the same body works for create and replace.
    """

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = {
        "token-id": token.id,
        "token-secret": token.secret,
        "expiration": rfc3339(token.expiration),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": DEFAULT_GROUP,
    }
    if description:
        data["description"] = description
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {"name": token.secret_name, "namespace": SECRET_NAMESPACE},
        "data": {k: b64(v) for k, v in data.items()},
    }


def init_configuration_token(token: BootstrapToken) -> dict:
    """An InitConfiguration `bootstrapTokens` entry: `kubeadm init` creates this token itself, so
    the first joins need no API call after init."""
    return {
        "token": token.value,
        "expires": rfc3339(token.expiration),
        "usages": list(DEFAULT_USAGES),
        "groups": [DEFAULT_GROUP],
    }
