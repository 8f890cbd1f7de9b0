"""Benchmark 2: AWS API calls per operation — network, machine, steady state, rolling upgrade.

    python -m capt.dev.bench aws_calls [--workers N] [--full] [--quick] [--results DIR]

Every number is botocore's `before-send` count (activities/aws/session.py) of a real activity
against in-process moto, or such a count multiplied by how often the workflows run the activity:

1. Network: InfrastructureWorkflow creates the reference network, creates it again (a re-run
   finds everything) and deletes it (bench/infra_calls.py). Calls are split into reads and
   mutating calls (`is_mutating`); the create's *mutating minimum* is a census of what the
   create left in moto: one call per resource, plus one per setting that AWS's create call
   cannot carry and that differs from AWS's default (e.g. DNS hostnames on a VPC, public IPs
   on a subnet, a route, a route-table association, a security group's ingress rules — one
   Authorize per group, all its rules in one call). Tags cost nothing: create calls carry them.
2. Per machine: each machine-side activity runs once against moto (`activity_costs`); the
   workflows' executions of each activity per machine come from the fake cloud
   (testkit/fake_cloud.py) after time-skipping runs — a 3+3 ClusterWorkflow create under the
   latency model (bench/critical_path.measure) and a MachineDeployment of N workers created,
   rolled to a new template (maxSurge 1, maxUnavailable 0) and deleted.
3. Steady state: the health check's calls per hour for 3+3 and 3+50 (bench/health_aws_calls),
   against a modelled CAPA-style per-machine poll.
4. Rolling upgrade of N workers: total calls and per replaced machine.

moto answers at once: polls a real region needs while resources come up (NAT gateways,
instances pending longer than modelled) are in the latency model only where it models them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from capt.dev.bench import results
from capt.dev.paths import REPO_ROOT
from capt.dev.testkit import time_skipping

ROOT = REPO_ROOT

REGION = "ap-northeast-2"
VERSION = "v1.30.2"
NEW_VERSION_TEMPLATE = "md-0-b"

# AWS operations that change something. Reads are Describe*/Get*/List*/Lookup*/Search*/Filter*.
MUTATING_VERBS = (
    "Create",
    "Run",
    "Allocate",
    "Associate",
    "Attach",
    "Authorize",
    "Revoke",
    "Modify",
    "Register",
    "Deregister",
    "Put",
    "Delete",
    "Release",
    "Detach",
    "Disassociate",
    "Terminate",
    "Replace",
    "Add",
    "Remove",
    "Configure",
    "Set",
    "Update",
    "Enable",
    "Disable",
    "Apply",
    "Tag",
    "Untag",
    "Send",
    "Cancel",
    "Start",
    "Stop",
    "Reboot",
    "Reset",
    "Restore",
    "Rotate",
    "Import",
)
# Mutating calls that create something (a re-run must make none of these).
CREATING_VERBS = ("Create", "Run", "Allocate")


def operation(key: str) -> str:
    """`ec2:CreateVpc` -> `CreateVpc`."""
    return key.rsplit(":", 1)[-1]


def is_mutating(key: str) -> bool:
    """Whether an AWS operation (`service:Operation` or `Operation`) changes something."""
    op = operation(key)
    return any(op.startswith(v) and op[len(v) : len(v) + 1].isupper() or op == v for v in MUTATING_VERBS)


def is_creating(key: str) -> bool:
    op = operation(key)
    return any(op.startswith(v) and op[len(v) : len(v) + 1].isupper() for v in CREATING_VERBS)


def split(calls: dict[str, int]) -> dict[str, int]:
    """Total, mutating and read calls of a per-operation tally."""
    mutating = sum(n for k, n in calls.items() if is_mutating(k))
    total = sum(calls.values())
    return {"total": total, "mutating": mutating, "reads": total - mutating}


def add(*tallies: dict[str, int], times: float = 1) -> dict[str, float]:
    out: Counter = Counter()
    for t in tallies:
        for k, n in t.items():
            out[k] += n * times
    return dict(out)


@contextlib.contextmanager
def _env(var: str, value: str) -> Iterator[None]:
    old = os.environ.get(var)
    os.environ[var] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


# ---------------------------------------------------------------------------------------------
# 1. network


def network_minimum(region: str = REGION) -> dict[str, int]:
    """The mutating calls a create of what moto now holds cannot avoid, per kind of call: one per
    resource, one per setting a create call cannot carry that differs from AWS's default. The
    default VPC and its resources are not counted."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region)
    need: Counter = Counter()
    vpcs = [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
    vpc_ids = [v["VpcId"] for v in vpcs]
    for vpc in vpc_ids:
        need["CreateVpc"] += 1
        # AWS's defaults for a new VPC: DNS support on, DNS hostnames off.
        if not ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")["EnableDnsSupport"][
            "Value"
        ]:
            need["ModifyVpcAttribute"] += 1
        if ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"][
            "Value"
        ]:
            need["ModifyVpcAttribute"] += 1
    if not vpc_ids:
        return dict(need)
    in_vpc = [{"Name": "vpc-id", "Values": vpc_ids}]
    for subnet in ec2.describe_subnets(Filters=in_vpc)["Subnets"]:
        need["CreateSubnet"] += 1
        if subnet.get("MapPublicIpOnLaunch"):
            need["ModifySubnetAttribute"] += 1
    for _ in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": vpc_ids}])[
        "InternetGateways"
    ]:
        need["CreateInternetGateway"] += 1
        need["AttachInternetGateway"] += 1
    nats = [
        n
        for n in ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"]
        if n.get("State") not in ("deleted", "deleting", "failed")
    ]
    need["CreateNatGateway"] += len(nats)
    need["AllocateAddress"] += sum(
        1 for a in ec2.describe_addresses()["Addresses"] if a.get("Domain") == "vpc"
    )
    for rt in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]:
        main = any(a.get("Main") for a in rt.get("Associations", []))
        if not main:
            need["CreateRouteTable"] += 1
        need["CreateRoute"] += sum(1 for r in rt.get("Routes", []) if r.get("GatewayId") != "local")
        need["AssociateRouteTable"] += sum(
            1 for a in rt.get("Associations", []) if not a.get("Main") and a.get("SubnetId")
        )
    for sg in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]:
        default = sg["GroupName"] == "default"
        if not default:
            need["CreateSecurityGroup"] += 1
        # AWS makes a group with all traffic out; a VPC's default group also lets in all traffic
        # from itself. Removing a starting rule is a Revoke, adding any is an Authorize (all of a
        # direction's rules in one call).
        everywhere = [p for p in sg.get("IpPermissionsEgress", []) if _all_traffic(p) and _to_anywhere(p)]
        if not everywhere:
            need["RevokeSecurityGroupEgress"] += 1
        if len(sg.get("IpPermissionsEgress", [])) > len(everywhere):
            need["AuthorizeSecurityGroupEgress"] += 1
        ingress = sg.get("IpPermissions", [])
        from_itself = [
            p
            for p in ingress
            if default
            and _all_traffic(p)
            and [g["GroupId"] for g in p.get("UserIdGroupPairs", [])] == [sg["GroupId"]]
        ]
        if default and not from_itself:
            need["RevokeSecurityGroupIngress"] += 1
        if len(ingress) > len(from_itself):
            need["AuthorizeSecurityGroupIngress"] += 1
    elb = boto3.client("elb", region_name=region)
    for lb in elb.describe_load_balancers()["LoadBalancerDescriptions"]:
        if lb.get("VPCId") not in vpc_ids:
            continue
        need["CreateLoadBalancer"] += 1
        hc = lb.get("HealthCheck", {})
        port = lb["ListenerDescriptions"][0]["Listener"]["InstancePort"]
        aws_default = {
            "Target": f"TCP:{port}",
            "Interval": 30,
            "Timeout": 5,
            "UnhealthyThreshold": 2,
            "HealthyThreshold": 10,
        }
        if {k: hc.get(k) for k in aws_default} != aws_default:
            need["ConfigureHealthCheck"] += 1
        attrs = elb.describe_load_balancer_attributes(LoadBalancerName=lb["LoadBalancerName"])
        if attrs["LoadBalancerAttributes"].get("CrossZoneLoadBalancing", {}).get("Enabled"):
            need["ModifyLoadBalancerAttributes"] += 1
    elbv2 = boto3.client("elbv2", region_name=region)
    for lb in elbv2.describe_load_balancers()["LoadBalancers"]:
        if lb.get("VpcId") not in vpc_ids:
            continue
        need["CreateLoadBalancer"] += 1
        need["CreateListener"] += len(
            elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        )
        need["CreateTargetGroup"] += len(
            elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
        )
    return {k: v for k, v in sorted(need.items()) if v}


