"""ClusterTeardownWorkflow against moto on the time-skipping server, with AWS's dependency errors.

moto lets a security group go while a rule names it or an ELB uses it, and a subnet while
interfaces remain; AWS does not. Every test here runs with `tests/support/strict_aws.py`, which
refuses those calls as AWS does, so a wrong deletion order fails here as it would in AWS.

What is checked is the whole region, read with plain boto3: after a teardown it holds exactly
what it held before the cluster was seeded (the default VPC, and another cluster's resources).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from capt.activities import cluster_tree
from capt.activities.aws import cleanup, instance_events, session, tags
from capt.activities.aws import instances as ec2_activities
from capt.activities.aws import secrets as sm
from capt.activities.aws.infrastructure import INFRASTRUCTURE_ACTIVITIES
from capt.activities.aws.secrets import ClusterPKIRefs
from capt.activities.workload.activities import WorkloadAccess
from capt.activities.workload.teardown import CloudBackedObjects as WorkloadCloudObjects
from capt.activities.workload.teardown import (
    CloudBackedObjectsRequest,
    CloudBackedService,
    DeleteCloudBackedObjectsRequest,
)
from capt.contracts import names
from capt.contracts.ids import cluster_workflow_id
from capt.dev.testkit.fake_cloud import FakeCloud
from capt.dev.testkit.health_fakes import HealthFakes
from capt.dev.testkit.reference import AZS, REGION, reference_spec
from capt.spec.loader import load_file
from capt.workflows.cluster.models import ClusterInput, ClusterStatus
from capt.workflows.cluster.workflow import ClusterWorkflow
from capt.workflows.infrastructure.models import InfraInput
from capt.workflows.infrastructure.workflow import InfrastructureWorkflow
from capt.workflows.teardown.models import (
    CloudBackedObject,
    TeardownInput,
    TeardownSettings,
    load_balancer_name_of,
)
from capt.workflows.teardown.workflow import ClusterTeardownWorkflow
from tests.support.context import query, running_worker, wait_for
from tests.support.paths import QUICKSTART
from tests.support.strict_aws import StrictAws, strict_aws

NS = "default"
OTHER = "td-2"  # another cluster whose id starts like ours: nothing of it may go


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def strict(moto) -> Iterator[StrictAws]:
    with strict_aws(REGION) as hook:
        yield hook


@functools.cache
def ec2():
    return boto3.client("ec2", region_name=REGION)


@functools.cache
def elb():
    return boto3.client("elb", region_name=REGION)


@functools.cache
def elbv2():
    return boto3.client("elbv2", region_name=REGION)


@functools.cache
def secrets():
    return boto3.client("secretsmanager", region_name=REGION)


def tag_list(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in d.items()]


def spec_tags(resource_type: str, d: dict[str, str]) -> list[dict]:
    return [{"ResourceType": resource_type, "Tags": tag_list(d)}]


# --- what the region holds ------------------------------------------------------------------------


def region_inventory() -> set[tuple[str, str]]:
    """(kind, id) of everything in the region but the default VPC's own resources and what AWS
    removes by itself (terminated instances with their primary interfaces, deleted NAT gateways)."""
    c = ec2()
    default_vpcs = {v["VpcId"] for v in c.describe_vpcs()["Vpcs"] if v.get("IsDefault")}
    instances = [i for r in c.describe_instances()["Reservations"] for i in r["Instances"]]
    terminated = {i["InstanceId"] for i in instances if i["State"]["Name"] == "terminated"}
    dead_nat_enis = {
        a.get("NetworkInterfaceId")
        for n in c.describe_nat_gateways()["NatGateways"]
        if n["State"] in ("deleted", "deleting")
        for a in n.get("NatGatewayAddresses", [])
    }
    out: set[tuple[str, str]] = set()
    out |= {("vpc", v["VpcId"]) for v in c.describe_vpcs()["Vpcs"] if v["VpcId"] not in default_vpcs}
    out |= {
        ("subnet", s["SubnetId"]) for s in c.describe_subnets()["Subnets"] if s["VpcId"] not in default_vpcs
    }
    out |= {
        ("internet-gateway", g["InternetGatewayId"])
        for g in c.describe_internet_gateways()["InternetGateways"]
        if not {a["VpcId"] for a in g.get("Attachments", [])} & default_vpcs
    }
    out |= {("elastic-ip", a["AllocationId"]) for a in c.describe_addresses()["Addresses"]}
    out |= {
        ("nat-gateway", n["NatGatewayId"])
        for n in c.describe_nat_gateways()["NatGateways"]
        if n["State"] not in ("deleted", "deleting")
    }
    out |= {
        ("route-table", t["RouteTableId"])
        for t in c.describe_route_tables()["RouteTables"]
        if t["VpcId"] not in default_vpcs and not any(a.get("Main") for a in t.get("Associations", []))
    }
    out |= {
        ("security-group", g["GroupId"])
        for g in c.describe_security_groups()["SecurityGroups"]
        if g["VpcId"] not in default_vpcs and g["GroupName"] != "default"
    }
    out |= {("instance", i["InstanceId"]) for i in instances if i["InstanceId"] not in terminated}
    out |= {("volume", v["VolumeId"]) for v in c.describe_volumes()["Volumes"] if v["State"] != "deleted"}
    for e in c.describe_network_interfaces()["NetworkInterfaces"]:
        att = e.get("Attachment") or {}
        if att.get("InstanceId") in terminated and att.get("DeviceIndex") == 0:
            continue
        if e["NetworkInterfaceId"] in dead_nat_enis:
            continue
        out.add(("network-interface", e["NetworkInterfaceId"]))
    out |= {
        ("load-balancer", lb["LoadBalancerName"])
        for lb in elb().describe_load_balancers()["LoadBalancerDescriptions"]
    }
    out |= {
        ("network-load-balancer", lb["LoadBalancerArn"])
        for lb in elbv2().describe_load_balancers()["LoadBalancers"]
    }
    out |= {("target-group", tg["TargetGroupArn"]) for tg in elbv2().describe_target_groups()["TargetGroups"]}
    out |= {("secret", s["Name"]) for s in secrets().list_secrets()["SecretList"]}
    return out


def describe(kinds: set[tuple[str, str]]) -> list[str]:
    return sorted(f"{k} {i}" for k, i in kinds)


# --- seeding ----------------------------------------------------------------------------------------


def workers() -> tuple[list, list]:
    return [ClusterTeardownWorkflow, InfrastructureWorkflow], [
        *INFRASTRUCTURE_ACTIVITIES,
        *cleanup.CLEANUP_ACTIVITIES,
        *cluster_tree.CLUSTER_TREE_ACTIVITIES,
        sm.delete_cluster_secrets,
        instance_events.delete_instance_events,
        ec2_activities.describe_cluster_instances,
    ]


async def create_network(env, task_queue: str, name: str, *, refuse: str | None = None):
    """The cluster's network, as InfrastructureWorkflow creates it (moto); with `refuse`, that
    operation is refused and the create fails halfway."""
    spec = reference_spec(name, cp_replicas=1, md_replicas=1)
    handle = await env.client.start_workflow(
        InfrastructureWorkflow.run,
        InfraInput(spec=spec, availability_zones=AZS),
        id=f"infra/{NS}/{name}/create-{uuid.uuid4().hex[:6]}",
        task_queue=task_queue,
    )
    if refuse is None:
        return await handle.result()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    return None


def subnets_of(name: str, public: bool) -> list[str]:
    kind = "public" if public else "private"
    return sorted(
        s["SubnetId"]
        for s in ec2().describe_subnets(
            Filters=[{"Name": "tag:Name", "Values": [f"{name}-subnet-{kind}-*"]}]
        )["Subnets"]
    )


def group_of(name: str, role: str) -> str:
    found = ec2().describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{name}-{role}"]}])
    return found["SecurityGroups"][0]["GroupId"]


def seed_machines(cid: str, n: int = 2) -> list[str]:
    """Instances of machines whose workflows are gone (failed, terminated): tagged as capt tags them."""
    out = []
    for i in range(n):
        t = tags.build(cid, f"{cid}-md-0-{i}", tags.ROLE_NODE, extra={tags.MACHINE_TAG: f"{cid}-md-0-{i}"})
        inst = ec2().run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.large",
            SubnetId=subnets_of(cid, public=False)[i % 3],
            SecurityGroupIds=[group_of(cid, "node"), group_of(cid, "lb")],
            TagSpecifications=spec_tags("instance", t) + spec_tags("volume", t),
        )["Instances"][0]
        out.append(inst["InstanceId"])
    return out


def seed_ccm_service(cid: str, instance_ids: list[str], service: str = "default/web") -> tuple[str, str]:
    """What the AWS cloud provider makes for a Service of type LoadBalancer: a classic ELB
    `a<uid>` in the public subnets, its `k8s-elb-a<uid>` group (only the cluster tag), and a rule
    on the instances' group that admits the ELB's group. Returns (ELB name, ELB group id)."""
    lb = "a" + uuid.uuid4().hex[:31]
    vpc = ec2().describe_subnets(SubnetIds=[subnets_of(cid, public=True)[0]])["Subnets"][0]["VpcId"]
    cluster_tag = {tags.cloud_provider_key(cid): tags.OWNED}
    sg = ec2().create_security_group(
        VpcId=vpc,
        GroupName=f"k8s-elb-{lb}",
        Description=f"Security group for Kubernetes ELB {lb} ({service})",
        TagSpecifications=spec_tags("security-group", cluster_tag),
    )["GroupId"]
    ec2().authorize_security_group_ingress(
        GroupId=sg,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    elb().create_load_balancer(
        LoadBalancerName=lb,
        Listeners=[
            {"Protocol": "TCP", "LoadBalancerPort": 80, "InstanceProtocol": "TCP", "InstancePort": 30080}
        ],
        Subnets=subnets_of(cid, public=True),
        SecurityGroups=[sg],
        Tags=tag_list({"kubernetes.io/service-name": service, **cluster_tag}),
    )
    if instance_ids:
        elb().register_instances_with_load_balancer(
            LoadBalancerName=lb, Instances=[{"InstanceId": i} for i in instance_ids]
        )
    # The cross-rule: the instances' group admits the ELB's group on the node port.
    ec2().authorize_security_group_ingress(
        GroupId=group_of(cid, "node"),
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 30080, "ToPort": 30080, "UserIdGroupPairs": [{"GroupId": sg}]}
        ],
    )
    return lb, sg


def csi_volume(cid: str | None, pv: str, az: str = AZS[0]) -> str:
    """A volume as the EBS CSI driver makes it (with `--k8s-tag-cluster-id` when `cid` is set)."""
    t = {"CSIVolumeName": pv, "ebs.csi.aws.com/cluster": "true"}
    if cid:
        t |= {
            tags.cloud_provider_key(cid): tags.OWNED,
            "KubernetesCluster": cid,
            "Name": f"{cid}-dynamic-{pv}",
        }
    return ec2().create_volume(AvailabilityZone=az, Size=8, TagSpecifications=spec_tags("volume", t))[
        "VolumeId"
    ]


def seed_secrets(name: str, cid: str) -> None:
    for what in ("ca", "admin"):
        n = sm.pki_secret_name(NS, name, what)
        secrets().create_secret(Name=n, SecretString="x", Tags=tag_list(tags.build(cid, n, "pki")))


def seed_other_cluster() -> set[tuple[str, str]]:
    """Another cluster's load balancer, group, volume and secret: they must all survive."""
    vpc = ec2().create_vpc(
        CidrBlock="10.9.0.0/16",
        TagSpecifications=spec_tags("vpc", tags.build(OTHER, f"{OTHER}-vpc", "common")),
    )["Vpc"]["VpcId"]
    subnet = ec2().create_subnet(
        VpcId=vpc,
        CidrBlock="10.9.0.0/20",
        AvailabilityZone=AZS[0],
        TagSpecifications=spec_tags("subnet", tags.build(OTHER, f"{OTHER}-subnet-public-a", "public")),
    )["Subnet"]["SubnetId"]
    sg = ec2().create_security_group(
        VpcId=vpc,
        GroupName="k8s-elb-other",
        Description="Security group for Kubernetes ELB other",
        TagSpecifications=spec_tags("security-group", {tags.cloud_provider_key(OTHER): tags.OWNED}),
    )["GroupId"]
    elb().create_load_balancer(
        LoadBalancerName="aother",
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30080}],
        Subnets=[subnet],
        SecurityGroups=[sg],
        Tags=tag_list({tags.cloud_provider_key(OTHER): tags.OWNED}),
    )
    csi_volume(OTHER, "pvc-other")
    seed_secrets(OTHER, OTHER)
    return region_inventory()


