"""Configuration of the local stack and the environment its clients need.

Everything here is pure (no processes, no sockets) so it is table-tested on its own.
The configuration `capt dev up` used is saved in the state dir (`stack.json`) so that
`status`, `env` and `down` see the same ports without repeating the flags.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

DEFAULT_STATE_DIR = ".capt"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_TEMPORAL_PORT = 7233
DEFAULT_UI_PORT = 8233
# The remote codec endpoint the Web UI decodes payloads with (`capt codec server`).
DEFAULT_CODEC_PORT = 8234
DEFAULT_MOTO_PORT = 5000
# The workload simulator (issue 5): every workload cluster's API (HTTPS, cluster picked by SNI)
# and its admin endpoint, which also serves SSM Run Command.
DEFAULT_SIM_API_PORT = 16443
DEFAULT_SIM_PORT = 5100
DEFAULT_REGION = "ap-northeast-2"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "capt"
# Worker Versioning (docs/versioning.md): the stack's worker joins this Worker Deployment and
# `up` makes its version current; "" runs an unversioned worker.
DEFAULT_DEPLOYMENT_NAME = "capt"
# moto accepts any credentials; these are the conventional fake ones.
FAKE_AWS_CREDENTIAL = "testing"

CONFIG_FILE = "stack.json"

# Variables a user's shell (or CI) may carry that would redirect or confuse the stack's
# processes: a real AWS profile or session token, a service-specific endpoint that beats
# AWS_ENDPOINT_URL, a Temporal Cloud API key or TLS setting. The stack's processes get
# none of them; they get exactly the variables `client_env` returns.
# Payload keys too: the stack's worker uses the stack's key file, never a key from the shell.
_SCRUBBED_PREFIXES = ("AWS_", "TEMPORAL_", "CAPT_CODEC_", "CAPT_INSECURE_PLAINTEXT")


@dataclass(frozen=True)
class DevConfig:
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    host: str = DEFAULT_HOST
    temporal_port: int = DEFAULT_TEMPORAL_PORT
    ui_port: int = DEFAULT_UI_PORT
    moto_port: int = DEFAULT_MOTO_PORT
    sim_api_port: int = DEFAULT_SIM_API_PORT
    sim_port: int = DEFAULT_SIM_PORT
    region: str = DEFAULT_REGION
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    deployment_name: str = DEFAULT_DEPLOYMENT_NAME
    codec_port: int = DEFAULT_CODEC_PORT
    # No payload encryption (`capt dev up --insecure-plaintext`): for recording the committed
    # test histories, which CI replays without a key.
    plaintext: bool = False

    @property
    def temporal_address(self) -> str:
        return f"{self.host}:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"

    @property
    def aws_endpoint_url(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    @property
    def sim_url(self) -> str:
        """The simulator's admin endpoint, which is also the emulated SSM endpoint."""
        return f"http://{self.host}:{self.sim_port}"

    @property
    def sim_api_address(self) -> str:
        return f"{self.host}:{self.sim_api_port}"

    def client_env(self) -> dict[str, str]:
        """The variables a client of this stack needs (printed by `capt dev env`).

        Besides Temporal and the emulated AWS: SSM goes to the workload simulator (it runs the
        etcd membership commands), and every workload cluster's API endpoint (a load balancer
        DNS name known only at run time: any host, any port) connects to the simulator, which
        picks the cluster by TLS server name (CAPT_RESOLVE, see capt/activities/workload/client.py).
        """
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_ENDPOINT_URL_SSM": self.sim_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": FAKE_AWS_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": FAKE_AWS_CREDENTIAL,
            "CAPT_RESOLVE": f"*:*={self.sim_api_address}",
            # Where `capt apply` points people to see the cluster's workflow.
            "CAPT_WEB_UI": self.ui_url,
            # The one region the stack's simulator plays: `capt apply` refuses another one
            # before anything is created (its instances would never boot).
            "CAPT_DEV_REGION": self.region,
            # The payload keys (capt/client/codec.py): written by `capt dev up` when missing.
            **(
                {"CAPT_INSECURE_PLAINTEXT": "1"}
                if self.plaintext
                else {"CAPT_CODEC_KEY_FILE": str(self.codec_key_file)}
            ),
        }

    @property
    def codec_url(self) -> str:
        return f"http://{self.host}:{self.codec_port}"

    @property
    def codec_key_file(self) -> Path:
        return self.state_dir / "codec-keys.json"

    def to_json(self) -> str:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DevConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "state_dir" in data:
            data["state_dir"] = Path(data["state_dir"])
        return cls(**data)

    def with_overrides(self, **overrides: object) -> DevConfig:
        """A copy with every override that is not None applied (unset CLI flags are None)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_config(state_dir: Path, **overrides: object) -> DevConfig:
    """The saved configuration of `state_dir` (or the defaults), with explicit overrides on top."""
    base = DevConfig(state_dir=state_dir)
    path = state_dir / CONFIG_FILE
    if path.exists():
        base = replace(DevConfig.from_json(path.read_text()), state_dir=state_dir)
    return base.with_overrides(**overrides)


def save_config(cfg: DevConfig) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(cfg.state_dir / CONFIG_FILE, cfg.to_json())


def render_exports(env: Mapping[str, str]) -> str:
    """`export K=V` lines, shell-quoted, in a stable order (for `eval "$(capt dev env)"`)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def service_env(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of a stack process: the caller's, minus AWS_*/TEMPORAL_*, plus `overrides`."""
    env = {k: v for k, v in base.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(overrides)
    return env


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