def _all_traffic(permission: dict) -> bool:
    return permission.get("IpProtocol") == "-1"


def _to_anywhere(permission: dict) -> bool:
    return [r.get("CidrIp") for r in permission.get("IpRanges", [])] == ["0.0.0.0/0"]


async def measure_network() -> dict[str, Any]:
    from capt.dev.bench import infra_calls

    census: dict[str, dict[str, int]] = {}

    def inspect(phase: str) -> None:
        if phase == "create":
            census["minimum"] = network_minimum()

    calls = await infra_calls.measure(inspect)
    phases = {}
    for phase, tally in calls.items():
        mutating = {operation(k): n for k, n in sorted(tally.items()) if is_mutating(k)}
        phases[phase] = {
            **split(tally),
            "creating": sum(n for k, n in tally.items() if is_creating(k)),
            "by_operation": dict(sorted(tally.items())),
            "mutating_by_operation": mutating,
        }
    minimum = census["minimum"]
    made = phases["create"]["mutating_by_operation"]
    phases["create"]["mutating_minimum"] = sum(minimum.values())
    phases["create"]["minimum_by_operation"] = minimum
    # What the create did beyond the census (or, negative, short of it), per operation.
    phases["create"]["beyond_minimum"] = {
        op: made.get(op, 0) - minimum.get(op, 0)
        for op in sorted(set(made) | set(minimum))
        if made.get(op, 0) != minimum.get(op, 0)
    }
    return phases


# ---------------------------------------------------------------------------------------------
# 2. one machine's activities against moto

# Labels: an activity, or an activity in one of its cases (how the workflow run meets it).
NOT_MEASURED = {
    "send_etcd_member_removal": "SSM SendCommand to a control-plane instance; moto runs no SSM agent",
    "check_etcd_member_removal": "SSM GetCommandInvocation",
    "send_etcd_member_list": "SSM SendCommand",
    "check_etcd_member_list": "SSM GetCommandInvocation",
}
# The workload-side activities (Kubernetes API, not AWS) the fake cloud also counts.
NOT_AWS = {
    "list_workload_nodes",
    "cordon_node",
    "drain_node",
    "delete_node",
    "upgrade_cluster_components",
    "describe_machine_workflows",
}


