"""Readiness probes. Each returns (ok, detail) and never raises."""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Probe = Callable[[], tuple[bool, str]]


def port_in_use(host: str, port: int) -> bool:
    """True if something (anything) already listens on host:port.

    Binding with SO_REUSEADDR ignores sockets merely lingering in TIME_WAIT after a
    previous `capt dev down`, but fails on a live listener, including one on 0.0.0.0 or
    a dual-stack [::].
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tcp_probe(host: str, port: int) -> Probe:
    def probe() -> tuple[bool, str]:
        if tcp_open(host, port):
            return True, f"{host}:{port} accepts connections"
        return False, f"nothing listening on {host}:{port}"

    return probe


def http_probe(url: str, timeout: float = 1.0) -> Probe:
    """Healthy when `url` answers 200."""

    def probe() -> tuple[bool, str]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status == 200, f"GET {url} -> {resp.status}"
        except urllib.error.HTTPError as err:
            return False, f"GET {url} -> {err.code}"
        except (OSError, ValueError) as err:
            return False, f"GET {url}: {getattr(err, 'reason', err)}"

    return probe


def command_probe(argv: Sequence[str], env: Mapping[str, str], expect: str, timeout: float = 5.0) -> Probe:
    """Healthy when `argv` exits 0 and prints `expect`."""

    def probe() -> tuple[bool, str]:
        try:
            done = subprocess.run(
                list(argv),
                env=dict(env),
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return False, f"{argv[0]}: {err}"
        output = (done.stdout + done.stderr).strip()
        if done.returncode == 0 and expect in output:
            return True, expect
        return False, output.splitlines()[-1] if output else f"exit {done.returncode}"

    return probe


def all_of(*probes: Probe) -> Probe:
    """Runs the probes in order and stops at the first failure (cheap ones first)."""

    def probe() -> tuple[bool, str]:
        detail = ""
        for p in probes:
            ok, detail = p()
            if not ok:
                return False, detail
        return True, detail

    return probe


def ready_file_probe(path: Path, pid: Callable[[], int | None]) -> Probe:
    """Healthy when `path` holds {"pid": N} for the current pid of the service, so a file
    left behind by an earlier run never counts."""

    def probe() -> tuple[bool, str]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return False, f"no ready file {path.name} yet"
        except ValueError:
            return False, f"unreadable ready file {path.name}"
        expected = pid()
        if expected is not None and data.get("pid") != expected:
            return False, f"ready file {path.name} belongs to pid {data.get('pid')}, not {expected}"
        return True, str(data.get("detail") or "ready")

    return probe
