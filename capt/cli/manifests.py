"""Commands that read manifests: validate, plan, apply, diff."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from capt.cli.common import (
    EXIT_BAD_INPUT,
    _check_dev_region,
    _exit,
    _load,
    _print_preview,
    _run,
    _wait_ready,
    _web_ui_link,
    file_option,
    timeout_option,
    var_file_option,
    var_option,
    wait_option,
)
from capt.cli.root import main
from capt.spec.summary import summarize


@main.command()
@file_option
@var_option
@var_file_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(files: tuple[str, ...], var: tuple[str, ...], var_file: str | None, output: str) -> None:
    """Check a manifest and summarise the cluster it describes; nothing is created."""
    result = _load(files, var, var_file)
    secrets = {name: sorted(values) for name, values in sorted(result.secrets.items())}
    if output == "json":
        click.echo(
            json.dumps(
                {
                    "spec": result.spec.model_dump(mode="json"),
                    "warnings": result.warnings,
                    "variables": result.variables,
                    # names and keys only: the values go to Secrets Manager at apply, nowhere else
                    "secrets": secrets,
                },
                indent=2,
            )
        )
    else:
        click.echo(summarize(result.spec, result.warnings))
        if result.variables:
            click.echo("variables: " + ", ".join(f"{k} (from {src})" for k, src in result.variables.items()))
        for name, keys in secrets.items():
            click.echo(
                f"secret {name}: keys {', '.join(keys)} (stored in Secrets Manager at apply, "
                "referenced by name in the workflows)"
            )


@main.command("plan")
@file_option
@var_option
@var_file_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan_command(files: tuple[str, ...], var: tuple[str, ...], var_file: str | None, output: str) -> None:
    """What capt would build in AWS, without calling AWS: VPC, subnets per AZ, gateways,
    route tables, security groups with every rule, load balancer, bastion, machines."""
    from capt.plan.network import PlanError
    from capt.plan.render import render_plan

    result = _load(files, var, var_file)
    try:
        click.echo(render_plan(result.spec, fmt=output), nl=False)
    except PlanError as exc:
        click.echo(f"cannot plan: {exc}", err=True)
        sys.exit(1)


@main.command()
@file_option
@var_option
@var_file_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Judge the change with the running cluster's own rules and show it; change nothing.",
)
@wait_option
@timeout_option
@_run
async def apply(
    files: tuple[str, ...],
    var: tuple[str, ...],
    var_file: str | None,
    dry_run: bool,
    wait: bool,
    timeout: str,
) -> None:
    """Create the cluster a manifest describes, or apply its changes to the running one."""
    from capt.client import clusters

    result = _load(files, var, var_file)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    spec = result.spec
    _check_dev_region(spec.region)
    client = await clusters.connect()
    if dry_run:
        try:
            p = await clusters.preview(client, spec)
        except clusters.NotFound:
            click.echo(f"cluster {spec.namespace}/{spec.name} would be created (dry run)")
            return
        if not p.accepted:
            raise clusters.Rejected(p.reason)
        click.echo(f"cluster {spec.namespace}/{spec.name}: {p.summary} (dry run, nothing changed)")
        _print_preview(p)
        return
    created, answer = await clusters.apply(client, spec, secrets=result.secrets)
    verb = "created" if created else ("configured" if answer.changed else "unchanged")
    click.echo(f"cluster {spec.namespace}/{spec.name} {verb}" + ("" if created else f": {answer.summary}"))
    click.echo(f"workflow: {_web_ui_link(spec.namespace, spec.name)}")
    if wait:
        status = await _wait_ready(client, spec.namespace, spec.name, timeout)
        click.echo(f"cluster {spec.namespace}/{spec.name} is {status.phase}")


@main.command()
@file_option
@var_option
@var_file_option
def diff(files: tuple[str, ...], var: tuple[str, ...], var_file: str | None) -> None:
    """What applying the manifest would change on the running cluster: the spec's fields and which
    machines are replaced or added. Exit 0 when nothing would change, 1 when something would (as
    `kubectl diff`), 2 when the change would be refused."""
    from capt.client import clusters

    result = _load(files, var, var_file)
    spec = result.spec

    async def run() -> int:
        client = await clusters.connect()
        try:
            p = await clusters.preview(client, spec)
        except clusters.NotFound:
            click.echo(f"+ cluster {spec.namespace}/{spec.name} (not running: apply creates it)")
            return 1
        if not p.accepted:
            click.echo(f"rejected: {p.reason}", err=True)
            return EXIT_BAD_INPUT
        if not p.fields:
            return 0
        _print_preview(p)
        return 1

    try:
        code = asyncio.run(run())
    except ConnectionError as exc:
        click.echo(f"{exc} (is it running? `capt dev up` starts a local one)", err=True)
        code = 4
    _exit(code)
