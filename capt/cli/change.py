"""Commands that change a running cluster: scale, upgrade, pause, resume, annotate, delete."""

from __future__ import annotations

import click

from capt.cli.common import _run, _wait_ready, _web_ui_link, namespace_option, timeout_option, wait_option
from capt.cli.root import main


@main.group()
def scale() -> None:
    """Change a replica count."""


@scale.command("controlplane")
@click.argument("cluster")
@click.option("--replicas", type=int, required=True)
@namespace_option
@wait_option
@timeout_option
@_run
async def scale_controlplane(cluster: str, replicas: int, namespace: str, wait: bool, timeout: str) -> None:
    """Scale the control plane (odd numbers: 1, 3, 5, 7)."""
    from capt.client import clusters
    from capt.spec import validation

    if err := validation.control_plane_replicas_error(replicas) or validation.control_plane_size_error(
        replicas
    ):
        raise click.BadParameter(err, param_hint="--replicas")

    client = await clusters.connect()
    await clusters.update(
        client, namespace, cluster, "scale_control_plane", clusters.scale_control_plane(replicas)
    )
    click.echo(f"control plane of {namespace}/{cluster}: scaling to {replicas}")
    if wait:
        await _wait_ready(client, namespace, cluster, timeout)


@scale.command("machinedeployment")
@click.argument("cluster")
@click.argument("deployment")
@click.option("--replicas", type=int, required=True)
@namespace_option
@wait_option
@timeout_option
@_run
async def scale_machinedeployment(
    cluster: str, deployment: str, replicas: int, namespace: str, wait: bool, timeout: str
) -> None:
    """Scale a machine deployment."""
    from capt.client import clusters
    from capt.spec import validation

    if replicas < 0:
        raise click.BadParameter(f"must not be negative, got {replicas}", param_hint="--replicas")
    if err := validation.deployment_replicas_error(replicas):
        raise click.BadParameter(err, param_hint="--replicas")

    client = await clusters.connect()
    await clusters.update(
        client, namespace, cluster, "scale_deployment", clusters.scale_deployment(deployment, replicas)
    )
    click.echo(f"machine deployment {deployment} of {namespace}/{cluster}: scaling to {replicas}")
    if wait:
        await _wait_ready(client, namespace, cluster, timeout)


@main.command()
@click.argument("cluster")
@click.option(
    "--version", "version", required=True, help="Kubernetes version, e.g. v1.21.2 (one minor at a time)."
)
@namespace_option
@wait_option
@timeout_option
@_run
async def upgrade(cluster: str, version: str, namespace: str, wait: bool, timeout: str) -> None:
    """Upgrade the control plane, then every machine deployment, to a Kubernetes version."""
    from capt.client import clusters
    from capt.rules.versions import manifest_version_error

    if err := manifest_version_error(version):
        raise click.BadParameter(err, param_hint="--version")

    client = await clusters.connect()
    await clusters.update(client, namespace, cluster, "upgrade", clusters.upgrade(version))
    click.echo(f"{namespace}/{cluster}: upgrading to {version} (control plane first)")
    if wait:
        await _wait_ready(
            client, namespace, cluster, timeout, until=lambda s: s.phase == "Ready" and s.version == version
        )


@main.command()
@click.argument("cluster")
@namespace_option
@_run
async def pause(cluster: str, namespace: str) -> None:
    """Stop applying changes (no machine is created or deleted) until `capt resume`."""
    from capt.client import clusters

    client = await clusters.connect()
    await clusters.update(client, namespace, cluster, "pause")
    click.echo(f"{namespace}/{cluster} paused")


@main.command()
@click.argument("cluster")
@namespace_option
@_run
async def resume(cluster: str, namespace: str) -> None:
    """Resume a paused cluster."""
    from capt.client import clusters

    client = await clusters.connect()
    await clusters.update(client, namespace, cluster, "resume")
    click.echo(f"{namespace}/{cluster} resumed")


@main.group()
def annotate() -> None:
    """Set or remove annotations (kubectl's key=value / key- syntax)."""


@annotate.command("machine")
@click.argument("cluster")
@click.argument("machine")
@click.argument("annotations", nargs=-1, required=True)
@namespace_option
@_run
async def annotate_machine(cluster: str, machine: str, annotations: tuple[str, ...], namespace: str) -> None:
    """Annotate a machine for its health checks: cluster.x-k8s.io/skip-remediation,
    cluster.x-k8s.io/paused (not judged or remediated) or cluster.x-k8s.io/remediate-machine
    (remediated first), e.g. `capt annotate machine prod prod-md-0-x7k2p cluster.x-k8s.io/paused=`."""
    from capt.client import clusters

    try:
        parsed = clusters.parse_annotations(annotations)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="ANNOTATIONS") from None
    client = await clusters.connect()
    await clusters.annotate_machine(client, namespace, cluster, machine, parsed)
    click.echo(f"{namespace}/{cluster}: machine {machine} annotated")


@main.group()
def delete() -> None:
    """Delete resources."""


@delete.command("cluster")
@click.argument("name")
@namespace_option
@click.option(
    "--region",
    help="Where the cluster's resources are; needed only when its workflow is gone and cannot tell.",
)
@click.option(
    "--cluster-id",
    help="The cluster's AWS id (its owned tags) when its workflow cannot tell; default: <namespace>.<name> (a cluster created before ids were namespaced: its name).",
)
@wait_option
@timeout_option
@_run
async def delete_cluster(
    name: str, namespace: str, region: str | None, cluster_id: str | None, wait: bool, timeout: str
) -> None:
    """Delete a cluster: its load balancer Services and volumes, machines, then everything tagged
    for it in AWS; ends when AWS holds nothing of it. Safe to run again: a deletion under way is
    joined, a failed one (something blocked it) runs again, and a cluster whose workflow failed
    or was terminated is deleted from what AWS holds."""
    from capt.client import clusters
    from capt.client import delete as client_delete

    client = await clusters.connect()
    outcome = await client_delete.delete(client, namespace, name, region=region, cluster_id=cluster_id)
    click.echo(f"cluster {namespace}/{name}: {outcome.message}")
    if outcome.action == "already-deleted":
        return
    click.echo(f"workflow: {_web_ui_link(namespace, name)}")
    if wait:
        await _wait_ready(client, namespace, name, timeout, until=lambda s: s.phase == "Deleted")
        click.echo(f"cluster {namespace}/{name} deleted")
