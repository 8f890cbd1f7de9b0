"""Bootstrap tokens: kubeadm's format, expiry arithmetic and the kube-system Secret body."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from capt.activities.kubeadm import tokens

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
TTL = dt.timedelta(minutes=15)


def test_new_tokens_have_kubeadms_format_and_do_not_repeat() -> None:
    made = [tokens.new_token(NOW) for _ in range(500)]
    for t in made:
        assert tokens._TOKEN_EXACT.match(t.value)
        assert tokens.TOKEN_PATTERN.search(f"token: {t.value}\n")
        assert t.expiration == NOW + tokens.DEFAULT_TTL
    assert len({t.value for t in made}) == len(made)
    assert len({t.id for t in made}) > 490  # 36^6 ids: collisions are possible but rare


def test_the_secret_half_never_shows_in_repr_or_str() -> None:
    t = tokens.new_token(NOW)
    assert t.secret not in repr(t)
    assert t.secret not in str(t)
    assert f"{t!r}".startswith("BootstrapToken(id=")


@pytest.mark.parametrize(
    "value",
    [
        "abcdef.0123456789abcdef0",
        "ABCDEF.0123456789abcdef",
        "abcde.0123456789abcdef",
        "abcdef0123456789abcdef",
        "",
    ],
)
def test_malformed_tokens_are_rejected(value: str) -> None:
    with pytest.raises(tokens.TokenFormatError):
        tokens.parse_token(value, NOW)


def test_naive_expiration_is_rejected() -> None:
    with pytest.raises(ValueError):
        tokens.BootstrapToken("abcdef", "0123456789abcdef", dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("remaining", "due"),
    [
        (TTL, False),  # just made
        (TTL * 2 / 3 + dt.timedelta(seconds=1), False),
        (TTL * 2 / 3, True),  # a third of the TTL has passed
        (dt.timedelta(minutes=1), True),
        (dt.timedelta(0), True),
        (-dt.timedelta(minutes=5), True),  # already expired
    ],
)
def test_refresh_is_due_after_a_third_of_the_ttl(remaining: dt.timedelta, due: bool) -> None:
    t = tokens.BootstrapToken("abcdef", "0123456789abcdef", NOW + remaining)
    assert tokens.refresh_due(t, NOW, TTL) is due


def test_refresh_extends_and_never_shortens() -> None:
    t = tokens.BootstrapToken("abcdef", "0123456789abcdef", NOW + dt.timedelta(minutes=2))
    r = tokens.refreshed(t, NOW, TTL)
    assert (r.id, r.secret, r.expiration) == (t.id, t.secret, NOW + TTL)
    long_lived = tokens.BootstrapToken("abcdef", "0123456789abcdef", NOW + dt.timedelta(hours=24))
    assert tokens.refreshed(long_lived, NOW, TTL).expiration == long_lived.expiration


def test_expiry() -> None:
    t = tokens.BootstrapToken("abcdef", "0123456789abcdef", NOW)
    assert tokens.is_expired(t, NOW)
    assert not tokens.is_expired(t, NOW - dt.timedelta(seconds=1))


def test_bootstrap_token_secret_body() -> None:
    t = tokens.BootstrapToken("abcdef", "0123456789abcdef", NOW + TTL)
    body = tokens.bootstrap_token_secret(t, description="capt: machine m-1")
    assert body["apiVersion"] == "v1" and body["kind"] == "Secret"
    assert body["type"] == "bootstrap.kubernetes.io/token"
    assert body["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    data = {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
    assert data == {
        "token-id": "abcdef",
        "token-secret": "0123456789abcdef",
        "expiration": "2026-01-02T03:19:05Z",
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        "description": "capt: machine m-1",
    }


def test_rfc3339_round_trip() -> None:
    assert tokens.parse_rfc3339(tokens.rfc3339(NOW)) == NOW
    assert tokens.rfc3339(NOW.astimezone(dt.timezone(dt.timedelta(hours=9)))) == "2026-01-02T03:04:05Z"


def test_init_configuration_entry() -> None:
    t = tokens.BootstrapToken("abcdef", "0123456789abcdef", NOW + TTL)
    assert tokens.init_configuration_token(t) == {
        "token": "abcdef.0123456789abcdef",
        "expires": "2026-01-02T03:19:05Z",
        "usages": ["signing", "authentication"],
        "groups": ["system:bootstrappers:kubeadm:default-node-token"],
    }