def activity_costs(region: str = REGION) -> dict[str, dict[str, int]]:
    """Each machine-side activity's AWS calls, per operation, run once against moto in the
    order a machine's life runs them (a worker, then a control-plane machine's extras)."""
    from moto import mock_aws
    from temporalio.testing import ActivityEnvironment

    from capt.activities.aws import images, session
    from capt.activities.aws import instances as ec2
    from capt.activities.aws import secrets as sm
    from capt.activities.kubeadm import bootstrap as kb
    from capt.dev.testkit import aws_setup
    from capt.spec.models import KubeadmConfigSpec, MachineTemplate

    cluster = "bench-calls"
    costs: dict[str, dict[str, int]] = {}
    env = ActivityEnvironment()

    def run(label: str, fn: Any, arg: Any) -> Any:
        result = env.run(fn, arg)
        costs[label] = dict(sorted(result.aws_calls.items()))
        return result

    with _env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false"), mock_aws():
        session.reset_clients()
        net = aws_setup.machine_net(cluster, VERSION, region)
        endpoint = f"{net.load_balancer}.elb.example"
        pki = env.run(
            sm.ensure_cluster_pki,
            sm.ClusterPKIRequest(
                cluster_name=cluster, region=region, endpoint_host=endpoint, cluster_id=cluster
            ),
        )
        image = run(
            "lookup_image",
            images.lookup_image,
            images.ImageLookupRequest(region=region, kubernetes_version=VERSION, instance_type="t3.large"),
        ).image.image_id

        def machine(name: str, role: str, kind: str, az: str) -> str:
            token_arn = None
            if kind != "init":
                token = run(
                    "ensure_bootstrap_token",
                    sm.ensure_bootstrap_token,
                    sm.BootstrapTokenRequest(
                        cluster_name=cluster, region=region, machine_name=name, cluster_id=cluster
                    ),
                )
                token_arn = token.secret_arn
                # create_bootstrap_token_secret: its AWS part reads the token (the rest is the
                # workload's API server).
                with session.counting_calls() as tally:
                    sm.read_bootstrap_token(sm.client(region), token_arn)
                costs["create_bootstrap_token_secret"] = dict(tally)
            refs = run(
                f"prepare_bootstrap_data ({kind})",
                kb.prepare_bootstrap_data,
                kb.BootstrapRequest(
                    cluster_name=cluster,
                    region=region,
                    machine_name=name,
                    kind=kind,  # type: ignore[arg-type]
                    kubernetes_version=VERSION,
                    kubeadm=KubeadmConfigSpec(),
                    endpoint_host=endpoint,
                    pki=pki,
                    token_secret_arn=token_arn,
                    cluster_id=cluster,
                ),
            )
            request = ec2.InstanceRequest(
                region=region,
                cluster_name=cluster,
                machine_name=name,
                role=role,  # type: ignore[arg-type]
                availability_zone=az,
                subnet_id=net.subnets[az],
                security_group_ids=(net.control_plane_sg if role == "control-plane" else net.node_sg,),
                template=MachineTemplate(name="tpl", instance_type="t3.large"),
                kubernetes_version=VERSION,
                image_id=image,
                bootstrap_secret_prefix=refs.secret_prefix,
                bootstrap_chunks=refs.chunks,
                cluster_id=cluster,
            )
            iid = run("ensure_instance", ec2.ensure_instance, request).instance_id
            run("ensure_instance (found)", ec2.ensure_instance, request)
            run(
                "describe_instance",
                ec2.describe_instance,
                ec2.DescribeInstanceRequest(region=region, instance_id=iid),
            )
            if token_arn:
                run(
                    "refresh_bootstrap_token",
                    sm.refresh_bootstrap_token,
                    sm.BootstrapTokenRefreshRequest(region=region, secret_arn=token_arn, ttl_seconds=3600),
                )
            delete = sm.DeleteBootstrapDataRequest(
                cluster_name=cluster,
                region=region,
                machine_name=name,
                secret_prefix=refs.secret_prefix,
                chunks=refs.chunks,
                cluster_id=cluster,
            )
            run("delete_bootstrap_data", sm.delete_bootstrap_data, delete)
            run("delete_bootstrap_data (nothing left)", sm.delete_bootstrap_data, delete)
            return iid

        azs = list(net.subnets)
        worker = machine("md-0-aaaaa", "node", "join-worker", azs[0])
        first_cp = machine("cp-aaaaa", "control-plane", "init", azs[1])
        machine("cp-bbbbb", "control-plane", "join-control-plane", azs[0])
        lb = ec2.LoadBalancerRegistration(
            region=region,
            load_balancer_type="classic",
            load_balancer_name=net.load_balancer,
            instance_id=first_cp,
        )
        run("register_with_load_balancer", ec2.register_with_load_balancer, lb)
        run("register_with_load_balancer (already registered)", ec2.register_with_load_balancer, lb)
        run("deregister_from_load_balancer", ec2.deregister_from_load_balancer, lb)
        run(
            "lookup_machine_instance",
            ec2.lookup_machine_instance,
            ec2.MachineInstanceLookup(region=region, cluster_name=cluster, machine_name="md-0-aaaaa"),
        )
        for iid in (worker, first_cp):
            run(
                "terminate_instance",
                ec2.terminate_instance,
                ec2.TerminateInstanceRequest(region=region, instance_id=iid, cluster_id=cluster),
            )
        session.reset_clients()
    return costs


# ---------------------------------------------------------------------------------------------
# 2b. how often the workflows run each activity, per machine


