"""Secrets Manager storage against moto: the cluster PKI, bootstrap tokens and chunked bootstrap
data are created once, reused, read back exactly and deleted idempotently; the activities'
arguments and results never carry key material or a token."""

from __future__ import annotations

import datetime as dt
import gzip
import random
import re

import pytest
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import bootstrap_data, tags, token_secrets
from capt.activities.aws import secrets as sm
from capt.activities.kubeadm import bootstrap as kb
from capt.activities.kubeadm import cloud_init
from capt.activities.kubeadm import pki as kpki
from capt.activities.kubeadm.tokens import TOKEN_PATTERN
from capt.dev.testkit.bootstrap_reference import ENDPOINT, reference_cluster
from tests.support.aws_lag import eventually_consistent, run_like_temporal

REGION = "ap-northeast-2"
NS, CLUSTER = "capi-quickstart", "capi-quickstart"
PEM = re.compile(rb"-----BEGIN [A-Z ]+-----")


def _pki_request(**kw) -> sm.ClusterPKIRequest:
    return sm.ClusterPKIRequest(cluster_name=CLUSTER, namespace=NS, region=REGION, **kw)


def _all_secrets(client) -> list[dict]:
    return [s for page in client.get_paginator("list_secrets").paginate() for s in page["SecretList"]]


def _wire(model) -> bytes:
    """The model as Temporal would put it into a workflow history."""
    return b"".join(p.data for p in pydantic_data_converter.payload_converter.to_payloads([model]))


def _assert_no_secret(model, *secrets: str) -> None:
    # What travels through Temporal converts back to the same model ...
    payloads = pydantic_data_converter.payload_converter.to_payloads([model])
    assert pydantic_data_converter.payload_converter.from_payloads(payloads, [type(model)]) == [model]
    # ... and holds no key, certificate or token.
    wire = _wire(model)
    assert not PEM.search(wire)
    assert not TOKEN_PATTERN.search(wire.decode())
    for s in secrets:
        assert s.encode() not in wire


