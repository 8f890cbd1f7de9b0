"""The services of the local stack, declared as data.

A service is a name, the argv and environment to start it with, the ports it must find
free, an address to show, a readiness probe and the steps to run once it is ready.
`capt dev up` starts them in list order, each one ready before the next; `capt dev down`
stops them in reverse order. Adding a process (e.g. the workload simulator of issue 5) is
one more `Service(...)` in `build_services`.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from capt.client.temporal_setup import register_search_attributes
from capt.dev.stack import probes
from capt.dev.stack.config import DevConfig, service_env

Step = Callable[[DevConfig], None]
"""A post-start step. It runs in the `capt dev up` process with the stack's client
environment (TEMPORAL_ADDRESS, AWS_ENDPOINT_URL, fake credentials, region) set in
os.environ, on every `up` (also when the service was already running), so it must be
idempotent."""


def bootstrap_iam_step(cfg: DevConfig) -> None:
    """`capt bootstrap iam` against the emulated endpoint: the IAM roles, policies and
    instance profiles (clusterawsadm's CloudFormation stack for CAPA) that the manifests'
    iamInstanceProfile names, so the demo cluster finds them in moto. Idempotent."""
    from capt.activities.aws.iam_bootstrap import bootstrap_iam

    bootstrap_iam()


AFTER_AWS_READY: list[Step] = [bootstrap_iam_step]
"""Steps run once the emulated AWS endpoint answers, before the worker starts (moto keeps
its state in memory, so a restarted moto needs them again). Add further set-up here."""


@dataclass(frozen=True)
class Port:
    number: int
    label: str
    flag: str  # the `capt dev up` option that changes it, for the "port taken" message


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    address: str
    ports: list[Port]
    probe: Callable[[int], tuple[bool, str]]  # called with the service's pid
    post_start: list[Step] = field(default_factory=list)
    ready_file: Path | None = None  # removed before start and after stop
    links: dict[str, str] = field(default_factory=dict)  # extra addresses shown by status
    startup_timeout: float = 60.0
    stop_grace: float = 10.0


def _ignore_pid(probe: probes.Probe) -> Callable[[int], tuple[bool, str]]:
    return lambda _pid: probe()


def venv_binary(name: str) -> str:
    """A console script or wheel binary next to this interpreter (the venv's bin dir),
    else on PATH, else the bare name (so the spawn error names it)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name) or name


def _register_search_attributes(cfg: DevConfig) -> None:
    from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES

    register_search_attributes(
        cfg.temporal_address,
        cfg.namespace,
        ALL_SEARCH_ATTRIBUTES,
        env=service_env(os.environ, {}),
        binary=venv_binary("temporal"),
    )


def temporal_service(cfg: DevConfig) -> Service:
    temporal = venv_binary("temporal")
    env = service_env(os.environ, {})
    return Service(
        name="temporal",
        argv=[
            temporal,
            "server",
            "start-dev",
            "--db-filename",
            str(cfg.state_dir / "temporal.db"),
            "--ip",
            cfg.host,
            "--port",
            str(cfg.temporal_port),
            "--ui-port",
            str(cfg.ui_port),
            # The UI decodes payloads through the stack's codec endpoint (encrypted at rest).
            *([] if cfg.plaintext else ["--ui-codec-endpoint", cfg.codec_url]),
            "--namespace",
            cfg.namespace,
            "--log-level",
            "warn",
        ],
        env=env,
        address=cfg.temporal_address,
        ports=[
            Port(cfg.temporal_port, "Temporal gRPC", "--temporal-port"),
            Port(cfg.ui_port, "Temporal Web UI", "--ui-port"),
        ],
        probe=_ignore_pid(
            probes.all_of(
                probes.tcp_probe(cfg.host, cfg.temporal_port),
                probes.command_probe(
                    [temporal, "operator", "cluster", "health", "--address", cfg.temporal_address],
                    env,
                    expect="SERVING",
                ),
            )
        ),
        post_start=[_register_search_attributes],
        links={"Web UI": cfg.ui_url},
        startup_timeout=60.0,
        stop_grace=10.0,
    )


def moto_service(cfg: DevConfig) -> Service:
    # moto's server, with CAPA-style machine images for every Kubernetes version a manifest may
    # ask for (capt/dev/simulator/amis.py writes them to MOTO_AMIS_PATH before moto starts).
    return Service(
        name="moto",
        argv=[
            sys.executable,
            "-m",
            "capt.dev.simulator.motoserver",
            "--amis",
            str(cfg.state_dir / "amis.json"),
            "--region",
            cfg.region,
            "-H",
            cfg.host,
            "-p",
            str(cfg.moto_port),
        ],
        # As AWS does, RunInstances of an image that does not exist fails (InvalidAMIID.NotFound);
        # moto accepts any id unless told to check.
        env=service_env(os.environ, {"PYTHONUNBUFFERED": "1", "MOTO_ENABLE_AMI_VALIDATION": "true"}),
        address=cfg.aws_endpoint_url,
        ports=[Port(cfg.moto_port, "emulated AWS endpoint (moto)", "--moto-port")],
        probe=_ignore_pid(probes.http_probe(f"{cfg.aws_endpoint_url}/moto-api/")),
        post_start=list(AFTER_AWS_READY),
        startup_timeout=30.0,
        stop_grace=5.0,
    )


def simulator_service(cfg: DevConfig) -> Service:
    """The workload simulator (issue 5): boots moto's instances as kubeadm nodes and serves their
    clusters' API (the worker reaches it through CAPT_RESOLVE) and SSM (AWS_ENDPOINT_URL_SSM)."""
    return Service(
        name="simulator",
        argv=[
            sys.executable,
            "-m",
            "capt.dev.simulator",
            "--host",
            cfg.host,
            "--api-port",
            str(cfg.sim_api_port),
            "--port",
            str(cfg.sim_port),
            "--region",
            cfg.region,
        ],
        env=service_env(os.environ, {**cfg.client_env(), "PYTHONUNBUFFERED": "1"}),
        address=f"https://{cfg.sim_api_address}",
        ports=[
            Port(cfg.sim_api_port, "workload API (simulator)", "--sim-api-port"),
            Port(cfg.sim_port, "simulator admin + SSM", "--sim-port"),
        ],
        probe=_ignore_pid(probes.http_probe(f"{cfg.sim_url}/healthz")),
        links={"admin": f"{cfg.sim_url}/sim/state"},
        startup_timeout=30.0,
        stop_grace=5.0,
    )


def make_worker_version_current(ready_file: Path) -> Step:
    """Worker Versioning: a deployment version gets workflow tasks only once it is the
    deployment's current version. The worker's ready file names its version; make it current
    (idempotent, so also on an `up` that finds the worker running). Unversioned: nothing to do."""

    def make_current(cfg: DevConfig) -> None:
        import asyncio
        import concurrent.futures
        import json

        from temporalio.client import Client

        from capt.workflows.versioning import set_current_version

        deployment = json.loads(ready_file.read_text()).get("deployment")
        if not deployment:
            return

        async def promote() -> None:
            client = await Client.connect(cfg.temporal_address, namespace=cfg.namespace)
            await set_current_version(
                client, deployment["name"], deployment["build_id"], identity="capt dev up"
            )

        # `up` is synchronous, but its caller may be inside an event loop (the chaos runner):
        # then asyncio.run is refused, so the promotion runs on a thread of its own.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(promote())
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, promote()).result()

    make_current.__name__ = "make_worker_version_current"
    return make_current


