"""The big-cluster benchmark's sizes, versions, surges and limits, and `Incomplete`."""

from __future__ import annotations

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

CP_VERSION = "v1.30.2"
# The workers start one patch behind and roll twice: to VERSIONS[1] with maxSurge 1, then to
# VERSIONS[2] with maxSurge 10 %.
VERSIONS = ("v1.30.0", "v1.30.1", "v1.30.2")
SURGES: tuple[int | str, ...] = (1, "10%")
DEFAULT_WORKERS = (20,)
# --full: N = 20 with both rollouts, N = 50 and 500 with the 10 % one. Once the deployment has
# continued as new (Temporal suggests it after a few MB of history), the time-skipping test server
# no longer skips time for the machines the earlier run started (temporalio/sdk-java#1540): the
# rest of the run takes real time, 1:1. A maxSurge-1 rollout of 500 (500 waves, ≥ 22,500 s) would
# take over six hours of wall time, 50 waves close to an hour.
FULL_RUNS: tuple[tuple[int, tuple[int | str, ...]], ...] = ((20, SURGES), (50, ("10%",)), (500, ("10%",)))
CONTROL_PLANE = 3
# Wall seconds after which a run stops waiting and reports what it reached.
WALL_LIMIT = 1200.0


class Incomplete(Exception):
    """A phase did not complete within its limits; the message says what was reached."""


# The owners' default: continue-as-new after this many loop turns (or when Temporal suggests it).
DEFAULT_MAX_ITERATIONS = 500
