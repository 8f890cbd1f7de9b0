"""simulator.kubeadm: what kubeadm init/join accept, for capt's real bootstrap data."""

from __future__ import annotations

import datetime as dt

import pytest

from capt.activities.kubeadm import cloud_init, pki, tokens
from capt.dev.simulator import cloudinit as ci
from capt.dev.simulator import kubeadm as sk
from capt.dev.testkit import bootstrap_reference as ref

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
HOST = ref.HOSTNAME.split(".")[0]
PROVIDER = "aws:///ap-northeast-2a/i-0123456789abcdef0"
TOKEN = tokens.BootstrapToken(
    id="abcdef", secret="0123456789abcdef", expiration=NOW + dt.timedelta(minutes=15)
)
VERSION = ref.reference_cluster().control_plane.version  # v1.20.5


def task(kind: str, *, version: str | None = None, ca_hash: str | None = None, token=TOKEN) -> ci.KubeadmTask:
    cluster = ref.reference_cluster()
    r = ref.render_input(cluster, kind, version=version, tok=token if kind != "init" else None)
    if ca_hash is not None:
        from dataclasses import replace

        r = replace(r, inputs=replace(r.inputs, ca_cert_hash=ca_hash))
    text = cloud_init.render_cloud_config(r)
    data = ci.ec2_instance_data(
        instance_id="i-0123456789abcdef0",
        local_hostname=ref.HOSTNAME,
        local_ipv4="10.0.71.23",
        availability_zone="ap-northeast-2a",
        region="ap-northeast-2",
    )
    return ci.parse_cloud_config(ci.render_cloud_config(text, data)[0])


def facts(
    *,
    version: str = VERSION,
    token: sk.TokenFacts | None = None,
    owner: tuple[str, bool] | None = None,
    ca: str | None = None,
    peer: str | None = None,
) -> sk.ClusterFacts:
    t = token or sk.TokenFacts(
        id="abcdef", secret="0123456789abcdef", expiration=TOKEN.expiration, authentication=True, signing=True
    )
    return sk.ClusterFacts(
        name="capi-quickstart",
        endpoint_host=ref.ENDPOINT.lower(),
        endpoint_port=6443,
        ca_cert=ca or ref.cluster_pki().ca.cert,
        version=version,
        tokens={t.id: t},
        node_owner=lambda name: owner if name == ref.HOSTNAME else None,
        etcd_peer=lambda host: peer if host == "10.0.71.23" else None,
    )


def join(
    t: ci.KubeadmTask,
    cluster: sk.ClusterFacts | None = None,
    *,
    image: str | None = VERSION,
    now: dt.datetime = NOW,
) -> sk.JoinPlan:
    c = cluster if cluster is not None else facts()
    return sk.plan_join(
        t,
        hostname=HOST,
        provider_id=PROVIDER,
        peer_host="10.0.71.23",
        image_version=image,
        find_cluster=lambda host, port: c if (host, port) == (c.endpoint_host, c.endpoint_port) else None,
        now=now,
    )


# --------------------------------------------------------------------------------------------
# helpers


def test_ca_hash_agrees_with_the_workers_independent_implementation() -> None:
    ca = ref.cluster_pki().ca.cert
    assert sk.ca_cert_hash(ca) == pki.ca_cert_hash(ca)


@pytest.mark.parametrize(
    "name, version",
    [
        ("capa-ami-ubuntu-24.04-v1.31.2-1727178236", "v1.31.2"),
        ("capa-ami-ubuntu-22.04-1.29.0-00-1700000000", "v1.29.0"),
        ("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240101", None),
        (None, None),
    ],
)
def test_version_from_image_name(name: str | None, version: str | None) -> None:
    assert sk.version_from_image_name(name) == version


def test_init_tokens_and_their_secrets_round_trip() -> None:
    init = {
        "bootstrapTokens": [
            tokens.init_configuration_token(TOKEN),
            {"token": "zzzzzz.zzzzzzzzzzzzzzzz", "ttl": "1h0m0s"},
        ]
    }
    found = sk.init_tokens(init, NOW)
    assert [(t.id, t.expiration) for t in found] == [
        ("abcdef", TOKEN.expiration),
        ("zzzzzz", NOW + dt.timedelta(hours=1)),
    ]
    # capt's own Secret for a token and kubeadm's read back alike.
    for secret in (tokens.bootstrap_token_secret(TOKEN), sk.token_secret(found[0])):
        back = sk.token_from_secret(secret)
        assert back is not None and (back.id, back.secret, back.expiration) == (
            "abcdef",
            "0123456789abcdef",
            TOKEN.expiration,
        )
        assert back.authentication and back.signing
    assert sk.token_from_secret({"type": "Opaque", "data": {}}) is None


# --------------------------------------------------------------------------------------------
# init