def counting_cloud_class():
    """A FakeCloud that also records, per machine, which activity (in which case) ran: the
    labels of `activity_costs`."""
    from temporalio import activity

    from capt.dev.testkit.fake_cloud import FakeCloud

    class CountingCloud(FakeCloud):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.per_machine: dict[str, Counter] = {}
            self.kind: dict[str, str] = {}
            self.ran: dict[str, Counter] = {}  # machine -> activity name -> executions
            self._record_lock = threading.Lock()

        def machine_of(self, arg: Any) -> str | None:
            name = getattr(arg, "machine_name", None)
            if name:
                return name
            arn = getattr(arg, "token_secret_arn", None) or getattr(arg, "secret_arn", None)
            if arn:  # the fake's token ARNs end in the machine's name
                return arn.rsplit("/", 1)[-1]
            iid = getattr(arg, "instance_id", None) or getattr(arg, "departing_instance_id", None)
            inst = self.instances.get(iid or "")
            return inst.machine if inst else None

        def label(self, name: str, arg: Any, machine: str, again: bool) -> str:
            if name == "prepare_bootstrap_data":
                self.kind[machine] = arg.kind
                return f"prepare_bootstrap_data ({arg.kind})"
            if name == "ensure_instance" and again:
                return "ensure_instance (found)"
            if name == "delete_bootstrap_data" and again:
                return "delete_bootstrap_data (nothing left)"
            if name == "register_with_load_balancer" and again:
                return "register_with_load_balancer (already registered)"
            return name

        def activities(self) -> list:
            wrapped = []
            for fn in super().activities():
                name = activity._Definition.must_from_callable(fn).name
                if name in NOT_AWS or asyncio.iscoroutinefunction(fn):
                    wrapped.append(fn)
                    continue
                wrapped.append(self._wrap(fn, name))
            return wrapped

        def _wrap(self, fn: Any, name: str) -> Any:
            cloud = self

            def recorded(arg: Any) -> Any:
                result = fn(arg)  # a refused call raises: not counted, as the fake does not count it
                machine = cloud.machine_of(arg) or "(cluster)"
                with cloud._record_lock:
                    ran = cloud.ran.setdefault(machine, Counter())
                    label = cloud.label(name, arg, machine, again=ran[name] > 0)
                    ran[name] += 1
                    cloud.per_machine.setdefault(machine, Counter())[label] += 1
                return result

            functools.update_wrapper(recorded, fn, updated=())
            return activity.defn(name=name)(recorded)

        def snapshot(self) -> dict[str, Counter]:
            with self._record_lock:
                return {m: Counter(c) for m, c in self.per_machine.items()}

        def role_of(self, machine: str) -> str:
            for inst in self.instances.values():
                if inst.machine == machine:
                    return "control-plane" if inst.role == "control-plane" else "worker"
            return "control-plane" if "control-plane" in machine else "worker"

    return CountingCloud


def diff(after: dict[str, Counter], before: dict[str, Counter]) -> dict[str, Counter]:
    out = {}
    for m, c in after.items():
        d = c - before.get(m, Counter())
        if d:
            out[m] = d
    return out


def cost_of(executions: dict[str, float], costs: dict[str, dict[str, int]]) -> dict[str, float]:
    """AWS calls per operation of activity executions (label -> count), and what is not measured."""
    out: Counter = Counter()
    for label, n in executions.items():
        for op, c in costs.get(label, {}).items():
            out[op] += n * c
    return dict(sorted(out.items()))


def launched(phase: dict[str, Counter]) -> list[str]:
    """The machines whose instance was launched in this phase."""
    return sorted(m for m, c in phase.items() if c.get("ensure_instance") and m != "(cluster)")


def mean_executions(phase: dict[str, Counter], machines: list[str]) -> dict[str, float]:
    """Mean executions per machine of `machines`. Executions that name no machine (lookup_image:
    one per launch) are shared out over the machines launched in the phase."""
    total: Counter = Counter()
    for m in machines:
        total.update(phase.get(m, Counter()))
    shared = phase.get("(cluster)", Counter())
    launches = launched(phase)
    if shared and launches:
        ours = sum(1 for m in machines if m in launches)
        for label, n in shared.items():
            total[label] += n * ours / len(launches)
    return {k: round(v / len(machines), 2) for k, v in sorted(total.items())} if machines else {}


