"""The AWS-calls benchmark's vocabulary: region and versions, which operations mutate or create,
and the tallies' arithmetic (split, add) every part of it uses."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator

from capt.dev.paths import REPO_ROOT

ROOT = REPO_ROOT

REGION = "ap-northeast-2"
VERSION = "v1.30.2"
NEW_VERSION_TEMPLATE = "md-0-b"

# AWS operations that change something. Reads are Describe*/Get*/List*/Lookup*/Search*/Filter*.
MUTATING_VERBS = (
    "Create",
    "Run",
    "Allocate",
    "Associate",
    "Attach",
    "Authorize",
    "Revoke",
    "Modify",
    "Register",
    "Deregister",
    "Put",
    "Delete",
    "Release",
    "Detach",
    "Disassociate",
    "Terminate",
    "Replace",
    "Add",
    "Remove",
    "Configure",
    "Set",
    "Update",
    "Enable",
    "Disable",
    "Apply",
    "Tag",
    "Untag",
    "Send",
    "Cancel",
    "Start",
    "Stop",
    "Reboot",
    "Reset",
    "Restore",
    "Rotate",
    "Import",
)
# Mutating calls that create something (a re-run must make none of these).
CREATING_VERBS = ("Create", "Run", "Allocate")


def operation(key: str) -> str:
    """`ec2:CreateVpc` -> `CreateVpc`."""
    return key.rsplit(":", 1)[-1]


def is_mutating(key: str) -> bool:
    """Whether an AWS operation (`service:Operation` or `Operation`) changes something."""
    op = operation(key)
    return any(op.startswith(v) and op[len(v) : len(v) + 1].isupper() or op == v for v in MUTATING_VERBS)


def is_creating(key: str) -> bool:
    op = operation(key)
    return any(op.startswith(v) and op[len(v) : len(v) + 1].isupper() for v in CREATING_VERBS)


def split(calls: dict[str, int]) -> dict[str, int]:
    """Total, mutating and read calls of a per-operation tally."""
    mutating = sum(n for k, n in calls.items() if is_mutating(k))
    total = sum(calls.values())
    return {"total": total, "mutating": mutating, "reads": total - mutating}


def add(*tallies: dict[str, int], times: float = 1) -> dict[str, float]:
    out: Counter = Counter()
    for t in tallies:
        for k, n in t.items():
            out[k] += n * times
    return dict(out)


@contextlib.contextmanager
def _env(var: str, value: str) -> Iterator[None]:
    old = os.environ.get(var)
    os.environ[var] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old