@pytest.mark.parametrize(
    ("size", "chunk", "pieces"),
    [(0, 10, [0]), (1, 10, [1]), (10, 10, [10]), (11, 10, [10, 1]), (25, 10, [10, 10, 5])],
)
def test_split_chunks(size: int, chunk: int, pieces: list[int]) -> None:
    data = bytes(range(256)) * 1
    data = (data * (size // 256 + 1))[:size]
    parts = sm.split_chunks(data, chunk)
    assert [len(p) for p in parts] == pieces
    assert b"".join(parts) == data


def test_names_live_under_the_cluster_prefix() -> None:
    assert sm.pki_secret_name(NS, CLUSTER, "ca") == "capt/capi-quickstart/capi-quickstart/pki/ca"
    assert sm.token_secret_name(NS, CLUSTER, "m-1") == "capt/capi-quickstart/capi-quickstart/tokens/m-1"
    prefix = sm.new_bootstrap_prefix(NS, CLUSTER, "m-1")
    assert prefix.startswith("capt/capi-quickstart/capi-quickstart/bootstrap/m-1-")
    assert len(prefix.rsplit("-", 1)[1]) == 64  # 256 random bits
    assert prefix != sm.new_bootstrap_prefix(NS, CLUSTER, "m-1")
    with pytest.raises(ValueError):
        sm.pki_secret_name(NS, CLUSTER, "nope")


def test_pki_is_generated_once_tagged_owned_and_reused(aws) -> None:
    client = sm.client(REGION)
    first = sm.ensure_pki(client, _pki_request(endpoint_host=ENDPOINT))
    assert set(first.created) == set(sm.PKI_NAMES)
    secrets = {s["Name"]: s for s in _all_secrets(client)}
    assert set(secrets) == {sm.pki_secret_name(NS, CLUSTER, n) for n in sm.PKI_NAMES}
    for name, s in secrets.items():
        t = tags.as_dict(s["Tags"])
        assert tags.is_owned(t, CLUSTER)
        assert t[tags.ROLE_TAG] == sm.ROLE_PKI and t[tags.NAME_TAG] == name

    second = sm.ensure_pki(client, _pki_request(endpoint_host=ENDPOINT))
    assert second.created == ()
    assert second.model_dump(exclude={"created"}) == first.model_dump(exclude={"created"})
    assert len(_all_secrets(client)) == len(sm.PKI_NAMES)

    material = sm.read_cluster_pki(client, second)
    assert kpki.ca_cert_hash(material.ca.cert) == first.ca_cert_hash
    ca_cert, admin = sm.read_admin_credentials(client, second)
    assert ca_cert == material.ca.cert and kpki.verify_signed_by(admin.cert, material.ca)
    kubeconfig = yaml.safe_load(client.get_secret_value(SecretId=second.kubeconfig_arn)["SecretString"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{ENDPOINT}:6443"
    _assert_no_secret(first, material.ca.key, material.sa.key, admin.key)


def test_the_operator_reads_the_cluster_ca_for_capt_kubeconfig(aws) -> None:
    assert sm.read_cluster_ca(REGION, NS, CLUSTER) is None  # no PKI yet: `capt kubeconfig` exits 3
    refs = sm.ensure_pki(sm.client(REGION), _pki_request(endpoint_host=ENDPOINT))
    ca = sm.read_cluster_ca(REGION, NS, CLUSTER)
    assert ca is not None and kpki.ca_cert_hash(ca.cert) == refs.ca_cert_hash
    assert sm.read_cluster_ca(REGION, "other-namespace", CLUSTER) is None


def test_a_run_that_died_half_way_is_completed_with_the_stored_ca(aws) -> None:
    client = sm.client(REGION)
    refs = sm.ensure_pki(client, _pki_request())
    assert refs.kubeconfig_arn is None  # no endpoint yet
    client.delete_secret(SecretId=refs.admin_arn, ForceDeleteWithoutRecovery=True)
    again = sm.ensure_pki(client, _pki_request(endpoint_host="lb-1.example.com"))
    assert set(again.created) == {"admin", "admin-kubeconfig"}
    assert again.ca_arn == refs.ca_arn and again.ca_cert_hash == refs.ca_cert_hash
    ca_cert, admin = sm.read_admin_credentials(client, again)
    assert kpki.verify_signed_by(admin.cert, ca_cert)


def test_a_new_endpoint_rewrites_the_kubeconfig_with_the_same_credentials(aws) -> None:
    client = sm.client(REGION)
    first = sm.ensure_pki(client, _pki_request(endpoint_host="lb-1.example.com"))
    before = yaml.safe_load(client.get_secret_value(SecretId=first.kubeconfig_arn)["SecretString"])
    second = sm.ensure_pki(client, _pki_request(endpoint_host="lb-2.example.com", endpoint_port=443))
    after = yaml.safe_load(client.get_secret_value(SecretId=second.kubeconfig_arn)["SecretString"])
    assert second.kubeconfig_arn == first.kubeconfig_arn
    assert after["clusters"][0]["cluster"]["server"] == "https://lb-2.example.com:443"
    assert after["users"] == before["users"]


def test_losing_a_create_race_reads_the_winners_value(aws) -> None:
    client = sm.client(REGION)
    tag_list = tags.as_list(tags.build(CLUSTER, "x", sm.ROLE_PKI))

    def make() -> str:
        # Another run creates the secret between our lookup and our create.
        client.create_secret(Name="capt/race", SecretString="theirs", Tags=tag_list)
        return "ours"

    arn, value, created = sm.ensure_string_secret(client, "capt/race", make, tag_list, "race")
    assert (value, created) == ("theirs", False)
    assert arn == client.describe_secret(SecretId="capt/race")["ARN"]


def test_bootstrap_token_is_stored_once_and_refreshed(aws) -> None:
    client = sm.client(REGION)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    req = token_secrets.BootstrapTokenRequest(
        cluster_name=CLUSTER, namespace=NS, region=REGION, machine_name="m-1"
    )
    ref = token_secrets.ensure_token(client, req, now)
    assert ref.created and ref.expiration == now + dt.timedelta(minutes=15)
    again = token_secrets.ensure_token(client, req, now + dt.timedelta(minutes=1))
    assert (again.secret_arn, again.token_id, again.expiration, again.created) == (
        ref.secret_arn,
        ref.token_id,
        ref.expiration,
        False,
    )
    token = token_secrets.read_bootstrap_token(client, ref.secret_arn)
    assert token.id == ref.token_id
    _assert_no_secret(ref, token.value)
    t = tags.as_dict(client.describe_secret(SecretId=ref.secret_arn)["Tags"])
    assert tags.is_owned(t, CLUSTER) and t[tags.MACHINE_TAG] == "m-1"

    later = now + dt.timedelta(minutes=10)
    refreshed = token_secrets.refresh_token(
        client, token_secrets.BootstrapTokenRefreshRequest(region=REGION, secret_arn=ref.secret_arn), later
    )
    assert refreshed.expiration == later + dt.timedelta(minutes=15)
    stored = token_secrets.read_bootstrap_token(client, ref.secret_arn)
    assert (stored.value, stored.expiration) == (token.value, refreshed.expiration)


def _store(client, machine: str, data: bytes, chunk_size: int) -> bootstrap_data.StoredBootstrapData:
    return bootstrap_data.store_bootstrap_data(
        client,
        namespace=NS,
        cluster_name=CLUSTER,
        machine_name=machine,
        data=data,
        rendered_bytes=len(data) * 3,
        chunk_size=chunk_size,
    )


def test_chunked_bootstrap_data_round_trips_and_is_found_again(aws) -> None:
    client = sm.client(REGION)
    data = random.Random(7).randbytes(10_000)  # incompressible, like gzipped data
    stored = _store(client, "m-1", data, chunk_size=1000)
    assert len(stored.secret_arns) == -(-len(data) // 1000) > 1
    assert bootstrap_data.read_bootstrap_data(client, stored) == data
    names = [client.describe_secret(SecretId=a)["Name"] for a in stored.secret_arns]
    assert names == [f"{stored.secret_prefix}-{i}" for i in range(len(names))]
    found = bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, "m-1")
    assert found == stored
    # A machine whose name extends this one's is not confused with it.
    _store(client, "m-1-x", b"other", chunk_size=1000)
    assert bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, "m-1") == stored
    assert bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, "m-2") is None


def test_a_partial_copy_is_not_reused(aws) -> None:
    client = sm.client(REGION)
    stored = _store(client, "m-1", b"x" * 2500, chunk_size=1000)
    client.delete_secret(SecretId=stored.secret_arns[1], ForceDeleteWithoutRecovery=True)
    assert bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, "m-1") is None


def test_deleting_a_machines_bootstrap_data_is_idempotent(aws) -> None:
    client = sm.client(REGION)
    token = token_secrets.ensure_token(
        client,
        token_secrets.BootstrapTokenRequest(
            cluster_name=CLUSTER, namespace=NS, region=REGION, machine_name="m-1"
        ),
        dt.datetime.now(dt.UTC),
    )
    a = _store(client, "m-1", b"x" * 2500, chunk_size=1000)  # 3 chunks
    _store(client, "m-1", b"y", chunk_size=1000)  # a second copy from an overlapping attempt
    other = _store(client, "m-2", b"z", chunk_size=1000)
    assert (
        bootstrap_data.delete_machine_bootstrap(
            client, NS, CLUSTER, "m-1", a.secret_prefix, len(a.secret_arns)
        )
        == 5
    )
    assert sm.describe(client, token.secret_arn) is None
    assert bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, "m-1") is None
    assert bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, "m-2") == other
    # Again (e.g. the activity retried after a lost response): nothing left, still success.
    assert (
        bootstrap_data.delete_machine_bootstrap(
            client, NS, CLUSTER, "m-1", a.secret_prefix, len(a.secret_arns)
        )
        == 0
    )
    with pytest.raises(ValueError):
        bootstrap_data.delete_machine_bootstrap(client, NS, CLUSTER, "m-1", other.secret_prefix, 1)


