"""Rendering bootstrap data for the reference cluster: the cloud-config as YAML, the kubeadm
documents it carries, kubeadm API versions, and the boothook user data (which holds no secret)."""

from __future__ import annotations

import email
import re

import pytest
import yaml

from capt.activities.kubeadm import cloud_init, pki
from capt.activities.kubeadm import documents as documents_mod
from capt.activities.kubeadm.tokens import TOKEN_PATTERN
from capt.dev.testkit.bootstrap_reference import (
    ENDPOINT,
    NODE_NAME,
    cluster_pki,
    reference_cluster,
    render_input,
    token,
)
from capt.spec.models import KubeadmConfigSpec

KINDS = ("init", "join-control-plane", "join-worker")
PEM = re.compile(r"-----BEGIN [A-Z ]+-----")


def _render(kind: str, **kw) -> tuple[str, dict]:
    tok = kw.pop("tok", None) or token()
    text = cloud_init.render_cloud_config(render_input(reference_cluster(), kind, tok=tok, **kw))
    return text, {"tok": tok}


def _cloud_config(text: str) -> dict:
    lines = text.splitlines()
    assert lines[0] == "## template: jinja"
    assert lines[1] == "#cloud-config"
    return yaml.safe_load(text)


def _kubeadm_docs(cfg: dict) -> tuple[str, list[dict]]:
    [kubeadm_file] = [f for f in cfg["write_files"] if f["path"].startswith("/run/kubeadm/")]
    return kubeadm_file["path"], list(yaml.safe_load_all(kubeadm_file["content"]))


def _files(cfg: dict) -> dict[str, dict]:
    return {f["path"]: f for f in cfg["write_files"]}


@pytest.mark.parametrize(
    ("version", "api"),
    [
        ("v1.15.0", "kubeadm.k8s.io/v1beta2"),
        ("v1.20.5", "kubeadm.k8s.io/v1beta2"),
        ("1.21.14", "kubeadm.k8s.io/v1beta2"),
        ("v1.22.0", "kubeadm.k8s.io/v1beta3"),
        ("v1.30.9", "kubeadm.k8s.io/v1beta3"),
        ("v1.31.0-rc.1", "kubeadm.k8s.io/v1beta4"),  # pre-releases count as their release
        ("v1.31.0", "kubeadm.k8s.io/v1beta4"),
        ("v1.34.2+build.1", "kubeadm.k8s.io/v1beta4"),
    ],
)
def test_kubeadm_api_version_by_kubernetes_version(version: str, api: str) -> None:
    assert documents_mod.kubeadm_api_version(version) == api


@pytest.mark.parametrize("version", ["v1.14.10", "1.20", "latest", ""])
def test_unsupported_or_malformed_versions_are_errors(version: str) -> None:
    with pytest.raises(documents_mod.BootstrapError):
        documents_mod.kubeadm_api_version(version)


def test_init_for_the_reference_cluster() -> None:
    text, ctx = _render("init")
    cfg = _cloud_config(text)
    path, docs = _kubeadm_docs(cfg)
    assert path == "/run/kubeadm/kubeadm.yaml"
    cluster_cfg, init_cfg = docs
    assert (cluster_cfg["apiVersion"], cluster_cfg["kind"]) == (
        "kubeadm.k8s.io/v1beta2",
        "ClusterConfiguration",
    )
    assert (init_cfg["apiVersion"], init_cfg["kind"]) == ("kubeadm.k8s.io/v1beta2", "InitConfiguration")
    assert cluster_cfg["kubernetesVersion"] == "v1.20.5"
    assert cluster_cfg["controlPlaneEndpoint"] == f"{ENDPOINT}:6443"
    assert cluster_cfg["clusterName"] == "capi-quickstart"
    assert cluster_cfg["networking"] == {
        "podSubnet": "192.168.0.0/16",
        "serviceSubnet": "10.96.0.0/12",
        "dnsDomain": "cluster.local",
    }
    assert cluster_cfg["apiServer"]["extraArgs"] == {"cloud-provider": "aws"}
    assert cluster_cfg["controllerManager"]["extraArgs"] == {"cloud-provider": "aws"}
    assert init_cfg["nodeRegistration"] == {"name": NODE_NAME, "kubeletExtraArgs": {"cloud-provider": "aws"}}
    # kubeadm init pre-creates the first join token.
    assert init_cfg["bootstrapTokens"][0]["token"] == ctx["tok"].value
    # The CA material is written where kubeadm looks for it, keys readable by root only.
    files = _files(cfg)
    p = cluster_pki()
    expected = {
        "ca.crt": (p.ca.cert, "0644"),
        "ca.key": (p.ca.key, "0600"),
        "etcd/ca.crt": (p.etcd_ca.cert, "0644"),
        "etcd/ca.key": (p.etcd_ca.key, "0600"),
        "front-proxy-ca.crt": (p.front_proxy_ca.cert, "0644"),
        "front-proxy-ca.key": (p.front_proxy_ca.key, "0600"),
        "sa.pub": (p.sa.pub, "0644"),
        "sa.key": (p.sa.key, "0600"),
    }
    for name, (content, mode) in expected.items():
        f = files[f"/etc/kubernetes/pki/{name}"]
        assert (f["content"], f["permissions"], f["owner"]) == (content, mode, "root:root")
    assert cfg["runcmd"] == [
        "kubeadm init --config /run/kubeadm/kubeadm.yaml && " + documents_mod.SUCCESS_COMMAND,
    ]


