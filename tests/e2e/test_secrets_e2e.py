"""No secret in a history, a log or user data (issue 16), on the local stack through the CLI.

A cluster whose manifest carries a Secret document used by a control-plane file
(`contentFrom`), a user password (`passwdFrom`), a worker file and a ClusterResourceSet — plus
an inline file with a marker — is created, scaled, upgraded and deleted with the worker logging at
DEBUG. Then:
- every history of its workflow tree, fetched *without* the codec, holds none of the markers (not
  even the inline one: payloads are encrypted), no PEM block, no bootstrap token and not the CLI's
  AWS secret key;
- fetched *with* the stack's codec keys, every payload decodes, the inline marker is there (so the
  scan above looked at real content) and the Secret values are not (workflows carry names only);
- the worker's DEBUG log and the CLI's DEBUG output hold no Secret value, PEM key or token;
- the addon of the Secret was applied, and after the delete no user secret is left in AWS.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import boto3
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from capt.client import codec
from tests.e2e.test_cluster_e2e import BIN
from tests.e2e.test_devstack import free_ports
from tests.support.secret_manifest import INLINE, SECRET_MARKERS, secret_manifest

pytestmark = pytest.mark.e2e
NAME, NS = "vault", "team-sec"
CLI_AWS_SECRET = "capt-marker-cli-aws-secret-key-0e2e"
PEM = re.compile(r"-----BEGIN [A-Z ]+-----|LS0tLS1CRUdJT")
PRIVATE_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|LS0tLS1CRUdJTiBSU0Eg|LS0tLS1CRUdJTiBQUklW")
TOKEN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


def _dev(state_dir, *args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "capt.dev.stack", *args, "--state-dir", str(state_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory):
    """Its own local stack (with the codec endpoint), the worker logging at DEBUG."""
    state_dir = tmp_path_factory.mktemp("secrets-stack")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
    base["CAPT_LOG_LEVEL"] = "DEBUG"
    grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
    up = _dev(
        state_dir,
        "up",
        *("--temporal-port", str(grpc), "--ui-port", str(ui), "--moto-port", str(moto)),
        *("--codec-port", str(codec_port), "--sim-api-port", str(sim_api), "--sim-port", str(sim)),
        env=base,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    env = {k: v for k, v in base.items() if k != "CAPT_LOG_LEVEL"}
    for line in _dev(state_dir, "env", env=base).stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value.strip("'\"")
    try:
        yield env, state_dir
    finally:
        _dev(state_dir, "down", "--timeout", "5", env=base)


def run(env, *args: str, timeout: float = 1000) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / "capt"), *args],
        env={**env, "CAPT_LOG_LEVEL": "DEBUG", "AWS_SECRET_ACCESS_KEY": CLI_AWS_SECRET},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"capt {' '.join(args)}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


def payloads(message) -> list[Payload]:
    """Every Payload anywhere in a protobuf message (inputs, results, failures, memos, …)."""
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if hasattr(value, "ListFields"):  # a message
            found.extend(payloads(value))
        elif hasattr(value, "keys"):  # a map of messages (headers, memo fields)
            found.extend(p for key in value for p in payloads(value[key]))
        else:  # a repeated message field
            found.extend(p for item in value for p in payloads(item))
    return found


def test_no_secret_in_histories_logs_or_aws_after_create_scale_upgrade_delete(debug_stack, tmp_path):
    env, state_dir = debug_stack
    manifest = tmp_path / "vault.yaml"
    manifest.write_text(secret_manifest(NAME, NS))

    outputs = []
    shown = run(env, "validate", "-f", str(manifest))
    assert "secret node-files: keys audit.yaml, passwd, worker.conf" in shown.stdout, shown.stdout
    outputs.append(shown)
    outputs.append(run(env, "apply", "-f", str(manifest), "--wait", "--timeout", "15m"))
    outputs.append(
        run(env, "scale", "machinedeployment", NAME, f"{NAME}-md-0", "--replicas", "2", "-n", NS, "--wait")
    )
    outputs.append(run(env, "upgrade", NAME, "--version", "v1.21.2", "-n", NS, "--wait", "--timeout", "15m"))
    outputs.append(run(env, "delete", "cluster", NAME, "-n", NS, "--wait", "--timeout", "15m"))

    keys = codec.load_key_file(state_dir / "codec-keys.json")
    sealed = codec.AesGcmCodec(keys)

    async def scan() -> tuple[int, int, list[str]]:
        # A client without the codec: what anyone with read access to Temporal sees.
        client = await Client.connect(
            env["TEMPORAL_ADDRESS"], namespace=env.get("TEMPORAL_NAMESPACE", "default")
        )
        histories = 0
        decoded_payloads = 0
        decoded_text: list[str] = []
        async for wf in client.list_workflows():  # the stack is this test's own
            history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
            histories += 1
            raw = history.to_json()
            for marker in (*SECRET_MARKERS, INLINE, CLI_AWS_SECRET):
                assert marker not in raw, f"{marker} in the raw history of {wf.id}"
            assert not PEM.search(raw), f"a PEM block in the raw history of {wf.id}"
            assert not TOKEN.search(raw), f"a bootstrap token in the raw history of {wf.id}"
            for event in history.events:
                found = payloads(event)
                if not found:
                    continue
                opened = await sealed.decode(found)
                decoded_payloads += len(opened)
                decoded_text.extend(p.data.decode(errors="replace") for p in opened)
        return histories, decoded_payloads, decoded_text

    histories, decoded, texts = asyncio.run(scan())
    assert histories >= 7, histories  # cluster, infra, control plane, md, machines, health, teardown
    assert decoded > 100
    everything = "\n".join(texts)
    assert INLINE in everything  # the codec opens real content ...
    for marker in (*SECRET_MARKERS, CLI_AWS_SECRET):
        assert marker not in everything, marker  # ... and the Secret values were never in it
    assert not PRIVATE_PEM.search(everything) and not TOKEN.search(everything)
    # The Secret-backed addon was applied (its result names the object it created).
    assert '"name":"from-a-secret"' in everything.replace(" ", ""), "the Secret addon's object"

    worker_log = (state_dir / "worker.log").read_text(errors="replace")
    assert " DEBUG " in worker_log  # the scan is of a DEBUG log
    cli_text = "\n".join(o.stdout + o.stderr for o in outputs)
    for where, text in (("worker log", worker_log), ("CLI output", cli_text)):
        for marker in (*SECRET_MARKERS, CLI_AWS_SECRET):
            assert marker not in text, f"{marker} in the {where}"
        assert not PRIVATE_PEM.search(text), f"a private key in the {where}"
        assert not TOKEN.search(text), f"a bootstrap token in the {where}"

    region = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
    sm = boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "x"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "x"),
    )
    left = [s["Name"] for s in sm.list_secrets()["SecretList"] if s["Name"].startswith(f"capt/{NS}/")]
    assert left == [], left
    assert json.dumps(left) == "[]"
