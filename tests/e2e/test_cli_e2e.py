"""The CLI as a user drives it on the local stack (issue 17): Ctrl-C during `--wait` says the
operation keeps running and exits 130 without a traceback; `capt diff` and `apply --dry-run`
judge a change against the running cluster and change nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.e2e.test_cluster_e2e import BIN, capt
from tests.e2e.test_cluster_e2e import stack as stack  # noqa: F401 - the module-scoped local stack
from tests.support.paths import QUICKSTART

pytestmark = pytest.mark.e2e
NS, NAME = "team-cli", "cli"


def manifest(tmp_path, replicas: int = 1, version: str = "v1.20.5") -> str:
    text = QUICKSTART.read_text().replace("namespace: capi-quickstart", f"namespace: {NS}")
    text = text.replace("capi-quickstart", NAME).replace("replicas: 3", "replicas: 1")
    text = text.replace("  replicas: 1\n  minReadySeconds", f"  replicas: {replicas}\n  minReadySeconds")
    text = text.replace("v1.20.5", version)
    path = tmp_path / f"cli-{replicas}-{version}.yaml"
    path.write_text(text)
    return str(path)


def test_ctrl_c_while_waiting_then_diff_and_dry_run(stack, tmp_path):  # noqa: F811
    env, _ = stack
    proc = subprocess.Popen(
        [str(BIN / "capt"), "apply", "-f", manifest(tmp_path), "--wait", "--timeout", "15m"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown = capt(env, "describe", "cluster", NAME, "-n", NS, "-o", "json")
        if shown.returncode == 0:
            break
        time.sleep(1)
    time.sleep(2)  # inside the --wait loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "interrupted: the operation keeps running in Temporal" in err
    assert "Traceback" not in err and "panic" not in err.lower(), err

    # The cluster goes on to Ready without the CLI.
    done = capt(env, "apply", "-f", manifest(tmp_path), "--wait", "--timeout", "15m", timeout=1000)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        json.loads(capt(env, "describe", "cluster", NAME, "-n", NS, "-o", "json").stdout)["phase"] == "Ready"
    )

    # get clusters: one visibility query; get machines: the cluster's two machines.
    listed = capt(env, "get", "clusters")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split() == [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "VERSION",
        "READY",
        "AGE",
    ]
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(NS))
    assert row[:5] == [NS, NAME, "Ready", "v1.20.5", "2"], listed.stdout
    machines = capt(env, "get", "machines", NAME, "-n", NS, "-o", "json")
    assert sorted(m["role"] for m in json.loads(machines.stdout)) == ["control-plane", "worker"]
    assert "not found; found in team-cli; use -n team-cli" in capt(env, "describe", "cluster", NAME).stderr

    # diff: nothing to change -> 0; a scale -> 1 with the field and the machines; a skipped minor
    # -> 2 with the workflow's own reason. None of them changes anything.
    same = capt(env, "diff", "-f", manifest(tmp_path))
    assert same.returncode == 0 and same.stdout == "", same.stdout + same.stderr
    scaled = capt(env, "diff", "-f", manifest(tmp_path, replicas=3))
    assert scaled.returncode == 1, scaled.stderr
    assert f"~ machine_deployments[{NAME}-md-0].replicas: 1 -> 3" in scaled.stdout
    assert f"machines: deployment {NAME}-md-0: 2 machine(s) added" in scaled.stdout
    upgraded = capt(env, "diff", "-f", manifest(tmp_path, version="v1.21.2"))
    assert upgraded.returncode == 1
    assert '~ control_plane.version: "v1.20.5" -> "v1.21.2"' in upgraded.stdout
    assert "machines: control plane: every machine replaced, one at a time (1 -> 1)" in upgraded.stdout
    skipped = capt(env, "diff", "-f", manifest(tmp_path, version="v1.22.0"))
    assert skipped.returncode == 2 and "one minor version at a time" in skipped.stderr
    dry = capt(env, "apply", "-f", manifest(tmp_path, replicas=3), "--dry-run")
    assert dry.returncode == 0 and "(dry run, nothing changed)" in dry.stdout, dry.stdout + dry.stderr
    status = json.loads(capt(env, "describe", "cluster", NAME, "-n", NS, "-o", "json").stdout)
    assert (
        status["phase"] == "Ready" and sum(1 for m in status["machines"] if m["role"] != "control-plane") == 1
    )

    # kubeconfig: a short-lived admin certificate, written 0600, or merged as context NAME.
    out = tmp_path / "kubeconfig"
    written = capt(env, "kubeconfig", NAME, "-n", NS, "--output", str(out), "--ttl", "1h")
    assert written.returncode == 0, written.stderr
    assert out.stat().st_mode & 0o077 == 0
    import base64

    import yaml
    from cryptography import x509

    config = yaml.safe_load(out.read_text())
    cert = x509.load_pem_x509_certificate(
        base64.b64decode(config["users"][0]["user"]["client-certificate-data"])
    )
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 3600 + 360
    merged_file = tmp_path / "merged"
    merged = capt({**env, "KUBECONFIG": str(merged_file)}, "kubeconfig", NAME, "-n", NS, "--merge")
    assert merged.returncode == 0, merged.stderr
    assert yaml.safe_load(merged_file.read_text())["current-context"] == NAME

    deleted = capt(env, "delete", "cluster", NAME, "-n", NS, "--wait", "--timeout", "15m", timeout=1000)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr


def test_a_stack_started_for_another_region_plays_it(tmp_path_factory, tmp_path):
    """`capt dev up --region us-west-2`: a cluster in us-west-2 boots and is deleted."""
    import os

    from tests.e2e.test_devstack import dev, free_ports

    state_dir = tmp_path_factory.mktemp("west")
    grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
    up = dev(
        state_dir,
        "up",
        *("--region", "us-west-2", "--temporal-port", str(grpc), "--ui-port", str(ui)),
        *("--moto-port", str(moto), "--codec-port", str(codec_port)),
        *("--sim-api-port", str(sim_api), "--sim-port", str(sim)),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
    for line in dev(state_dir, "env").stdout.splitlines():
        key, _, value = line[len("export ") :].partition("=")
        env[key] = value.strip("'\"")
    try:
        text = (
            QUICKSTART.read_text()
            .replace("ap-northeast-2", "us-west-2")
            .replace("replicas: 3", "replicas: 1")
        )
        path = tmp_path / "west.yaml"
        path.write_text(text)
        done = capt(env, "apply", "-f", str(path), "--wait", "--timeout", "15m", timeout=1000)
        assert done.returncode == 0, done.stdout + done.stderr
        status = json.loads(
            capt(env, "describe", "cluster", "capi-quickstart", "-n", "capi-quickstart", "-o", "json").stdout
        )
        assert status["phase"] == "Ready" and status["region"] == "us-west-2"
        deleted = capt(
            env,
            "delete",
            "cluster",
            "capi-quickstart",
            "-n",
            "capi-quickstart",
            "--wait",
            "--timeout",
            "15m",
            timeout=1000,
        )
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    finally:
        dev(state_dir, "down", "--timeout", "5")
