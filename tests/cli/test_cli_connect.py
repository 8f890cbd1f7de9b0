"""Talking to Temporal fails in one line with exit 4 within --request-timeout (issue 17): a server
that accepts connections and never answers, and a Temporal profile that does not exist."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from tests.support.paths import ROOT


def capt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from capt.cli import main; main()", *args],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "CAPT_"))}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_server_that_never_answers_is_exit_4_within_the_request_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(server.accept()[0]) for _ in range(16)], daemon=True).start()
    port = server.getsockname()[1]
    started = time.monotonic()
    done = capt("--request-timeout", "2", "get", "clusters", env={"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"})
    elapsed = time.monotonic() - started
    server.close()
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Temporal at 127.0.0.1:{port} did not answer within 2s (is it running? `capt dev up` starts a "
        "local one; TEMPORAL_ADDRESS points elsewhere)"
    ]
    assert elapsed < 15


def test_a_missing_temporal_profile_is_exit_4_in_one_line(tmp_path):
    config = tmp_path / "temporal.toml"
    config.write_text('[profile.default]\naddress = "127.0.0.1:1"\n')
    done = capt("get", "clusters", env={"TEMPORAL_PROFILE": "nope", "TEMPORAL_CONFIG_FILE": str(config)})
    assert done.returncode == 4, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "nope" in done.stderr
    assert "Traceback" not in done.stderr
