"""Problems found in a manifest, each naming where it is: document, kind, name and field path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    document: int  # 1-based position in the multi-document YAML; 0 when not tied to one
    kind: str
    name: str
    path: str  # field path in the manifest, e.g. "spec.replicas"
    message: str

    def __str__(self) -> str:
        where = f"document {self.document} " if self.document else ""
        obj = f"{self.kind}/{self.name}" if self.kind else "manifest"
        field = f" {self.path}:" if self.path else ":"
        return f"{where}{obj}{field} {self.message}"


class ManifestError(Exception):
    """Every problem found in a manifest, reported together before anything is created."""

    def __init__(self, problems: list[Problem], warnings: list[str] | None = None):
        self.problems = problems
        self.warnings = warnings or []
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{len(self.problems)} problem(s) in the manifest:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class MissingVariablesError(ManifestError):
    """`${VAR}` references with no value in the environment, `--var` or a `:-default`."""

    def __init__(self, names: list[str], refused: list[str] | None = None):
        self.names = sorted(set(names))
        # Set in the environment but credential-like: only an explicit --var may supply them.
        self.refused = sorted(set(refused or ()))
        problems = [
            Problem(
                0,
                "",
                "",
                "",
                f"variable {n} is not set"
                + (
                    " (it looks like a credential: it is read only from --var, never from the environment)"
                    if n in self.refused
                    else ""
                ),
            )
            for n in self.names
        ]
        super().__init__(problems)

    def render(self) -> str:
        text = (
            f"{len(self.names)} variable(s) required by the manifest are not set: "
            + ", ".join(self.names)
            + "\nset them in the environment or pass --var NAME=VALUE"
        )
        if self.refused:
            text += (
                f"\n{', '.join(self.refused)} look like credentials and are taken only from "
                "--var NAME=VALUE, never from the environment (so they cannot reach a workflow "
                "history by accident)"
            )
        return text
