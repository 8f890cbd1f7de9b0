"""What the runner tracks per phase: the wanted end state (`Want`), the phase's context
(`PhaseContext`) and `PhaseFailed`."""

from __future__ import annotations

from dataclasses import dataclass, field

from capt.dev.stack import procs
from capt.dev.testkit.chaos.report import Row
from capt.dev.testkit.chaos.scenarios import Phase
from capt.spec.models import ClusterSpec
from capt.workflows.cluster.models import ClusterStatus

# --------------------------------------------------------------------------------------------
# the runner


@dataclass
class Want:
    cp: int
    md: int
    version: str

    def total(self) -> int:
        return self.cp + self.md


class PhaseFailed(Exception):
    pass


@dataclass
class PhaseContext:
    spec: ClusterSpec
    phase: Phase
    row: Row
    base_env: dict[str, str]
    timeout: float
    worker: procs.PidRecord | None = None
    worker_log_offset: int = 0
    kill_fired: str | None = None
    trigger_fired: bool = False
    trigger_base: int | None = None
    expected_deaths: set[int] = field(default_factory=set)
    unexpected_exits: int = 0
    status: ClusterStatus | None = None
