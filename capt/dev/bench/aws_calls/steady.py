"""Part 3, the steady state's comparison model: a CAPA-style per-machine poll."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# 3. steady state

CAPA_SYNC_PERIOD_MINUTES = 10  # CAPA's manager: --sync-period defaults to 10 minutes
CAPT_HEALTH_INTERVAL_SECONDS = 30


def capa_poll_per_hour(machines: int, every_seconds: float) -> float:
    """A per-machine poll: one DescribeInstances per machine every `every_seconds`."""
    return machines * 3600 / every_seconds
