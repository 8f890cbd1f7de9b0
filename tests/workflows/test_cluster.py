"""ClusterWorkflow end to end on the time-skipping server.

The whole workflow tree runs for real: ClusterWorkflow → InfrastructureWorkflow (its AWS
activities against in-process moto), cluster PKI in moto's Secrets Manager,
ControlPlaneWorkflow and MachineDeploymentWorkflow over real MachineWorkflows, and the
HealthCheckWorkflow. Only the machines' own activities (instances booting, nodes joining)
are the fake cloud, in workflow time.
"""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError

from capt.activities import cluster_tree
from capt.activities import owners as health_activities
from capt.activities.aws import cleanup, instance_events, tags
from capt.activities.aws import secrets as sm
from capt.activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES
from capt.activities.workload.addons import AddonFailure, AppliedObject, ApplyAddonsRequest, ApplyAddonsResult
from capt.contracts import names
from capt.contracts.ids import cluster_workflow_id
from capt.contracts.owners import ControlPlaneMachine, ControlPlaneStatus
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.dev.testkit.health_fakes import HealthFakes
from capt.spec.loader import load_file
from capt.spec.models import AddonSpec
from capt.workflows.cluster.models import (
    ClusterCarry,
    ClusterInput,
    ScaleDeploymentRequest,
    UpgradeRequest,
    _control_plane_failure,
    _failed_workers,
)
from capt.workflows.cluster.workflow import ClusterWorkflow
from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
from capt.workflows.health.workflow import HealthCheckWorkflow
from capt.workflows.infrastructure.models import InfraInput
from capt.workflows.infrastructure.workflow import InfrastructureWorkflow
from capt.workflows.machine.workflow import MachineWorkflow
from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow
from capt.workflows.teardown.workflow import ClusterTeardownWorkflow
from tests.support.context import query, running_worker, wait_for
from tests.support.paths import QUICKSTART

WORKFLOWS = [
    ClusterWorkflow,
    ClusterTeardownWorkflow,
    InfrastructureWorkflow,
    ControlPlaneWorkflow,
    MachineDeploymentWorkflow,
    MachineWorkflow,
    HealthCheckWorkflow,
]
AZS = ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")


@pytest.fixture
def moto():
    with mock_aws():
        yield


def activities(cloud: FakeCloud) -> list:
    return [
        *INFRASTRUCTURE_ACTIVITIES,
        sm.ensure_cluster_pki,
        sm.delete_cluster_secrets,
        *cleanup.CLEANUP_ACTIVITIES,
        *cluster_tree.CLUSTER_TREE_ACTIVITIES,
        instance_events.delete_instance_events,
        *health_activities.HEALTH_ACTIVITIES,
        *HealthFakes(cloud).activities(),
    ]


def ready(s) -> bool:
    return s.phase == "Ready"


async def test_create_scale_upgrade_delete(time_skipping_env, task_queue, moto):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = load_file(QUICKSTART, env={}).spec
    async with running_worker(env, task_queue, WORKFLOWS, activities(cloud)):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        status = await wait_for(
            env, lambda: query(handle, ClusterWorkflow.status), ready, what="cluster Ready"
        )
        assert status.ready_machines == status.desired_machines == 6
        assert status.endpoint and status.endpoint.endswith(":6443")
        assert status.infrastructure.availability_zones == AZS
        cp, [md] = status.control_plane, status.deployments
        assert Counter(m.availability_zone for m in cp.machines) == Counter(AZS)
        assert Counter(m.availability_zone for m in md.machines) == Counter(AZS)

        # Scale the workers 3 → 5 → 2.
        for replicas in (5, 2):
            await handle.execute_update(
                ClusterWorkflow.scale_deployment,
                ScaleDeploymentRequest(deployment=md.name, replicas=replicas),
            )
            status = await wait_for(
                env,
                lambda: query(handle, ClusterWorkflow.status),
                lambda s, r=replicas: ready(s) and s.deployments[0].ready_replicas == r,
                what=f"{replicas} workers",
            )
        assert status.ready_machines == 5

        # A request the control plane's rules refuse never gets in.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ClusterWorkflow.upgrade, UpgradeRequest(version="v1.22.0"))
        assert "one minor version at a time" in str(refused.value.cause)

        # Upgrade: control plane first, workers only after every control-plane machine runs it.
        before = len(cloud.samples)
        await handle.execute_update(ClusterWorkflow.upgrade, UpgradeRequest(version="v1.21.2"))
        status = await wait_for(
            env,
            lambda: query(handle, ClusterWorkflow.status),
            lambda s: ready(s) and s.deployments[0].version == "v1.21.2",
            what="upgraded",
        )
        assert all(m.version == "v1.21.2" for m in status.control_plane.machines)
        launches = [cloud.instances[i] for i in cloud.instances if cloud.instances[i].version == "v1.21.2"]
        first_worker = min(i.launched_at for i in launches if i.role == "worker")
        last_cp = max(i.launched_at for i in launches if i.role == "control-plane")
        assert last_cp < first_worker
        assert len([s for s in cloud.samples[before:] if s.event.startswith("launch")]) == 5

        # Delete: machines, then the network; the workflow ends when AWS holds nothing of it.
        await handle.execute_update(ClusterWorkflow.delete)
        final = await handle.result()
        assert final.phase == "Deleted"
    # A new cluster's id in AWS: <namespace>.<name>.
    assert (
        final.cluster_id == names.cluster_id(spec.namespace, spec.name) == "capi-quickstart.capi-quickstart"
    )
    assert all(i.terminated_at is not None for i in cloud.instances.values())
    assert {i.owner for i in cloud.instances.values()} == {final.cluster_id}
    assert owned_arns(final.cluster_id, spec.region) == []
    secrets = boto3.client("secretsmanager", region_name=spec.region).list_secrets()["SecretList"]
    assert secrets == []


