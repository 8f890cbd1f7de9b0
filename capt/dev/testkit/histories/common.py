"""What every part of the recorder shares: where histories go, the recorded cluster's names and
workflow ids, `log`, `RecordingError` and `free_ports`."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

DEFAULT_OUT = ROOT / "tests" / "histories"
MANIFEST = DEFAULT_OUT / "manifests" / "hist.yaml"
BIN = Path(sys.executable).parent

NS = NAME = "hist"
MD_ROLLING, MD_ON_DELETE = "hist-md-0", "hist-md-1"
OLD, NEW = "v1.20.5", "v1.21.2"
CLUSTER_ID = f"cluster/{NS}/{NAME}"
CONTROL_PLANE_ID = f"controlplane/{NS}/{NAME}"
HEALTH_ID = f"health/{NS}/{NAME}"
INFRA_ID = f"infra/{NS}/{NAME}"
TEARDOWN_ID = f"teardown/{NS}/{NAME}"
# A cluster that has no workflow (never created, or its workflow's history is gone): `capt delete
# --region` runs the teardown on its own, as `cluster/<ns>/<name>`.
GONE = f"{NAME}-gone"
GONE_ID = f"cluster/{NS}/{GONE}"
# A second health check over the same cluster that continues-as-new after two 1-second intervals
# (the cluster's own does so after 100 intervals of 30 s).
HEALTH_CAN_ID = f"health/{NS}/{NAME}-continue-as-new"


def md_id(md: str) -> str:
    return f"md/{NS}/{NAME}/{md}"


def machine_id(machine: str) -> str:
    return f"machine/{NS}/{NAME}/{machine}"


class RecordingError(RuntimeError):
    pass


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
