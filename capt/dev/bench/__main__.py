"""capt's benchmarks, each runnable alone, and the report they feed.

    python -m capt.dev.bench <name> [options]     one benchmark (its small default runs in under a minute)
    python -m capt.dev.bench all [--full]         every benchmark (the full sizes with --full), then the report
    python -m capt.dev.bench report               docs/BENCHMARKS.md (+ docs/img/) from docs/bench/*.json

A benchmark module has `main(argv) -> int` (measures, prints a table, saves docs/bench/<name>.json
through bench.results), `section(data) -> str` (its part of docs/BENCHMARKS.md) and optionally
`plots(data) -> list[Path]` (matplotlib figures in docs/img/).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("critical_path", "aws_calls", "big_cluster", "mttr", "scale")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS))
        return 0
    name, rest = argv[0].replace("-", "_"), argv[1:]
    if name == "report":
        from capt.dev.bench import report

        return report.main(rest)
    if name == "all":
        full = "--full" in rest
        failed = []
        for b in BENCHMARKS:
            module = importlib.import_module(f"capt.dev.bench.{b}")
            print(f"\n== {b} ==", flush=True)
            if module.main(["--full"] if full else []) != 0:
                failed.append(b)
        from capt.dev.bench import report

        report.main([])
        if failed:
            print("failed:", ", ".join(failed), file=sys.stderr)
        return 1 if failed else 0
    if name not in BENCHMARKS:
        print(f"unknown benchmark {argv[0]!r}; one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    return importlib.import_module(f"capt.dev.bench.{name}").main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
