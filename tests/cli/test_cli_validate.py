"""`capt validate`: a one-screen summary and exit 0, or every error and a non-zero exit."""

import json

from click.testing import CliRunner

from capt.cli import main
from tests.support.paths import CAPA_TEMPLATE, QUICKSTART


def test_validate_quickstart_prints_summary():
    result = CliRunner().invoke(main, ["validate", "-f", str(QUICKSTART)], env={})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Cluster capi-quickstart/capi-quickstart  region ap-northeast-2" in out
    assert "capi-quickstart-control-plane: 3 x t3.large" in out
    assert "capi-quickstart-md-0: 3 x t3.large" in out
    assert "pods        192.168.0.0/16" in out
    assert len(out.splitlines()) <= 40  # one screen


def test_validate_capa_template_with_vars_and_json_output():
    args = ["validate", "-f", str(CAPA_TEMPLATE), "-o", "json"]
    for kv in [
        "CLUSTER_NAME=t1",
        "AWS_REGION=us-east-1",
        "AWS_SSH_KEY_NAME=k",
        "AWS_CONTROL_PLANE_MACHINE_TYPE=t3.large",
        "AWS_NODE_MACHINE_TYPE=t3.large",
        "CONTROL_PLANE_MACHINE_COUNT=1",
        "WORKER_MACHINE_COUNT=2",
        "KUBERNETES_VERSION=v1.31.1",
    ]:
        args += ["--var", kv]
    result = CliRunner().invoke(main, args, env={"AWS_REGION": ""})
    assert result.exit_code == 0, result.output
    spec = json.loads(result.output)["spec"]
    assert spec["name"] == "t1" and spec["control_plane"]["replicas"] == 1
    assert spec["machine_deployments"][0]["replicas"] == 2


def test_validate_capa_template_without_vars_fails_listing_them(monkeypatch):
    for var in ("AWS_REGION", "CLUSTER_NAME", "KUBERNETES_VERSION"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(main, ["validate", "-f", str(CAPA_TEMPLATE)])
    assert result.exit_code == 2
    assert "8 variable(s) required by the manifest are not set" in result.output
    assert "WORKER_MACHINE_COUNT" in result.output


def test_validate_bad_manifest_lists_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        QUICKSTART.read_text().replace("replicas: 3\n  version: v1.20.5", "replicas: 2\n  version: v1.20")
    )
    result = CliRunner().invoke(main, ["validate", "-f", str(bad)])
    assert result.exit_code == 2
    assert "2 problem(s)" in result.output
    assert "KubeadmControlPlane/capi-quickstart-control-plane spec.replicas: 2 is even" in result.output
    assert "spec.version: 'v1.20' is not a Kubernetes version" in result.output


def test_validate_missing_file_is_one_line():
    result = CliRunner().invoke(main, ["validate", "-f", "/nonexistent.yaml"])
    # A handled error: SystemExit with one line, not an exception CliRunner caught for us.
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == ["cannot read /nonexistent.yaml: No such file or directory"]


def test_plan_prints_the_reference_layout_without_aws(monkeypatch):
    # No endpoint and no credentials are needed: nothing calls AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    result = CliRunner().invoke(main, ["plan", "-f", str(QUICKSTART)])
    assert result.exit_code == 0, result.output
    for az, public, private in [
        ("ap-northeast-2a", "10.0.0.0/20", "10.0.64.0/18"),
        ("ap-northeast-2b", "10.0.16.0/20", "10.0.128.0/18"),
        ("ap-northeast-2c", "10.0.32.0/20", "10.0.192.0/18"),
    ]:
        assert f"public   {az}    {public}" in result.output
        assert f"private  {az}    {private}" in result.output
    # Named after the cluster id, <namespace>.<name>; ELB names allow no dot (a hash instead).
    assert "Cluster id: capi-quickstart.capi-quickstart" in result.output
    assert "VPC capi-quickstart.capi-quickstart-vpc  10.0.0.0/16" in result.output
    assert "capi-quicksta-b36a8238-apiserver  classic ELB" in result.output
    as_json = CliRunner().invoke(main, ["plan", "-f", str(QUICKSTART), "-o", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)
