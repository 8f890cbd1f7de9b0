"""`capt bootstrap iam`: one-time account set-up, registered on `capt` by capt/cli/__init__.py.

The work is done by `capt.activities.aws.iam_bootstrap.bootstrap_iam` (an operator's code, never
run by the worker); this only parses options and renders.
"""

from __future__ import annotations

import json
import sys

import click

# botocore and the policies load when the command runs: `capt --help` and `capt validate` stay
# free of the AWS SDK (issue 17: startup time).


@click.command("iam")
@click.option(
    "--print-worker-policy",
    is_flag=True,
    help="Only print the capt worker's policy document (JSON); call no AWS API.",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def iam_command(print_worker_policy: bool, output: str) -> None:
    """Create or update the IAM roles, policies and instance profiles capt's clusters use.

    Idempotent: run it again and nothing changes. Creates the instance profiles the manifests
    name (control-plane. / nodes.cluster-api-provider-aws.sigs.k8s.io) with their roles and
    least-privilege policies, and the managed policy the capt worker needs, which is printed as
    JSON on stdout (the list of changes goes to stderr). Needs IAM-admin credentials; endpoint
    and credentials come from the standard AWS environment.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from capt.activities.aws.errors import CaptAwsError
    from capt.activities.aws.iam_bootstrap import bootstrap_iam
    from capt.activities.aws.iam_worker_policy import worker_policy

    if print_worker_policy:
        click.echo(json.dumps(worker_policy(), indent=2))
        return
    try:
        result = bootstrap_iam()
    except (ClientError, BotoCoreError, CaptAwsError) as exc:
        click.echo(f"capt bootstrap iam: {exc}", err=True)
        sys.exit(1)
    if output == "json":
        click.echo(result.model_dump_json(indent=2))
        return
    for change in result.changes:
        click.echo(f"{change.action:<9}  {change.kind:<22}  {change.name}", err=True)
    verdict = "updated" if result.changed else "already up to date"
    click.echo(f"IAM for account {result.account_id} {verdict}.", err=True)
    click.echo(f"Attach {result.worker_policy_arn} to the principal that runs the capt worker:", err=True)
    click.echo(json.dumps(result.worker_policy, indent=2))


bootstrap_group = click.Group(
    "bootstrap", help="One-time AWS account setup for capt.", commands={"iam": iam_command}
)

__all__ = ["bootstrap_group", "iam_command"]
