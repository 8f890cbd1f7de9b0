"""`capt dev`: the local stack (Temporal dev server, emulated AWS, capt worker).

capt.cli registers this group with `main.add_command(dev)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from capt.dev.stack import stack
from capt.dev.stack.config import DEFAULT_STATE_DIR, load_config, render_exports


def _state_dir_option(func):
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_STATE_DIR,
        envvar="CAPT_STATE_DIR",
        show_default=True,
        help="Where pid files, logs, the Temporal SQLite file and the stack's settings live.",
    )(func)


def _config(state_dir: Path, **overrides: object):
    return load_config(state_dir.resolve(), **overrides)


@click.group("dev")
def dev() -> None:
    """Local stack: Temporal dev server + Web UI, emulated AWS endpoint (moto), workload simulator,
    capt worker."""


@dev.command()
@_state_dir_option
@click.option("--temporal-port", type=int, envvar="CAPT_TEMPORAL_PORT", help="Temporal gRPC port [7233].")
@click.option("--ui-port", type=int, envvar="CAPT_UI_PORT", help="Temporal Web UI port [8233].")
@click.option("--moto-port", type=int, envvar="CAPT_MOTO_PORT", help="Emulated AWS endpoint port [5000].")
@click.option("--codec-port", type=int, envvar="CAPT_CODEC_PORT", help="Payload codec endpoint port [8234].")
@click.option(
    "--sim-api-port",
    type=int,
    envvar="CAPT_SIM_API_PORT",
    help="Workload simulator's Kubernetes API port [16443].",
)
@click.option(
    "--sim-port", type=int, envvar="CAPT_SIM_PORT", help="Workload simulator's admin + SSM port [5100]."
)
@click.option(
    "--region", envvar="CAPT_DEV_REGION", help="AWS region the stack's clients use [ap-northeast-2]."
)
@click.option("--task-queue", envvar="CAPT_TASK_QUEUE", help="Task queue the worker polls [capt].")
@click.option(
    "--deployment-name",
    envvar="CAPT_DEV_DEPLOYMENT_NAME",
    help='Worker Deployment of the worker, made current once it polls ("" = unversioned worker) [capt].',
)
@click.option(
    "--insecure-plaintext",
    is_flag=True,
    default=None,
    help="Store payloads in Temporal unencrypted (recording test histories); default: a key file "
    "in the state dir, created on first up.",
)
def up(
    state_dir: Path,
    temporal_port: int | None,
    ui_port: int | None,
    moto_port: int | None,
    codec_port: int | None,
    sim_api_port: int | None,
    sim_port: int | None,
    region: str | None,
    task_queue: str | None,
    deployment_name: str | None,
    insecure_plaintext: bool | None,
) -> None:
    """Start the stack in the background and return once every service is ready.

    Services already running are left alone. Ports given here are remembered in the
    state dir for later `status`, `env` and `down`.
    """
    cfg = _config(
        state_dir,
        temporal_port=temporal_port,
        ui_port=ui_port,
        moto_port=moto_port,
        codec_port=codec_port,
        sim_api_port=sim_api_port,
        sim_port=sim_port,
        region=region,
        task_queue=task_queue,
        deployment_name=deployment_name,
        plaintext=insecure_plaintext,
    )
    try:
        stack.up(cfg, echo=click.echo)
    except stack.StackError as err:
        raise click.ClickException(str(err)) from err
    where = "" if state_dir == Path(DEFAULT_STATE_DIR) else f" --state-dir {state_dir}"
    click.echo(f"Local stack ready. Web UI: {cfg.ui_url}")
    click.echo(f'Point your shell at it with: eval "$(capt dev env{where})"')


@dev.command()
@_state_dir_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(state_dir: Path, output: str) -> None:
    """Show each service with pid, address and health (exit 1 unless all are healthy)."""
    cfg = _config(state_dir)
    statuses = stack.status(cfg)
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "state_dir": str(cfg.state_dir),
                    "healthy": all(s.healthy for s in statuses),
                    "services": [s.to_dict() for s in statuses],
                },
                indent=2,
            )
        )
    else:
        rows = [("SERVICE", "PID", "ADDRESS", "HEALTH", "DETAIL")]
        for s in statuses:
            detail = ", ".join([s.detail, *(f"{k} {v}" for k, v in s.links.items())])
            rows.append((s.name, str(s.pid or "-"), s.address, s.state, detail))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4])
    if not all(s.healthy for s in statuses):
        sys.exit(1)


@dev.command()
@_state_dir_option
def env(state_dir: Path) -> None:
    """Print the `export` lines a shell needs to use the stack: eval "$(capt dev env)"."""
    cfg = _config(state_dir)
    if not any(s.healthy for s in stack.status(cfg)):
        click.echo("# capt dev: the local stack is not running (start it with `capt dev up`)", err=True)
    click.echo(render_exports(cfg.client_env()), nl=False)


@dev.command()
@_state_dir_option
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds between SIGTERM and SIGKILL (default per service; the worker's allows in-flight activities to finish).",
)
def down(state_dir: Path, timeout: float | None) -> None:
    """Stop exactly the processes `capt dev up` started (by pid, checked to still be ours)."""
    cfg = _config(state_dir)
    outcomes = stack.down(cfg, grace=timeout, echo=click.echo)
    if not outcomes:
        click.echo("nothing to stop")


# `capt dev sim …`: the workload simulator's state and fault knobs (capt/dev/stack/sim_cli.py: a client of the simulator's admin endpoint, so it lives with the stack).
from capt.dev.stack.sim_cli import sim  # noqa: E402

dev.add_command(sim)
