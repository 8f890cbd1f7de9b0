"""User secrets in manifests (issue 16): Secret documents referenced by files[].contentFrom,
users[].passwdFrom and ClusterResourceSets resolve to `LoadResult.secrets`, never into the
spec; every wrong reference is an error naming the field; inline key material warns; a
credential-like ${VARIABLE} is never read from the environment."""

from __future__ import annotations

import base64

import pytest
import yaml

from capt.spec.errors import ManifestError, MissingVariablesError
from capt.spec.loader import load_manifest
from capt.spec.secret_kinds import looks_like_key_material
from tests.support.secret_manifest import (
    CRS_OBJECT,
    FILE_SECRET,
    INLINE,
    PASSWD_SECRET,
    SECRET_MARKERS,
    WORKER_SECRET,
    secret_manifest,
)

NS = "capi-quickstart"


def docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(secret_manifest()) if d]


def of(ds: list[dict], kind: str, name: str | None = None) -> dict:
    return next(d for d in ds if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def load(ds: list[dict], **kw):
    return load_manifest(yaml.safe_dump_all(ds), env=kw.pop("env", {}), **kw)


def problems(ds: list[dict]) -> list[str]:
    with pytest.raises(ManifestError) as exc:
        load(ds)
    return [str(p) for p in exc.value.problems]


def test_referenced_secrets_resolve_beside_the_spec_and_never_inside_it():
    result = load(docs())
    assert result.secrets == {
        "node-files": {
            "audit.yaml": FILE_SECRET.encode(),
            "worker.conf": WORKER_SECRET.encode(),
            "passwd": PASSWD_SECRET.encode(),
        },
        "addon-objects": {"objects.yaml": CRS_OBJECT.encode()},
    }
    text = result.spec.model_dump_json()
    assert [m for m in SECRET_MARKERS if m in text] == []
    assert INLINE in text  # inline content is the user's choice (encrypted by the codec)
    # The references stay, by name, for the activities to read.
    cp_files = result.spec.control_plane.kubeadm.files
    assert cp_files[0]["contentFrom"] == {"secret": {"name": "node-files", "key": "audit.yaml"}}
    assert result.spec.control_plane.kubeadm.users[0]["passwdFrom"]["secret"]["key"] == "passwd"
    assert [(r.kind, r.name) for r in result.spec.addons[0].resources] == [("Secret", "addon-objects")]
    assert result.spec.addons[0].config_maps == ()
    assert "secret" not in " ".join(result.warnings).lower()


def _kcs(ds):
    return of(ds, "KubeadmControlPlane")["spec"]["kubeadmConfigSpec"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda ds: _kcs(ds)["files"][0]["contentFrom"]["secret"].update(name="nope"),
            "spec.kubeadmConfigSpec.files[0].contentFrom.secret.name: Secret capi-quickstart/nope is not in the manifest",
        ),
        (
            lambda ds: _kcs(ds)["files"][0]["contentFrom"]["secret"].update(key="missing"),
            "spec.kubeadmConfigSpec.files[0].contentFrom.secret.key: Secret capi-quickstart/node-files has no key 'missing'",
        ),
        (
            lambda ds: _kcs(ds)["users"][0]["passwdFrom"]["secret"].pop("key"),
            "spec.kubeadmConfigSpec.users[0].passwdFrom.secret.key: is required",
        ),
        (
            lambda ds: _kcs(ds)["files"][0].update(content="inline too"),
            "spec.kubeadmConfigSpec.files[0]: set content or contentFrom, not both",
        ),
        (
            lambda ds: _kcs(ds)["users"][0].update(passwd="x"),
            "spec.kubeadmConfigSpec.users[0]: set passwd or passwdFrom, not both",
        ),
        (
            lambda ds: _kcs(ds)["files"][0].update(contentFrom={"configMap": {"name": "x"}}),
            "spec.kubeadmConfigSpec.files[0].contentFrom: needs secret: {name",
        ),
        (
            lambda ds: of(ds, "KubeadmConfigTemplate")["spec"]["template"]["spec"]["files"][0]["contentFrom"][
                "secret"
            ].update(name="other"),
            "KubeadmConfigTemplate/capi-quickstart-md-0 spec.template.spec.files[0].contentFrom.secret.name: Secret capi-quickstart/other",
        ),
        (
            lambda ds: of(ds, "Secret", "addon-objects").update(type="Opaque"),
            "Secret/addon-objects type: a ClusterResourceSet applies only Secrets of type 'addons.cluster.x-k8s.io/resource-set'",
        ),
        (
            lambda ds: of(ds, "Secret", "node-files")["data"].update({"bad": "%%%"}),
            "Secret/node-files data.bad: is not valid base64",
        ),
    ],
    ids=[
        "no-secret",
        "no-key",
        "no-key-field",
        "both-content",
        "both-passwd",
        "not-secret",
        "worker",
        "crs-type",
        "b64",
    ],
)
def test_a_wrong_reference_is_an_error_naming_the_field(edit, expected):
    ds = docs()
    edit(ds)
    found = problems(ds)
    assert any(expected in p for p in found), found