def test_deleting_the_clusters_secrets_spares_what_it_does_not_own(aws) -> None:
    client = sm.client(REGION)
    sm.ensure_pki(client, _pki_request())
    _store(client, "m-1", b"x", chunk_size=1000)
    client.create_secret(Name=f"capt/{NS}/{CLUSTER}/pki/someone-elses", SecretString="keep")
    client.create_secret(
        Name=f"capt/{NS}/other/pki/ca",
        SecretString="keep",
        Tags=tags.as_list(tags.build("other", "x", sm.ROLE_PKI)),
    )
    assert sm.delete_all(client, NS, CLUSTER) == 6  # ca, etcd-ca, front-proxy-ca, sa, admin, 1 chunk
    assert sorted(s["Name"] for s in _all_secrets(client)) == [
        f"capt/{NS}/{CLUSTER}/pki/someone-elses",
        f"capt/{NS}/other/pki/ca",
    ]
    assert sm.delete_all(client, NS, CLUSTER) == 0
    assert sm.delete_secret(client, "capt/never-existed") is False


def test_secrets_are_owned_by_the_cluster_id(aws) -> None:
    """The paths keep namespace and name; the owned tag is the cluster id, and each namespace's
    `prod` finds and deletes only its own."""
    client = sm.client(REGION)
    for ns in ("team-a", "team-b"):
        sm.ensure_pki(
            client,
            sm.ClusterPKIRequest(cluster_name="prod", namespace=ns, region=REGION, cluster_id=f"{ns}.prod"),
        )
        token_secrets.ensure_token(
            client,
            token_secrets.BootstrapTokenRequest(
                cluster_name="prod", namespace=ns, region=REGION, machine_name="m-1", cluster_id=f"{ns}.prod"
            ),
            dt.datetime.now(dt.UTC),
        )
        bootstrap_data.store_bootstrap_data(
            client,
            namespace=ns,
            cluster_name="prod",
            machine_name="m-1",
            data=b"x",
            rendered_bytes=1,
            owner=f"{ns}.prod",
        )
    for s in _all_secrets(client):
        ns = s["Name"].split("/")[1]
        t = tags.as_dict(s["Tags"])
        assert t[tags.cluster_key(f"{ns}.prod")] == "owned" and tags.cluster_key("prod") not in t
    # Looked up with the name as owner (a legacy cluster `prod`): nothing of theirs is its own.
    assert bootstrap_data.find_bootstrap_data(client, "team-a", "prod", "m-1") is None
    assert (
        bootstrap_data.find_bootstrap_data(client, "team-a", "prod", "m-1", owner="team-a.prod") is not None
    )
    assert sm.delete_all(client, "team-a", "prod") == 0
    # ca, etcd-ca, front-proxy-ca, sa, admin; the token; one chunk.
    assert sm.delete_all(client, "team-a", "prod", "team-a.prod") == 7
    assert {s["Name"].split("/")[1] for s in _all_secrets(client)} == {"team-b"}


