"""`capt dev up | status | down` on a list of services (capt.dev.stack.services).

Files in the state dir: `stack.json` (the configuration `up` used), `<name>.pid` (a
capt.dev.stack.procs.PidRecord as JSON), `<name>.log` (the process's stdout and stderr),
`temporal.db` (the dev server's SQLite store), `worker.ready`, and `.lock` (held by `up` and
`down` so two of them never interleave).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from capt.dev.stack import procs
from capt.dev.stack.config import DevConfig, save_config, service_env
from capt.dev.stack.probes import port_in_use
from capt.dev.stack.services import Service, build_services

Echo = Callable[[str], None]


class StackError(RuntimeError):
    """A failure `capt dev` reports as one clear message."""


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    address: str
    state: str  # healthy | unhealthy | stopped
    healthy: bool
    detail: str
    log: str
    links: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def pid_path(cfg: DevConfig, name: str) -> Path:
    return cfg.state_dir / f"{name}.pid"


def log_path(cfg: DevConfig, name: str) -> Path:
    return cfg.state_dir / f"{name}.log"


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@contextlib.contextmanager
def state_lock(cfg: DevConfig) -> Iterator[None]:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.state_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def client_environ(cfg: DevConfig) -> Iterator[None]:
    """os.environ as a client of the stack sees it, for the post-start steps."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(service_env(saved, cfg.client_env()))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def running_record(cfg: DevConfig, name: str) -> procs.PidRecord | None:
    record = procs.read_pid_file(pid_path(cfg, name))
    return record if record is not None and procs.is_ours(record) else None