def owned_arns(cluster_id: str, region: str) -> list[str]:
    """What the Tagging API lists as owned by the cluster id, but NAT gateways AWS (and moto) keep
    visible in state "deleted" for a while."""
    tagging = boto3.client("resourcegroupstaggingapi", region_name=region)
    owned = tagging.get_resources(TagFilters=[{"Key": tags.cluster_key(cluster_id), "Values": ["owned"]}])
    arns = [r["ResourceARN"] for r in owned["ResourceTagMappingList"]]
    nat_ids = [a.rsplit("/", 1)[1] for a in arns if ":natgateway/" in a]
    if nat_ids:
        nats = boto3.client("ec2", region_name=region).describe_nat_gateways(NatGatewayIds=nat_ids)[
            "NatGateways"
        ]
        deleted = {n["NatGatewayId"] for n in nats if n["State"] == "deleted"}
        arns = [a for a in arns if a.rsplit("/", 1)[1] not in deleted]
    return sorted(arns)


def _secrets_of(namespace: str, region: str) -> dict[str, dict[str, str]]:
    sm_client = boto3.client("secretsmanager", region_name=region)
    return {
        s["Name"]: tags.as_dict(s.get("Tags"))
        for page in sm_client.get_paginator("list_secrets").paginate()
        for s in page["SecretList"]
        if s["Name"].startswith(f"capt/{namespace}/")
    }


def _small(name: str, namespace: str):
    base = load_file(QUICKSTART, env={}).spec
    return base.model_copy(
        update={
            "name": name,
            "namespace": namespace,
            "health_checks": (),
            "control_plane": base.control_plane.model_copy(update={"replicas": 1}),
            "machine_deployments": tuple(
                md.model_copy(update={"replicas": 1}) for md in base.machine_deployments
            ),
        }
    )


async def test_a_cluster_from_before_namespaced_ids_keeps_its_name_as_id(time_skipping_env, task_queue, moto):
    """A run continued from one that predates namespaced ids carries no id: it keeps its name, so its
    deletion finds the network the old code named and tagged after the name."""
    env, spec = time_skipping_env, _small("prod", "team-a")
    async with running_worker(env, task_queue, WORKFLOWS, activities(FakeCloud())):
        # Its network, as the old code made it: InfraInput without an id.
        await env.client.execute_workflow(
            InfrastructureWorkflow.run,
            InfraInput(spec=spec, availability_zones=AZS),
            id="infra/team-a/prod/legacy",
            task_queue=task_queue,
        )
        assert owned_arns("prod", spec.region) and owned_arns("team-a.prod", spec.region) == []
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec, carry=ClusterCarry(phase="Failed", deleting=True)),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        final = await handle.result()
    assert (final.phase, final.cluster_id) == ("Deleted", "prod")
    assert owned_arns("prod", spec.region) == []