# ---------------------------------------------------------------------------------------------
# the activities, as the worker runs them


def _bootstrap_request(
    kind: str, pki: sm.ClusterPKIRefs, token_arn: str | None, machine: str
) -> kb.BootstrapRequest:
    return kb.bootstrap_request_for(
        reference_cluster(),
        machine_name=machine,
        kind=kind,  # type: ignore[arg-type]
        endpoint_host=ENDPOINT,
        pki=pki,
        token_secret_arn=token_arn,
        deployment="capi-quickstart-md-0" if kind == "join-worker" else None,
    )


@pytest.mark.parametrize(
    ("kind", "machine"),
    [
        ("init", "capi-quickstart-control-plane-a1b2c"),
        ("join-control-plane", "capi-quickstart-control-plane-d3e4f"),
        ("join-worker", "capi-quickstart-md-0-7f4xk-dcdcx"),
    ],
)
def test_prepare_bootstrap_data_stores_the_rendered_cloud_config(aws, kind: str, machine: str) -> None:
    env = ActivityEnvironment()
    client = sm.client(REGION)
    pki_refs = env.run(sm.ensure_cluster_pki, _pki_request(endpoint_host=ENDPOINT))
    assert pki_refs.aws_calls  # the AWS calls are counted
    token_arn = None
    if kind != "init":
        token_ref = env.run(
            token_secrets.ensure_bootstrap_token,
            token_secrets.BootstrapTokenRequest(
                cluster_name=CLUSTER, namespace=NS, region=REGION, machine_name=machine
            ),
        )
        token_arn = token_ref.secret_arn
    req = _bootstrap_request(kind, pki_refs, token_arn, machine)
    refs = env.run(kb.prepare_bootstrap_data, req)

    stored = bootstrap_data.read_bootstrap_data(
        client,
        bootstrap_data.StoredBootstrapData(
            secret_prefix=refs.secret_prefix,
            secret_arns=refs.secret_arns,
            rendered_bytes=refs.rendered_bytes,
            stored_bytes=refs.stored_bytes,
        ),
    )
    assert len(stored) == refs.stored_bytes
    text = gzip.decompress(stored).decode()
    assert len(text.encode()) == refs.rendered_bytes
    assert text.startswith("## template: jinja\n#cloud-config\n")
    cfg = yaml.safe_load(text)
    files = {f["path"]: f["content"] for f in cfg["write_files"]}
    material = sm.read_cluster_pki(client, pki_refs)
    if kind == "join-worker":
        assert not any(p.startswith("/etc/kubernetes/pki") for p in files)
    else:
        assert files["/etc/kubernetes/pki/ca.key"] == material.ca.key
    if token_arn:
        assert token_secrets.read_bootstrap_token(client, token_arn).value in text

    # A retry returns the same stored copy instead of storing another.
    again = env.run(kb.prepare_bootstrap_data, req)
    assert (
        again.reused and again.secret_prefix == refs.secret_prefix and again.secret_arns == refs.secret_arns
    )
    assert (again.stored_bytes, again.rendered_bytes, again.user_data_bytes) == (
        refs.stored_bytes,
        refs.rendered_bytes,
        refs.user_data_bytes,
    )

    # The boothook user data the instance will get is as small as reported and holds no secret.
    user_data = cloud_init.render_user_data(
        secret_prefix=refs.secret_prefix, chunks=refs.chunks, region=REGION
    )
    assert len(user_data.encode()) == refs.user_data_bytes
    assert not PEM.search(user_data.encode()) and not TOKEN_PATTERN.search(user_data)
    secrets_in_play = [material.ca.key, material.etcd_ca.key, material.sa.key]
    if token_arn:
        secrets_in_play.append(token_secrets.read_bootstrap_token(client, token_arn).value)
    for model in (req, refs, again, pki_refs):
        _assert_no_secret(model, *secrets_in_play)
    for s in secrets_in_play:
        assert s not in user_data

    deleted = env.run(
        bootstrap_data.delete_bootstrap_data,
        bootstrap_data.DeleteBootstrapDataRequest(
            cluster_name=CLUSTER,
            namespace=NS,
            region=REGION,
            machine_name=machine,
            secret_prefix=refs.secret_prefix,
            chunks=refs.chunks,
        ),
    )
    assert deleted.deleted == refs.chunks + (1 if token_arn else 0)
    assert bootstrap_data.find_bootstrap_data(client, NS, CLUSTER, machine) is None


