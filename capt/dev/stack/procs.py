"""Detached processes, their pid files, and the check that a pid is still the one we started.

A pid alone is not an identity: after a process exits its pid can be given to an unrelated
process. So a pid file records the pid *and* the process's start time (field 22 of
/proc/<pid>/stat, in clock ticks since boot) and its command line as the kernel reported
them right after the start. `capt dev down` signals a pid only when both still match, so it
can never kill a process it did not start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from capt.dev.stack.config import write_atomic

PROC = Path("/proc")

# Every process a stack starts gets STACK_MARK=<its state dir> in its environment, inherited by
# whatever it forks: how `down` finds what escaped its pid files (a worker a restart raced, a
# helper a service forked into another session), without ever touching a process it did not start.
STACK_MARK = "CAPT_DEV_STACK"


@dataclass(frozen=True)
class ProcStat:
    state: str
    start_time: int


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds."""

    name: str
    pid: int
    start_time: int | None
    cmdline: list[str]
    address: str
    started_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        data = json.loads(text)
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_time=None if data.get("start_time") is None else int(data["start_time"]),
            cmdline=[str(a) for a in data.get("cmdline", [])],
            address=str(data.get("address", "")),
            started_at=float(data.get("started_at", 0.0)),
        )


def parse_proc_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself
    contain spaces and parentheses, so fields are counted from the *last* ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return ProcStat(state=rest[0], start_time=int(rest[19]))


def read_proc_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    try:
        return parse_proc_stat((proc / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def read_cmdline(pid: int, proc: Path = PROC) -> list[str] | None:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def has_procfs(proc: Path = PROC) -> bool:
    return (proc / "self" / "stat").exists()


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    if has_procfs():
        stat = read_proc_stat(pid)
        return stat is not None and stat.state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_ours(record: PidRecord, proc: Path = PROC) -> bool:
    """True if `record.pid` is alive and is still the process the record was written for."""
    if not has_procfs(proc):
        # No procfs (e.g. macOS): the best we can do is liveness.
        return pid_alive(record.pid)
    stat = read_proc_stat(record.pid, proc)
    if stat is None or stat.state in ("Z", "X"):
        return False
    if record.start_time is not None and stat.start_time != record.start_time:
        return False  # the pid was reused by a later process
    cmdline = read_cmdline(record.pid, proc)
    return not (record.cmdline and cmdline != record.cmdline)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path,
    address: str,
) -> tuple[PidRecord, subprocess.Popen]:
    """Start `argv` detached: its own session (so it survives the CLI and its terminal),
    stdin from /dev/null, stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # Popen returns once exec got far enough to close the CLOEXEC pipe, which is before the
    # kernel has set up the new program's arguments: for a moment /proc/<pid>/cmdline reads
    # empty. Recording argv instead (what a script's shebang turns into "python script ...")
    # made `is_ours` false for a live process, so `down` left it running; wait for the real one.
    stat = read_proc_stat(popen.pid)
    record = PidRecord(
        name=name,
        pid=popen.pid,
        start_time=stat.start_time if stat else None,
        cmdline=_settled_cmdline(popen) or list(argv),
        address=address,
        started_at=time.time(),
    )
    return record, popen


def _settled_cmdline(popen: subprocess.Popen, timeout: float = 5.0) -> list[str] | None:
    """The new program's command line, once /proc shows it (None if the process exited first)."""
    deadline = time.monotonic() + timeout
    while True:
        cmdline = read_cmdline(popen.pid)
        if cmdline or popen.poll() is not None or time.monotonic() >= deadline:
            return cmdline or None
        time.sleep(0.005)


def write_pid_file(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, record.to_json())


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        return PidRecord.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # a corrupt pid file is treated like a missing one


def marked(state_dir: Path, proc: Path = PROC) -> list[int]:
    """Live processes whose environment has STACK_MARK=<state_dir> (the processes a stack in that
    state dir started, and their children). Empty without procfs."""
    if not has_procfs(proc):
        return []
    mark = f"{STACK_MARK}={Path(state_dir).resolve()}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if mark in environ and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def strays(state_dir: Path, services: Sequence[PidRecord]) -> list[int]:
    """Marked processes of the stack in `state_dir` that belong to none of `services` (each
    service leads a session of its own, so its children share its session id)."""
    sessions = {r.pid for r in services if _still_there(r)}
    me = os.getpid()
    return [pid for pid in marked(state_dir) if pid != me and session_of(pid) not in sessions]


def kill_pid(pid: int, grace: float) -> str:
    """SIGTERM a stray, SIGKILL after `grace`. Returns "terminated", "killed" or "not-running"."""
    stat = read_proc_stat(pid) if has_procfs() else None
    record = PidRecord("stray", pid, stat.start_time if stat else None, [], "", 0.0)
    if not _still_there(record):
        return "not-running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not-running"
    if wait_gone(record, grace):
        return "terminated"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone(record, 5.0)
    return "killed"


def _signal(record: PidRecord, sig: signal.Signals) -> None:
    """Signal the process group the process leads (it was started as a session leader, so
    this also reaches any helper it forked), or just the pid if it no longer leads one."""
    try:
        if os.getpgid(record.pid) == record.pid:
            os.killpg(record.pid, sig)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        pass


def _still_there(record: PidRecord) -> bool:
    """The recorded process still exists (not a zombie, its pid not reused). Unlike `is_ours`
    this ignores the command line, which a dying process already reads as empty: checking it
    made a process that was still exiting count as gone (seen as a flaky devstack test)."""
    if not has_procfs():
        return pid_alive(record.pid)
    stat = read_proc_stat(record.pid)
    if stat is None or stat.state in ("Z", "X"):
        return False
    return record.start_time is None or stat.start_time == record.start_time


def wait_gone(record: PidRecord, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not _still_there(record):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def terminate(record: PidRecord, grace: float) -> str:
    """SIGTERM, then SIGKILL if still alive after `grace` seconds. Only if the pid is ours.

    Returns "not-running", "terminated" or "killed".
    """
    if not is_ours(record):
        return "not-running"
    _signal(record, signal.SIGTERM)
    if wait_gone(record, grace):
        return "terminated"
    if _still_there(record):
        _signal(record, signal.SIGKILL)
    wait_gone(record, 5.0)
    return "killed"