def test_join_control_plane_for_the_reference_cluster() -> None:
    text, ctx = _render("join-control-plane")
    cfg = _cloud_config(text)
    path, docs = _kubeadm_docs(cfg)
    assert path == "/run/kubeadm/kubeadm-join-config.yaml"
    [join] = docs
    assert (join["apiVersion"], join["kind"]) == ("kubeadm.k8s.io/v1beta2", "JoinConfiguration")
    assert join["controlPlane"] == {}  # the config form of `kubeadm join --control-plane`
    assert join["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": f"{ENDPOINT}:6443",
        "token": ctx["tok"].value,
        "caCertHashes": [pki.ca_cert_hash(cluster_pki().ca.cert)],
        "unsafeSkipCAVerification": False,
    }
    assert join["nodeRegistration"]["name"] == NODE_NAME
    files = _files(cfg)
    assert files["/etc/kubernetes/pki/ca.key"]["content"] == cluster_pki().ca.key
    assert files["/etc/kubernetes/pki/sa.key"]["content"] == cluster_pki().sa.key
    assert cfg["runcmd"] == [
        "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml && " + documents_mod.SUCCESS_COMMAND
    ]


def test_worker_join_for_the_reference_cluster_carries_no_key_material() -> None:
    text, ctx = _render("join-worker")
    cfg = _cloud_config(text)
    [join] = _kubeadm_docs(cfg)[1]
    assert (join["apiVersion"], join["kind"]) == ("kubeadm.k8s.io/v1beta2", "JoinConfiguration")
    assert "controlPlane" not in join
    assert join["discovery"]["bootstrapToken"]["token"] == ctx["tok"].value
    assert join["nodeRegistration"] == {"name": NODE_NAME, "kubeletExtraArgs": {"cloud-provider": "aws"}}
    assert not PEM.search(text)
    assert not any(f["path"].startswith("/etc/kubernetes/pki") for f in cfg["write_files"])


def test_a_worker_never_becomes_a_control_plane_member() -> None:
    # A KubeadmConfigTemplate copied from a control plane may carry controlPlane: it must go.
    kubeadm = KubeadmConfigSpec(join_configuration={"controlPlane": {"localAPIEndpoint": {}}})
    [join] = cloud_init.kubeadm_documents(
        render_input(reference_cluster(), "join-worker", tok=token(), kubeadm=kubeadm)
    )
    assert "controlPlane" not in join


def test_cloud_inits_jinja_is_kept_intact_and_ours_is_not_interpreted() -> None:
    # Jinja-looking text in the manifest is left for cloud-init; our own delimiters (<% %>, <@ @>)
    # are not interpreted when they appear in data either.
    kubeadm = KubeadmConfigSpec(
        join_configuration={"nodeRegistration": {"name": NODE_NAME}},
        pre_kubeadm_commands=("echo {{ v1.region }} {% if true %}x{% endif %} <@ nope @> <% nope %>",),
    )
    text = cloud_init.render_cloud_config(
        render_input(reference_cluster(), "join-worker", tok=token(), kubeadm=kubeadm)
    )
    assert "name: '{{ ds.meta_data.local_hostname }}'" in text
    assert (
        _cloud_config(text)["runcmd"][0]
        == "echo {{ v1.region }} {% if true %}x{% endif %} <@ nope @> <% nope %>"
    )