def test_init_plan() -> None:
    plan = sk.plan_init(task("init"), hostname=HOST, image_version=VERSION, now=NOW)
    assert (plan.endpoint_host, plan.endpoint_port) == (ref.ENDPOINT.lower(), 6443)
    assert plan.version == plan.kubelet_version == VERSION
    assert plan.node.name == ref.HOSTNAME
    assert plan.ca_cert == ref.cluster_pki().ca.cert and plan.warnings == ()


def test_init_with_an_image_of_another_minor_is_refused() -> None:
    with pytest.raises(sk.Refused, match="cannot init a control plane") as err:
        sk.plan_init(task("init"), hostname=HOST, image_version="v1.21.0", now=NOW)
    assert err.value.permanent


def test_init_with_another_patch_warns_and_reports_the_images_kubelet() -> None:
    plan = sk.plan_init(task("init"), hostname=HOST, image_version="v1.20.7", now=NOW)
    assert plan.kubelet_version == "v1.20.7" and plan.version == VERSION
    assert plan.warnings


def test_init_without_ca_generates_one_with_a_warning() -> None:
    t = task("init")
    files = {k: v for k, v in t.files.items() if not k.startswith(ci.PKI_DIR)}
    plan = sk.plan_init(
        ci.KubeadmTask(t.action, t.config_path, t.documents, files),
        hostname=HOST,
        image_version=VERSION,
        now=NOW,
    )
    assert plan.ca_cert is None and any("generates its own" in w for w in plan.warnings)


def test_init_with_a_key_that_does_not_match_the_ca_is_refused() -> None:
    t = task("init")
    files = dict(t.files, **{f"{ci.PKI_DIR}/ca.key": ref.cluster_pki().etcd_ca.key})
    with pytest.raises(sk.Refused, match="does not match"):
        sk.plan_init(
            ci.KubeadmTask(t.action, t.config_path, t.documents, files),
            hostname=HOST,
            image_version=VERSION,
            now=NOW,
        )


def test_init_without_endpoint_is_refused() -> None:
    t = task("init")
    docs = tuple({k: v for k, v in d.items() if k != "controlPlaneEndpoint"} for d in t.documents)
    with pytest.raises(sk.Refused, match="controlPlaneEndpoint"):
        sk.plan_init(
            ci.KubeadmTask(t.action, t.config_path, docs, t.files),
            hostname=HOST,
            image_version=VERSION,
            now=NOW,
        )


# --------------------------------------------------------------------------------------------
# join


def test_worker_join_plan() -> None:
    plan = join(task("join-worker"))
    assert (plan.control_plane, plan.node.name, plan.token_id, plan.kubelet_version) == (
        False,
        ref.HOSTNAME,
        "abcdef",
        VERSION,
    )
    assert plan.bumps_version_to is None


def test_control_plane_join_plan() -> None:
    plan = join(task("join-control-plane"))
    assert plan.control_plane


def test_wrong_ca_hash_is_a_permanent_refusal_that_names_both_hashes() -> None:
    wrong = "sha256:" + "0" * 64
    with pytest.raises(sk.Refused) as err:
        join(task("join-worker", ca_hash=wrong))
    assert err.value.permanent
    assert wrong in err.value.reason and sk.ca_cert_hash(ref.cluster_pki().ca.cert) in err.value.reason
    assert "cluster CA found in cluster-info ConfigMap is invalid" in err.value.reason


@pytest.mark.parametrize(
    "cluster_token, now, message",
    [
        (None, NOW, "no JWS signed token"),  # the token's Secret is not (yet) in the cluster
        (
            sk.TokenFacts("abcdef", "ffffffffffffffff", None, True, True),
            NOW,
            "failed to verify JWS signature",
        ),
        (
            sk.TokenFacts("abcdef", "0123456789abcdef", NOW - dt.timedelta(seconds=1), True, True),
            NOW,
            "expired",
        ),
        (sk.TokenFacts("abcdef", "0123456789abcdef", None, True, False), NOW, "no JWS signed token"),
    ],
)
def test_token_problems_are_transient(cluster_token, now, message: str) -> None:
    other = sk.TokenFacts("qqqqqq", "qqqqqqqqqqqqqqqq", None, True, True)
    c = facts(token=cluster_token or other)
    with pytest.raises(sk.Refused, match=message) as err:
        join(task("join-worker"), c, now=now)
    assert not err.value.permanent


def test_a_token_not_for_authentication_is_refused() -> None:
    c = facts(token=sk.TokenFacts("abcdef", "0123456789abcdef", None, False, True))
    with pytest.raises(sk.Refused, match="Unauthorized"):
        join(task("join-worker"), c)


def test_no_api_server_at_the_endpoint_is_transient() -> None:
    t = task("join-worker")
    with pytest.raises(sk.Refused, match="could not reach the API server") as err:
        sk.plan_join(
            t,
            hostname=HOST,
            provider_id=PROVIDER,
            image_version=VERSION,
            find_cluster=lambda h, p: None,
            now=NOW,
        )
    assert not err.value.permanent


