"""The recorder's command line: `main`, the run on a fresh stack (`amain`) and index.json."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from capt.dev.testkit import histories as histories_package
from capt.dev.testkit.histories.common import DEFAULT_OUT, ROOT, RecordingError, log
from capt.dev.testkit.histories.record import Recorded, Recorder
from capt.dev.testkit.histories.stack import Stack


def write_index(out: Path, written: list[Recorded], build: str) -> Path:
    """index.json: what each history file is; entries of files this run did not write (kept
    pre-patch histories) stay as they were."""
    path = out / "index.json"
    index = json.loads(path.read_text()) if path.exists() else {}
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    for w in written:
        index[w.path] = {
            "workflow_type": w.workflow_type,
            "workflow_id": w.workflow_id,
            "events": w.events,
            "bytes": w.bytes,
            "recorded": now,
            "build": build,
            "path": w.note,
        }
    index = {k: v for k, v in sorted(index.items()) if (out / k).exists()}
    path.write_text(json.dumps(index, indent=2) + "\n")
    return path


async def amain(out: Path, keep_stack: bool) -> int:
    t0 = time.monotonic()
    state_dir = Path(tempfile.mkdtemp(prefix="capt-histories-"))
    stack = Stack(state_dir)
    recorder = Recorder(stack, out)
    failed = True
    try:
        stack.up()
        build = stack.build_id()
        log(f"worker version {build}")
        await recorder.run()
        largest = await recorder.largest_per_type()
        failed = False
    finally:
        if failed:
            log(f"FAILED; the stack's logs are in {state_dir}")
        if not keep_stack:
            if stack.down():
                failed = True  # the recording is fine, but the stack leaked a process: say so
            if not failed:
                shutil.rmtree(state_dir, ignore_errors=True)
    index = write_index(out, recorder.written, build)
    shown = index.relative_to(ROOT) if index.is_relative_to(ROOT) else index
    print(f"\nwrote {len(recorder.written)} histories under {out} (index: {shown}):")
    for w in sorted(recorder.written, key=lambda w: w.path):
        print(f"  {w.path:<48} {w.events:>5} events {w.bytes:>9,} bytes")
    total = sum(p.stat().st_size for p in out.rglob("*.json"))
    print(f"  total of every committed history file: {total:,} bytes")
    print("\nlargest history per workflow type in the namespace:")
    for wf_type, (events, size, wf_id) in sorted(largest.items()):
        print(f"  {wf_type:<28} {events:>5} events {size:>9,} bytes  {wf_id}")
    print(f"\nmake histories: {time.monotonic() - t0:.0f}s")
    if failed:
        print("error: the local stack left processes running (killed; see LEAK above)", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m capt.dev.testkit.histories", description=histories_package.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep-stack", action="store_true", help="leave the local stack running (debugging)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(amain(args.out.resolve(), args.keep_stack))
    except RecordingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
