"""The source layout's rules that import-linter cannot see:

- `capt` is the only Python package of the checkout (besides tests/): nothing else lands in
  site-packages under a bare name such as `spec` or `worker`;
- nothing under tests/ is imported by capt (import-linter checks it too; this also reads files
  import-linter cannot reach);
- tests mirror the source tree: every test module lives under tests/<package>/ (or tests/e2e/),
  shared fakes and helpers under tests/support/ only.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT

PRODUCT_PACKAGES = ("capt",)


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources() -> list[Path]:
    files: list[Path] = []
    for package in PRODUCT_PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def test_capt_is_the_only_package_of_the_checkout() -> None:
    tracked = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
    modules = sorted(n for n in tracked if n.endswith(".py"))
    packages = sorted(n for n in tracked if (ROOT / n / "__init__.py").is_file())
    assert modules == []
    assert packages == ["capt", "tests"]


def test_capt_never_imports_tests() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in sources() if "tests" in imported_roots(p)]
    assert len(sources()) > 100
    assert not offenders, f"these import from tests/: {offenders}"


def test_tests_mirror_the_source_tree() -> None:
    """tests/<a>/<b>/test_x.py tests capt/<a>/<b>/ (or the module capt/<a>.py); only end-to-end
    tests, shared helpers, committed histories and deployment checks live elsewhere."""
    outside = {"e2e", "support", "histories", "deploy"}

    def mirrored(test: Path) -> bool:
        parts = test.parent.relative_to(ROOT / "tests").parts
        if parts[0] in outside:
            return True
        return (ROOT / "capt").joinpath(*parts).is_dir() or (
            len(parts) == 1 and (ROOT / "capt" / f"{parts[0]}.py").is_file()
        )

    misplaced = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if p.parent != ROOT / "tests" and not mirrored(p)
    ]
    assert not misplaced, f"test modules outside tests/<package>/: {misplaced}"
    helpers = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("*.py")
        if not p.name.startswith(("test_", "__init__", "conftest"))
        and p.relative_to(ROOT / "tests").parts[0] not in ("support", "histories")
    ]
    assert not helpers, f"shared helpers belong in tests/support/: {helpers}"


MAX_LINES = 500


def test_no_source_file_is_over_500_lines() -> None:
    """Issue 20's house rule: a module that grows past 500 lines is split by concern (see
    docs/architecture.md for how the workflows split: models, mixins, the workflow class)."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "capt").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these: {long}"


def test_every_import_of_capt_resolves_even_inside_functions() -> None:
    """A module moved with its importers rewritten can still leave a lazy import (inside a
    function, run only on some path) naming the old place: read every `from capt... import name`
    and `import capt...` in capt/ and tests/ and check the module and the name exist."""
    import importlib
    import importlib.util

    broken = []
    files = [*(ROOT / "capt").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("capt")
            ):
                if importlib.util.find_spec(node.module) is None:
                    broken.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
                    continue
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if (
                        not hasattr(module, alias.name)
                        and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
                    ):
                        broken.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("capt") and importlib.util.find_spec(alias.name) is None:
                        broken.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert len(files) > 300
    assert not broken, broken