async def test_prod_in_two_namespaces_gets_two_of_everything(time_skipping_env, task_queue, moto):
    """`prod` in team-a and `prod` in team-b: two VPCs, two load balancers, distinct ownership tags
    on everything (network, secrets, instances); deleting one leaves the other untouched and Ready."""
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    specs = {ns: _small("prod", ns) for ns in ("team-a", "team-b")}
    region = specs["team-a"].region
    async with running_worker(env, task_queue, WORKFLOWS, activities(cloud)):
        handles = {
            ns: await env.client.start_workflow(
                ClusterWorkflow.run,
                ClusterInput(spec=spec),
                id=cluster_workflow_id(ns, "prod"),
                task_queue=task_queue,
            )
            for ns, spec in specs.items()
        }
        status = {
            ns: await wait_for(
                env, lambda h=h: query(h, ClusterWorkflow.status), ready, what=f"{ns}/prod Ready"
            )
            for ns, h in handles.items()
        }
        a, b = status["team-a"], status["team-b"]
        assert (a.cluster_id, b.cluster_id) == ("team-a.prod", "team-b.prod")
        assert a.infrastructure.vpc_id != b.infrastructure.vpc_id
        assert (
            a.infrastructure.load_balancer
            == names.load_balancer("team-a.prod")
            == "team-a-prod-4d480957-apiserver"
        )
        assert b.infrastructure.load_balancer == names.load_balancer("team-b.prod")
        assert a.endpoint != b.endpoint
        ec2 = boto3.client("ec2", region_name=region)
        for s in (a, b):
            owned = ec2.describe_vpcs(Filters=[tags.owned_filter(s.cluster_id)])["Vpcs"]
            assert [v["VpcId"] for v in owned] == [s.infrastructure.vpc_id]
            assert {t["Key"] for t in owned[0]["Tags"]} >= {
                tags.cluster_key(s.cluster_id),
                tags.cloud_provider_key(s.cluster_id),
            }
        # Nothing is tagged after the bare name, which both clusters share.
        assert owned_arns("prod", region) == []
        arns = {s.cluster_id: owned_arns(s.cluster_id, region) for s in (a, b)}
        assert arns["team-a.prod"] and not set(arns["team-a.prod"]) & set(arns["team-b.prod"])
        # Secrets: the namespace in the path, the id in the owned tag.
        secrets = {ns: _secrets_of(ns, region) for ns in specs}
        for ns, found in secrets.items():
            assert found and all(t.get(tags.cluster_key(f"{ns}.prod")) == "owned" for t in found.values())
        # Machines: each instance is owned by its cluster's id.
        by_owner = Counter(i.owner for i in cloud.instances.values())
        assert by_owner == {"team-a.prod": 2, "team-b.prod": 2}

        await handles["team-a"].execute_update(ClusterWorkflow.delete)
        assert (await handles["team-a"].result()).phase == "Deleted"

        # team-a is gone; team-b is exactly as it was, and still Ready.
        assert owned_arns("team-a.prod", region) == []
        assert _secrets_of("team-a", region) == {}
        assert owned_arns("team-b.prod", region) == arns["team-b.prod"]
        assert _secrets_of("team-b", region) == secrets["team-b"]
        assert all((i.terminated_at is None) == (i.owner == "team-b.prod") for i in cloud.instances.values())
        still = await query(handles["team-b"], ClusterWorkflow.status)
        assert still.phase == "Ready" and still.infrastructure.vpc_id == b.infrastructure.vpc_id

        await handles["team-b"].execute_update(ClusterWorkflow.delete)
        assert (await handles["team-b"].result()).phase == "Deleted"
    assert owned_arns("team-b.prod", region) == [] and _secrets_of("team-b", region) == {}


