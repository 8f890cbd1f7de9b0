"""The rendered bootstrap data, checked by cloud-init itself (Debian's package is the reference).

For each kind of machine of the reference cluster:

1. `cloud-init devel render FILE --instance-data DATA.json` renders the `## template: jinja`
   header as an instance would (`{{ ds.meta_data.local_hostname }}` becomes the hostname);
2. `cloud-init schema --config-file` validates the result against cloud-init's schema;
3. cloud-init's own user-data processor reads our boothook MIME user data and, once the boothook
   has written the file, includes it as a jinja cloud-config.

CI installs cloud-init (apt-get install cloud-init) and must run these: with CI=true a missing
cloud-init fails the tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from capt.activities.kubeadm import cloud_init as ci
from capt.dev.testkit.bootstrap_reference import HOSTNAME, NODE_NAME, reference_cluster, render_input, token
from capt.spec.models import KubeadmConfigSpec

KINDS = ("init", "join-control-plane", "join-worker")


@pytest.fixture(scope="module")
def cloud_init() -> str:
    path = shutil.which("cloud-init")
    if path is None:
        message = (
            "cloud-init is not installed: the bootstrap data is validated with Debian's cloud-init "
            "(`apt-get install -y cloud-init`)"
        )
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message + "; CI must install it, this check is never skipped there")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def instance_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Minimal instance-data.json: what the EC2 datasource exposes that the templates use."""
    data = {
        "ds": {
            "meta_data": {
                "local_hostname": HOSTNAME,
                "instance_id": "i-0123456789abcdef0",
                "placement": {"availability_zone": "ap-northeast-2a"},
            }
        },
        "v1": {
            "cloud_name": "aws",
            "platform": "ec2",
            "region": "ap-northeast-2",
            "availability_zone": "ap-northeast-2a",
            "instance_id": "i-0123456789abcdef0",
            "local_hostname": HOSTNAME,
        },
    }
    path = tmp_path_factory.mktemp("instance") / "instance-data.json"
    path.write_text(json.dumps(data))
    return path


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _render_and_validate(cloud_init: str, instance_data: Path, tmp_path: Path, text: str, name: str) -> dict:
    src = tmp_path / f"{name}.yaml"
    src.write_text(text)
    yaml.safe_load(text)  # valid YAML before cloud-init touches it
    rendered = _run([cloud_init, "devel", "render", str(src), "--instance-data", str(instance_data)])
    assert rendered.returncode == 0, rendered.stderr
    assert "CI_MISSING_JINJA_VAR" not in rendered.stdout
    assert rendered.stdout.startswith("#cloud-config\n")
    out = tmp_path / f"{name}.rendered.yaml"
    out.write_text(rendered.stdout)
    schema = _run([cloud_init, "schema", "--config-file", str(out)])
    assert schema.returncode == 0, f"cloud-init schema rejected {name}:\n{schema.stdout}\n{schema.stderr}"
    assert "Valid cloud-config" in schema.stdout
    return yaml.safe_load(rendered.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_cluster_bootstrap_data_renders_and_validates_in_cloud_init(
    kind: str, cloud_init: str, instance_data: Path, tmp_path: Path
) -> None:
    tok = token()
    text = ci.render_cloud_config(render_input(reference_cluster(), kind, tok=tok))
    assert NODE_NAME in text
    cfg = _render_and_validate(cloud_init, instance_data, tmp_path, text, kind)
    [kubeadm_file] = [f for f in cfg["write_files"] if f["path"].startswith("/run/kubeadm/")]
    docs = list(yaml.safe_load_all(kubeadm_file["content"]))
    node = docs[-1]["nodeRegistration"]
    # cloud-init put the instance's hostname where the manifest had its Jinja expression.
    assert node["name"] == HOSTNAME
    assert node["kubeletExtraArgs"] == {"cloud-provider": "aws"}
    assert [d["kind"] for d in docs] == (
        ["ClusterConfiguration", "InitConfiguration"] if kind == "init" else ["JoinConfiguration"]
    )
    assert all(d["apiVersion"] == "kubeadm.k8s.io/v1beta2" for d in docs)
    if kind != "init":
        assert docs[0]["discovery"]["bootstrapToken"]["token"] == tok.value


def test_every_cloud_config_section_we_emit_validates(
    cloud_init: str, instance_data: Path, tmp_path: Path
) -> None:
    kubeadm = KubeadmConfigSpec(
        join_configuration={"nodeRegistration": {"name": NODE_NAME}},
        files=(
            {
                "path": "/etc/sysctl.d/99-k8s.conf",
                "content": "net.ipv4.ip_forward = 1\n",
                "permissions": "0644",
            },
            {"path": "/etc/motd", "content": "aGVsbG8K", "encoding": "base64", "owner": "root:root"},
            {"path": "/etc/hosts.extra", "content": "10.0.0.1 a\n", "append": True},
        ),
        pre_kubeadm_commands=("sysctl --system", "echo '{{ v1.region }}' > /etc/region"),
        post_kubeadm_commands=("echo done",),
        users=(
            {
                "name": "ops",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3Nza ops@example"],
                "lockPassword": True,
                "groups": "adm",
                "shell": "/bin/bash",
                "inactive": True,
            },
        ),
        ntp={"enabled": True, "servers": ["169.254.169.123"]},
        mounts=(("ephemeral0", "/mnt/data", "auto", "defaults,nofail", "0", "2"),),
    )
    text = ci.render_cloud_config(
        render_input(reference_cluster(), "join-worker", tok=token(), kubeadm=kubeadm)
    )
    cfg = _render_and_validate(cloud_init, instance_data, tmp_path, text, "full")
    assert cfg["runcmd"][1] == "echo 'ap-northeast-2' > /etc/region"
    assert cfg["users"][0]["name"] == "ops" and cfg["ntp"]["servers"] == ["169.254.169.123"]


def test_the_schema_check_does_reject_a_broken_cloud_config(cloud_init: str, tmp_path: Path) -> None:
    # The negative control: the check above can fail.
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\nruncmd: 5\nwrite_files:\n- content: no path\n")
    assert _run([cloud_init, "schema", "--config-file", str(bad)]).returncode != 0


def _cloud_init_python(cloud_init: str) -> str:
    first = Path(cloud_init).read_text(errors="replace").splitlines()[0]
    assert first.startswith("#!"), first
    return first[2:].strip().split()[0]


def test_cloud_init_includes_what_the_boothook_fetched_as_a_jinja_cloud_config(
    cloud_init: str, tmp_path: Path
) -> None:
    fetched = tmp_path / "bootstrap-userdata.txt"
    text = ci.render_cloud_config(render_input(reference_cluster(), "join-worker", tok=token()))
    fetched.write_text(text)  # what the boothook writes
    user_data = tmp_path / "user-data.mime"
    user_data.write_text(
        ci.render_user_data(
            secret_prefix="capt/ns/c/bootstrap/m-0-ab", chunks=1, region="r", file=str(fetched)
        )
    )
    probe = textwrap.dedent(
        """
        import json, sys
        from cloudinit import user_data
        msg = user_data.UserDataProcessor({}).process(open(sys.argv[1]).read())
        parts = [(p.get_content_type(), p.get_payload(decode=True).decode())
                 for p in msg.walk() if not p.is_multipart()]
        print(json.dumps(parts))
        """
    )
    out = _run([_cloud_init_python(cloud_init), "-c", probe, str(user_data)])
    assert out.returncode == 0, out.stderr
    parts = json.loads(out.stdout)
    assert [t for t, _ in parts] == ["text/cloud-boothook", "text/jinja2"]
    assert parts[0][1].startswith("#cloud-boothook\n")
    assert parts[1][1] == text