class FakeWorkload:
    """The workload teardown activities (capt/activities/workload/teardown.py) over a fixed set of
    objects: deleting them 'takes' `polls` list calls."""

    def __init__(self, objects: list[CloudBackedObject], polls: int = 2, reachable: bool = True) -> None:
        self.objects, self.polls, self.reachable = objects, polls, reachable
        self.calls: list[str] = []

    def activities(self) -> list:
        fake = self

        def answer(objects: list[CloudBackedObject], deleting: bool) -> WorkloadCloudObjects:
            lbs = [o for o in objects if o.kind == "Service"]
            vols = [o for o in objects if o.volume_id]
            return WorkloadCloudObjects(
                services=tuple(
                    CloudBackedService(
                        namespace=o.namespace,
                        name=o.name,
                        uid=o.uid,
                        type="LoadBalancer",
                        load_balancer_name=load_balancer_name_of(o.load_balancer_hostname),
                        hostnames=(o.load_balancer_hostname or "",),
                        deleting=deleting,
                    )
                    for o in lbs
                ),
                load_balancer_names=tuple(
                    filter(None, (load_balancer_name_of(o.load_balancer_hostname) for o in lbs))
                ),
                volume_ids=tuple(o.volume_id for o in vols if o.reclaim_policy in (None, "Delete")),
                retained_volume_ids=tuple(
                    o.volume_id for o in vols if o.reclaim_policy not in (None, "Delete")
                ),
                pending=len(objects),
                done=not objects,
            )

        def cluster_of(req: CloudBackedObjectsRequest) -> str:
            return req.access.endpoint_host.split("-apiserver")[0]

        @activity.defn(name="delete_cloud_backed_objects")
        def delete_cloud_backed_objects(req: DeleteCloudBackedObjectsRequest) -> WorkloadCloudObjects:
            fake.calls.append(f"delete {cluster_of(req)}")
            if not fake.reachable:
                raise ApplicationError(
                    "workload API unreachable: connection refused", type="WorkloadUnreachable"
                )
            return answer(fake.objects, deleting=True)

        @activity.defn(name="list_cloud_backed_objects")
        def list_cloud_backed_objects(req: CloudBackedObjectsRequest) -> WorkloadCloudObjects:
            fake.calls.append(f"list {cluster_of(req)}")
            if len([c for c in fake.calls if c.startswith("list")]) >= fake.polls:
                return answer([], deleting=False)
            return answer(fake.objects, deleting=True)

        return [delete_cloud_backed_objects, list_cloud_backed_objects]