def test_manifest_values_win_where_capi_lets_them_and_the_machine_version_always_wins() -> None:
    kubeadm = KubeadmConfigSpec(
        cluster_configuration={
            "kubernetesVersion": "v1.19.0",
            "controlPlaneEndpoint": "api.example.com:443",
            "networking": {"serviceSubnet": "10.200.0.0/16"},
            "apiVersion": "kubeadm.k8s.io/v1beta1",
            "kind": "ClusterConfiguration",
        }
    )
    cluster_cfg, _ = cloud_init.kubeadm_documents(render_input(reference_cluster(), "init", kubeadm=kubeadm))
    assert cluster_cfg["kubernetesVersion"] == "v1.20.5"
    assert cluster_cfg["apiVersion"] == "kubeadm.k8s.io/v1beta2"
    assert cluster_cfg["controlPlaneEndpoint"] == "api.example.com:443"
    assert cluster_cfg["networking"]["serviceSubnet"] == "10.200.0.0/16"
    assert cluster_cfg["networking"]["podSubnet"] == "192.168.0.0/16"


def test_v1beta4_turns_extra_args_into_lists_and_moves_timeouts() -> None:
    kubeadm = KubeadmConfigSpec(
        cluster_configuration={
            "apiServer": {"extraArgs": {"cloud-provider": "external", "audit-log-maxage": "30"}},
            "controllerManager": {"extraArgs": {"cloud-provider": "external"}},
            "etcd": {"local": {"extraArgs": {"quota-backend-bytes": "8589934592"}}},
        },
        init_configuration={"nodeRegistration": {"kubeletExtraArgs": {"cloud-provider": "external"}}},
        join_configuration={
            "nodeRegistration": {"kubeletExtraArgs": {"cloud-provider": "external"}},
            "discovery": {"timeout": "5m0s"},
        },
    )
    cluster = reference_cluster()
    cluster_cfg, init_cfg = cloud_init.kubeadm_documents(
        render_input(cluster, "init", version="v1.32.3", kubeadm=kubeadm)
    )
    assert cluster_cfg["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert cluster_cfg["apiServer"]["extraArgs"] == [
        {"name": "audit-log-maxage", "value": "30"},
        {"name": "cloud-provider", "value": "external"},
    ]
    assert cluster_cfg["etcd"]["local"]["extraArgs"] == [
        {"name": "quota-backend-bytes", "value": "8589934592"}
    ]
    assert init_cfg["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "cloud-provider", "value": "external"}
    ]
    [join] = cloud_init.kubeadm_documents(
        render_input(cluster, "join-control-plane", version="v1.32.3", tok=token(), kubeadm=kubeadm)
    )
    assert join["timeouts"] == {"discovery": "5m0s"}
    assert "timeout" not in join["discovery"]


def test_v1beta2_and_v1beta3_turn_list_extra_args_into_maps() -> None:
    # A CAPI v1beta2 manifest writes extraArgs as lists; older kubeadm APIs want maps.
    kubeadm = KubeadmConfigSpec(
        cluster_configuration={"apiServer": {"extraArgs": [{"name": "cloud-provider", "value": "aws"}]}},
        init_configuration={"nodeRegistration": {"kubeletExtraArgs": [{"name": "v", "value": "2"}]}},
    )
    for version in ("v1.20.5", "v1.28.0"):
        cluster_cfg, init_cfg = cloud_init.kubeadm_documents(
            render_input(reference_cluster(), "init", version=version, kubeadm=kubeadm)
        )
        assert cluster_cfg["apiServer"]["extraArgs"] == {"cloud-provider": "aws"}
        assert init_cfg["nodeRegistration"]["kubeletExtraArgs"] == {"v": "2"}


def test_v1beta3_drops_dns_type() -> None:
    kubeadm = KubeadmConfigSpec(cluster_configuration={"dns": {"type": "CoreDNS", "imageTag": "v1.8.6"}})
    old, _ = cloud_init.kubeadm_documents(
        render_input(reference_cluster(), "init", version="v1.21.0", kubeadm=kubeadm)
    )
    new, _ = cloud_init.kubeadm_documents(
        render_input(reference_cluster(), "init", version="v1.23.0", kubeadm=kubeadm)
    )
    assert old["dns"] == {"type": "CoreDNS", "imageTag": "v1.8.6"}
    assert new["dns"] == {"imageTag": "v1.8.6"}


