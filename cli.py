"""capt — Cluster API as durable Temporal workflows.

The CLI is thin: parse options, call a helper (spec loader, Temporal client, devstack),
render the result. Every command exits non-zero with one clear line on failure.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from capt.activities import redaction
from capt.activities.aws.iam_cli import bootstrap_group
from capt.spec.errors import ManifestError
from capt.spec.loader import LoadResult, load_manifest
from capt.spec.summary import summarize
from capt.spec.variables import parse_var_options
from devstack.cli import dev


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capt", prog_name="capt", message="%(prog)s %(version)s")
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0.1),
    envvar="CAPT_REQUEST_TIMEOUT",
    default=15.0,
    show_default=True,
    help="Seconds to wait for Temporal to answer a connection or request (then exit 4).",
)
def main(request_timeout: float) -> None:
    """Create and run self-managed kubeadm clusters on AWS with Temporal workflows."""

    os.environ["CAPT_REQUEST_TIMEOUT"] = str(request_timeout)
    # Library logs (botocore, the Temporal SDK) at CAPT_LOG_LEVEL (default WARNING), every line
    # through the redaction filter: no secret value at any level.
    logging.basicConfig(
        level=os.environ.get("CAPT_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redaction.install()


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
    from capt.plan.cluster import build_plan
    from capt.plan.names import cluster_id
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
    wf_id = urllib.parse.quote(f"cluster/{namespace}/{name}", safe="")
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
    from capt.spec import validation

    if err := validation.version_error(version):
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

    client = await clusters.connect()
    outcome = await clusters.delete(client, namespace, name, region=region, cluster_id=cluster_id)
    click.echo(f"cluster {namespace}/{name}: {outcome.message}")
    if outcome.action == "already-deleted":
        return
    click.echo(f"workflow: {_web_ui_link(namespace, name)}")
    if wait:
        await _wait_ready(client, namespace, name, timeout, until=lambda s: s.phase == "Deleted")
        click.echo(f"cluster {namespace}/{name} deleted")


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
    ca_text = sm.get_string(sm.client(status.region), sm.pki_secret_name(namespace, cluster, "ca"))
    if ca_text is None or not status.endpoint:
        click.echo(f"the cluster {namespace}/{cluster} has no API endpoint and CA yet", err=True)
        _exit(3)
    ca = sm._keypair(ca_text)
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
    import os

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
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


@main.group("codec")
def codec_group() -> None:
    """Payload encryption keys and the remote codec endpoint for the Web UI (docs/security.md)."""


@codec_group.command("keygen")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--id", "key_id", required=True, help="The new key's id (e.g. k2); it becomes current.")
def codec_keygen(path: Path, key_id: str) -> None:
    """Write a new AES-256 key into a key file and make it current; keys already there stay, so
    payloads they sealed still open (rotation). The file is written with mode 0600."""
    import base64

    from capt.client import codec

    existing: list[tuple[str, str]] = []
    if path.exists():
        try:
            keys = codec.load_key_file(path)
        except codec.CodecKeyError as err:
            raise click.ClickException(str(err)) from err
        existing = [(i, base64.b64encode(k).decode()) for i, k in keys.keys.items()]
    try:
        codec.write_key_file(path, key_id, existing=existing)
    except codec.CodecKeyError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{path}: current key {key_id} ({len(existing) + 1} key(s)); restart workers to use it")


@codec_group.command("server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    default=("http://127.0.0.1:8233", "http://localhost:8233"),
    show_default=True,
    help="Web UI origin allowed by CORS (repeatable).",
)
@click.option("--token-env", help="Require `Authorization: Bearer $<this variable>` on every request.")
def codec_server(host: str, port: int, origins: tuple[str, ...], token_env: str | None) -> None:
    """Serve /encode and /decode with the keys of CAPT_CODEC_KEY_FILE / CAPT_CODEC_KEYS, for the
    Web UI (`--ui-codec-endpoint`) and `temporal workflow show --codec-endpoint`."""

    from capt.client import codec, codec_server

    try:
        keys = codec.keys_from_env()
    except codec.CodecKeyError as err:
        raise click.ClickException(str(err)) from err
    if keys is None:
        raise click.ClickException(f"no keys: set {codec.KEY_FILE_ENV} or {codec.KEYS_ENV}")
    token = os.environ.get(token_env) if token_env else None
    if token_env and not token:
        raise click.ClickException(f"--token-env {token_env}: the variable is not set")
    server = codec_server.serve(codec.AesGcmCodec(keys), host, port, origins, token)
    click.echo(f"codec endpoint http://{host}:{port} (keys: {', '.join(keys.keys)}; current {keys.current})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


main.add_command(dev)
main.add_command(bootstrap_group)


if __name__ == "__main__":
    main()


@main.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(capt completion bash)" (or add it to your rc file)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the three shells click supports
    click.echo(cls(main, {}, "capt", "_CAPT_COMPLETE").source())