async def test_immutable_change_is_rejected_and_nothing_moves(time_skipping_env, task_queue, moto):
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = load_file(QUICKSTART, env={}).spec
    async with running_worker(env, task_queue, WORKFLOWS, activities(cloud)):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        await wait_for(env, lambda: query(handle, ClusterWorkflow.status), ready, what="cluster Ready")
        from capt.workflows.cluster.models import ApplyRequest

        moved = spec.model_copy(update={"region": "us-east-1"})
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(ClusterWorkflow.apply, ApplyRequest(spec=moved))
        assert "region cannot be changed" in str(info.value.cause)

        # `capt diff` / `apply --dry-run`: the preview query judges with the same rules (a query:
        # it records nothing; the spec stays as it was).
        refused = await query(handle, ClusterWorkflow.preview, ApplyRequest(spec=moved))
        assert not refused.accepted and "region cannot be changed" in refused.reason
        md = spec.machine_deployments[0]
        scaled = spec.model_copy(update={"machine_deployments": (md.model_copy(update={"replicas": 5}),)})
        p = await query(handle, ClusterWorkflow.preview, ApplyRequest(spec=scaled))
        assert p.accepted and p.summary == f"deployment {md.name}"
        assert p.fields == (f"machine_deployments[{md.name}].replicas: 3 -> 5",)
        assert p.machines == (f"deployment {md.name}: 2 machine(s) added",)
        upgraded = spec.model_copy(
            update={"control_plane": spec.control_plane.model_copy(update={"version": "v1.21.2"})}
        )
        p = await query(handle, ClusterWorkflow.preview, ApplyRequest(spec=upgraded))
        assert p.fields == ('control_plane.version: "v1.20.5" -> "v1.21.2"',)
        assert p.machines == ("control plane: every machine replaced, one at a time (3 -> 3)",)
        skipped = spec.model_copy(
            update={"control_plane": spec.control_plane.model_copy(update={"version": "v1.22.0"})}
        )
        p = await query(handle, ClusterWorkflow.preview, ApplyRequest(spec=skipped))
        assert not p.accepted and "one minor version at a time" in p.reason
        assert (await query(handle, ClusterWorkflow.preview, ApplyRequest(spec=spec))).fields == ()
        launches = cloud.calls["ensure_instance"]
        await env.sleep(600)
        assert cloud.calls["ensure_instance"] == launches


async def test_addons_are_applied_once_across_continue_as_new(time_skipping_env, task_queue, moto):
    """A ClusterResourceSet (ApplyOnce) is applied exactly once, after the control plane is
    initialized, however many reconciles and continue-as-new runs follow; an addon whose objects
    fail is retried on a later reconcile without failing the cluster.

    Machines boot and join instantly: the test server stops skipping time for the children of a
    workflow that continued as new (temporalio/sdk-java#1540), so their timers cost real time."""
    env, cloud = time_skipping_env, FakeCloud(0, 0, 0)
    doc = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: ccm\n  namespace: kube-system\n"
    ccm = AddonSpec(name="crs-ccm", config_maps=(("ccm-addon", (("ccm.yaml", doc),)),))
    flaky = AddonSpec(name="crs-flaky", config_maps=(("flaky-addon", (("f.yaml", doc),)),))
    spec = load_file(QUICKSTART, env={}).spec.model_copy(update={"addons": (ccm, flaky)})
    calls: list[tuple[str, int]] = []  # (addon, control-plane instances launched by then)

    @activity.defn(name="apply_addons")
    async def fake_apply_addons(req: ApplyAddonsRequest) -> ApplyAddonsResult:
        [addon] = req.addons
        calls.append((addon.name, sum(i.role == "control-plane" for i in cloud.instances.values())))
        obj = AppliedObject(
            addon=addon.name,
            api_version="v1",
            kind="ServiceAccount",
            namespace="kube-system",
            name="ccm",
            action="created",
        )
        if addon.name == "crs-flaky" and len([c for c in calls if c[0] == "crs-flaky"]) == 1:
            failure = AddonFailure(
                addon=addon.name,
                config_map="flaky-addon",
                key="f.yaml",
                api_version="v1",
                kind="ServiceAccount",
                name="ccm",
                reason="500 etcd timeout",
            )
            return ApplyAddonsResult(failures=(failure,))
        return ApplyAddonsResult(applied=(obj,))

    async with running_worker(env, task_queue, WORKFLOWS, [*activities(cloud), fake_apply_addons]):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec, max_iterations=3),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        first_run = (await handle.describe()).run_id
        status = await wait_for(
            env, lambda: query(handle, ClusterWorkflow.status), ready, what="cluster Ready"
        )
        assert status.control_plane.initialized
        # More reconciles (owners' signals, a scale, RECHECK timers) and continue-as-new runs.
        await handle.execute_update(
            ClusterWorkflow.scale_deployment,
            ScaleDeploymentRequest(deployment=spec.machine_deployments[0].name, replicas=4),
        )
        await wait_for(
            env,
            lambda: query(handle, ClusterWorkflow.status),
            lambda s: ready(s) and s.deployments[0].ready_replicas == 4,
            what="4 workers",
        )

        # Until the workflow has continued as new at least once (max_iterations=3), in short
        # skips: one long skip can last real minutes when the test server stops skipping time for
        # the children of a continued-as-new parent (sdk-java#1540).
        async def run_id() -> str:
            return (await handle.describe()).run_id

        await wait_for(
            env, run_id, lambda rid: rid != first_run, step=30, limit=3 * 600, what="continue-as-new"
        )
        # Through wait_for: it rides over a query that lands on a run continuing as new.
        status = await wait_for(env, lambda: query(handle, ClusterWorkflow.status), lambda s: True)
        assert status.phase == "Ready"
    assert [name for name, _ in calls].count("crs-ccm") == 1
    assert [name for name, _ in calls].count("crs-flaky") == 2  # failed once, retried later, then done
    assert all(launched >= 1 for _, launched in calls)  # only once a control plane exists