def test_a_join_without_a_token_is_refused_unless_discovery_is_a_file() -> None:
    with pytest.raises(documents_mod.BootstrapError, match="token"):
        cloud_init.kubeadm_documents(render_input(reference_cluster(), "join-worker", tok=None))
    kubeadm = KubeadmConfigSpec(join_configuration={"discovery": {"file": {"kubeConfigPath": "/etc/k.conf"}}})
    [join] = cloud_init.kubeadm_documents(
        render_input(reference_cluster(), "join-worker", tok=None, kubeadm=kubeadm)
    )
    assert join["discovery"] == {"file": {"kubeConfigPath": "/etc/k.conf"}}


def test_control_plane_machines_need_the_pki() -> None:
    r = render_input(reference_cluster(), "join-control-plane", tok=token())
    r = cloud_init.RenderInput(kind=r.kind, kubeadm=r.kubeadm, inputs=r.inputs, pki=None)
    with pytest.raises(documents_mod.BootstrapError, match="PKI"):
        cloud_init.render_cloud_config(r)


TRICKY = [
    "plain",
    "no trailing newline\nsecond line",
    "one trailing newline\n",
    "two trailing newlines\n\n",
    "three\n\n\n",
    " leading space",
    "\nleading newline",
    "\ttab first",
    "key: value\n- item\n# comment\n---\n...\n",
    "quotes ' \" and backslash \\ and colon: here",
    "unicode ✓ 日本語 ",
    "windows\r\nline endings\r\n",
    "",
    "   ",
    '#!/bin/bash\nset -euo pipefail\necho "$HOME" | tee -a /tmp/x  \n',
    "  indented\n    more\n",
    "control \x07 char",
]


def test_every_file_content_survives_the_yaml_exactly() -> None:
    files = tuple(
        {"path": f"/etc/capt/f{i}", "content": c, "owner": "root:root", "permissions": "0600"}
        for i, c in enumerate(TRICKY)
    )
    kubeadm = KubeadmConfigSpec(
        join_configuration={"nodeRegistration": {"name": NODE_NAME}},
        files=files + ({"path": "/etc/capt/octal", "content": "x", "permissions": 0o644, "append": True},),
        pre_kubeadm_commands=tuple(TRICKY),
        post_kubeadm_commands=("echo 'done: ok' # really",),
    )
    cfg = _cloud_config(
        cloud_init.render_cloud_config(
            render_input(reference_cluster(), "join-worker", tok=token(), kubeadm=kubeadm)
        )
    )
    got = _files(cfg)
    for i, content in enumerate(TRICKY):
        assert got[f"/etc/capt/f{i}"]["content"] == content, repr(content)
    # YAML 1.1 reads an unquoted 0644 as the integer 420: it is written back as '0644'.
    assert got["/etc/capt/octal"]["permissions"] == "0644"
    assert got["/etc/capt/octal"]["append"] is True
    assert cfg["runcmd"][: len(TRICKY)] == TRICKY
    assert cfg["runcmd"][-1] == "echo 'done: ok' # really"


def test_users_ntp_and_mounts_map_to_cloud_init_keys() -> None:
    kubeadm = KubeadmConfigSpec(
        join_configuration={"nodeRegistration": {"name": NODE_NAME}},
        users=(
            {
                "name": "ops",
                "gecos": "Operations",
                "groups": "adm, sudo",
                "homeDir": "/home/ops",
                "shell": "/bin/bash",
                "lockPassword": False,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "primaryGroup": "ops",
                "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3Nza ops@example"],
                "inactive": True,
            },
        ),
        ntp={"enabled": True, "servers": ["169.254.169.123", "time.aws.com"]},
        mounts=(("ephemeral0", "/mnt/data", "auto", "defaults,nofail"),),
    )
    cfg = _cloud_config(
        cloud_init.render_cloud_config(
            render_input(reference_cluster(), "join-worker", tok=token(), kubeadm=kubeadm)
        )
    )
    assert cfg["users"] == [
        {
            "name": "ops",
            "gecos": "Operations",
            "groups": "adm, sudo",
            "homedir": "/home/ops",
            "primary_group": "ops",
            "shell": "/bin/bash",
            "lock_passwd": False,
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "ssh_authorized_keys": ["ssh-ed25519 AAAAC3Nza ops@example"],
        }
    ]
    assert cfg["ntp"] == {"enabled": True, "servers": ["169.254.169.123", "time.aws.com"]}
    assert cfg["mounts"] == [["ephemeral0", "/mnt/data", "auto", "defaults,nofail"]]


