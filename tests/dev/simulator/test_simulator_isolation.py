"""The simulator (and all of capt.dev) lives apart from the worker: nothing the worker runs imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT

WORKER_CODE = [
    ROOT / "capt" / "worker.py",
    *sorted((ROOT / "capt" / "activities").rglob("*.py")),
    *sorted((ROOT / "capt" / "workflows").rglob("*.py")),
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            found.update(
                a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return found


def test_no_worker_module_imports_the_simulator() -> None:
    assert len(WORKER_CODE) > 20  # the scan really covers the worker's code
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m == "capt.dev" or m.startswith("capt.dev.")
        )
        for path in WORKER_CODE
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_worker_process_loads_no_simulator_module() -> None:
    code = (
        "import sys\nfrom capt import worker\n"
        "wf, acts = worker.registered()\n"
        "assert acts, 'the registries are empty'\n"
        "print(sorted(m for m in sys.modules if m == 'capt.dev' or m.startswith('capt.dev.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_scan_would_see_an_import() -> None:
    sample = ROOT / "tests" / "support" / "sim_helpers.py"  # imports capt.dev.simulator.world.core
    assert "capt.dev.simulator.world.core" in imported_modules(sample)
