"""Where the checkout is: the benchmarks write docs/bench/ and the test kit reads examples/ and
tests/histories/ there. Development code runs from a checkout (an editable install), so the root
is the nearest folder above this file that holds pyproject.toml."""

from __future__ import annotations

from pathlib import Path


def _find_root(start: Path) -> Path:
    for folder in start.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    raise RuntimeError(f"capt.dev runs from a checkout of capt: no pyproject.toml above {start}")


REPO_ROOT = _find_root(Path(__file__).resolve())