def access(name: str) -> WorkloadAccess:
    return WorkloadAccess(
        region=REGION,
        endpoint_host=f"{name}-apiserver.elb.example",
        pki=ClusterPKIRefs(
            ca_arn="arn:fake:ca",
            etcd_ca_arn="arn:fake:etcd-ca",
            front_proxy_ca_arn="arn:fake:fp",
            sa_arn="arn:fake:sa",
            admin_arn="arn:fake:admin",
            ca_cert_hash="sha256:" + "0" * 64,
        ),
    )


async def teardown(env, task_queue: str, name: str, *, cid: str | None = None, **kw):
    handle = await env.client.start_workflow(
        ClusterTeardownWorkflow.run,
        TeardownInput(namespace=NS, name=name, region=REGION, cluster_id=cid, **kw),
        id=cluster_workflow_id(NS, name),
        task_queue=task_queue,
    )
    return handle


def refuse(operation: str):
    """`before-call` hook: `operation` is always refused, non-retryably."""

    def hook(model, **kwargs):
        if model.name != operation:
            return None
        parsed = {
            "Error": {"Code": "InvalidConfigurationRequest", "Message": f"injected: {operation} refused"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://injected.invalid", 400, {}, None), parsed

    return hook


# --- the strict hook is not vacuous ----------------------------------------------------------------


def test_strict_hook_refuses_what_aws_refuses(moto) -> None:
    c = ec2()
    vpc = c.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sub = c.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24", AvailabilityZone=AZS[0])["Subnet"]["SubnetId"]
    node = c.create_security_group(VpcId=vpc, GroupName="node", Description="d")["GroupId"]
    lb = c.create_security_group(VpcId=vpc, GroupName="k8s-elb-a", Description="d")["GroupId"]
    c.authorize_security_group_ingress(
        GroupId=node,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": lb}]}
        ],
    )
    inst = c.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=sub, SecurityGroupIds=[node]
    )
    with strict_aws(REGION) as hook:
        capt = session.client("ec2", REGION)
        for call, kw in (
            (capt.delete_security_group, {"GroupId": lb}),  # a rule names it
            (capt.delete_security_group, {"GroupId": node}),  # an instance's interface uses it
            (capt.delete_subnet, {"SubnetId": sub}),  # the interface is in it
            (capt.delete_vpc, {"VpcId": vpc}),  # groups and the interface are in it
        ):
            with pytest.raises(Exception, match="DependencyViolation"):
                call(**kw)
        c.terminate_instances(InstanceIds=[inst["Instances"][0]["InstanceId"]])
        c.revoke_security_group_ingress(
            GroupId=node,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "UserIdGroupPairs": [{"GroupId": lb}]}
            ],
        )
        capt.delete_security_group(GroupId=lb)
        capt.delete_security_group(GroupId=node)
        capt.delete_subnet(SubnetId=sub)
        capt.delete_vpc(VpcId=vpc)
    assert len(hook.refused) == 4


