"""The account audit on in-process moto: inventory of every kind, duplicates, orphans, missing,
and moto's leftovers (interfaces of terminated instances and deleted NAT gateways) discounted."""

from __future__ import annotations

import boto3
import pytest

from capt.activities.aws import audit, audit_compare, tags
from capt.activities.aws import secrets as sm
from capt.contracts.names import cluster_id
from capt.dev.testkit.reference import AZS, REGION, reference_spec
from capt.plan.cluster import build_plan

C = "audited"


def owned(name: str, cluster: str = C, **extra: str) -> list[dict]:
    return tags.as_list(tags.build(cluster, name, tags.ROLE_COMMON, extra=extra or None))


def spec(kind: str, name: str, cluster: str = C, **extra: str) -> list[dict]:
    return [{"ResourceType": kind, "Tags": owned(name, cluster, **extra)}]


@pytest.fixture
def ec2(aws):
    return boto3.client("ec2", region_name=REGION)


def small_cluster(ec2, cluster: str = C) -> dict[str, str]:
    """A VPC, a subnet, a NAT gateway with its address, one machine, one PKI secret: all tagged."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=spec("vpc", f"{cluster}-vpc", cluster))
    vpc_id = vpc["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.0.0/24", TagSpecifications=spec("subnet", f"{cluster}-subnet", cluster)
    )["Subnet"]["SubnetId"]
    eip = ec2.allocate_address(Domain="vpc", TagSpecifications=spec("elastic-ip", f"{cluster}-eip", cluster))
    nat = ec2.create_nat_gateway(
        SubnetId=subnet,
        AllocationId=eip["AllocationId"],
        TagSpecifications=spec("natgateway", f"{cluster}-nat", cluster),
    )["NatGateway"]["NatGatewayId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        # Tagged like capt's: the volumes carry the instance's tags.
        TagSpecifications=spec("instance", "m-1", cluster, **{tags.MACHINE_TAG: "m-1"})
        + spec("volume", "m-1", cluster, **{tags.MACHINE_TAG: "m-1"}),
    )["Instances"][0]["InstanceId"]
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secret = sm.pki_secret_name("default", cluster, "ca")
    secrets.create_secret(Name=secret, SecretString="x", Tags=owned(secret, cluster))
    return {"vpc": vpc_id, "subnet": subnet, "eip": eip["AllocationId"], "nat": nat, "instance": instance}


def desired(cluster: str = C, **overrides: set[str]) -> audit_compare.DesiredCluster:
    expected = {
        "vpc": {f"{cluster}-vpc"},
        "subnet": {f"{cluster}-subnet"},
        "elastic-ip": {f"{cluster}-eip"},
        "nat-gateway": {f"{cluster}-nat"},
        "instance": {"m-1"},
        "secret": {sm.pki_secret_name("default", cluster, "ca")},
    }
    expected.update(overrides)
    return audit_compare.DesiredCluster(cluster, {k: frozenset(v) for k, v in expected.items()})


def test_clean_account_passes(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    now = audit.take_inventory(REGION)

    assert ids["vpc"] in now.ids("vpc") and ids["nat"] in now.ids("nat-gateway")
    assert ids["instance"] in now.ids("instance")
    # The instance's root volume and interface, the NAT gateway's interface, the VPC's main
    # route table and default security group exist without tags: attributed, not orphans.
    assert now.counts()["volume"] == baseline.counts()["volume"] + 1
    assert now.counts()["network-interface"] == baseline.counts()["network-interface"] + 2
    report = audit_compare.compare(baseline, now, [desired()])
    assert report.clean, report.summary()
    assert report.counts["secret"] == 1


def test_duplicate_vpc_is_found(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    again = ec2.create_vpc(CidrBlock="10.0.0.0/16", TagSpecifications=spec("vpc", f"{C}-vpc"))["Vpc"]["VpcId"]

    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [desired()])
    assert [(f.kind, f.key, set(f.ids)) for f in report.duplicates] == [
        ("vpc", f"{C}-vpc", {ids["vpc"], again})
    ]
    assert report.extra_resources == 1 and not report.orphans
    assert "duplicate vpc audited/audited-vpc" in report.summary()


def test_two_instances_for_one_machine_are_a_duplicate(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        SubnetId=ids["subnet"],
        TagSpecifications=spec("instance", "m-1", **{tags.MACHINE_TAG: "m-1"}),
    )
    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [desired()])
    assert [(f.kind, f.key, len(f.ids)) for f in report.duplicates] == [("instance", "m-1", 2)]


def test_orphan_secret_is_found(ec2):
    baseline = audit.take_inventory(REGION)
    small_cluster(ec2)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    token = sm.token_secret_name("default", C, "m-1")
    secrets.create_secret(Name=token, SecretString="t", Tags=owned("m-1"))
    secrets.create_secret(Name="someone/else", SecretString="s")

    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [desired()])
    assert not report.duplicates
    assert sorted((f.kind, f.cluster, f.key) for f in report.orphans) == [
        ("secret", "", "someone/else"),
        ("secret", C, token),
    ]
    reasons = {f.key: f.reason for f in report.orphans}
    assert reasons[token] == "not in the desired state"
    assert reasons["someone/else"].startswith("untagged")


def test_resources_of_a_cluster_that_is_not_desired_are_orphans(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [])
    kinds = {f.kind for f in report.orphans}
    assert {"vpc", "subnet", "elastic-ip", "nat-gateway", "instance", "secret"} <= kinds
    assert all(f.cluster == C for f in report.orphans if f.kind != "route-table")
    # The instance's volume and interface come with it (not attributable once it is not
    # desired, so they are listed too): nothing created is silently accepted.
    assert ids["instance"] in {i for f in report.orphans for i in f.ids}


def test_missing_resources_are_reported(ec2):
    baseline = audit.take_inventory(REGION)
    small_cluster(ec2)
    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [desired(instance={"m-1", "m-2"})])
    assert [(f.kind, f.key) for f in report.missing] == [("instance", "m-2")]
    assert not report.clean


def test_after_delete_the_inventory_is_the_baseline_with_moto_leftovers_discounted(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    ec2.terminate_instances(InstanceIds=[ids["instance"]])
    ec2.delete_nat_gateway(NatGatewayId=ids["nat"])
    ec2.release_address(AllocationId=ids["eip"])
    ec2.delete_subnet(SubnetId=ids["subnet"])
    ec2.delete_vpc(VpcId=ids["vpc"])
    boto3.client("secretsmanager", region_name=REGION).delete_secret(
        SecretId=sm.pki_secret_name("default", C, "ca"), ForceDeleteWithoutRecovery=True
    )
    after = audit.take_inventory(REGION)
    report = audit_compare.compare(baseline, after, [])
    assert report.clean, report.summary()
    assert after.counts() == baseline.counts()
    # moto keeps the terminated instance's interface and the deleted NAT gateway's: discounted.
    reasons = sorted(d.reason.split(":")[1].split()[0] for d in report.discounted)
    assert reasons == ["attached", "interface"]


def test_an_interface_left_behind_is_an_orphan(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    eni = ec2.create_network_interface(SubnetId=ids["subnet"])["NetworkInterface"]["NetworkInterfaceId"]
    report = audit_compare.compare(baseline, audit.take_inventory(REGION), [desired()])
    assert [(f.kind, f.ids) for f in report.orphans] == [("network-interface", (eni,))]


def test_load_balancers_and_target_groups_are_inventoried(ec2):
    baseline = audit.take_inventory(REGION)
    ids = small_cluster(ec2)
    lb_tags = owned(f"{C}-apiserver")
    # (With no security group, ELB -- moto too -- creates a default_elb_* group of its own.)
    default_group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [ids["vpc"]]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    boto3.client("elb", region_name=REGION).create_load_balancer(
        LoadBalancerName=f"{C}-apiserver",
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 6443, "InstancePort": 6443}],
        Subnets=[ids["subnet"]],
        SecurityGroups=[default_group],
        Tags=lb_tags,
    )
    elbv2 = boto3.client("elbv2", region_name=REGION)
    elbv2.create_target_group(Name="stray-tg", Protocol="TCP", Port=6443, VpcId=ids["vpc"], Tags=lb_tags)
    now = audit.take_inventory(REGION)
    assert now.ids("load-balancer") == [f"{C}-apiserver"]
    assert len(now.ids("target-group")) == 1
    report = audit_compare.compare(baseline, now, [desired(**{"load-balancer": {f"{C}-apiserver"}})])
    assert [(f.kind, f.key) for f in report.orphans] == [("target-group", "stray-tg")]


def test_desired_from_plan_names_every_planned_resource():
    spec = reference_spec()
    plan = build_plan(spec, AZS, cluster_id(spec.namespace, spec.name))
    d = audit_compare.desired_from_plan(plan, ["cp-1", "md-1"])
    # Keyed by the ownership tag's value, the namespaced cluster id (not the bare name).
    assert d.name == f"{spec.namespace}.{spec.name}" == plan.cluster_id
    net = plan.network
    assert d.keys("vpc") == {net.vpc.name}
    assert len(d.keys("subnet")) == 6 and len(d.keys("nat-gateway")) == 3 == len(d.keys("elastic-ip"))
    assert len(d.keys("route-table")) == 6 and d.keys("internet-gateway") == {net.internet_gateway_name}
    assert d.keys("security-group") == {g.name for g in plan.security_groups}
    assert d.keys("load-balancer") == {plan.load_balancer.name}
    assert d.keys("instance") == {"cp-1", "md-1"}
    assert len(d.keys("secret")) == len(sm.PKI_NAMES)


def test_inventory_round_trips_through_json(ec2):
    small_cluster(ec2)
    inv = audit.take_inventory(REGION)
    assert audit.Inventory.from_json(inv.to_json()) == inv
