"""CAPT_RESOLVE source patterns (`*`, `*.suffix`, port `*`): the local stack maps load balancer
DNS names that only exist at run time to the workload simulator."""

from __future__ import annotations

import pytest

from capt.activities.workload import client as wc
from capt.activities.workload import transport

LB = "capi-quickstart-apiserver-479433786.ap-northeast-2.elb.amazonaws.com"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("*:6443=127.0.0.1:16443", {("*", 6443): ("127.0.0.1", 16443)}),
        ("*:*=127.0.0.1:16443", {("*", transport.ANY_PORT): ("127.0.0.1", 16443)}),
        (
            "*.ELB.amazonaws.com:6443=127.0.0.1:1,*.example:*=[::1]:2",
            {("*.elb.amazonaws.com", 6443): ("127.0.0.1", 1), ("*.example", transport.ANY_PORT): ("::1", 2)},
        ),
    ],
)
def test_parse_patterns(text: str, expected: dict) -> None:
    assert transport.parse_resolve(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a*.example:6443=127.0.0.1:1",  # only a whole leading label may be a wildcard
        "*.:6443=127.0.0.1:1",
        "x.*.example:6443=127.0.0.1:1",
        "**:6443=127.0.0.1:1",
        "a.example:6443=*:1",  # the target is an address, never a pattern
        "a.example:6443=127.0.0.1:*",
        "a.example:x*=127.0.0.1:1",
    ],
)
def test_malformed_patterns_are_rejected(text: str) -> None:
    with pytest.raises(transport.WorkloadConfigError, match="CAPT_RESOLVE"):
        transport.parse_resolve(text)


MAPPING = transport.parse_resolve(
    ",".join(
        [
            f"{LB}:6443=10.0.0.1:1",  # exact
            "*.ap-northeast-2.elb.amazonaws.com:6443=10.0.0.2:2",  # longer suffix
            "*.amazonaws.com:6443=10.0.0.3:3",  # shorter suffix
            "*.amazonaws.com:*=10.0.0.4:4",  # shorter suffix, any port
            "*:*=10.0.0.5:5",  # anything
        ]
    )
)


@pytest.mark.parametrize(
    "host, port, expected",
    [
        (LB, 6443, ("10.0.0.1", 1)),
        (LB.upper(), 6443, ("10.0.0.1", 1)),
        (LB, 443, ("10.0.0.4", 4)),  # the exact entry is for 6443 only; the suffix with `*` port
        ("other-1.ap-northeast-2.elb.amazonaws.com", 6443, ("10.0.0.2", 2)),
        ("other.us-east-1.elb.amazonaws.com", 6443, ("10.0.0.3", 3)),
        ("other.us-east-1.elb.amazonaws.com", 8443, ("10.0.0.4", 4)),
        ("amazonaws.com", 6443, ("10.0.0.5", 5)),  # `*.amazonaws.com` needs a label before it
        ("api.example.org", 6443, ("10.0.0.5", 5)),
        ("10.1.2.3", 6443, ("10.0.0.5", 5)),
    ],
)
def test_most_specific_source_wins(host: str, port: int, expected: tuple[str, int]) -> None:
    assert transport.resolve_target(host, port, MAPPING) == expected


def test_no_match_without_a_catch_all() -> None:
    mapping = transport.parse_resolve("*.elb.amazonaws.com:6443=127.0.0.1:1")
    assert transport.resolve_target("api.example.org", 6443, mapping) is None
    assert transport.resolve_target("x.elb.amazonaws.com", 443, mapping) is None
    assert transport.resolve_target("x.elb.amazonaws.com", 6443, mapping) == ("127.0.0.1", 1)


def test_client_connects_through_a_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(transport.RESOLVE_ENV, "*:*=127.0.0.1:16443")
    client = wc.WorkloadClient.for_endpoint(LB, 6443, transport.ClientTLS(context=None))  # type: ignore[arg-type]
    assert (client.host, client.port, client.connect_to) == (LB, 6443, ("127.0.0.1", 16443))
