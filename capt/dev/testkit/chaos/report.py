"""The chaos suite's results: one `Row` per chaos phase, its table and the markdown report."""

from __future__ import annotations

from dataclasses import dataclass, field

from capt.dev.testkit import history_sizes as histories
from capt.dev.testkit.chaos.scenarios import Scenario

# --------------------------------------------------------------------------------------------
# results


@dataclass
class Row:
    scenario: str
    seed: int
    phase: str
    point: str
    converged: bool = False
    duplicates: int = 0
    orphans: int = 0
    missing: int = 0
    seconds: float = 0.0
    fired: bool = True  # the chaos point happened
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.converged and self.fired and not (self.duplicates or self.orphans or self.missing)


def render_rows(rows: list[Row]) -> str:
    lines = [
        "| scenario | seed | phase | kill point | converged | duplicates | orphans | time | result | notes |",
        "|---|---:|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        notes = "; ".join(r.notes).replace("|", "/").replace("\n", " ")
        lines.append(
            f"| {r.scenario} | {r.seed} | {r.phase} | {r.point or '-'} | {'yes' if r.converged else 'NO'} "
            f"| {r.duplicates} | {r.orphans}{f' (+{r.missing} missing)' if r.missing else ''} | {r.seconds:.0f}s "
            f"| {'ok' if r.ok else 'FAILED'} | {notes} |"
        )
    return "\n".join(lines)


def render_report(
    seed: int,
    rows: list[Row],
    sizes: list[histories.HistorySize],
    elapsed: float,
    failed_setup: str | None,
    selected: list[Scenario],
) -> str:
    passed = sum(r.ok for r in rows)
    lines = [
        "# capt chaos report",
        "",
        f"seed {seed} · {len(selected)} scenario(s) · {len(rows)} row(s), {passed} ok, {len(rows) - passed} failed "
        f"· wall time {elapsed / 60:.1f} min",
        "",
    ]
    if failed_setup:
        lines += [f"**run aborted:** {failed_setup}", ""]
    lines += [render_rows(rows), ""]
    if sizes:
        lines += [
            f"## Largest history per workflow type (warning limits: {histories.WARN_EVENTS:,} events / 10 MB)",
            "",
            histories.render_table(sizes),
            "",
        ]
    lines += ["## Scenarios", ""]
    lines += [f"- **{s.id}**: {s.about}" for s in selected]
    return "\n".join(lines) + "\n"