# --- the teardown ---------------------------------------------------------------------------------------


async def test_ccm_load_balancer_volumes_and_abandoned_machines_leave_nothing(
    time_skipping_env, task_queue, strict
):
    """A cluster whose machine workflows are gone, with what the cloud provider and the CSI
    driver made: the ELB, its group and the rule naming it on the node group, volumes (attached
    to a running machine, attached to a terminated one, loose, and one known only from the
    workload API). Nothing of it is left, and nothing of another cluster goes."""
    env, name = time_skipping_env, "td"
    baseline = seed_other_cluster()
    workflows, activities = workers()
    workload = FakeWorkload([])
    async with running_worker(env, task_queue, workflows, activities + workload.activities()):
        await create_network(env, task_queue, name)
        machines = seed_machines(name)
        lb, lb_group = seed_ccm_service(name, machines)
        attached = csi_volume(name, "pvc-attached")
        ec2().attach_volume(VolumeId=attached, InstanceId=machines[0], Device="/dev/xvdf")
        loose = csi_volume(name, "pvc-loose")
        # A machine already terminated (its workflow gone with it) with a volume still attached.
        stale = csi_volume(name, "pvc-stale")
        ec2().attach_volume(VolumeId=stale, InstanceId=machines[1], Device="/dev/xvdf")
        ec2().terminate_instances(InstanceIds=[machines[1]])
        untagged = csi_volume(None, "pvc-untagged")  # a CSI driver without --k8s-tag-cluster-id
        foreign_untagged = csi_volume(None, "pvc-someone-else")  # not named by the workload API
        retained = csi_volume(name, "pvc-retained")  # reclaimPolicy Retain: goes with the cluster
        seed_secrets(name, name)
        workload.objects = [
            CloudBackedObject(
                kind="Service",
                namespace="default",
                name="web",
                load_balancer_hostname=f"{lb}-123456789.{REGION}.elb.amazonaws.com",
            ),
            *(
                CloudBackedObject(
                    kind="PersistentVolume", name=f"pv-{v}", volume_id=v, reclaim_policy="Delete"
                )
                for v in (attached, loose, untagged)
            ),
            CloudBackedObject(
                kind="PersistentVolume", name="pv-kept", volume_id=retained, reclaim_policy="Retain"
            ),
        ]
        assert {("security-group", lb_group), ("load-balancer", lb), ("volume", loose)} <= region_inventory()

        handle = await teardown(env, task_queue, name, workload=access(name))
        final: ClusterStatus = await handle.result()

    assert final.phase == "Deleted" and final.blocked == []
    assert workload.calls[0] == f"delete {name}" and workload.calls[-1].startswith("list")
    left = region_inventory() - baseline
    assert describe(left) == [f"volume {foreign_untagged}"]  # not ours: never named, never tagged
    assert baseline <= region_inventory()  # the other cluster is untouched
    assert any("1 instance(s) terminated" in e for e in final.events)
    assert any(f"volume(s) of Retain PersistentVolumes: {retained}" in e for e in final.events)