async def measure_cluster_create() -> dict[str, Any]:
    """A 3+3 ClusterWorkflow create under the latency model (bench.critical_path.measure), with
    the fake cloud recording each machine's activity executions."""
    import capt.dev.testkit.fake_cloud as fake_cloud
    from capt.dev.bench import critical_path, model

    clouds = []
    base = counting_cloud_class()

    class Kept(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            clouds.append(self)

    original = fake_cloud.FakeCloud
    fake_cloud.FakeCloud = Kept  # critical_path.measure builds its cloud from this name
    try:
        run = await critical_path.measure(critical_path.QUICKSTART, "classic", model.load())
    finally:
        fake_cloud.FakeCloud = original
    [cloud] = clouds
    per_machine = cloud.snapshot()
    by_role: dict[str, list[str]] = {"control-plane": [], "worker": []}
    for m in per_machine:
        if m != "(cluster)":
            by_role[cloud.role_of(m)].append(m)
    first = [m for m in by_role["control-plane"] if cloud.kind.get(m) == "init"]
    joining = [m for m in by_role["control-plane"] if m not in first]
    return {
        "create_seconds": run["create_seconds"],
        "machines": {r: len(ms) for r, ms in by_role.items()},
        "executions": {
            "first control-plane machine": mean_executions(per_machine, first),
            "joining control-plane machine": mean_executions(per_machine, joining),
            "worker": mean_executions(per_machine, by_role["worker"]),
        },
    }


async def measure_rollout(workers: int) -> dict[str, Any]:
    """A MachineDeployment of `workers` on the fake cloud (latency model's boot, join and
    terminate times): created, rolled to a new template (maxSurge 1, maxUnavailable 0), deleted.
    Per phase, each machine's activity executions."""
    from datetime import timedelta

    from capt.dev.bench import model
    from capt.dev.testkit.context import cluster_context, running_worker, unique
    from capt.spec.models import KubeadmConfigSpec, MachineDeploymentSpec, MachineTemplate, RollingUpdate
    from capt.workflows.machine import MachineWorkflow
    from capt.workflows.machine_deployment import MachineDeploymentWorkflow
    from capt.workflows.machine_deployment_models import MachineDeploymentInput, TemplateRequest

    lat = model.load()
    cloud = counting_cloud_class()(
        boot_seconds=lat.instance_pending,
        join_seconds=lat.kubeadm_join,
        terminate_seconds=lat.instance_terminate,
    )
    spec = MachineDeploymentSpec(
        name="md-0",
        replicas=workers,
        version=VERSION,
        machine_template=MachineTemplate(name="md-0-a", instance_type="t3.large"),
        bootstrap=KubeadmConfigSpec(),
        bootstrap_template_name="md-0-bootstrap",
        rolling_update=RollingUpdate(max_surge=1, max_unavailable=0),
    )
    env = await time_skipping.start_env()
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    cluster = unique("calls")
    try:
        async with running_worker(
            env, queue, [MachineWorkflow, MachineDeploymentWorkflow], cloud.activities()
        ):
            handle = await env.client.start_workflow(
                MachineDeploymentWorkflow.run,
                MachineDeploymentInput(
                    cluster=cluster_context(cluster),
                    spec=spec,
                    control_plane_initialized=True,
                    control_plane_version=VERSION,
                ),
                id=MachineDeploymentWorkflow.workflow_id("default", cluster, spec.name),
                task_queue=queue,
            )

            async def settle(revision: str | None = None) -> float:
                started = await env.get_current_time()
                for _ in range(20 * workers + 200):
                    st = await handle.query(MachineDeploymentWorkflow.status)
                    if (
                        (revision is None or st.revision != revision)
                        and st.replicas == st.up_to_date_replicas == st.available_replicas == workers
                        and st.desired_replicas == workers
                    ):
                        return (await env.get_current_time() - started).total_seconds()
                    await env.sleep(timedelta(seconds=10))
                raise RuntimeError(f"deployment did not settle: {st.phase}")

            await settle()
            created = cloud.snapshot()
            old_revision = (await handle.query(MachineDeploymentWorkflow.status)).revision
            await handle.execute_update(
                MachineDeploymentWorkflow.change_template,
                TemplateRequest(
                    machine_template=MachineTemplate(name=NEW_VERSION_TEMPLATE, instance_type="t3.xlarge")
                ),
            )
            rollout_seconds = await settle(old_revision)
            rolled = cloud.snapshot()
            await handle.signal(MachineDeploymentWorkflow.delete_all)
            await handle.result()
            deleted = cloud.snapshot()
    finally:
        await env.shutdown()
    rollout = diff(rolled, created)
    first = launched(created)
    new = launched(rollout)
    return {
        "workers": workers,
        "rollout_seconds": rollout_seconds,
        "replaced": len(new),
        "create": created,
        "rollout": rollout,
        "delete": diff(deleted, rolled),
        "first_machines": first,
        "new_machines": new,
    }


# ---------------------------------------------------------------------------------------------
# 3. steady state

CAPA_SYNC_PERIOD_MINUTES = 10  # CAPA's manager: --sync-period defaults to 10 minutes
CAPT_HEALTH_INTERVAL_SECONDS = 30


def capa_poll_per_hour(machines: int, every_seconds: float) -> float:
    """A per-machine poll: one DescribeInstances per machine every `every_seconds`."""
    return machines * 3600 / every_seconds


# ---------------------------------------------------------------------------------------------
# the benchmark


def totals(calls: dict[str, float]) -> dict[str, float]:
    mutating = sum(n for k, n in calls.items() if is_mutating(k))
    total = sum(calls.values())
    return {"total": round(total, 2), "mutating": round(mutating, 2), "reads": round(total - mutating, 2)}


def per_machine_phase(phase: dict[str, Counter], machines: list[str], costs: dict) -> dict[str, Any]:
    executions = mean_executions(phase, machines)
    aws = cost_of(executions, costs)
    return {
        "executions": executions,
        "aws_calls": {k: round(v, 2) for k, v in aws.items()},
        **totals(aws),
        "not_measured": {k: v for k, v in executions.items() if k in NOT_MEASURED},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m capt.dev.bench aws_calls", description=__doc__.split("\n")[0])
    p.add_argument(
        "--workers", type=int, default=None, help="workers in the rolling upgrade (default 5; --full 50)"
    )
    p.add_argument("--full", action="store_true", help="the full sizes: a rolling upgrade of 50 workers")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a quarter hour of steady state instead of an hour (the per-hour rate is the same; for the smoke test)",
    )
    p.add_argument("--results", type=Path, default=results.RESULTS, help="where to save aws_calls.json")
    args = p.parse_args(argv or [])
    workers = args.workers or (50 if args.full else 5)
    hours = 0.25 if args.quick else 1.0

    from capt.dev.bench import health_aws_calls
    from capt.dev.testkit.aws_setup import offline_aws_env

    offline_aws_env(REGION)
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)

    network = asyncio.run(measure_network())
    costs = activity_costs()
    cluster = asyncio.run(measure_cluster_create())
    rollout = asyncio.run(measure_rollout(workers))
    steady = asyncio.run(health_aws_calls.measure(hours))

    machine_create = {}
    for kind, executions in cluster["executions"].items():
        aws = cost_of(executions, costs)
        machine_create[kind] = {
            "executions": executions,
            "aws_calls": {k: round(v, 2) for k, v in aws.items()},
            **totals(aws),
            "run_instances": aws.get("ec2:RunInstances", 0),
            "not_measured": {k: v for k, v in executions.items() if k in NOT_MEASURED},
        }
    md_create = per_machine_phase(rollout["create"], rollout["first_machines"], costs)
    md_delete = per_machine_phase(rollout["delete"], rollout["new_machines"], costs)
    rollout_execs: Counter = Counter()
    for c in rollout["rollout"].values():
        rollout_execs.update(c)
    rollout_aws = cost_of(dict(rollout_execs), costs)
    replaced = rollout["replaced"] or 1
    upgrade = {
        "workers": workers,
        "replaced": rollout["replaced"],
        "workflow_seconds": rollout["rollout_seconds"],
        "executions": dict(sorted(rollout_execs.items())),
        "aws_calls": dict(rollout_aws),
        **totals(rollout_aws),
        "per_replaced_machine": totals({k: v / replaced for k, v in rollout_aws.items()}),
        "not_measured": {k: v for k, v in rollout_execs.items() if k in NOT_MEASURED},
    }
    steady_rows = []
    for row in steady:
        machines = row["control_plane"] + row["workers"]
        steady_rows.append(
            {
                **row,
                "machines": machines,
                "capa_sync_period_per_hour": capa_poll_per_hour(machines, CAPA_SYNC_PERIOD_MINUTES * 60),
                "per_machine_poll_30s_per_hour": capa_poll_per_hour(machines, CAPT_HEALTH_INTERVAL_SECONDS),
            }
        )
    data = {
        "network": network,
        "activity_costs": costs,
        "not_measured": NOT_MEASURED,
        "cluster_create": {k: v for k, v in cluster.items() if k != "executions"},
        "machine_create": machine_create,
        "worker_create_deployment": md_create,
        "worker_delete": md_delete,
        "rolling_upgrade": upgrade,
        "steady_state": steady_rows,
        "capa_model": {
            "sync_period_minutes": CAPA_SYNC_PERIOD_MINUTES,
            "describe_per_machine_per_reconcile": 1,
            "capt_health_interval_seconds": CAPT_HEALTH_INTERVAL_SECONDS,
        },
        "options": {"workers": workers, "steady_hours": hours, "full": args.full, "quick": args.quick},
    }
    print(render_tables(data), flush=True)
    path = results.save("aws_calls", data, args.results)
    print(f"saved {path}")
    return 0


