"""The chaos suite's command line: `main` parses the options, `run` runs the selected scenarios
on one stack and writes the report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from capt.activities.aws import faults
from capt.dev.stack.config import DevConfig
from capt.dev.testkit import chaos as chaos_package
from capt.dev.testkit import history_sizes as histories
from capt.dev.testkit.chaos.report import Row, render_report
from capt.dev.testkit.chaos.runner import Runner
from capt.dev.testkit.chaos.scenarios import DEFAULT_REPORT, SCENARIOS, SIM_SETTINGS, scenario
from capt.dev.testkit.chaos.stack import CHAOS_VARS, ChaosStack

log = logging.getLogger("capt.chaos")


# --------------------------------------------------------------------------------------------
# main


def client_environ(cfg: DevConfig) -> None:
    """This process talks to the stack like `eval "$(capt dev env)"` would set it up."""
    for key in [k for k in os.environ if k.startswith(("AWS_", "TEMPORAL_")) or k in CHAOS_VARS]:
        del os.environ[key]
    os.environ.update(cfg.client_env())


async def run(args: argparse.Namespace) -> int:
    selected = [scenario(s) for s in args.scenario] if args.scenario else list(SCENARIOS)
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="capt-chaos-"))
    chaos = ChaosStack.on_free_ports(state_dir.resolve())
    client_environ(chaos.cfg)
    report_path = Path(args.report)
    points = sum(s.chaos_points for s in selected)
    print(
        f"chaos: seed {args.seed}, {len(selected)} scenario(s), {points} chaos point(s); stack in {state_dir} "
        f"(Temporal {chaos.cfg.temporal_address}, Web UI {chaos.cfg.ui_url})"
    )
    t0 = time.monotonic()
    rows: list[Row] = []
    sizes: list[histories.HistorySize] = []
    failed_setup = None
    runner = Runner(chaos, args.seed, expedite=not args.wait_timeouts, faults_spec=args.faults)
    try:
        chaos.up()
        chaos.sim_settings(SIM_SETTINGS)
        for sc in selected:
            rows += await runner.run_scenario(sc)
        client = await runner.connect()
        sizes = await histories.largest_histories(client)
    except Exception as err:  # noqa: BLE001
        log.exception("chaos run aborted")
        failed_setup = f"{type(err).__name__}: {err}"
    finally:
        elapsed = time.monotonic() - t0
        ok = failed_setup is None and all(r.ok for r in rows)
        if not args.keep_stack:
            strays = chaos.down()
            if strays:
                # Started for this run, owned by no service: `down` killed them; a leak to report.
                failed_setup = (failed_setup or "") + f" stray processes of this stack at down: {strays}"
        ok = ok and failed_setup is None
        text = render_report(args.seed, rows, sizes, elapsed, failed_setup, selected)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(text)
        print("\n" + text)
        print(f"report: {report_path}")
        if ok and not args.keep_stack and not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
        elif not ok:
            print(f"logs of the stack: {state_dir}")
    if not ok:
        again = " ".join(f"--scenario {s}" for s in dict.fromkeys(r.scenario for r in rows if not r.ok))
        print(
            f"\nCHAOS FAILED with seed {args.seed}; re-run: python -m capt.dev.testkit.chaos --seed {args.seed} {again}"
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m capt.dev.testkit.chaos", description=chaos_package.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--report", default=str(DEFAULT_REPORT), help=f"markdown report [{DEFAULT_REPORT}]")
    parser.add_argument("--state-dir", help="the stack's state dir (default: a new temporary one)")
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running at the end")
    parser.add_argument(
        "--wait-timeouts",
        action="store_true",
        help="let a killed worker's activities time out (90 s) instead of failing them by id at once",
    )
    parser.add_argument(
        "--faults",
        help="the AWS faults scenario's CAPT_AWS_FAULTS without the seed, e.g. 'lost=0.5,ops=all' "
        "[lost=0.1,throttle=0.3,ops=mutating]",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.id:<15} {s.chaos_points} point(s)  {s.about}")
        print(f"{sum(s.chaos_points for s in SCENARIOS)} chaos points in {len(SCENARIOS)} scenarios")
        return 0
    unknown = [s for s in args.scenario if s not in {x.id for x in SCENARIOS}]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; see --list")
    if args.faults:
        faults.FaultSpec.parse(args.faults)  # fail fast on a typo
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 100_000)
    return asyncio.run(run(args))