async def test_a_half_created_cluster_is_deleted_with_only_its_id(time_skipping_env, task_queue, strict):
    """The create failed at the API load balancer and the cluster's workflow is gone: a teardown
    that knows only the namespace, name, region and id (no workload access, and the worker has no
    workload activities) deletes what was made."""
    env, name = time_skipping_env, "td"
    baseline = seed_other_cluster()
    workflows, activities = workers()
    async with running_worker(env, task_queue, workflows, activities):
        with session.hooked("before-call", refuse("CreateLoadBalancer")):
            await create_network(env, task_queue, name, refuse="CreateLoadBalancer")
        seed_machines(name, 1)
        seed_secrets(name, name)
        assert len(region_inventory() - baseline) > 20
        final = await (await teardown(env, task_queue, name)).result()
    assert final.phase == "Deleted" and final.cluster_id == name
    assert describe(region_inventory() - baseline) == []
    assert baseline <= region_inventory()
    assert any("workload API not found" in e for e in final.events)


class Throttle:
    """`before-call` hook: while `on`, every call of `operations` is throttled, as AWS does
    under load (returned before botocore sends anything)."""

    def __init__(self, *operations: str) -> None:
        self.operations, self.on, self.seen = operations, True, 0

    def __call__(self, model, **kwargs):
        if not self.on or model.name not in self.operations:
            return None
        self.seen += 1
        parsed = {
            "Error": {"Code": "RequestLimitExceeded", "Message": "injected: throttled"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        }
        return AWSResponse("https://injected.invalid", 503, {}, None), parsed


async def test_throttling_is_retried_soon_and_never_reported_as_a_blocker(
    time_skipping_env, task_queue, strict
):
    """The security groups' revokes and deletes are throttled for longer than a delete's bounded
    attempts: AWS being busy, not something holding the groups. The sweep says so and tries again
    after its short interval (not `blocked_retry_seconds`), reports no blocker, and finishes once
    AWS answers again."""
    env, name = time_skipping_env, "td"
    workflows, activities = workers()
    settings = TeardownSettings(blocked_retry_seconds=3000, blocked_deadline_seconds=6000)
    throttle = Throttle("RevokeSecurityGroupIngress", "DeleteSecurityGroup")
    before = region_inventory()
    async with running_worker(env, task_queue, workflows, activities):
        await create_network(env, task_queue, name)
        seed_ccm_service(name, seed_machines(name, 1))  # a rule on the node group names the ELB's
        with session.hooked("before-call", throttle):
            handle = await teardown(env, task_queue, name, settings=settings)
            status = await wait_for(
                env,
                lambda: query(handle, ClusterTeardownWorkflow.status),
                lambda st: "failed on throttling" in st.message,
                step=5,
                limit=settings.blocked_retry_seconds / 2,
                what="the sweep to report throttling",
            )
            assert (
                status.blocked == []
                and f"trying again in {settings.final_sweep_interval_seconds}s" in status.message
            )
            throttle.on = False
            final: ClusterStatus = await handle.result()
        described = await handle.describe()
    assert throttle.seen > settings.delete_attempts
    assert final.phase == "Deleted" and final.blocked == []
    assert not [e for e in final.events if "blocked" in e]
    # Short rounds only: not one `blocked_retry_seconds` wait.
    assert (described.close_time - described.start_time).total_seconds() < settings.blocked_retry_seconds
    assert describe(region_inventory() - before) == []


def foreign_interface(name: str) -> tuple[str, str]:
    """Someone else's interface in the cluster's private subnet, in its node group, attached to
    an instance outside the cluster: capt must not delete it, and AWS will not delete the group
    or the subnet while it is there."""
    c = ec2()
    default_subnet = c.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][
        0
    ]
    outsider = c.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=default_subnet["SubnetId"]
    )
    outsider_id = outsider["Instances"][0]["InstanceId"]
    eni = c.create_network_interface(
        SubnetId=subnets_of(name, public=False)[0],
        Groups=[group_of(name, "node")],
        Description="someone's appliance",
    )["NetworkInterface"]["NetworkInterfaceId"]
    c.attach_network_interface(NetworkInterfaceId=eni, InstanceId=outsider_id, DeviceIndex=1)
    return eni, outsider_id