async def test_a_first_control_plane_machine_that_fails_for_good_fails_the_cluster(
    time_skipping_env, task_queue, moto
):
    """RunInstances refuses the AMI: the cluster's phase is Failed with AWS's message (not
    Provisioning forever), and deleting the cluster still finishes."""
    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    message = "The image id '[ami-00000000000000000]' does not exist"
    cloud.fail_permanently("ensure_instance", "RunInstances", "InvalidAMIID.NotFound", message)
    spec = load_file(QUICKSTART, env={}).spec
    async with running_worker(env, task_queue, WORKFLOWS, activities(cloud)):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        status = await wait_for(
            env, lambda: query(handle, ClusterWorkflow.status), lambda s: s.phase == "Failed", what="Failed"
        )
        [machine] = status.control_plane.machines
        assert status.message == (
            f"control plane machine {machine.name} failed: RunInstances: InvalidAMIID.NotFound: {message}"
        )
        assert cloud.calls["ensure_instance"] == 1
        await handle.execute_update(ClusterWorkflow.delete)
        final = await handle.result()
    assert final.phase == "Deleted"
    assert cloud.calls["ensure_instance"] == 1 and not cloud.instances


def test_phase_reasons_name_the_failed_machines() -> None:
    def cp_machine(name: str, phase: str, message: str = "") -> ControlPlaneMachine:
        return ControlPlaneMachine(
            name=name,
            phase=phase,
            availability_zone=None,
            instance_id=None,
            node_name=None,
            node_ready=False,
            version="v1.30.2",
            up_to_date=True,
            unhealthy=False,
            message=message,
        )

    def cp(*machines: ControlPlaneMachine, initialized: bool = False) -> ControlPlaneStatus:
        return ControlPlaneStatus(
            name="cp",
            desired_replicas=3,
            replicas=len(machines),
            ready_replicas=0,
            up_to_date_replicas=0,
            version="v1.30.2",
            initialized=initialized,
            ready=False,
            operation="",
            last_refusal="",
            machines=list(machines),
        )

    assert _control_plane_failure(None) is None
    assert _control_plane_failure(cp()) is None
    assert (
        _control_plane_failure(cp(cp_machine("cp-a", "Failed", "boom")))
        == "control plane machine cp-a failed: boom"
    )
    # A replacement is on its way (remediation), or the control plane came up: not Failed.
    assert _control_plane_failure(cp(cp_machine("cp-a", "Deleting"), cp_machine("cp-b", "Pending"))) is None
    assert (
        _control_plane_failure(cp(cp_machine("cp-a", "Failed"), cp_machine("cp-b", "Provisioning"))) is None
    )
    assert _control_plane_failure(cp(cp_machine("cp-a", "Failed"), initialized=True)) is None

    def md(name: str, *failed: str):
        machines = [
            SimpleNamespace(name=f"{name}-{m}", phase="Failed", message=f"{m} broke") for m in failed
        ] + [SimpleNamespace(name=f"{name}-ok", phase="Running", message="")]
        return SimpleNamespace(name=name, machines=machines)

    assert _failed_workers([None, md("md-0")]) == ""
    assert _failed_workers([md("md-0", "a"), None, md("md-1", "b", "c", "d")]) == (
        "; failed worker machines: md-0/md-0-a (a broke), md-1/md-1-b (b broke), md-1/md-1-c (c broke) and 1 more"
    )
