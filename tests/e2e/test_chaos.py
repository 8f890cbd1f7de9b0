"""A few representative chaos scenarios (capt/dev/testkit/chaos/), so `make e2e` exercises the machinery:
a worker kill -9 after RunInstances and after TerminateInstances, and a Temporal dev server
kill -9 + restart mid-create. Each must converge with 0 duplicates and 0 orphans. The whole
suite is `make chaos`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

SCENARIOS = ("cp1", "server-create")


@pytest.mark.timeout(900)
def test_representative_chaos_scenarios(tmp_path):
    report = tmp_path / "report.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAPT_", "AWS_", "TEMPORAL_"))}
    args = [sys.executable, "-m", "capt.dev.testkit.chaos", "--seed", "14", "--report", str(report)]
    for s in SCENARIOS:
        args += ["--scenario", s]
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=850, stdin=subprocess.DEVNULL
    )
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = report.read_text()
    # One row per chaos point, every one converged with a clean audit.
    rows = [line for line in text.splitlines() if line.startswith("| ") and "| seed |" not in line]
    table = [r for r in rows if r.split("|")[1].strip() in SCENARIOS]
    assert len(table) == 3 and all("| ok |" in r for r in table), text
