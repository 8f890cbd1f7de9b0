"""The boothook, run for real: bash executes the user data's script against an emulated Secrets
Manager (moto server) with the aws CLI, as an instance would with its instance profile. It must
reassemble the chunks into exactly the stored cloud-config, delete the secrets, restart
cloud-init, and on a later boot do nothing.

The real `aws` CLI is used when installed; otherwise a stand-in with the same two commands and
output format (boto3 underneath), so the script's own logic is always exercised.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from capt.activities.aws import bootstrap_data
from capt.activities.aws import secrets as sm
from capt.activities.kubeadm import cloud_init
from capt.dev.testkit.bootstrap_reference import reference_cluster, render_input, token

REGION = "ap-northeast-2"
NS, CLUSTER = "capi-quickstart", "capi-quickstart"

FAKE_AWS = """#!{python}
# Stand-in for the aws CLI: `aws [--endpoint-url U] --region R secretsmanager <op> ...`.
import base64, sys, boto3
args = sys.argv[1:]
opts = {{}}
while args and args[0].startswith("--"):
    opts[args[0]] = args[1]
    args = args[2:]
service, op, rest = args[0], args[1], args[2:]
assert service == "secretsmanager", service
kw = {{}}
i = 0
while i < len(rest):
    if rest[i] == "--force-delete-without-recovery":
        kw["force"] = True; i += 1
    else:
        kw[rest[i]] = rest[i + 1]; i += 2
c = boto3.client("secretsmanager", region_name=opts["--region"], endpoint_url=opts.get("--endpoint-url"))
try:
    if op == "get-secret-value":
        assert kw["--query"] == "SecretBinary" and kw["--output"] == "text"
        print(base64.b64encode(c.get_secret_value(SecretId=kw["--secret-id"])["SecretBinary"]).decode())
    elif op == "delete-secret":
        c.delete_secret(SecretId=kw["--secret-id"], ForceDeleteWithoutRecovery=kw.get("force", False))
        print("{{}}")
    else:
        sys.exit("unsupported: " + op)
except c.exceptions.ResourceNotFoundException as e:
    print(e, file=sys.stderr); sys.exit(254)
"""


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """PATH additions: a systemctl that records its arguments, and `aws` if not installed."""
    d = tmp_path / "bin"
    d.mkdir()
    systemctl = d / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/systemctl.log\n')
    systemctl.chmod(systemctl.stat().st_mode | stat.S_IEXEC)
    if shutil.which("aws") is None:
        fake = d / "aws"
        fake.write_text(FAKE_AWS.format(python=sys.executable))
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return d


def _run_boothook(script: str, bin_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "boothook.sh"
    path.write_text(script)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, timeout=120)


def _client(endpoint: str):
    return boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)


@pytest.mark.parametrize("chunk_size", [sm.MAX_CHUNK_BYTES, 4000])
def test_boothook_fetches_reassembles_deletes_and_restarts_cloud_init(
    moto_endpoint: str, bin_dir: Path, tmp_path: Path, chunk_size: int
) -> None:
    client = _client(moto_endpoint)
    machine = f"capi-quickstart-control-plane-{chunk_size}"
    text = cloud_init.render_cloud_config(
        render_input(reference_cluster(), "join-control-plane", tok=token())
    )
    data = cloud_init.compress(text)
    stored = bootstrap_data.store_bootstrap_data(
        client,
        namespace=NS,
        cluster_name=CLUSTER,
        machine_name=machine,
        data=data,
        rendered_bytes=len(text.encode()),
        chunk_size=chunk_size,
    )
    chunks = len(stored.secret_arns)
    assert (chunks > 1) is (chunk_size < len(data))
    target = tmp_path / "etc" / "capt" / "bootstrap-userdata.txt"
    script = cloud_init.render_boothook(
        secret_prefix=stored.secret_prefix,
        chunks=chunks,
        region=REGION,
        endpoint_url=moto_endpoint,
        file=str(target),
    )

    first = _run_boothook(script, bin_dir, tmp_path)
    assert first.returncode == 0, first.stderr
    assert target.read_text() == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # umask 077: root-only
    assert (tmp_path / "systemctl.log").read_text() == "restart cloud-init\n"
    for arn in stored.secret_arns:
        assert sm.describe(client, arn) is None  # deleted by the boothook
    assert not list(target.parent.glob("*.XXXXXX*")) and sorted(p.name for p in target.parent.iterdir()) == [
        target.name
    ]

    # Boothooks run on every boot: with the file in place, nothing is fetched or restarted.
    again = _run_boothook(script, bin_dir, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already in place" in again.stderr
    assert (tmp_path / "systemctl.log").read_text() == "restart cloud-init\n"


def test_boothook_fails_without_deleting_when_a_chunk_cannot_be_read(
    moto_endpoint: str, bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _client(moto_endpoint)
    stored = bootstrap_data.store_bootstrap_data(
        client,
        namespace=NS,
        cluster_name=CLUSTER,
        machine_name="m-missing",
        data=gzip.compress(b"x" * 10, mtime=0),
        rendered_bytes=10,
    )
    target = tmp_path / "etc" / "capt" / "bootstrap-userdata.txt"
    # Ask for one chunk more than exists; two attempts, and an instant back-off.
    script = cloud_init.render_boothook(
        secret_prefix=stored.secret_prefix,
        chunks=2,
        region=REGION,
        endpoint_url=moto_endpoint,
        file=str(target),
        attempts=2,
    )
    assert "sleep $((attempt * 5))" in script
    script = script.replace("sleep $((attempt * 5))", "true")
    result = _run_boothook(script, bin_dir, tmp_path)
    assert result.returncode != 0
    assert "could not read chunk 1 of 2" in result.stderr
    assert not target.exists()
    assert not (tmp_path / "systemctl.log").exists()
    # The chunk it could read is still there: capt deletes it with the machine.
    assert sm.describe(client, stored.secret_arns[0]) is not None