def remove_foreign_interface(eni: str, outsider: str) -> None:
    c = ec2()
    attachment = c.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0][
        "Attachment"
    ]
    c.detach_network_interface(AttachmentId=attachment["AttachmentId"], Force=True)
    c.delete_network_interface(NetworkInterfaceId=eni)
    c.terminate_instances(InstanceIds=[outsider])


async def test_a_foreign_interface_blocks_is_reported_and_a_rerun_finishes(
    time_skipping_env, task_queue, strict
):
    env, name = time_skipping_env, "td"
    workflows, activities = workers()
    settings = TeardownSettings(blocked_retry_seconds=60, blocked_deadline_seconds=300)
    async with running_worker(env, task_queue, workflows, activities):
        await create_network(env, task_queue, name)
        baseline_after_network = region_inventory()
        eni, outsider = foreign_interface(name)
        handle = await teardown(env, task_queue, name, settings=settings)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        message = str(failed.value.cause)
        assert (
            "deletion blocked after 300s" in message
            and eni in message
            and "run `capt delete` again" in message
        )
        status: ClusterStatus = await query(handle, ClusterTeardownWorkflow.status)
        assert status.phase == "Failed"
        by_resource = {(b.resource_kind, b.blocker_id) for b in status.blocked}
        assert ("security-group", eni) in by_resource  # the node group: the interface uses it
        assert ("subnet", eni) in by_resource  # its subnet
        node = next(b for b in status.blocked if b.resource_kind == "security-group")
        assert node.resource_id == group_of(name, "node") and node.resource_name == f"{name}-node"
        assert f"attached to {outsider}" in node.description and "someone's appliance" in node.description
        assert node.text().startswith(
            f"security-group {node.resource_id} ({name}-node) blocked by network-interface {eni}"
        )
        # Nothing of the outsider was touched; what could go, went.
        assert ("network-interface", eni) in region_inventory() and (
            "instance",
            outsider,
        ) in region_inventory()
        assert strict.refused[f"DeleteSecurityGroup {group_of(name, 'node')}"] > 0

        remove_foreign_interface(eni, outsider)
        final = await (await teardown(env, task_queue, name, settings=settings)).result()
    assert final.phase == "Deleted" and final.blocked == []
    assert {k for k, _ in region_inventory() & baseline_after_network} == set()


