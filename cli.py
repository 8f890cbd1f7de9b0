"""capt — Cluster API as durable Temporal workflows.

The CLI is thin: parse options, call a helper (spec loader, Temporal client, devstack),
render the result. Every command exits non-zero with one clear line on failure.
"""

from __future__ import annotations

import json
import sys

import click

from activities.aws.iam_cli import bootstrap_group
from devstack.cli import dev
from spec.errors import ManifestError
from spec.loader import LoadResult, load_file
from spec.summary import summarize
from spec.variables import parse_var_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Create and run self-managed kubeadm clusters on AWS with Temporal workflows."""


def _load(file: str, var: tuple[str, ...]) -> LoadResult:
    """Load a manifest or exit 1 with every problem listed."""
    try:
        variables = parse_var_options(var)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        return load_file(file, variables)
    except ManifestError as exc:
        for warning in exc.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(exc.render(), err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"cannot read {file}: {exc.strerror}", err=True)
        sys.exit(1)


file_option = click.option(
    "-f",
    "--file",
    "file",
    required=True,
    type=click.Path(dir_okay=False),
    help="CAPI manifest (multi-document YAML).",
)
var_option = click.option(
    "--var",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a ${KEY} variable (overrides the environment). Repeatable.",
)


@main.command()
@file_option
@var_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(file: str, var: tuple[str, ...], output: str) -> None:
    """Check a manifest and summarise the cluster it describes; nothing is created."""
    result = _load(file, var)
    if output == "json":
        click.echo(
            json.dumps({"spec": result.spec.model_dump(mode="json"), "warnings": result.warnings}, indent=2)
        )
    else:
        click.echo(summarize(result.spec, result.warnings))


main.add_command(dev)
main.add_command(bootstrap_group)


if __name__ == "__main__":
    main()
