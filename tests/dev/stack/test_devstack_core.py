"""devstack without Temporal or moto: configuration, env rendering, pid ownership, signals,
and the up/status/down orchestration on small stand-in services."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capt.client.temporal_setup import classify_create_result, search_attribute_commands
from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES
from capt.dev.stack import procs, stack
from capt.dev.stack.config import DevConfig, load_config, render_exports, save_config, service_env
from capt.dev.stack.probes import http_probe, port_in_use, ready_file_probe
from capt.dev.stack.services import Port, Service

# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --------------------------------------------------------------------------- config / env


def test_client_env_points_at_the_configured_ports() -> None:
    cfg = DevConfig(temporal_port=17001, ui_port=17002, moto_port=17003, region="eu-west-1")
    env = cfg.client_env()
    assert env["TEMPORAL_ADDRESS"] == "127.0.0.1:17001"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:17003"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert cfg.ui_url == "http://127.0.0.1:17002"


def test_render_exports_round_trips_through_a_real_shell() -> None:
    env = {"PLAIN": "127.0.0.1:7233", "SPACES": "a b  c", "QUOTES": 'it\'s "x" $HOME `id`'}
    script = render_exports(env) + 'printf "%s\\n%s\\n%s" "$PLAIN" "$SPACES" "$QUOTES"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n") == [env["PLAIN"], env["SPACES"], env["QUOTES"]]
    assert render_exports(env).splitlines()[0] == "export PLAIN=127.0.0.1:7233"


def test_service_env_scrubs_foreign_aws_and_temporal_settings() -> None:
    base = {
        "PATH": "/usr/bin",
        "AWS_PROFILE": "prod",
        "AWS_SESSION_TOKEN": "tok",
        "AWS_ENDPOINT_URL_EC2": "https://ec2.example",
        "TEMPORAL_API_KEY": "key",
        "TEMPORAL_TLS": "true",
    }
    env = service_env(base, {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert env == {"PATH": "/usr/bin", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}


def test_saved_config_is_reused_and_explicit_flags_win(tmp_path: Path) -> None:
    save_config(DevConfig(state_dir=tmp_path, temporal_port=17100, moto_port=17101))
    cfg = load_config(tmp_path, temporal_port=None, moto_port=17200, ui_port=None)
    assert (cfg.temporal_port, cfg.moto_port, cfg.ui_port) == (17100, 17200, 8233)
    assert cfg.state_dir == tmp_path
    assert load_config(tmp_path / "fresh") == DevConfig(state_dir=tmp_path / "fresh")


# --------------------------------------------------------------------------- search attributes


def test_search_attribute_commands_use_cli_type_names() -> None:
    cmds = search_attribute_commands("temporal", "127.0.0.1:7233", "default", ALL_SEARCH_ATTRIBUTES)
    by_name = {c[c.index("--name") + 1]: c[c.index("--type") + 1] for c in cmds}
    assert by_name == {
        "CaptCluster": "Keyword",
        "CaptPhase": "Keyword",
        "CaptKubernetesVersion": "Keyword",
        "CaptReadyMachines": "Int",
    }
    assert all(c[c.index("--address") + 1] == "127.0.0.1:7233" for c in cmds)


@pytest.mark.parametrize(
    ("code", "output", "verdict"),
    [
        (0, "Search attributes have been added", "ok"),
        (1, "Error: search attribute CaptCluster already exists", "ok"),
        (1, "Error: search attribute CaptCluster already exists and has different type Keyword", "conflict"),
        (1, "Error: failed reaching server: connection refused", "retry"),
        (1, 'Error: Namespace "default" not found', "retry"),
    ],
)
def test_classify_search_attribute_create(code: int, output: str, verdict: str) -> None:
    assert classify_create_result(code, output) == verdict


# --------------------------------------------------------------------------- /proc and ownership


@pytest.mark.parametrize(
    ("line", "state", "start"),
    [
        ("1234 (temporal) S 1 1234 1234 0 -1 4194560 " + "0 " * 8 + "20 0 9 0 52356 1 2", "S", 52356),
        ("77 (a b) c)) Z 1 77 77 0 -1 0 " + "0 " * 8 + "20 0 1 0 999 1 2", "Z", 999),
    ],
)
def test_parse_proc_stat_counts_fields_after_the_last_paren(line: str, state: str, start: int) -> None:
    assert procs.parse_proc_stat(line) == procs.ProcStat(state, start)


def _spawn(tmp_path: Path, code: str, name: str = "t") -> tuple[procs.PidRecord, subprocess.Popen]:
    return procs.spawn(
        name,
        [sys.executable, "-c", code],
        env=dict(os.environ),
        log_path=tmp_path / f"{name}.log",
        cwd=tmp_path,
        address="-",
    )


def test_pid_ownership_needs_same_pid_start_time_and_cmdline(tmp_path: Path) -> None:
    record, popen = _spawn(tmp_path, "import time; time.sleep(30)")
    try:
        assert procs.is_ours(record)
        assert os.getpgid(record.pid) == record.pid  # detached: its own session and group
        assert not procs.is_ours(record.__class__(**{**record.__dict__, "start_time": record.start_time + 1}))
        assert not procs.is_ours(record.__class__(**{**record.__dict__, "cmdline": ["/bin/sleep", "30"]}))
        # pid file round trip
        procs.write_pid_file(tmp_path / "t.pid", record)
        assert procs.read_pid_file(tmp_path / "t.pid") == record
    finally:
        popen.kill()
        popen.wait()
    assert not procs.is_ours(record)


def test_spawn_records_the_command_line_once_exec_set_it_up(tmp_path: Path, monkeypatch) -> None:
    """Right after Popen returns, /proc/<pid>/cmdline may still read empty (the kernel is inside
    exec). Recording the argv then (a script's argv differs from its "python script" cmdline)
    left a live service that `is_ours` denied, and `down` never stopped it."""
    real = procs.read_cmdline
    reads: list[int] = []

    def empty_at_first(pid: int, proc: Path = procs.PROC) -> list[str] | None:
        reads.append(pid)
        return [] if len(reads) < 3 else real(pid, proc)

    monkeypatch.setattr(procs, "read_cmdline", empty_at_first)
    record, popen = _spawn(tmp_path, "import time; time.sleep(30)")
    monkeypatch.setattr(procs, "read_cmdline", real)
    try:
        assert len(reads) >= 3
        assert record.cmdline == real(record.pid) and procs.is_ours(record)
    finally:
        popen.kill()
        popen.wait()


def test_terminate_refuses_a_pid_that_is_not_ours() -> None:
    stat = procs.read_proc_stat(os.getpid())
    assert stat is not None
    impostor = procs.PidRecord("x", os.getpid(), stat.start_time - 1, [], "-", 0.0)
    # Would kill this very test process if the ownership check were missing.
    assert procs.terminate(impostor, grace=0.1) == "not-running"


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('SIGTERM' + ' ignored', flush=True)\n"
        "time.sleep(60)\n"
    )
    record, popen = _spawn(tmp_path, code, "stubborn")
    # (The log's header line holds the code itself, hence the split string.)
    wait_for(lambda: "SIGTERM ignored" in (tmp_path / "stubborn.log").read_text())
    t0 = time.monotonic()
    reaper = _reap_in_background(popen)
    assert procs.terminate(record, grace=0.3) == "killed"
    assert time.monotonic() - t0 < 5
    reaper.join()
    assert popen.returncode == -signal.SIGKILL


def test_terminate_graceful(tmp_path: Path) -> None:
    record, popen = _spawn(tmp_path, "import time; time.sleep(60)", "polite")
    reaper = _reap_in_background(popen)
    assert procs.terminate(record, grace=5) == "terminated"
    reaper.join()
    assert popen.returncode == -signal.SIGTERM


def _reap_in_background(popen: subprocess.Popen):
    # The test process is the parent here, so it must reap (a real `capt dev up` exits and
    # init reaps); is_ours treats zombies as gone either way.
    import threading

    thread = threading.Thread(target=popen.wait, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- probes


def test_port_in_use_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_in_use("127.0.0.1", sock.getsockname()[1])
    assert not port_in_use("127.0.0.1", free_port())


def test_ready_file_probe_ignores_a_file_from_another_pid(tmp_path: Path) -> None:
    path = tmp_path / "worker.ready"
    probe = ready_file_probe(path, lambda: 4242)
    assert not probe()[0]
    path.write_text(json.dumps({"pid": 1111}))
    assert not probe()[0]
    path.write_text(json.dumps({"pid": 4242, "detail": "polling task queue capt"}))
    assert probe() == (True, "polling task queue capt")


# --------------------------------------------------------------------------- orchestration

HTTP_SERVER = "import http.server, sys; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]), bind='127.0.0.1')"


def http_service(name: str, port: int, **kw) -> Service:
    return Service(
        name=name,
        argv=[sys.executable, "-c", HTTP_SERVER, str(port)],
        env=dict(os.environ),
        address=f"http://127.0.0.1:{port}",
        ports=[Port(port, f"{name} http", f"--{name}-port")],
        probe=lambda _pid: http_probe(f"http://127.0.0.1:{port}/")(),
        startup_timeout=kw.pop("startup_timeout", 10.0),
        stop_grace=2.0,
        **kw,
    )


def crashing_service(name: str) -> Service:
    return Service(
        name=name,
        argv=[sys.executable, "-c", "import sys; print('boom: bad config', flush=True); sys.exit(3)"],
        env=dict(os.environ),
        address="-",
        ports=[],
        probe=lambda _pid: (False, "never ready"),
        startup_timeout=10.0,
    )


def test_up_status_up_again_down(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path)
    steps: list[str] = []
    services = [
        http_service(
            "alpha", free_port(), post_start=[lambda c: steps.append(os.environ["AWS_ENDPOINT_URL"])]
        ),
        http_service("beta", free_port()),
    ]
    try:
        statuses = stack.up(cfg, services, echo=lambda _line: None)
        assert [s.state for s in statuses] == ["healthy", "healthy"]
        pids = {s.name: s.pid for s in statuses}
        # Post-start steps see the stack's client environment.
        assert steps == [cfg.aws_endpoint_url]

        again = stack.up(cfg, services, echo=lambda _line: None)
        assert {s.name: s.pid for s in again} == pids  # nothing restarted
        assert steps == [cfg.aws_endpoint_url] * 2  # steps run on every up (idempotent by contract)
    finally:
        outcomes = stack.down(cfg, services, echo=lambda _line: None)
    assert outcomes == {"beta": "terminated", "alpha": "terminated"}
    for pid in pids.values():
        assert not procs.pid_alive(pid)
    assert [s.state for s in stack.status(cfg, services)] == ["stopped", "stopped"]
    assert not list(tmp_path.glob("*.pid"))


# A service that starts a helper in a session of its own (out of reach of the service's process
# group) and writes its pid: what `down` must still find, by the stack's mark, and stop.
ESCAPING_SERVICE = """
import subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
open(sys.argv[1], "w").write(str(helper.pid))
time.sleep(600)
"""


def test_down_stops_what_the_stack_started_outside_its_services(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path / "state")
    helper_pid_file = tmp_path / "helper.pid"
    svc = Service(
        name="escaper",
        argv=[sys.executable, "-c", ESCAPING_SERVICE, str(helper_pid_file)],
        env=dict(os.environ),
        address="-",
        ports=[],
        probe=lambda _pid: (helper_pid_file.exists() and helper_pid_file.read_text() != "", "helper started"),
        startup_timeout=10.0,
        stop_grace=2.0,
    )
    # Not started by the stack (no mark), though it names the state dir: never touched.
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", str(cfg.state_dir)], start_new_session=True
    )
    try:
        stack.up(cfg, [svc], echo=lambda _line: None)
        helper = int(helper_pid_file.read_text())
        service_pid = stack.running_record(cfg, "escaper").pid
        assert procs.marked(cfg.state_dir) == sorted([service_pid, helper])
        # While the service runs, its helper is a stray (another session), the service is not.
        assert procs.strays(cfg.state_dir, [stack.running_record(cfg, "escaper")]) == [helper]
        lines: list[str] = []
        outcomes = stack.down(cfg, [svc], grace=2.0, echo=lines.append)
        assert outcomes == {"escaper": "terminated", f"stray {helper}": "terminated"}
        assert any(line.startswith("stray") and str(helper) in line for line in lines)
        assert not procs.pid_alive(helper) and not procs.pid_alive(service_pid)
        assert procs.marked(cfg.state_dir) == []
        assert procs.pid_alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()
        with contextlib.suppress(Exception):
            stack.down(cfg, [svc], grace=1.0, echo=lambda _line: None)


def test_taken_port_fails_before_anything_starts(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        services = [http_service("alpha", free_port()), http_service("beta", taken)]
        with pytest.raises(stack.StackError) as err:
            stack.up(cfg, services, echo=lambda _line: None)
    message = str(err.value)
    assert f"port {taken} (beta http)" in message and "--beta-port" in message
    assert "\n" not in message
    assert not list(tmp_path.glob("*.pid"))  # alpha was never started


def test_a_crash_during_start_rolls_back_this_calls_services(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path)
    services = [http_service("alpha", free_port()), crashing_service("gamma")]
    with pytest.raises(stack.StackError) as err:
        stack.up(cfg, services, echo=lambda _line: None)
    assert "gamma exited with code 3" in str(err.value)
    assert "boom: bad config" in str(err.value)  # the log's tail explains why
    alpha_log = (tmp_path / "alpha.log").read_text()
    assert "starting alpha" in alpha_log
    assert not list(tmp_path.glob("*.pid"))
    assert [s.state for s in stack.status(cfg, services)] == ["stopped", "stopped"]


def test_stale_pid_file_is_replaced(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path)
    svc = http_service("alpha", free_port())
    dead = procs.PidRecord("alpha", 999_999, 1, ["gone"], svc.address, 0.0)
    procs.write_pid_file(stack.pid_path(cfg, "alpha"), dead)
    assert stack.status(cfg, [svc])[0].detail.startswith("process 999999 has exited")
    try:
        (status,) = stack.up(cfg, [svc], echo=lambda _line: None)
        assert status.healthy and status.pid != 999_999
    finally:
        stack.down(cfg, [svc], echo=lambda _line: None)


def test_running_service_with_other_address_is_reported(tmp_path: Path) -> None:
    cfg = DevConfig(state_dir=tmp_path)
    port = free_port()
    try:
        stack.up(cfg, [http_service("alpha", port)], echo=lambda _line: None)
        moved = http_service("alpha", free_port())
        with pytest.raises(stack.StackError, match="already running .* run `capt dev down` first"):
            stack.up(cfg, [moved], echo=lambda _line: None)
    finally:
        stack.down(cfg, [http_service("alpha", port)], echo=lambda _line: None)
