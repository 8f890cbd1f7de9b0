"""The recorder's own local stack (`capt dev up|env|down` in a fresh state dir, on free ports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from capt.dev.testkit.histories.common import ROOT, RecordingError, free_ports, log

# --- the local stack -----------------------------------------------------------------------------


class Stack:
    """`capt dev up|env|down` (as `python -m capt.dev.stack`) in its own state dir, on free ports."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.env: dict[str, str] = {}

    def dev(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
        return subprocess.run(
            [sys.executable, "-m", "capt.dev.stack", *args, "--state-dir", str(self.state_dir)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def up(self) -> None:
        grpc, ui, moto, sim_api, sim = free_ports(5)
        done = self.dev(
            "up",
            # Plaintext payloads: CI replays the committed histories without a key (the codec's
            # own tests replay encrypted ones).
            "--insecure-plaintext",
            *("--temporal-port", str(grpc), "--ui-port", str(ui), "--moto-port", str(moto)),
            *("--sim-api-port", str(sim_api), "--sim-port", str(sim)),
        )
        if done.returncode != 0:
            raise RecordingError(f"capt dev up failed:\n{done.stdout}{done.stderr}")
        log("local stack up: " + " | ".join(line.split(" [")[0] for line in done.stdout.splitlines()[:4]))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
        for line in self.dev("env").stdout.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'\"")
        self.env = env

    def down(self) -> list[str]:
        """Stop the stack; returns the lines of the strays `down` had to kill (processes the
        stack started that no service owned any more)."""
        done = self.dev("down", "--timeout", "10", timeout=120)
        log("local stack down" + ("" if done.returncode == 0 else f" (failed: {done.stderr.strip()})"))
        strays = [
            line
            for line in done.stdout.splitlines()
            if line.startswith("stray") and "not running" not in line
        ]
        for line in strays:
            log(f"LEAK: {line}")
        return strays

    def build_id(self) -> str:
        ready = json.loads((self.state_dir / "worker.ready").read_text())
        deployment = ready.get("deployment") or {}
        return f"{deployment.get('name', '')}.{deployment.get('build_id', '')}".strip(".") or "unversioned"
