"""`capt dev sim …`: look at the workload simulator and turn its fault knobs.

    capt dev sim status [-o json]
    capt dev sim never-ready TARGET [--off]      the node registers but never becomes Ready
    capt dev sim not-ready TARGET [--off]        a Ready node goes NotReady (until --off)
    capt dev sim slow-boot TARGET --seconds N    the instance boots N seconds after it runs
    capt dev sim etcd-unhealthy TARGET [--off]   its etcd member stops answering
    capt dev sim api-5xx CLUSTER [--count N]     the API server answers 503 (N times, or until --off)
    capt dev sim ccm-down CLUSTER [--off]        its cloud-controller-manager stops: Service load
                                                 balancers are neither made nor removed
    capt dev sim csi-down CLUSTER [--off]        its EBS CSI controller stops: volumes are neither
                                                 provisioned, attached, detached nor deleted
    capt dev sim clear                           every fault off
    capt dev sim set KEY=VALUE ...               boot_delay, ready_delay, node_gone_delay, ...

A TARGET is a machine name (the capt/machine tag), a node name or an instance id; a knob may be
set before the machine exists. A CLUSTER is the cluster's name, its endpoint host or (ccm-down,
csi-down) its cloud cluster id. The commands
talk to the simulator's admin endpoint, found from the stack's settings in the state dir.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import click

from capt.dev.stack.config import DEFAULT_STATE_DIR, load_config


def _state_dir_option(func):
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_STATE_DIR,
        envvar="CAPT_STATE_DIR",
        show_default=True,
        help="The local stack's state dir (its stack.json names the simulator's port).",
    )(func)


def _call(state_dir: Path, method: str, path: str, body: dict | None = None) -> dict:
    url = load_config(state_dir.resolve()).sim_url + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error") or err.reason
        except ValueError:
            message = err.reason
        raise click.ClickException(f"simulator: {message}") from None
    except OSError as err:
        raise click.ClickException(
            f"the workload simulator does not answer at {url} ({getattr(err, 'reason', err)}); "
            "start the local stack with `capt dev up`"
        ) from None


@click.group("sim")
def sim() -> None:
    """Workload simulator: state and fault knobs (nodes, etcd, API server)."""


@sim.command()
@_state_dir_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(state_dir: Path, output: str) -> None:
    """Clusters, nodes, etcd members and instances as the simulator sees them."""
    state = _call(state_dir, "GET", "/sim/state")
    if output == "json":
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(render_status(state))


def render_status(state: dict) -> str:
    lines = [] if state.get("clusters") else ["clusters: none yet (no kubeadm init has run)"]
    for c in state.get("clusters", []):
        up = "up" if c["api_up"] else "DOWN"
        quorum = "quorum" if c["etcd_quorum"] else "NO QUORUM"
        lines.append(f"cluster {c['name']} {c['version']} https://{c['endpoint']} API {up}, etcd {quorum}")
        for n in c["nodes"]:
            role = "control-plane" if n["control_plane"] else "worker"
            cordon = " cordoned" if n["unschedulable"] else ""
            lines.append(
                f"  node {n['name']} {role} Ready={n['ready']} ({n['reason']}){cordon} {n['kubelet_version']}"
            )
        for m in c["etcd_members"]:
            lines.append(f"  etcd {m['id']} {m['name']} {'healthy' if m['healthy'] else 'UNHEALTHY'}")
        cloud = c.get("cloud") or {}
        if cloud:
            error = f" ({cloud['error']})" if cloud.get("error") else ""
            lines.append(
                f"  cloud id {cloud.get('cluster_id') or '-'} vpc {cloud.get('vpc_id') or '-'}: "
                f"ccm {cloud.get('ccm')}{error}, csi {cloud.get('csi')}"
            )
            for svc, lb in sorted((cloud.get("load_balancers") or {}).items()):
                lines.append(f"  service {svc} -> ELB {lb}")
            for pv, volume in sorted((cloud.get("volumes") or {}).items()):
                lines.append(f"  {pv} -> {volume}")
    lines.append("instances:")
    for m in state.get("machines", []):
        why = f": {m['reason']}" if m["reason"] else ""
        lines.append(
            f"  {m['instance_id']} {m['cluster']}/{m['machine'] or '-'} {m['state']} {m['phase']}{why}"
        )
    active = {k: v for k, v in state.get("faults", {}).items() if v}
    lines.append("faults: " + (json.dumps(active) if active else "none"))
    return "\n".join(lines)


def _fault_command(kind: str, help_text: str, *, seconds: bool = False, count: bool = False):
    @_state_dir_option
    @click.argument("target")
    @click.option("--off", is_flag=True, help="Turn the fault off for this target.")
    def command(state_dir: Path, target: str, off: bool, **extra) -> None:
        body = {
            "kind": kind,
            "target": target,
            "enabled": not off,
            **{k: v for k, v in extra.items() if v is not None},
        }
        result = _call(state_dir, "POST", "/sim/faults", body)
        click.echo(f"{kind} {target}: {'off' if off else 'on'}; faults now {json.dumps(result['faults'])}")

    command.__doc__ = help_text
    if seconds:
        command = click.option("--seconds", type=float, help="Boot delay for the target.")(command)
    if count:
        command = click.option("--count", type=int, help="Only the next N requests (default: until --off).")(
            command
        )
    return sim.command(kind)(command)


_fault_command(
    "never-ready", "A node (machine, node name or instance id) that registers but never becomes Ready."
)
_fault_command("not-ready", "A node that goes NotReady (its kubelet reports NotReady) until --off.")
_fault_command(
    "slow-boot", "An instance that boots --seconds after it runs (instead of the default).", seconds=True
)
_fault_command("etcd-unhealthy", "The etcd member of a control-plane machine stops answering.")
_fault_command("api-5xx", "A cluster's API server (name or endpoint host) answers 503.", count=True)
_fault_command(
    "ccm-down",
    "A cluster's cloud-controller-manager stops: no load balancer is made or removed, and a deleted "
    "LoadBalancer Service keeps its finalizer.",
)
_fault_command(
    "csi-down",
    "A cluster's EBS CSI controller stops: no volume is provisioned, attached, detached or deleted.",
)


@sim.command()
@_state_dir_option
def clear(state_dir: Path) -> None:
    """Turn every fault off."""
    _call(state_dir, "DELETE", "/sim/faults")
    click.echo("all faults off")


@sim.command("set")
@_state_dir_option
@click.argument("settings", nargs=-1, required=True, metavar="KEY=SECONDS...")
def set_settings(state_dir: Path, settings: tuple[str, ...]) -> None:
    """Change timings: boot_delay, ready_delay, node_gone_delay, join_timeout, pod_grace,
    ssm_delay, poll_interval, reregister_delay, cloud_interval (seconds)."""
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=SECONDS, got {item!r}")
        changes[key.strip().replace("-", "_")] = value.strip()
    result = _call(state_dir, "POST", "/sim/settings", changes)
    click.echo(json.dumps(result["settings"]))