def render_tables(data: dict[str, Any]) -> str:
    net = data["network"]
    lines = [
        "network (reference cluster)",
        f"{'phase':<14} {'total':>6} {'mutating':>9} {'reads':>6} {'minimum':>8}",
    ]
    for phase, d in net.items():
        lines.append(
            f"{phase:<14} {d['total']:>6} {d['mutating']:>9} {d['reads']:>6} {d.get('mutating_minimum', ''):>8}"
        )
    again = net["create again"]["mutating_by_operation"]
    lines.append(f"create again, mutating: {again or 'none'}")
    lines.append(f"create beyond the mutating minimum: {net['create']['beyond_minimum'] or 'nothing'}")
    lines += ["", "one machine (AWS calls)", f"{'machine':<40} {'total':>6} {'mutating':>9} {'reads':>6}"]
    for kind, d in data["machine_create"].items():
        lines.append(f"{'create: ' + kind:<40} {d['total']:>6g} {d['mutating']:>9g} {d['reads']:>6g}")
    for label, d in (
        ("create: worker (deployment)", data["worker_create_deployment"]),
        ("delete: worker", data["worker_delete"]),
    ):
        lines.append(f"{label:<40} {d['total']:>6g} {d['mutating']:>9g} {d['reads']:>6g}")
    up = data["rolling_upgrade"]
    lines += [
        "",
        f"rolling upgrade of {up['workers']} workers: {up['total']:.0f} AWS calls ({up['mutating']:.0f} mutating),"
        f" {up['per_replaced_machine']['total']:.1f} per replaced machine",
        "",
        "steady state per hour (health check)",
        f"{'cluster':<8} {'capt':>6} {'CAPA model (10 min)':>20} {'per-machine poll (30 s)':>24}",
    ]
    for r in data["steady_state"]:
        lines.append(
            f"{r['cluster']:<8} {r['per_hour']:>6.0f} {r['capa_sync_period_per_hour']:>20.0f}"
            f" {r['per_machine_poll_30s_per_hour']:>24.0f}"
        )
    return "\n".join(lines)


