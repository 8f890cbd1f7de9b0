"""The chaos suite's local stack on free ports (`ChaosStack`): start, stop, kill -9 and restart
its services, read their logs, tune the simulator."""

from __future__ import annotations

import json
import logging
import signal
import socket
import time
import urllib.request
from pathlib import Path

from capt.activities import kill_points
from capt.activities.aws import faults
from capt.dev.stack import procs, stack
from capt.dev.stack.config import DevConfig
from capt.dev.stack.services import Service, build_services

log = logging.getLogger("capt.chaos")


# --------------------------------------------------------------------------------------------
# the stack


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


CHAOS_VARS = (kill_points.ENV_VAR, faults.ENV_VAR)


class ChaosStack:
    """The local stack in a state dir of its own, with the worker's environment under control."""

    def __init__(self, cfg: DevConfig) -> None:
        self.cfg = cfg
        self.worker_env: dict[str, str] = {}

    @classmethod
    def on_free_ports(cls, state_dir: Path) -> ChaosStack:
        grpc, ui, moto, sim_api, sim, codec_port = free_ports(6)
        return cls(
            DevConfig(
                state_dir=state_dir,
                temporal_port=grpc,
                ui_port=ui,
                moto_port=moto,
                codec_port=codec_port,
                sim_api_port=sim_api,
                sim_port=sim,
            )
        )

    def services(self) -> list[Service]:
        services = build_services(self.cfg)
        for svc in services:
            env = {k: v for k, v in svc.env.items() if k not in CHAOS_VARS}
            if svc.name == "worker":
                env.update(self.worker_env)
            svc.env = env
        return services

    def up(self) -> None:
        """Start whatever is not running (the others are left alone)."""
        stack.up(self.cfg, self.services(), echo=lambda line: log.info("devstack: %s", line))

    def down(self) -> list[str]:
        """Stop the stack; returns the strays `down` had to kill (the services' own are not)."""
        outcomes = stack.down(
            self.cfg, self.services(), grace=10, echo=lambda line: log.info("devstack: %s", line)
        )
        return [
            name
            for name, outcome in outcomes.items()
            if name.startswith("stray") and outcome != "not-running"
        ]

    def record(self, name: str) -> procs.PidRecord | None:
        return stack.running_record(self.cfg, name)

    def pid(self, name: str) -> int | None:
        record = self.record(name)
        return record.pid if record else None

    def log_path(self, name: str) -> Path:
        return stack.log_path(self.cfg, name)

    def log_size(self, name: str) -> int:
        try:
            return self.log_path(name).stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, name: str, offset: int) -> str:
        try:
            with open(self.log_path(name), "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def kill9(self, name: str) -> int | None:
        record = self.record(name)
        if record is None:
            return None
        procs._signal(record, signal.SIGKILL)  # the service's process group
        procs.wait_gone(record, 10.0)
        return record.pid

    def strays(self) -> list[str]:
        """Processes this stack started (their environment carries its mark) that none of its
        running services owns: a worker a restart failed to stop, a helper that escaped. Each as
        "pid command"."""
        services = [r for r in (self.record(svc.name) for svc in self.services()) if r]
        return [
            f"{pid} {' '.join(procs.read_cmdline(pid) or ['?'])[:80]}"
            for pid in procs.strays(self.cfg.state_dir, services)
        ]

    def restart_worker(self, env: dict[str, str]) -> None:
        """A new worker with `env` (graceful stop of the running one, if any)."""
        t0 = time.monotonic()
        record = self.record("worker")
        if record is not None:
            procs.terminate(record, 35.0)
        self.worker_env = dict(env)
        self.up()
        log.info("worker restarted with %s in %.1fs", env or "no chaos", time.monotonic() - t0)

    def sim_settings(self, settings: dict[str, float]) -> None:
        req = urllib.request.Request(
            f"{self.cfg.sim_url}/sim/settings",
            data=json.dumps(settings).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass

    def sim_state(self) -> dict:
        with urllib.request.urlopen(f"{self.cfg.sim_url}/sim/state", timeout=10) as resp:
            return json.loads(resp.read())
