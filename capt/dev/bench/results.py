"""Where benchmark results go and what machine produced them.

Each benchmark writes one JSON file under docs/bench/ (committed, so docs/BENCHMARKS.md can be
regenerated from them with `python -m capt.dev.bench report` without re-running hours of benchmarks) and
the report renders every file it finds.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

RESULTS = ROOT / "docs" / "bench"
IMAGES = ROOT / "docs" / "img"


def machine() -> dict[str, Any]:
    """The machine a result was measured on: cores, RAM, CPU model, Python."""
    mem_kib = 0
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": model,
        "python": platform.python_version(),
    }


def save(name: str, data: dict[str, Any], directory: Path = RESULTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def load(name: str, directory: Path = RESULTS) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