def test_a_config_map_that_embeds_a_secret_is_refused_with_the_right_form():
    ds = docs()
    ds.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "leaky", "namespace": NS},
            "data": {"s.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\nstringData: {k: v}\n"},
        }
    )
    of(ds, "ClusterResourceSet")["spec"]["resources"].append({"kind": "ConfigMap", "name": "leaky"})
    found = problems(ds)
    assert any(
        "ConfigMap/leaky data.s.yaml: embeds a kind: Secret" in p
        and "list it in the ClusterResourceSet as kind: Secret" in p
        for p in found
    ), found


def test_inline_key_material_and_passwords_warn_with_the_field():
    ds = docs()
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n"
    _kcs(ds)["files"].append({"path": "/root/key.pem", "content": pem})
    _kcs(ds)["users"].append({"name": "legacy", "passwd": "$6$rounds"})
    warnings = load(ds).warnings
    assert any(
        "spec.kubeadmConfigSpec.files[2].content looks like a PEM private key" in w for w in warnings
    ), warnings
    assert any(
        "spec.kubeadmConfigSpec.users[1].passwd is inline; use passwdFrom.secret" in w for w in warnings
    )


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("-----BEGIN EC PRIVATE KEY-----", "a PEM private key"),
        ("-----BEGIN CERTIFICATE-----", "a PEM certificate"),
        ("users:\n- user:\n    client-key-data: LS0t", "a kubeconfig's credentials"),
        ("abcdef.0123456789abcdef", "a kubeadm bootstrap token"),
        ("AKIAIOSFODNN7EXAMPLE", "an AWS access key id"),
        ("password = hunter2", "a credential"),
        ("net.ipv4.ip_forward = 1\n", None),
        ("[Service]\nExecStart=/usr/bin/kubelet\n", None),
    ],
)
def test_key_material_heuristics(text, what):
    assert looks_like_key_material(text) == what


def test_string_data_wins_over_data_as_the_api_server_does():
    ds = docs()
    secret = of(ds, "Secret", "node-files")
    secret["data"]["passwd"] = base64.b64encode(b"from-data").decode()
    assert load(ds).secrets["node-files"]["passwd"] == PASSWD_SECRET.encode()


CREDENTIAL_MANIFEST_EDIT = "${AWS_SECRET_ACCESS_KEY}"


def _with_variable(name: str) -> str:
    ds = docs()
    _kcs(ds)["files"].append({"path": "/etc/v", "content": "${" + name + "}"})
    return yaml.safe_dump_all(ds)


@pytest.mark.parametrize(
    "name",
    ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "TEMPORAL_API_KEY", "DB_PASSWORD", "MY_SECRET_THING"],
)
def test_a_credential_like_variable_is_never_taken_from_the_environment(name):
    text = _with_variable(name)
    with pytest.raises(MissingVariablesError) as exc:
        load_manifest(text, env={name: "from-the-environment"})
    assert exc.value.names == [name] and exc.value.refused == [name]
    assert "only from --var" in exc.value.render()
    # An explicit --var is the operator's choice, and validate says where it came from.
    result = load_manifest(text, variables={name: "explicit"}, env={name: "from-the-environment"})
    assert result.variables == {name: "--var"}
    assert "from-the-environment" not in result.spec.model_dump_json()


def test_variables_list_where_each_value_came_from():
    ds = docs()
    _kcs(ds)["files"].append(
        {"path": "/etc/v", "content": "${REGION_HINT} ${FLAVOR:-small} ${CAPT_CLUSTER_ID} ${PICKED}"}
    )
    result = load_manifest(yaml.safe_dump_all(ds), variables={"PICKED": "x"}, env={"REGION_HINT": "ap"})
    assert result.variables == {
        "CAPT_CLUSTER_ID": "built-in",
        "FLAVOR": "default",
        "PICKED": "--var",
        "REGION_HINT": "environment",
    }


# --------------------------------------------------------------------------------------------
# instance metadata defaults (issue 16): IMDSv2 required unless the manifest says optional (then a
# warning), the PUT response hop limit within EC2's 1-64


def _imds(ds: list[dict], **options) -> None:
    for d in ds:
        if d["kind"] == "AWSMachineTemplate":
            d["spec"]["template"]["spec"]["instanceMetadataOptions"] = options


@pytest.mark.parametrize(
    ("options", "tokens", "hop", "problem", "warns"),
    [
        ({}, "required", 1, None, False),
        ({"httpTokens": "required", "httpPutResponseHopLimit": 2}, "required", 2, None, False),
        ({"httpTokens": "optional"}, "optional", 1, None, True),
        ({"httpPutResponseHopLimit": 64}, "required", 64, None, False),
        (
            {"httpPutResponseHopLimit": 65},
            None,
            None,
            "httpPutResponseHopLimit: must be 1 to 64, got 65",
            False,
        ),
        ({"httpPutResponseHopLimit": 0}, None, None, "httpPutResponseHopLimit: must be >= 1, got 0", False),
        ({"httpTokens": "sometimes"}, None, None, "httpTokens: must be required or optional", False),
    ],
)
def test_instance_metadata_defaults_and_bounds(options, tokens, hop, problem, warns):
    ds = docs()
    _imds(ds, **options)
    if problem:
        found = problems(ds)
        assert any(problem in p for p in found), found
        return
    result = load(ds)
    template = result.spec.control_plane.machine_template
    assert (template.http_tokens, template.http_put_response_hop_limit) == (tokens, hop)
    warned = [w for w in result.warnings if "httpTokens is optional" in w]
    assert bool(warned) == warns, result.warnings