# ---------------------------------------------------------------------------------------------
# a lost CreateSecret, with reads that lag (tests/support/aws_lag.py)


def test_a_lost_pki_create_waits_for_the_stored_secret_however_long_reads_lag(aws) -> None:
    """The CA's CreateSecret answer is lost and the secret stays out of sight for 12 reads: the
    retries' creates are refused (the name is taken) and they wait -- past the 5 attempts other
    client errors get -- for the stored CA, whose key every later secret is issued from."""
    with eventually_consistent(reads=0, lose={"CreateSecret"}, lost_reads=12) as lag:
        refs, failures = run_like_temporal(sm.ensure_cluster_pki, _pki_request(endpoint_host=ENDPOINT))
    assert failures[0] == "ConnectionClosedError" and failures.count("NotYetVisibleError") >= 5
    assert lag.hidden_reads[lag.lost_ids["CreateSecret"][0]] == 12
    client = sm.client(REGION)
    assert sorted(s["Name"].rsplit("/", 1)[1] for s in _all_secrets(client)) == sorted(sm.PKI_NAMES)
    # The CA in use is the one the lost call stored.
    assert refs.ca_arn == lag.lost_ids["CreateSecret"][0]
    assert refs.ca_cert_hash == kpki.ca_cert_hash(sm.read_cluster_pki(client, refs).ca.cert)


def test_a_lost_bootstrap_data_create_behind_lagging_reads_stores_one_copy(aws) -> None:
    """The chunk's CreateSecret answer is lost and ListSecrets does not show it to the next two
    reads: the retry waits for reads (idempotent.before_create) and returns the stored copy
    instead of storing a second one under another random name."""
    env = ActivityEnvironment()
    machine = "capi-quickstart-control-plane-a1b2c"
    pki_refs = env.run(sm.ensure_cluster_pki, _pki_request(endpoint_host=ENDPOINT))
    req = _bootstrap_request("init", pki_refs, None, machine)
    with eventually_consistent(reads=2, lose={"CreateSecret"}) as lag:
        refs, failures = run_like_temporal(kb.prepare_bootstrap_data, req)
    client = sm.client(REGION)
    copies = [s for s in _all_secrets(client) if "/bootstrap/" in s["Name"]]
    assert [s["ARN"] for s in copies] == list(refs.secret_arns) == lag.lost_ids["CreateSecret"]
    assert lag.created["CreateSecret"] == 1 and refs.reused
    assert failures == ["ConnectionClosedError", "NotYetVisibleError", "NotYetVisibleError"]


def test_a_join_without_token_fails_without_retry(aws) -> None:
    from temporalio.exceptions import ApplicationError

    env = ActivityEnvironment()
    pki_refs = env.run(sm.ensure_cluster_pki, _pki_request(endpoint_host=ENDPOINT))
    with pytest.raises(ApplicationError) as err:
        env.run(kb.prepare_bootstrap_data, _bootstrap_request("join-worker", pki_refs, None, "m-1"))
    assert err.value.non_retryable