# --- through the ClusterWorkflow -------------------------------------------------------------------


def small_spec():
    spec = load_file(QUICKSTART, env={}).spec
    cp = spec.control_plane.model_copy(update={"replicas": 1})
    mds = tuple(md.model_copy(update={"replicas": 1}) for md in spec.machine_deployments)
    return spec.model_copy(update={"control_plane": cp, "machine_deployments": mds})


async def test_cluster_delete_fails_while_blocked_and_a_second_delete_finishes(
    time_skipping_env, task_queue, strict
):
    """ClusterWorkflow deletes through its ClusterTeardownWorkflow child: the workload objects
    first (through the parent's access), the machines, the sweep. Blocked, the cluster turns
    Failed with what blocks it and waits; the next `delete` runs the teardown again."""
    from capt.workflows.controlplane.workflow import ControlPlaneWorkflow
    from capt.workflows.health.workflow import HealthCheckWorkflow
    from capt.workflows.machine.workflow import MachineWorkflow
    from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow

    env, cloud = time_skipping_env, FakeCloud(boot_seconds=20, join_seconds=20)
    spec = small_spec()
    baseline = seed_other_cluster()
    workload = FakeWorkload([], polls=1)
    _, aws = workers()
    activities = [
        *aws,
        sm.ensure_cluster_pki,
        *HealthFakes(cloud).activities(),
        *workload.activities(),
    ]
    activities = [a for a in activities if a is not ec2_activities.describe_cluster_instances]
    from capt.activities import owners as health_activities

    activities += health_activities.HEALTH_ACTIVITIES
    workflows = [
        ClusterWorkflow,
        ClusterTeardownWorkflow,
        InfrastructureWorkflow,
        ControlPlaneWorkflow,
        MachineDeploymentWorkflow,
        MachineWorkflow,
        HealthCheckWorkflow,
    ]
    async with running_worker(env, task_queue, workflows, activities):
        handle = await env.client.start_workflow(
            ClusterWorkflow.run,
            ClusterInput(spec=spec),
            id=cluster_workflow_id(spec.namespace, spec.name),
            task_queue=task_queue,
        )
        await wait_for(
            env, lambda: query(handle, ClusterWorkflow.status), lambda s: s.phase == "Ready", what="Ready"
        )
        cid = names.cluster_id(spec.namespace, spec.name)
        lb, _ = seed_ccm_service(cid, [])
        eni, outsider = foreign_interface(cid)

        await handle.execute_update(ClusterWorkflow.delete)
        failed = await wait_for(
            env,
            lambda: query(handle, ClusterWorkflow.status),
            lambda s: s.phase == "Failed",
            step=120,
            limit=4 * 3600,
            what="deletion blocked",
        )
        assert failed.message.endswith("run `capt delete` again") and eni in failed.message
        assert {b.blocker_id for b in failed.blocked} == {eni}
        assert ("load-balancer", lb) not in region_inventory()  # what could go, went
        assert all(i.terminated_at is not None for i in cloud.instances.values())  # machines deleted
        # The API load balancer's name: the id hashed to fit ELB's 32 characters.
        assert workload.calls[0] == f"delete {names.elb_safe(cid, 'apiserver').removesuffix('-apiserver')}"

        remove_foreign_interface(eni, outsider)
        await handle.execute_update(ClusterWorkflow.delete)
        final = await handle.result()
    assert final.phase == "Deleted" and final.blocked == []
    assert describe(region_inventory() - baseline) == []
    assert baseline <= region_inventory()
    history = await handle.fetch_history()
    children = [
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert children.count(f"teardown/{spec.namespace}/{spec.name}") == 2


def test_names_from_the_workload_api() -> None:
    from capt.workflows.teardown.models import load_balancer_name_of, volume_id_of

    assert load_balancer_name_of("a1b2c3-123456789.ap-northeast-2.elb.amazonaws.com") == "a1b2c3"
    assert load_balancer_name_of("internal-a1b2c3-1234.ap-northeast-2.elb.amazonaws.com") == "a1b2c3"
    assert (
        load_balancer_name_of("k8s-default-web-0123abcd.elb.ap-northeast-2.amazonaws.com")
        == "k8s-default-web"
    )
    assert load_balancer_name_of("web.example.com") is None and load_balancer_name_of(None) is None
    assert volume_id_of("vol-0123456789abcdef0") == "vol-0123456789abcdef0"
    assert volume_id_of("aws://ap-northeast-2a/vol-0123") == "vol-0123"
    assert volume_id_of("pvc-1234") is None and volume_id_of(None) is None