def worker_service(cfg: DevConfig) -> Service:
    ready_file = cfg.state_dir / "worker.ready"
    return Service(
        name="worker",
        argv=[venv_binary("capt-worker"), "--task-queue", cfg.task_queue],
        env=service_env(
            os.environ,
            {
                **cfg.client_env(),
                "CAPT_TASK_QUEUE": cfg.task_queue,
                "CAPT_WORKER_READY_FILE": str(ready_file),
                "PYTHONUNBUFFERED": "1",
                # "" = unversioned (also when the caller's shell sets the variable).
                "CAPT_DEPLOYMENT_NAME": cfg.deployment_name,
            },
        ),
        address=f"task queue {cfg.task_queue}",
        ports=[],
        # The worker writes {"pid": ...} to the ready file once its pollers run (capt/worker.py).
        probe=lambda pid: probes.ready_file_probe(ready_file, lambda: pid)(),
        post_start=[make_worker_version_current(ready_file)],
        ready_file=ready_file,
        startup_timeout=60.0,
        # Longer than the worker's own graceful shutdown so in-flight activities can finish.
        stop_grace=35.0,
    )


def codec_service(cfg: DevConfig) -> Service:
    """`capt codec server` with the stack's key file, for the Web UI's origin."""
    return Service(
        name="codec",
        argv=[
            venv_binary("capt"),
            "codec",
            "server",
            *("--host", cfg.host, "--port", str(cfg.codec_port)),
            *("--origin", cfg.ui_url, "--origin", cfg.ui_url.replace("127.0.0.1", "localhost")),
        ],
        env=service_env(
            os.environ, {"CAPT_CODEC_KEY_FILE": str(cfg.codec_key_file), "PYTHONUNBUFFERED": "1"}
        ),
        address=cfg.codec_url,
        ports=[Port(cfg.codec_port, "payload codec endpoint (Web UI)", "--codec-port")],
        probe=_ignore_pid(probes.tcp_probe(cfg.host, cfg.codec_port)),
        startup_timeout=20.0,
        stop_grace=5.0,
    )


def build_services(cfg: DevConfig) -> list[Service]:
    """The stack, in start order."""
    codec = [] if cfg.plaintext else [codec_service(cfg)]
    return [temporal_service(cfg), *codec, moto_service(cfg), simulator_service(cfg), worker_service(cfg)]