def test_unsupported_requests_fail_clearly() -> None:
    cluster = reference_cluster()
    for kubeadm, match in [
        (KubeadmConfigSpec(format="ignition"), "ignition"),
        # A reference whose value the activity did not read (render_input passes no secrets).
        (
            KubeadmConfigSpec(files=({"path": "/x", "contentFrom": {"secret": {"name": "s", "key": "k"}}},)),
            r"file /x: the referenced Secret value \('s', 'k'\) was not read",
        ),
        (
            KubeadmConfigSpec(users=({"name": "u", "passwdFrom": {"secret": {"name": "s", "key": "p"}}},)),
            "user u: the referenced Secret value",
        ),
    ]:
        with pytest.raises(documents_mod.BootstrapError, match=match):
            cloud_init.render_cloud_config(render_input(cluster, "join-worker", tok=token(), kubeadm=kubeadm))


def test_experimental_retry_join_retries_with_a_reset() -> None:
    kubeadm = KubeadmConfigSpec(use_experimental_retry_join=True)
    cfg = _cloud_config(
        cloud_init.render_cloud_config(
            render_input(reference_cluster(), "join-worker", tok=token(), kubeadm=kubeadm)
        )
    )
    [cmd] = cfg["runcmd"]
    assert (
        "kubeadm reset -f" in cmd
        and cmd.count("kubeadm join") == 1
        and cmd.endswith(documents_mod.SUCCESS_COMMAND)
    )


# ---------------------------------------------------------------------------------------------
# user data


PREFIX = "capt/capi-quickstart/capi-quickstart/bootstrap/capi-quickstart-md-0-x7k2p-" + "ab" * 32


def test_user_data_is_a_small_boothook_mime_document_without_secrets() -> None:
    ud = cloud_init.render_user_data(secret_prefix=PREFIX, chunks=2, region="ap-northeast-2")
    assert len(ud.encode()) < 16 * 1024  # EC2's user-data limit, with a wide margin to spare
    msg = email.message_from_string(ud)
    assert msg.is_multipart()
    hook, include = msg.get_payload()
    assert hook.get_content_type() == "text/cloud-boothook"
    script = hook.get_payload()
    assert script.startswith("#cloud-boothook\n#!/bin/bash\n")
    assert f"PREFIX={PREFIX}\n" in script and "CHUNKS=2\n" in script and "REGION=ap-northeast-2\n" in script
    assert "get-secret-value" in script and "delete-secret --force-delete-without-recovery" in script
    assert include.get_content_type() == "text/x-include-url"
    assert include.get_payload().strip() == f"file://{documents_mod.BOOTSTRAP_FILE}"
    assert not PEM.search(ud)
    assert not TOKEN_PATTERN.search(ud)


def test_user_data_is_deterministic() -> None:
    # RunInstances retried with the same ClientToken must send identical parameters.
    args = {"secret_prefix": PREFIX, "chunks": 1, "region": "ap-northeast-2"}
    assert cloud_init.render_user_data(**args) == cloud_init.render_user_data(**args)
    assert cloud_init.compress("x" * 1000) == cloud_init.compress("x" * 1000)


def test_user_data_quotes_what_it_is_given() -> None:
    ud = cloud_init.render_user_data(
        secret_prefix="p; rm -rf /", chunks=1, region="r", endpoint_url="http://localhost:5000/$(x)"
    )
    assert "PREFIX='p; rm -rf /'" in ud
    assert "ENDPOINT='http://localhost:5000/$(x)'" in ud


def test_rendered_cloud_config_for_every_kind_holds_its_secrets_only_where_expected() -> None:
    for kind in KINDS:
        tok = token()
        text = cloud_init.render_cloud_config(render_input(reference_cluster(), kind, tok=tok))
        assert tok.value in text
        assert bool(PEM.search(text)) is (kind != "join-worker")
