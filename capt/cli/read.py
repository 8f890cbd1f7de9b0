"""Commands that read a cluster: get, describe."""

from __future__ import annotations

import json

import click

from capt.cli.common import _run, namespace_option
from capt.cli.root import main


@main.group()
def get() -> None:
    """List resources."""


@get.command("machines")
@click.argument("cluster", required=False)
@namespace_option
@click.option(
    "-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True
)
@_run
async def get_machines(cluster: str | None, namespace: str, output: str) -> None:
    """Every machine of one cluster (or of every running cluster): role, phase, version, node, AZ, instance."""
    from capt.client import clusters, describe

    client = await clusters.connect()
    found = (
        [await clusters.status(client, namespace, cluster)]
        if cluster
        else await clusters.list_clusters(client)
    )
    if output == "table":
        click.echo(describe.machines_table(found))
        return
    rows = [
        m | {"cluster": f"{s.namespace}/{s.name}"} for s in found for m in describe.as_json(s)["machines"]
    ]
    click.echo(_dump(rows, output))


def _dump(value, output: str) -> str:
    if output == "yaml":
        import yaml

        return yaml.safe_dump(value, sort_keys=False).rstrip()
    return json.dumps(value, indent=2)


@get.command("clusters")
@click.option(
    "-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table", show_default=True
)
@_run
async def get_clusters(output: str) -> None:
    """Every running cluster, from the workflow list."""
    from capt.client import clusters, describe

    client = await clusters.connect()
    if output == "table":
        # One visibility query over the search attributes; `-o wide` asks every cluster.
        click.echo(describe.rows_table(await clusters.cluster_rows(client)))
        return
    found = await clusters.list_clusters(client)
    if output == "wide":
        click.echo(describe.table(found))
    else:
        click.echo(_dump([describe.as_json(s) for s in found], output))


@main.group("describe")
def describe_group() -> None:
    """Show details of a resource."""


@describe_group.command("cluster")
@click.argument("name")
@namespace_option
@click.option(
    "-o", "--output", type=click.Choice(["tree", "json", "yaml"]), default="tree", show_default=True
)
@_run
async def describe_cluster(name: str, namespace: str, output: str) -> None:
    """The cluster as a tree (like `clusterctl describe cluster`), or JSON."""
    from capt.client import clusters, describe

    client = await clusters.connect()
    status = await clusters.status(client, namespace, name)
    if output in ("json", "yaml"):
        click.echo(_dump(describe.as_json(status), output))
    else:
        click.echo(describe.tree(status))
