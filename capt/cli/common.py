"""What every command shares: manifest loading (validate = apply), the options, the exit codes,
running an async command body against Temporal, and `--wait`'s progress."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from pathlib import Path

import click

from capt.contracts.ids import cluster_workflow_id
from capt.spec.errors import ManifestError
from capt.spec.loader import LoadResult, load_manifest
from capt.spec.variables import parse_var_options

# Exit codes (README: "Exit codes"): 0 done; 1 failed; 2 bad input or a request the cluster
# refused (nothing created or changed); 3 no such cluster; 4 Temporal unreachable; 5 timed out;
# 130 interrupted (the operation keeps running).
EXIT_BAD_INPUT = 2


def _read_manifests(files: tuple[str, ...]) -> str:
    """The documents of every -f (`-` is stdin), as one YAML stream in the order given."""
    texts = []
    for name in files:
        try:
            texts.append(sys.stdin.read() if name == "-" else Path(name).read_text())
        except OSError as exc:
            click.echo(f"cannot read {name}: {exc.strerror}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except UnicodeDecodeError:
            click.echo(f"cannot read {name}: not UTF-8 text", err=True)
            sys.exit(EXIT_BAD_INPUT)
    return "\n---\n".join(texts)


def _variables(var: tuple[str, ...], var_file: str | None) -> dict[str, str]:
    """clusterctl's conventions: a variables file (KEY: value YAML), then --var on top."""
    import yaml

    values: dict[str, str] = {}
    if var_file:
        try:
            loaded = yaml.safe_load(Path(var_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"cannot read {var_file}: {exc}", param_hint="--var-file") from exc
        if not isinstance(loaded, dict):
            raise click.BadParameter(f"{var_file} must hold KEY: value lines", param_hint="--var-file")
        values.update({str(k): "" if v is None else str(v) for k, v in loaded.items()})
    try:
        values.update(parse_var_options(var))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--var") from exc
    return values


def _load(files: tuple[str, ...], var: tuple[str, ...], var_file: str | None = None) -> LoadResult:
    """Load the manifests and plan their network (validate = apply), or exit 2 with every problem."""
    from capt.contracts.names import cluster_id
    from capt.plan.cluster import build_plan
    from capt.plan.network import PlanError
    from capt.plan.render import plan_azs

    variables = _variables(var, var_file)
    try:
        result = load_manifest(_read_manifests(files), variables)
    except ManifestError as exc:
        for warning in exc.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(exc.render(), err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        # The network planner's own checks (subnets per zone, sizes), as apply's workflow plans it.
        spec = result.spec
        build_plan(spec, plan_azs(spec), cluster_id(spec.namespace, spec.name))
    except PlanError as exc:
        click.echo(f"the network cannot be planned: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    return result


file_option = click.option(
    "-f",
    "--file",
    "files",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="CAPI manifest (multi-document YAML); `-` reads stdin. Repeatable: the files' documents merge.",
)
var_option = click.option(
    "--var",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a ${KEY} variable (overrides the environment and --var-file). Repeatable.",
)
var_file_option = click.option(
    "--var-file",
    type=click.Path(dir_okay=False),
    help="A clusterctl-style variables file (KEY: value YAML).",
)


# --- talking to the workflows ----------------------------------------------------------


def _exit(code: int) -> None:
    """Leave without interpreter finalization: the Temporal client's native runtime threads can
    abort a finalizing interpreter ("PyGILState_Release … finalizing"), turning a finished
    command into a crash. Output is flushed first."""

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(coro_fn):
    """Run an async command body; Temporal down, a rejected request or a missing cluster is one
    line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(coro_fn)
    def wrapper(*args, **kwargs):
        from capt.client.clusters import Failed, NotFound, Rejected

        try:
            asyncio.run(coro_fn(*args, **kwargs))
            _exit(0)
        except Rejected as exc:
            click.echo(f"rejected: {exc}", err=True)
            _exit(2)
        except NotFound as exc:
            click.echo(str(exc), err=True)
            _exit(3)
        except Failed as exc:
            click.echo(f"failed: {exc}", err=True)
            _exit(1)
        except ConnectionError as exc:
            hint = (
                ""
                if "configuration" in str(exc) or "payload keys" in str(exc)
                else (" (is it running? `capt dev up` starts a local one; TEMPORAL_ADDRESS points elsewhere)")
            )
            click.echo(f"{exc}{hint}", err=True)
            _exit(4)
        except TimeoutError as exc:
            click.echo(str(exc), err=True)
            _exit(5)
        except KeyboardInterrupt:
            # Ctrl-C stops the waiting, not the work: the workflow goes on in Temporal.
            click.echo(
                "\ninterrupted: the operation keeps running in Temporal; watch it with "
                "`capt describe cluster NAME -n NAMESPACE` or the Web UI",
                err=True,
            )
            _exit(130)

    return wrapper


namespace_option = click.option(
    "-n", "--namespace", default="default", show_default=True, help="Cluster namespace."
)
wait_option = click.option("--wait/--no-wait", default=False, help="Wait for the result, showing progress.")


def _check_timeout(ctx, param, value: str) -> str:
    _seconds(value)  # a bad duration is a usage error (exit 2) before anything connects
    return value


timeout_option = click.option(
    "--timeout",
    default="30m",
    show_default=True,
    callback=_check_timeout,
    help="With --wait: give up after this long (e.g. 90s, 20m, 1h).",
)


def _seconds(text: str) -> float:
    from capt.spec.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from exc


def _progress_printer(stream=None):
    """`--wait` progress: a timestamped line for every change (logs, CI); on a terminal also a live
    status line (rich) that shows the wait is alive between changes."""
    import datetime as dt

    last: list[str] = []
    live = None
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console

        live = Console(file=stream).status("waiting for the cluster")
        live.start()

    def show(status) -> None:
        line = f"{status.phase}: {status.ready_machines}/{status.desired_machines} machines ready — {status.message}"
        if live is not None:
            live.update(line)
        if not last or last[-1] != line:
            stamp = dt.datetime.now().astimezone().strftime("%H:%M:%S")
            if live is not None:
                live.console.print(f"{stamp} {line}", markup=False, highlight=False)
            else:
                click.echo(f"{stamp} {line}", file=stream)
            last.append(line)

    show.stop = live.stop if live is not None else (lambda: None)  # type: ignore[attr-defined]
    return show


async def _wait_ready(client, namespace: str, name: str, timeout: str, until=None):
    from capt.client import clusters

    progress = _progress_printer()
    try:
        status = await clusters.wait(
            client,
            namespace,
            name,
            until or (lambda s: s.phase == "Ready"),
            _seconds(timeout),
            on_progress=progress,
        )
    finally:
        progress.stop()
    if status.phase == "Failed":
        click.echo(f"failed: {status.message}", err=True)
        for blocker in status.blocked:
            click.echo(f"  blocked: {blocker.text()}", err=True)
        _exit(1)
    return status


def _web_ui_link(namespace: str, name: str) -> str:
    import urllib.parse

    ui = os.environ.get("CAPT_WEB_UI", "http://localhost:8233")
    wf_id = urllib.parse.quote(cluster_workflow_id(namespace, name), safe="")
    return f"{ui}/namespaces/{os.environ.get('TEMPORAL_NAMESPACE', 'default')}/workflows/{wf_id}"


def _check_dev_region(region: str) -> None:
    """On the local stack (`capt dev env` sets CAPT_DEV_REGION), a cluster in another region would
    never boot: the simulator plays one region. Refused before anything is created."""

    played = os.environ.get("CAPT_DEV_REGION")
    if played and region != played:
        click.echo(
            f"the local stack plays {played} only, and this cluster is in {region}: its machines would "
            f"never boot. Start a stack for it: `capt dev down && capt dev up --region {region}` "
            f"(or set the manifest's region to {played})",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)


def _print_preview(p) -> None:
    for line in p.fields:
        click.echo(f"~ {line}")
    for line in p.machines:
        click.echo(f"machines: {line}")