def _unlink(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def wait_ready(svc: Service, record: procs.PidRecord, popen: subprocess.Popen | None, cfg: DevConfig) -> str:
    """Probe until ready; fail fast (with the log's tail) if the process exits meanwhile."""
    deadline = time.monotonic() + svc.startup_timeout
    log = log_path(cfg, svc.name)
    while True:
        ok, detail = svc.probe(record.pid)
        if ok:
            return detail
        exited = popen.poll() is not None if popen is not None else not procs.is_ours(record)
        if exited:
            code = f" with code {popen.returncode}" if popen is not None else ""
            raise StackError(f"{svc.name} exited{code} during start-up; last lines of {log}:\n{tail(log)}")
        if time.monotonic() >= deadline:
            raise StackError(
                f"{svc.name} (pid {record.pid}) not ready after {svc.startup_timeout:.0f}s: {detail}; "
                f"last lines of {log}:\n{tail(log)}"
            )
        time.sleep(0.1)


def _run_post_start(svc: Service, cfg: DevConfig) -> None:
    if not svc.post_start:
        return
    with client_environ(cfg):
        for step in svc.post_start:
            try:
                step(cfg)
            except Exception as err:
                name = getattr(step, "__name__", repr(step))
                raise StackError(f"{svc.name}: post-start step {name} failed: {err}") from err


def up(cfg: DevConfig, services: list[Service] | None = None, echo: Echo = print) -> list[ServiceStatus]:
    """Start every service that is not running, in order, each ready before the next.

    Already running services (same pid, same start time, same address) are left alone.
    Every port is checked before anything starts, so a taken port changes nothing. If a
    start fails, the services this call started are stopped again.
    """
    services = build_services(cfg) if services is None else services
    with state_lock(cfg):
        running: dict[str, procs.PidRecord] = {}
        for svc in services:
            record = procs.read_pid_file(pid_path(cfg, svc.name))
            if record is None:
                continue
            if not procs.is_ours(record):
                _unlink(pid_path(cfg, svc.name))  # stale: that process is gone
                continue
            if record.address != svc.address:
                raise StackError(
                    f"{svc.name} is already running (pid {record.pid}) at {record.address}, "
                    f"not {svc.address}: run `capt dev down` first to change its configuration"
                )
            running[svc.name] = record

        for svc in services:
            if svc.name in running:
                continue
            for port in svc.ports:
                if port_in_use(cfg.host, port.number):
                    raise StackError(
                        f"port {port.number} ({port.label}) on {cfg.host} is already in use by another "
                        f"process; stop it or choose another port with {port.flag}"
                    )

        save_config(cfg)
        if not cfg.plaintext and not cfg.codec_key_file.exists():
            # Payloads are encrypted at rest on the local stack too (capt/client/codec.py; imported
            # here, not at the top: `capt --help` does not load the Temporal SDK).
            from capt.client import codec

            codec.write_key_file(cfg.codec_key_file, "dev-1")
        started: list[tuple[Service, procs.PidRecord]] = []
        try:
            for svc in services:
                t0 = time.monotonic()
                if svc.name in running:
                    record = running[svc.name]
                    wait_ready(svc, record, None, cfg)
                    verb = "already running"
                else:
                    _unlink(svc.ready_file)
                    record, popen = procs.spawn(
                        svc.name,
                        svc.argv,
                        env={**svc.env, procs.STACK_MARK: str(cfg.state_dir.resolve())},
                        log_path=log_path(cfg, svc.name),
                        cwd=cfg.state_dir,
                        address=svc.address,
                    )
                    procs.write_pid_file(pid_path(cfg, svc.name), record)
                    started.append((svc, record))
                    wait_ready(svc, record, popen, cfg)
                    verb = "started"
                _run_post_start(svc, cfg)
                links = "".join(f", {k} {v}" for k, v in svc.links.items())
                echo(
                    f"{svc.name:<9} {verb} (pid {record.pid}) {svc.address}{links} "
                    f"[{time.monotonic() - t0:.1f}s]"
                )
        except BaseException:
            for svc, record in reversed(started):
                procs.terminate(record, svc.stop_grace)
                _unlink(pid_path(cfg, svc.name))
                _unlink(svc.ready_file)
            raise
    return status(cfg, services)


def status(cfg: DevConfig, services: list[Service] | None = None) -> list[ServiceStatus]:
    services = build_services(cfg) if services is None else services
    result = []
    for svc in services:
        record = procs.read_pid_file(pid_path(cfg, svc.name))
        log = str(log_path(cfg, svc.name))
        if record is None:
            result.append(ServiceStatus(svc.name, None, svc.address, "stopped", False, "not started", log))
            continue
        if not procs.is_ours(record):
            result.append(
                ServiceStatus(
                    svc.name,
                    None,
                    record.address,
                    "stopped",
                    False,
                    f"process {record.pid} has exited (stale pid file)",
                    log,
                )
            )
            continue
        ok, detail = svc.probe(record.pid)
        result.append(
            ServiceStatus(
                svc.name,
                record.pid,
                record.address,
                "healthy" if ok else "unhealthy",
                ok,
                detail,
                log,
                dict(svc.links),
            )
        )
    return result


def down(
    cfg: DevConfig, services: list[Service] | None = None, grace: float | None = None, echo: Echo = print
) -> dict[str, str]:
    """Stop, in reverse start order, every process a pid file in the state dir names, if
    it is still the process we started. Returns name -> outcome."""
    services = build_services(cfg) if services is None else services
    by_name = {svc.name: svc for svc in services}
    outcomes: dict[str, str] = {}
    with state_lock(cfg):
        known = [svc.name for svc in reversed(services)]
        # Pid files of services no longer declared (e.g. written by another capt version).
        extra = sorted(p.stem for p in cfg.state_dir.glob("*.pid") if p.stem not in by_name)
        for name in extra + known:
            path = pid_path(cfg, name)
            record = procs.read_pid_file(path)
            svc = by_name.get(name)
            if record is None:
                if path.exists():
                    _unlink(path)
                continue
            wait = grace if grace is not None else (svc.stop_grace if svc else 10.0)
            outcome = procs.terminate(record, wait)
            _unlink(path)
            _unlink(svc.ready_file if svc else None)
            outcomes[name] = outcome
            echo(f"{name:<9} {outcome.replace('-', ' ')} (pid {record.pid})")
        # Whatever the stack started that no pid file names any more (and is still running).
        for pid in procs.strays(cfg.state_dir, []):
            command = " ".join(procs.read_cmdline(pid) or ["?"])
            outcome = procs.kill_pid(pid, grace if grace is not None else 10.0)
            outcomes[f"stray {pid}"] = outcome
            echo(f"stray     {outcome.replace('-', ' ')} (pid {pid}: {command[:80]})")
    return outcomes