def test_malformed_token_and_missing_pin_are_permanent() -> None:
    t = task("join-worker")
    doc = t.document("JoinConfiguration")
    bad_token = {
        **doc,
        "discovery": {"bootstrapToken": {**doc["discovery"]["bootstrapToken"], "token": "nope"}},
    }
    no_pin = {
        **doc,
        "discovery": {"bootstrapToken": {**doc["discovery"]["bootstrapToken"], "caCertHashes": []}},
    }
    for d, message in ((bad_token, "not of the form"), (no_pin, "no caCertHashes")):
        with pytest.raises(sk.Refused, match=message) as err:
            join(ci.KubeadmTask(t.action, t.config_path, (d,), t.files))
        assert err.value.permanent


@pytest.mark.parametrize(
    "kind, cluster_version, image, outcome",
    [
        ("join-worker", "v1.30.4", "v1.30.1", "ok"),
        ("join-worker", "v1.30.4", "v1.27.0", "ok"),  # three minors older: allowed
        ("join-worker", "v1.30.4", "v1.26.0", "more than 3 minor"),
        ("join-worker", "v1.30.4", "v1.31.0", "higher than the control plane"),
        ("join-control-plane", "v1.30.4", "v1.30.4", "ok"),
        ("join-control-plane", "v1.30.4", "v1.31.0", "bump"),  # an upgrade's first new member
        ("join-control-plane", "v1.30.4", "v1.32.0", "same or the next minor"),
        ("join-control-plane", "v1.30.4", "v1.29.9", "same or the next minor"),
    ],
)
def test_version_skew(kind: str, cluster_version: str, image: str, outcome: str) -> None:
    t = task(kind)
    if outcome in ("ok", "bump"):
        plan = join(t, facts(version=cluster_version), image=image)
        assert plan.kubelet_version == image
        assert plan.bumps_version_to == (image if outcome == "bump" else None)
    else:
        with pytest.raises(sk.Refused, match=outcome) as err:
            join(t, facts(version=cluster_version), image=image)
        assert err.value.permanent


def test_control_plane_join_needs_the_clusters_key_material() -> None:
    t = task("join-control-plane")
    no_sa = {k: v for k, v in t.files.items() if not k.endswith("/sa.key")}
    with pytest.raises(sk.Refused, match="missing /etc/kubernetes/pki/sa.key"):
        join(ci.KubeadmTask(t.action, t.config_path, t.documents, no_sa))
    other = pki.new_ca("kubernetes")
    other_ca = dict(t.files, **{f"{ci.PKI_DIR}/ca.crt": other.cert, f"{ci.PKI_DIR}/ca.key": other.key})
    with pytest.raises(sk.Refused, match="is not the cluster's CA"):
        join(ci.KubeadmTask(t.action, t.config_path, t.documents, other_ca))


def test_a_node_name_taken_by_another_ready_instance_is_refused() -> None:
    other = "aws:///ap-northeast-2b/i-0fedcba9876543210"
    with pytest.raises(sk.Refused, match="status Ready already exists"):
        join(task("join-worker"), facts(owner=(other, True)))
    # A NotReady namesake (instance gone, IP reused) is taken over; its own Node is a rejoin.
    assert join(task("join-worker"), facts(owner=(other, False))).node.name == ref.HOSTNAME
    assert join(task("join-worker"), facts(owner=(PROVIDER, True))).node.name == ref.HOSTNAME


def test_a_control_plane_join_on_a_stale_members_peer_url_is_refused() -> None:
    with pytest.raises(sk.Refused, match="Peer URLs already exists") as err:
        join(task("join-control-plane"), facts(peer="old-member"))
    assert err.value.permanent and "old-member" in err.value.reason
    assert not join(task("join-worker"), facts(peer="old-member")).control_plane  # workers add no member


def test_an_unrendered_node_name_is_refused() -> None:
    t = task("join-worker")
    doc = t.document("JoinConfiguration")
    broken = {**doc, "nodeRegistration": {"name": "CI_MISSING_JINJA_VAR/local_hostname"}}
    with pytest.raises(sk.Refused, match="not a valid node name"):
        join(ci.KubeadmTask(t.action, t.config_path, (broken,), t.files))


def test_node_registration_labels_and_taints() -> None:
    reg = sk.node_registration(
        {
            "nodeRegistration": {
                "kubeletExtraArgs": [{"name": "node-labels", "value": "a=1,b=2"}],
                "taints": [],
            }
        },
        "IP-10-0-0-1",
    )
    assert (reg.name, reg.labels, reg.taints) == ("ip-10-0-0-1", {"a": "1", "b": "2"}, ())