def section(data: dict[str, Any]) -> str:
    net = data["network"]
    create, again, delete = net["create"], net["create again"], net["delete"]
    steady = {r["cluster"]: r for r in data["steady_state"]}
    small, big = steady.get("3+3"), steady.get("3+50")
    up = data["rolling_upgrade"]
    mc = data["machine_create"]
    lines = [
        "## 2. AWS API calls per operation",
        "",
        "Anchor: [CAPA #1764](https://github.com/kubernetes-sigs/cluster-api-provider-aws/issues/1764) — per-machine"
        " Describe calls were ~80 % of an account's API calls. Every figure is botocore's count of the real"
        " activities' requests against in-process moto (`bench/aws_calls.py`), multiplied by how often the"
        " workflows run each activity on the time-skipping server.",
        "",
        "### Network (reference cluster)",
        "",
        "| phase | AWS calls | mutating | reads | mutating minimum | total / minimum |",
        "|---|---:|---:|---:|---:|---:|",
        f"| create | {create['total']} | {create['mutating']} | {create['reads']} | {create['mutating_minimum']}"
        f" | {create['total'] / max(create['mutating_minimum'], 1):.2f} |",
        f"| create again | {again['total']} | {again['mutating']} | {again['reads']} | 0 | — |",
        f"| delete | {delete['total']} | {delete['mutating']} | {delete['reads']} | | |",
        "",
        "The mutating minimum is a census of what the create left behind: one call per resource, plus one per"
        " setting a create call cannot carry and that differs from AWS's default (a VPC's DNS hostnames, a subnet's"
        " public IPs, each route and route-table association, one Authorize per security group with ingress rules,"
        " a load balancer's health check and cross-zone setting); tags are free (create calls carry them)."
        f" The create made {create['mutating']} mutating calls against a minimum of {create['mutating_minimum']}"
        f" Made minus minimum, per operation: {_beyond(create['beyond_minimum'])}.",
        "",
        f"Create again made {again['creating']} creating calls and {again['mutating']} mutating calls"
        f" ({_ops(again['mutating_by_operation']) or 'none'}): "
        + (
            "attribute writes made unconditionally because setting a value again changes nothing"
            " (one call either way; reading first would cost the same call)."
            if again["mutating"]
            else "a re-run only reads."
        ),
        "",
        "### Per machine",
        "",
        "| machine | AWS calls | mutating | reads | RunInstances |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, d in mc.items():
        lines.append(
            f"| create: {kind} (3+3 create) | {d['total']:g} | {d['mutating']:g} | {d['reads']:g} | {d['run_instances']:g} |"
        )
    for label, d in (
        ("create: worker (MachineDeployment)", data["worker_create_deployment"]),
        ("delete: worker", data["worker_delete"]),
    ):
        lines.append(
            f"| {label} | {d['total']:g} | {d['mutating']:g} | {d['reads']:g} | {d['aws_calls'].get('ec2:RunInstances', 0):g} |"
        )
    kinds = list(mc)
    lines += [
        "",
        "Each activity's calls, measured once against moto, and how often a machine's create ran it in the 3+3"
        " create (the fake cloud's count over the latency model's boot and join times; `describe_instance` is the"
        " poll until the instance runs):",
        "",
        "| activity (case) | AWS calls per execution | " + " | ".join(f"per {k}" for k in kinds) + " |",
        "|---|---|" + "---:|" * len(kinds),
    ]
    for label, ops in data["activity_costs"].items():
        per = [mc[k]["executions"].get(label, 0) for k in kinds]
        lines.append(
            f"| `{label}` | {', '.join(f'{operation(o)} {n}' for o, n in ops.items())} | "
            + " | ".join(f"{n:g}" if n else "" for n in per)
            + " |"
        )
    lines += [
        "",
        "Measured but not run by these creates: `refresh_bootstrap_token` (a join pending past 5 minutes),"
        " `lookup_machine_instance` (deleting a machine whose workflow never recorded its instance),"
        " `deregister_from_load_balancer` and the second-call cases (retries, deletes)."
        " moto shows a new instance at once: `ensure_instance`'s wait until DescribeInstances knows it took one"
        " call here and may take a few more in AWS (every 2 s, up to 10).",
        "",
        "Not measured against moto (counted as executions, not AWS calls): "
        + "; ".join(f"`{k}` ({v})" for k, v in data["not_measured"].items())
        + ". A control-plane machine's delete (etcd member removal over SSM) is not run.",
        "",
        "### Steady state and rolling upgrade",
        "",
        "| cluster | capt health check / h | CAPA model: 1 DescribeInstances per machine per 10 min / h |"
        " per-machine poll every 30 s / h |",
        "|---|---:|---:|---:|",
    ]
    for r in data["steady_state"]:
        lines.append(
            f"| {r['cluster']} | {r['per_hour']:.0f} | {r['capa_sync_period_per_hour']:.0f}"
            f" | {r['per_machine_poll_30s_per_hour']:.0f} |"
        )
    if small and big:
        lines += [
            "",
            f"3+50 vs 3+3: {big['per_hour'] / small['per_hour']:.2f}× for capt (one cluster-wide DescribeInstances per"
            f" check), {big['capa_sync_period_per_hour'] / small['capa_sync_period_per_hour']:.2f}× for a per-machine"
            f" poll. capt's check runs every {data['capa_model']['capt_health_interval_seconds']} s, so at CAPA's"
            f" default sync period a per-machine poll is cheaper below"
            f" {small['per_hour'] * data['capa_model']['sync_period_minutes'] * 60 / 3600:.0f} machines"
            " and dearer above; at the same 30 s detection interval it costs one call per machine per check."
            " The model is a floor for CAPA: it counts only AWSMachine's DescribeInstances per periodic reconcile,"
            " not reconciles triggered by events or requeues, nor AWSCluster's network describes."
            " Not in capt's figure: `list_workload_nodes` reads the workload cluster's credentials from Secrets"
            " Manager when its 300 s TLS-context cache misses (at most 24 GetSecretValue per hour per worker"
            " process, also flat in machine count).",
        ]
    lines += [
        "",
        f"A rolling upgrade of {up['workers']} workers (maxSurge 1, maxUnavailable 0) made {up['total']:.0f} AWS calls"
        f" ({up['mutating']:.0f} mutating): {up['per_replaced_machine']['total']:.1f} per replaced machine"
        f" ({up['per_replaced_machine']['mutating']:.1f} mutating).",
        "",
    ]
    return "\n".join(lines)


# Why a create's mutating calls differ from the census, where the reason is known.
BEYOND_MINIMUM_REASONS = {
    ("ModifyVpcAttribute", 1): "capt also sets DNS support, which a new VPC already has",
    ("RevokeSecurityGroupIngress", -1): "moto's default security group lacks AWS's rule letting the group's"
    " own traffic in, so capt had nothing to revoke; in AWS it makes this call too: one mutating call more"
    " than measured, which the minimum already counts",
}


def _beyond(beyond: dict[str, int]) -> str:
    if not beyond:
        return "nothing"
    return "; ".join(
        f"{op} {n:+d}"
        + (f" ({BEYOND_MINIMUM_REASONS[(op, n)]})" if (op, n) in BEYOND_MINIMUM_REASONS else "")
        for op, n in beyond.items()
    )


def _ops(ops: dict[str, Any]) -> str:
    return ", ".join(
        f"{operation(k)} {v:+g}" if isinstance(v, int) and v < 0 else f"{operation(k)} {v:g}"
        for k, v in ops.items()
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def summary(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    create, again = data["network"]["create"], data["network"]["create again"]
    steady = {r["cluster"]: r for r in data["steady_state"]}
    up = data["rolling_upgrade"]
    rows = [
        (
            "network create: AWS calls",
            f"mutating minimum {create['mutating_minimum']} (census of what it made)",
            f"{create['total']} ({create['mutating']} mutating)",
            f"{create['total'] / max(create['mutating_minimum'], 1):.2f}× the minimum"
            f" (mutating {create['mutating'] / max(create['mutating_minimum'], 1):.2f}×)",
        ),
        (
            "network create again",
            "0 creating calls",
            f"{again['total']} ({again['creating']} creating, {again['mutating']} attribute re-sets)",
            f"{again['total'] / max(create['total'], 1):.2f}× the create",
        ),
    ]
    if "3+3" in steady and "3+50" in steady:
        small, big = steady["3+3"], steady["3+50"]
        rows.append(
            (
                "health check AWS calls per hour, 3+50 vs 3+3",
                "CAPA #1764: per-machine Describe calls ~80 % of an account's calls; per-machine poll"
                f" (1 per machine per {data['capa_model']['sync_period_minutes']} min)"
                f" {small['capa_sync_period_per_hour']:.0f} → {big['capa_sync_period_per_hour']:.0f}",
                f"{small['per_hour']:.0f} → {big['per_hour']:.0f}",
                f"{big['per_hour'] / small['per_hour']:.2f}× (per-machine poll"
                f" {big['capa_sync_period_per_hour'] / small['capa_sync_period_per_hour']:.2f}×)",
            )
        )
    rows.append(
        (
            f"rolling upgrade of {up['workers']} workers: AWS calls",
            "—",
            f"{up['total']:.0f} ({up['mutating']:.0f} mutating)",
            f"{up['per_replaced_machine']['total']:.1f} per replaced machine",
        )
    )
    return rows


def plots(data: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    # Steady state: capt's measured points and flat line against the per-machine poll models.
    steady = data["steady_state"]
    capt = steady[0]["per_hour"]
    most = max(r["machines"] for r in steady)
    xs = list(range(1, max(100, most) + 1))
    sync = data["capa_model"]["sync_period_minutes"] * 60
    right.plot(xs, [capt] * len(xs), color="#2a7ab0", label="capt health check (cluster-wide describe)")
    right.scatter([r["machines"] for r in steady], [r["per_hour"] for r in steady], color="#2a7ab0", zorder=3)
    right.plot(
        xs,
        [capa_poll_per_hour(x, sync) for x in xs],
        color="#e8a87c",
        label=f"per-machine poll every {sync // 60} min",
    )
    right.plot(
        xs,
        [capa_poll_per_hour(x, CAPT_HEALTH_INTERVAL_SECONDS) for x in xs],
        color="#c38d9e",
        linestyle="--",
        label=f"per-machine poll every {CAPT_HEALTH_INTERVAL_SECONDS} s",
    )
    right.set_yscale("log")
    right.set_xlabel("machines in the cluster")
    right.set_ylabel("AWS calls per hour")
    right.set_title("steady state", fontsize=10)
    right.legend(fontsize=7)
    # Per operation: mutating vs reads.
    bars = [(f"network {p}", d["mutating"], d["reads"]) for p, d in data["network"].items()]
    for kind, d in data["machine_create"].items():
        bars.append((f"create {kind}", d["mutating"], d["reads"]))
    bars.append(("delete worker", data["worker_delete"]["mutating"], data["worker_delete"]["reads"]))
    per = data["rolling_upgrade"]["per_replaced_machine"]
    bars.append(("upgrade, per replaced worker", per["mutating"], per["reads"]))
    ys = list(range(len(bars)))[::-1]
    left.barh(ys, [b[1] for b in bars], color="#c0392b", label="mutating")
    left.barh(ys, [b[2] for b in bars], left=[b[1] for b in bars], color="#bbbbbb", label="reads")
    minimum = data["network"]["create"]["mutating_minimum"]
    left.plot(
        [minimum, minimum], [ys[0] - 0.4, ys[0] + 0.4], color="black", linewidth=2, label="mutating minimum"
    )
    left.set_yticks(ys, [b[0] for b in bars], fontsize=7)
    left.set_xlabel("AWS calls")
    left.set_title("AWS calls per operation", fontsize=10)
    left.legend(fontsize=7)
    fig.tight_layout()
    results.IMAGES.mkdir(parents=True, exist_ok=True)
    path = results.IMAGES / "bench-aws-calls.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
