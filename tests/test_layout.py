"""The source layout's rules that import-linter cannot see (it checks packages, not the
top-level modules `cli.py` and `worker.py` or the scripts in `bench/`):

- nothing under tests/ is imported by product code or by bench/;
- tests mirror the source tree: every test module lives under tests/<package>/ (or tests/e2e/),
  shared fakes and helpers under tests/support/ only.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

PRODUCT_PACKAGES = ("capt",)
TOP_LEVEL_MODULES: tuple[str, ...] = ()


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL_MODULES]
    files += sorted((ROOT / "bench").glob("*.py"))
    for package in PRODUCT_PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_product_code_and_bench_never_import_tests() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in sources() if "tests" in imported_roots(p)]
    assert len(sources()) > 100
    assert not offenders, f"these import from tests/: {offenders}"


def test_tests_mirror_the_source_tree() -> None:
    allowed = {
        *PRODUCT_PACKAGES,
        "plan",
        "spec",
        "activities",
        "workflows",
        "client",
        "devstack",
        "simulator",
        "e2e",
        "support",
        "histories",
        "cli",
        "worker",
        "deploy",
        "testkit",
        "bench",
    }
    misplaced = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if p.parent != ROOT / "tests" and p.relative_to(ROOT / "tests").parts[0] not in allowed
    ]
    assert not misplaced, f"test modules outside tests/<package>/: {misplaced}"
    helpers = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("*.py")
        if not p.name.startswith(("test_", "__init__", "conftest"))
        and p.relative_to(ROOT / "tests").parts[0] not in ("support", "histories")
    ]
    assert not helpers, f"shared helpers belong in tests/support/: {helpers}"
