"""simulator.cloudinit: what an instance's cloud-init does with capt's user data and bootstrap
data — checked against capt's real renderer and against cloud-init itself."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from capt.activities.kubeadm import cloud_init
from capt.activities.kubeadm import documents as documents_mod
from capt.dev.simulator import cloudinit as ci
from capt.dev.testkit import bootstrap_reference as ref

INSTANCE = dict(
    instance_id="i-0123456789abcdef0",
    local_hostname=ref.HOSTNAME,
    local_ipv4="10.0.71.23",
    availability_zone="ap-northeast-2a",
    region="ap-northeast-2",
    instance_type="t3.large",
    image_id="ami-0123456789abcdef0",
)


def rendered(kind: str) -> str:
    cluster = ref.reference_cluster()
    tok = ref.token() if kind != "init" else None
    return cloud_init.render_cloud_config(ref.render_input(cluster, kind, tok=tok))


# --------------------------------------------------------------------------------------------
# user data


def test_boothook_user_data_names_the_secrets() -> None:
    text = cloud_init.render_user_data(
        secret_prefix="capt/ns/c1/bootstrap/m-1-abc", chunks=3, region="eu-west-1"
    )
    parsed = ci.parse_user_data(text)
    assert parsed.cloud_config is None
    hook = parsed.boothook
    assert hook is not None
    assert (hook.prefix, hook.chunks, hook.region, hook.endpoint) == (
        "capt/ns/c1/bootstrap/m-1-abc",
        3,
        "eu-west-1",
        "",
    )
    assert hook.file == documents_mod.BOOTSTRAP_FILE
    assert hook.attempts == documents_mod.FETCH_ATTEMPTS
    assert ci.chunk_names(hook) == [f"capt/ns/c1/bootstrap/m-1-abc-{i}" for i in range(3)]
    # `sleep $((attempt * 5))` after every failed attempt but the last.
    assert ci.boothook_retry_delays(hook) == [5 * a for a in range(1, documents_mod.FETCH_ATTEMPTS)]


def test_boothook_with_an_endpoint_and_odd_characters() -> None:
    text = cloud_init.render_user_data(
        secret_prefix="capt/n s/c'1/bootstrap/m",
        chunks=1,
        region="us-east-1",
        endpoint_url="http://10.0.0.1:5000",
    )
    hook = ci.parse_user_data(text).boothook
    assert hook is not None
    assert (hook.prefix, hook.endpoint) == ("capt/n s/c'1/bootstrap/m", "http://10.0.0.1:5000")


def test_plain_cloud_config_user_data_is_taken_as_is() -> None:
    text = rendered("join-worker")
    assert ci.parse_user_data(text).cloud_config == text


@pytest.mark.parametrize(
    "text",
    ["hello", "MIME-Version: 1.0\nContent-Type: text/plain\n\nhi", "#cloud-boothook\n#!/bin/bash\necho hi\n"],
)
def test_foreign_user_data_is_refused(text: str) -> None:
    with pytest.raises(ci.BootstrapFormatError):
        ci.parse_user_data(text)


def test_reassemble_joins_chunks_and_gunzips() -> None:
    data = cloud_init.compress("## template: jinja\n#cloud-config\n" + "x" * 100000)
    parts = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert ci.reassemble(parts).startswith("## template: jinja")
    with pytest.raises(ci.BootstrapFormatError):
        ci.reassemble([data[:10]])


# --------------------------------------------------------------------------------------------
# cloud-init's jinja


def test_render_fills_the_node_name_like_cloud_init() -> None:
    data = ci.ec2_instance_data(**INSTANCE)
    out, missing = ci.render_cloud_config(rendered("init"), data)
    assert missing == []
    assert ref.NODE_NAME not in out
    task = ci.parse_cloud_config(out)
    init = task.document("InitConfiguration")
    assert init is not None and init["nodeRegistration"]["name"] == ref.HOSTNAME


def test_undefined_variables_render_as_cloud_init_does() -> None:
    text = "## template: jinja\n#cloud-config\nruncmd:\n  - echo {{ ds.meta_data.nope }} {{ v1.region }} {{ region }}\n"
    out, missing = ci.render_cloud_config(text, ci.ec2_instance_data(**INSTANCE))
    assert "echo CI_MISSING_JINJA_VAR/nope ap-northeast-2 ap-northeast-2" in out
    assert missing == ["nope"]


def test_hyphenated_keys_get_underscore_aliases() -> None:
    variables = ci.jinja_variables(ci.ec2_instance_data(**INSTANCE))
    meta = variables["ds"]["meta_data"]
    assert meta["local_hostname"] == meta["local-hostname"] == ref.HOSTNAME
    assert meta["placement"]["availability_zone"] == "ap-northeast-2a"
    assert variables["local_hostname"] == ref.HOSTNAME  # v1 keys promoted to the top level


def test_text_without_the_jinja_header_is_not_rendered() -> None:
    text = "#cloud-config\nruncmd:\n  - echo {{ v1.region }}\n"
    assert ci.render_cloud_config(text, ci.ec2_instance_data(**INSTANCE)) == (text, [])


def _cloud_init() -> str:
    path = shutil.which("cloud-init")
    if path is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("cloud-init is not installed; CI must install it")
        pytest.skip("cloud-init is not installed (apt-get install -y cloud-init)")
    return path


@pytest.mark.parametrize("kind", ["init", "join-control-plane", "join-worker"])
def test_render_matches_cloud_init_itself(kind: str, tmp_path: Path) -> None:
    """The simulator's rendering of the jinja header is byte-for-byte cloud-init's."""
    cloud_init = _cloud_init()
    data = ci.ec2_instance_data(**INSTANCE)
    (tmp_path / "instance-data.json").write_text(json.dumps(data))
    text = rendered(kind)
    (tmp_path / "user-data").write_text(text)
    done = subprocess.run(
        [
            cloud_init,
            "devel",
            "render",
            str(tmp_path / "user-data"),
            "--instance-data",
            str(tmp_path / "instance-data.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ours, _ = ci.render_cloud_config(text, data)
    assert ours.rstrip("\n") == done.stdout.rstrip("\n")


# --------------------------------------------------------------------------------------------
# cloud-config → kubeadm task


def _task(kind: str) -> ci.KubeadmTask:
    out, _ = ci.render_cloud_config(rendered(kind), ci.ec2_instance_data(**INSTANCE))
    return ci.parse_cloud_config(out)


def test_init_task() -> None:
    task = _task("init")
    assert (task.action, task.config_path) == ("init", documents_mod.INIT_CONFIG_PATH)
    assert [d["kind"] for d in task.documents] == ["ClusterConfiguration", "InitConfiguration"]
    assert task.document("ClusterConfiguration")["controlPlaneEndpoint"] == f"{ref.ENDPOINT}:6443"
    assert task.pki("ca.crt") == ref.cluster_pki().ca.cert
    assert task.pki("ca.key") == ref.cluster_pki().ca.key
    assert not task.control_plane_join


def test_join_tasks() -> None:
    cp, worker = _task("join-control-plane"), _task("join-worker")
    assert (cp.action, worker.action) == ("join", "join")
    assert cp.control_plane_join and not worker.control_plane_join
    assert cp.pki("etcd/ca.key") == ref.cluster_pki().etcd_ca.key
    assert worker.pki("ca.crt") is None  # a worker gets no key material
    bt = worker.document("JoinConfiguration")["discovery"]["bootstrapToken"]
    assert bt["apiServerEndpoint"] == f"{ref.ENDPOINT}:6443"


def test_write_files_encodings() -> None:
    content = "hello\nworld\n"
    b64 = base64.b64encode(content.encode()).decode()
    gzb64 = base64.b64encode(gzip.compress(content.encode())).decode()
    doc = {
        "write_files": [
            {"path": "/a", "content": b64, "encoding": "b64"},
            {"path": "/b", "content": gzb64, "encoding": "gz+b64"},
            {"path": "/b", "content": "more\n", "append": True},
            {"path": "/k.yaml", "content": "apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\n"},
        ],
        "runcmd": [["sh", "-c", "kubeadm join --config /k.yaml"]],
    }
    task = ci.parse_cloud_config("#cloud-config\n" + json.dumps(doc))
    assert task.files["/a"] == content
    assert task.files["/b"] == content + "more\n"
    assert task.action == "join"


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"runcmd": ["echo hi"]}, "neither"),
        ({"runcmd": ["kubeadm init --config /x.yaml"]}, "not in write_files"),
        (
            {
                "write_files": [{"path": "/x.yaml", "content": "a: [1"}],
                "runcmd": ["kubeadm init --config /x.yaml"],
            },
            "not valid YAML",
        ),
        (
            {
                "write_files": [{"path": "/x.yaml", "content": "apiVersion: v1\nkind: Pod\n"}],
                "runcmd": ["kubeadm init --config=/x.yaml"],
            },
            "no kubeadm.k8s.io document",
        ),
        ({"write_files": [{"content": "x"}]}, "without a path"),
    ],
)
def test_broken_cloud_config_is_refused(doc: dict, message: str) -> None:
    with pytest.raises(ci.BootstrapFormatError, match=message):
        ci.parse_cloud_config("#cloud-config\n" + json.dumps(doc))
