"""The user's Secrets in Secrets Manager (issue 16), against moto: `capt apply` stores them under
the cluster's prefix, owned by the cluster's id; an unchanged value makes no new version, a
changed one does; a secret the cluster does not own is never overwritten; the bootstrap renderer
and the addon applier read them by name; the cluster's deletion removes them; and nothing an
activity takes or returns holds a value."""

from __future__ import annotations

import gzip

import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from capt.activities.aws import bootstrap_data, tags, token_secrets, user_secrets
from capt.activities.aws import secrets as sm
from capt.activities.aws.errors import ConflictError
from capt.activities.kubeadm import bootstrap as kb
from capt.activities.kubeadm import cloud_init, documents
from capt.activities.workload import addons as wad
from capt.spec.loader import load_manifest
from tests.activities.aws.test_secrets import _wire
from tests.support.secret_manifest import (
    CRS_SECRET,
    FILE_SECRET,
    INLINE,
    PASSWD_SECRET,
    SECRET_MARKERS,
    WORKER_SECRET,
    secret_manifest,
)

REGION = "ap-northeast-2"
NS = NAME = "capi-quickstart"
OWNER = f"{NS}.{NAME}"


@pytest.fixture
def loaded():
    result = load_manifest(secret_manifest(), env={})
    return result


def test_store_is_owned_idempotent_and_versions_only_changes(aws, loaded) -> None:
    client = sm.client(REGION)
    first = user_secrets.store(REGION, NS, NAME, OWNER, loaded.secrets)
    assert set(first) == {"node-files", "addon-objects"}
    listed = {s["Name"]: tags.as_dict(s["Tags"]) for s in client.list_secrets()["SecretList"]}
    assert set(listed) == {f"capt/{NS}/{NAME}/user/node-files", f"capt/{NS}/{NAME}/user/addon-objects"}
    assert all(tags.is_owned(t, OWNER) for t in listed.values())
    assert user_secrets.store(REGION, NS, NAME, OWNER, loaded.secrets) == first  # unchanged: same versions
    changed = {**loaded.secrets, "node-files": {**loaded.secrets["node-files"], "passwd": b"rotated"}}
    second = user_secrets.store(REGION, NS, NAME, OWNER, changed)
    assert second["node-files"] != first["node-files"] and second["addon-objects"] == first["addon-objects"]
    assert user_secrets.read_value(REGION, NS, NAME, "node-files", "passwd") == b"rotated"
    # Another cluster id (a same-named cluster's leftovers, a hand-made secret) is not overwritten.
    with pytest.raises(ConflictError, match="not owned by cluster other.id"):
        user_secrets.store(REGION, NS, NAME, "other.id", changed)
    # The cluster's deletion takes them with everything else it owns.
    assert sm.delete_all(client, NS, NAME, OWNER) == 2
    with pytest.raises(sm.SecretMissing, match="capt apply` stores it"):
        user_secrets.read(REGION, NS, NAME, "node-files")


def test_bootstrap_data_carries_the_referenced_values_and_its_request_none(aws, loaded) -> None:
    env = ActivityEnvironment()
    client = sm.client(REGION)
    user_secrets.store(REGION, NS, NAME, OWNER, loaded.secrets)
    spec = loaded.spec
    pki = env.run(sm.ensure_cluster_pki, sm.ClusterPKIRequest(cluster_name=NAME, namespace=NS, region=REGION))
    token = env.run(
        token_secrets.ensure_bootstrap_token,
        token_secrets.BootstrapTokenRequest(
            cluster_name=NAME, namespace=NS, region=REGION, machine_name="w-1"
        ),
    )
    rendered = {}
    for kind, machine, token_arn, md in (
        ("init", "cp-1", None, None),
        ("join-worker", "w-1", token.secret_arn, spec.machine_deployments[0].name),
    ):
        req = kb.bootstrap_request_for(
            spec,
            machine_name=machine,
            kind=kind,
            endpoint_host="api.example",
            pki=pki,
            token_secret_arn=token_arn,
            deployment=md,
        )
        wire = _wire(req).decode()
        assert [m for m in SECRET_MARKERS if m in wire] == []  # the request: names only
        refs = env.run(kb.prepare_bootstrap_data, req)
        assert [m for m in SECRET_MARKERS if m in _wire(refs).decode()] == []
        stored = bootstrap_data.read_bootstrap_data(
            client,
            bootstrap_data.StoredBootstrapData(
                secret_prefix=refs.secret_prefix,
                secret_arns=refs.secret_arns,
                rendered_bytes=refs.rendered_bytes,
                stored_bytes=refs.stored_bytes,
            ),
        )
        rendered[kind] = yaml.safe_load(gzip.decompress(stored).decode())
    init_files = {f["path"]: f for f in rendered["init"]["write_files"]}
    assert init_files["/etc/kubernetes/audit.yaml"]["content"] == FILE_SECRET
    assert init_files["/etc/kubernetes/audit.yaml"]["permissions"] == "0600"
    assert init_files["/etc/capt-inline.txt"]["content"] == INLINE
    ops = next(u for u in rendered["init"]["users"] if isinstance(u, dict) and u.get("name") == "ops")
    assert ops["passwd"] == PASSWD_SECRET
    worker_files = {f["path"]: f for f in rendered["join-worker"]["write_files"]}
    assert worker_files["/etc/worker.conf"]["content"] == WORKER_SECRET


def test_a_missing_stored_secret_is_retryable_not_silently_empty(aws, loaded) -> None:
    req = kb.bootstrap_request_for(
        loaded.spec,
        machine_name="cp-1",
        kind="init",
        endpoint_host="api.example",
        pki=ActivityEnvironment().run(
            sm.ensure_cluster_pki, sm.ClusterPKIRequest(cluster_name=NAME, namespace=NS, region=REGION)
        ),
    )
    with pytest.raises(Exception, match="is not in Secrets Manager") as exc:
        ActivityEnvironment().run(kb.prepare_bootstrap_data, req)
    assert not getattr(exc.value, "non_retryable", False)


def test_binary_secret_file_content_is_written_base64() -> None:
    spec = kb.KubeadmConfigSpec(files=({"path": "/k", "contentFrom": {"secret": {"name": "s", "key": "k"}}},))
    (f,) = cloud_init.user_files(spec, {("s", "k"): b"\x00\xffkey"})
    assert (f["encoding"], f["content"]) == ("b64", "AP9rZXk=")
    with pytest.raises(documents.BootstrapError, match="was not read"):
        cloud_init.user_files(spec, {})


def test_addons_apply_a_secrets_documents_in_resource_order(loaded) -> None:
    addon = loaded.spec.addons[0].model_copy(
        update={
            "resources": (
                wad.AddonResource(kind="ConfigMap", name="first"),
                *loaded.spec.addons[0].resources,
            ),
            "config_maps": (
                ("first", (("a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n"),)),
            ),
        }
    )
    docs = wad.addon_documents((addon,), {"addon-objects": loaded.secrets["addon-objects"]})
    assert [(d.config_map, d.body["kind"]) for d in docs] == [
        ("first", "Namespace"),
        ("addon-objects", "ConfigMap"),
    ]
    assert docs[1].body["data"]["value"] == CRS_SECRET
    with pytest.raises(wad.AddonDocumentError, match="Secret addon-objects was not read"):
        wad.addon_documents((addon,), {})
