"""`capt kubeconfig`: an admin kubeconfig for a cluster, short-lived, written 0600 or merged."""

from __future__ import annotations

import os
from pathlib import Path

import click

from capt.cli.common import _exit, _run, namespace_option
from capt.cli.root import main


@main.command()
@click.argument("cluster")
@namespace_option
@click.option(
    "--output", "output_file", type=click.Path(dir_okay=False), help="Write it to FILE (mode 0600)."
)
@click.option(
    "--merge",
    is_flag=True,
    help="Merge it into $KUBECONFIG (its first file) or ~/.kube/config, as context CLUSTER, and use it.",
)
@click.option(
    "--ttl",
    default="12h",
    show_default=True,
    help="How long the issued admin certificate is valid (e.g. 1h, 12h; at most 7 days).",
)
@_run
async def kubeconfig(cluster: str, namespace: str, output_file: str | None, merge: bool, ttl: str) -> None:
    """A kubeconfig for the cluster's admin, with a client certificate issued now for --ttl (not
    the long-lived one the workflows use). Printed, written to --output, or --merge'd."""
    import datetime as dt

    from capt.activities.aws import secrets as sm
    from capt.activities.kubeadm import pki
    from capt.client import clusters
    from capt.spec.durations import parse_duration

    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from exc
    if not 60 <= seconds <= 7 * 86400:
        raise click.BadParameter("must be between 1m and 7 days", param_hint="--ttl")
    if output_file and merge:
        raise click.UsageError("give --output or --merge, not both")
    client = await clusters.connect()
    status = await clusters.status(client, namespace, cluster)
    ca = sm.read_cluster_ca(status.region, namespace, cluster)
    if ca is None or not status.endpoint:
        click.echo(f"the cluster {namespace}/{cluster} has no API endpoint and CA yet", err=True)
        _exit(3)
    admin = pki.issue_cert(
        ca, pki.ADMIN_CN, organizations=(pki.ADMIN_ORG,), client=True, validity=dt.timedelta(seconds=seconds)
    )
    host, _, port = status.endpoint.rpartition(":")
    text = kubeconfig_text(cluster, pki.endpoint_url(host, int(port or 6443)), ca.cert, admin)
    if merge:
        path = merge_kubeconfig(text)
        click.echo(
            f"context {cluster} merged into {path} and made current (certificate valid for {ttl})", err=True
        )
    elif output_file:
        _write_private(Path(output_file), text)
        click.echo(f"wrote {output_file} (certificate valid for {ttl})", err=True)
    else:
        click.echo(text, nl=False)


def kubeconfig_text(cluster: str, server: str, ca_cert: str, admin) -> str:
    """A kubeconfig whose cluster, user and context are named after the cluster."""
    import base64

    import yaml

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}
        ],
        "users": [
            {
                "name": f"{cluster}-admin",
                "user": {"client-certificate-data": b64(admin.cert), "client-key-data": b64(admin.key)},
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-admin"}}],
        "current-context": cluster,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def merge_kubeconfig(text: str, path: Path | None = None) -> Path:
    """Merge `text`'s cluster, user and context into the kubeconfig kubectl uses (replacing entries
    of the same names), make its context current; returns the file written."""

    import yaml

    if path is None:
        first = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
        path = Path(first) if first else Path.home() / ".kube" / "config"
    new = yaml.safe_load(text)
    old = (yaml.safe_load(path.read_text()) if path.exists() else None) or {
        "apiVersion": "v1",
        "kind": "Config",
    }
    for section in ("clusters", "users", "contexts"):
        names = {e["name"] for e in new[section]}
        old[section] = [e for e in old.get(section) or [] if e.get("name") not in names] + new[section]
    old["current-context"] = new["current-context"]
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, yaml.safe_dump(old, sort_keys=False))
    return path


def _write_private(path: Path, text: str) -> None:

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)
