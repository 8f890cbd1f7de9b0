"""`capt dev up|status|env|down` on real processes: Temporal dev server, moto server, worker.

Each command runs in its own process, as from a shell, so the services must survive the
CLI exiting (they are detached) and `down` must find them again from the pid files alone.
The commands run as `python -m capt.dev.stack`, the same click group `capt dev` is
(tests/dev/stack/test_devstack_cli.py checks that `capt` registers it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def dev(state_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPT_")}
    return subprocess.run(
        [sys.executable, "-m", "capt.dev.stack", *args, "--state-dir", str(state_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def status_json(state_dir: Path) -> dict:
    return json.loads(dev(state_dir, "status", "-o", "json").stdout)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def temporal_json(*args: str) -> object:
    done = subprocess.run(
        [str(BIN / "temporal"), *args, "-o", "json"], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.fixture
def state_dir(tmp_path: Path):
    """A state dir whose stack is always brought down, even when a test fails midway."""
    yield tmp_path
    dev(tmp_path, "down", "--timeout", "5")


def test_dev_stack_lifecycle(state_dir: Path) -> None:
    grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
    t0 = time.monotonic()
    up = dev(
        state_dir,
        "up",
        "--temporal-port",
        str(grpc),
        "--ui-port",
        str(ui),
        "--moto-port",
        str(moto),
        "--codec-port",
        str(codec_port),
        "--sim-api-port",
        str(sim_api),
        "--sim-port",
        str(sim),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert time.monotonic() - t0 < 30
    for name in ("temporal", "codec", "moto", "simulator", "worker"):
        assert f"{name}" in up.stdout and "started" in up.stdout

    # status: every service healthy, detached (its own session), at the ports asked for.
    status = status_json(state_dir)
    assert status["healthy"] is True
    services = {s["name"]: s for s in status["services"]}
    assert set(services) == {"temporal", "codec", "moto", "simulator", "worker"}
    assert all(s["state"] == "healthy" for s in services.values())
    pids = {name: s["pid"] for name, s in services.items()}
    for pid in pids.values():
        assert alive(pid) and os.getsid(pid) == pid
    assert services["temporal"]["address"] == f"127.0.0.1:{grpc}"
    assert services["moto"]["address"] == f"http://127.0.0.1:{moto}"
    assert services["simulator"]["address"] == f"https://127.0.0.1:{sim_api}"

    # The services do their jobs: search attributes registered, the worker polls the
    # `capt` task queue, the Web UI answers, moto serves AWS APIs.
    address = f"127.0.0.1:{grpc}"
    listed = json.dumps(temporal_json("operator", "search-attribute", "list", "--address", address))
    for key in ALL_SEARCH_ATTRIBUTES:
        assert key.name in listed
    # --legacy-mode: the versioned worker (deployment `capt`) is listed with the queue's pollers.
    queue = temporal_json(
        "task-queue", "describe", "--task-queue", "capt", "--legacy-mode", "--address", address
    )
    identities = {p["identity"] for p in queue["pollers"]}
    assert any(i.startswith(f"{pids['worker']}@") for i in identities), identities
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ui}/", timeout=5) as resp:
        assert resp.status == 200
    # Payloads are encrypted with the stack's key file, and the UI's codec endpoint answers.
    assert services["codec"]["address"] == f"http://127.0.0.1:{codec_port}"
    assert (state_dir / "codec-keys.json").stat().st_mode & 0o077 == 0
    preflight = urllib.request.Request(
        f"http://127.0.0.1:{codec_port}/decode",
        method="OPTIONS",
        headers={"Origin": f"http://127.0.0.1:{ui}"},
    )
    with urllib.request.urlopen(preflight, timeout=5) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{ui}"
    ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{moto}", region_name="ap-northeast-2")
    assert ec2.describe_vpcs()["Vpcs"], "moto serves a default VPC"
    iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{moto}", region_name="ap-northeast-2")
    profiles = {p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]}
    assert "nodes.cluster-api-provider-aws.sigs.k8s.io" in profiles  # the post-start bootstrap ran

    # up again: harmless, same processes (ports are remembered, no flags needed).
    again = dev(state_dir, "up")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 5
    assert {s["name"]: s["pid"] for s in status_json(state_dir)["services"]} == pids

    # env: the exports a shell needs, which really point at this stack.
    env = dev(state_dir, "env")
    assert env.returncode == 0
    assert env.stdout.splitlines() == [
        f"export TEMPORAL_ADDRESS=127.0.0.1:{grpc}",
        "export TEMPORAL_NAMESPACE=default",
        f"export AWS_ENDPOINT_URL=http://127.0.0.1:{moto}",
        f"export AWS_ENDPOINT_URL_SSM=http://127.0.0.1:{sim}",
        "export AWS_DEFAULT_REGION=ap-northeast-2",
        "export AWS_REGION=ap-northeast-2",
        "export AWS_ACCESS_KEY_ID=testing",
        "export AWS_SECRET_ACCESS_KEY=testing",
        f"export CAPT_RESOLVE='*:*=127.0.0.1:{sim_api}'",
        f"export CAPT_WEB_UI=http://127.0.0.1:{ui}",
        "export CAPT_DEV_REGION=ap-northeast-2",
        f"export CAPT_CODEC_KEY_FILE={state_dir / 'codec-keys.json'}",
    ]
    shell = subprocess.run(
        ["bash", "-c", env.stdout + f"{BIN / 'temporal'} operator cluster health"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert "SERVING" in shell.stdout, shell.stderr

    # down: every process gone, the worker shut down gracefully, nothing left behind.
    down = dev(state_dir, "down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert "worker shut down gracefully" in (state_dir / "worker.log").read_text()
    assert not list(state_dir.glob("*.pid"))
    assert not (state_dir / "worker.ready").exists()
    final = dev(state_dir, "status", "-o", "json")
    assert final.returncode == 1
    assert {s["state"] for s in json.loads(final.stdout)["services"]} == {"stopped"}


def test_taken_port_is_a_clear_one_line_error(state_dir: Path) -> None:
    grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", moto))
        squatter.listen()
        up = dev(
            state_dir,
            "up",
            "--temporal-port",
            str(grpc),
            "--ui-port",
            str(ui),
            "--moto-port",
            str(moto),
            "--codec-port",
            str(codec_port),
            "--sim-api-port",
            str(sim_api),
            "--sim-port",
            str(sim),
        )
    assert up.returncode == 1
    assert up.stderr.strip().splitlines() == [
        f"Error: port {moto} (emulated AWS endpoint (moto)) on 127.0.0.1 is already in use by another "
        "process; stop it or choose another port with --moto-port"
    ]
    # Checked before anything started: no process, no pid file.
    assert not list(state_dir.glob("*.pid"))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", grpc)) != 0
