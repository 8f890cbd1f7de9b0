"""Instances against moto: hardened launch, one instance per machine under retries, terminate,
API load balancer membership, the cluster-wide describe."""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass

import pytest
from botocore.stub import Stubber
from temporalio.exceptions import ApplicationError

from capt.activities.aws import iam, iam_bootstrap, instances, lb_membership, session, tags
from capt.spec.models import AMISelector, MachineTemplate, RootVolume
from tests.activities.aws.test_images import add_ami
from tests.support.aws_lag import eventually_consistent, run_like_temporal

REGION = "ap-northeast-2"
CLUSTER = "capt-test"
PREFIX = "capt/default/capt-test/bootstrap/cp-0-" + "ab" * 32
TOKEN_PATTERN = re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b")


@pytest.fixture(autouse=True)
def _no_default_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto would load ~1300 stock AMIs into every fresh EC2 backend (0.5 s each); the tests
    create the images they need."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@dataclass(frozen=True)
class Net:
    vpc: str
    subnets: dict[str, str]  # az -> subnet id
    control_plane_sg: str
    node_sg: str
    extra_sg: str
    image: str


@pytest.fixture
def net(aws: None) -> Net:
    ec2 = session.client("ec2", REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        az: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        for az, cidr in (("ap-northeast-2a", "10.0.64.0/18"), ("ap-northeast-2b", "10.0.128.0/18"))
    }
    sgs = [
        ec2.create_security_group(GroupName=f"{CLUSTER}-{n}", Description=n, VpcId=vpc)["GroupId"]
        for n in ("controlplane", "node", "extra")
    ]
    iam_bootstrap.bootstrap_iam()
    image = add_ami("capa-ami-ubuntu-24.04-v1.31.0-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    return Net(vpc, subnets, *sgs, image=image)


def request(net: Net, machine: str = "cp-0", **changes) -> instances.InstanceRequest:
    template = changes.pop("template", MachineTemplate(name="cp", instance_type="t3.large"))
    az = changes.pop("availability_zone", "ap-northeast-2b")
    fields = dict(
        region=REGION,
        cluster_name=CLUSTER,
        machine_name=machine,
        role="control-plane",
        availability_zone=az,
        subnet_id=net.subnets[az],
        security_group_ids=(net.control_plane_sg, net.extra_sg),
        template=template,
        kubernetes_version="v1.31.0",
        image_id=net.image,
        bootstrap_secret_prefix=PREFIX,
        bootstrap_chunks=1,
        additional_tags=(("team", "platform"),),
    )
    fields.update(changes)
    return instances.InstanceRequest(**fields)


def ec2():
    # The worker's cached client (a fresh boto3 client would reload EC2's service model).
    return session.client("ec2", REGION)


def raw(instance_id: str) -> dict:
    return ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def machine_instances(machine: str) -> list[dict]:
    pages = ec2().describe_instances(Filters=[tags.machine_filter(machine)])["Reservations"]
    return [i for r in pages for i in r["Instances"] if i["State"]["Name"] != "terminated"]


# --------------------------------------------------------------------------------------------
# launch


def test_instance_is_launched_hardened_tagged_and_placed(net: Net) -> None:
    result = instances.ensure_instance(request(net))
    assert result.created and result.state in ("pending", "running")
    # Lookup by tags, the image's root device, the launch, the wait until EC2 reads show it.
    assert result.aws_calls == {"ec2:DescribeInstances": 2, "ec2:DescribeImages": 1, "ec2:RunInstances": 1}

    i = raw(result.instance_id)
    assert i["MetadataOptions"]["HttpTokens"] == "required"
    assert i["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    assert i["SubnetId"] == net.subnets["ap-northeast-2b"]
    assert result.availability_zone == i["Placement"]["AvailabilityZone"] == "ap-northeast-2b"
    assert {g["GroupId"] for g in i["SecurityGroups"]} == {net.control_plane_sg, net.extra_sg}
    assert i["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{iam.CONTROL_PLANE_PROFILE}")
    assert i["ImageId"] == net.image
    assert i["ClientToken"] == instances.instance_token(request(net))

    t = tags.as_dict(i["Tags"])
    assert t[tags.cluster_key(CLUSTER)] == tags.OWNED
    assert t[tags.cloud_provider_key(CLUSTER)] == tags.OWNED
    assert t[tags.ROLE_TAG] == "control-plane"
    assert t[tags.NAME_TAG] == t[tags.MACHINE_TAG] == "cp-0"
    assert t["team"] == "platform"

    root = next(m for m in i["BlockDeviceMappings"] if m["DeviceName"] == i["RootDeviceName"])
    volume = ec2().describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
    assert (volume["VolumeType"], volume["Encrypted"], volume["Size"]) == ("gp3", True, 80)
    assert tags.is_owned(tags.as_dict(volume.get("Tags")), CLUSTER)


def test_user_data_is_only_the_boothook(net: Net) -> None:
    result = instances.ensure_instance(request(net))
    encoded = ec2().describe_instance_attribute(InstanceId=result.instance_id, Attribute="userData")
    text = base64.b64decode(encoded["UserData"]["Value"]).decode()
    assert "#cloud-boothook" in text and PREFIX in text
    assert "BEGIN" not in text and "PRIVATE KEY" not in text
    assert not TOKEN_PATTERN.search(text)
    assert len(text.encode()) < 16 * 1024  # EC2's limit; the real data is in Secrets Manager


def test_ensure_twice_is_one_instance(net: Net) -> None:
    first = instances.ensure_instance(request(net))
    second = instances.ensure_instance(request(net))
    assert second.instance_id == first.instance_id and not second.created
    assert second.aws_calls == {"ec2:DescribeInstances": 1}
    assert len(machine_instances("cp-0")) == 1


def test_lost_run_instances_response_still_one_instance(net: Net) -> None:
    def drop_response(**_kwargs) -> None:
        raise ConnectionResetError("connection reset after RunInstances was accepted")

    with session.hooked("after-call.ec2.RunInstances", drop_response), pytest.raises(ApplicationError) as err:
        instances.ensure_instance(request(net))
    assert not err.value.non_retryable
    assert len(machine_instances("cp-0")) == 1  # AWS did launch it

    retried = instances.ensure_instance(request(net))
    assert not retried.created
    assert [i["InstanceId"] for i in machine_instances("cp-0")] == [retried.instance_id]


def test_a_lost_run_instances_behind_lagging_reads_still_one_instance(net: Net) -> None:
    """The answer is lost and DescribeInstances does not show the instance to the retry: the
    retry's RunInstances carries the same ClientToken, which AWS answers with the first instance
    (emulated: moto ignores ClientToken, tests.support.aws_lag.AwsRepeats)."""
    with eventually_consistent(reads=2, lose={"RunInstances"}) as lag:
        result, failures = run_like_temporal(instances.ensure_instance, request(net))
    assert failures == ["ConnectionClosedError"]
    assert lag.created["RunInstances"] == 1 and lag.repeats.repeated["RunInstances"] == 1
    assert lag.hidden_reads[result.instance_id] == 2  # the retry's lookup did not see it
    assert [i["InstanceId"] for i in machine_instances("cp-0")] == [result.instance_id]


def test_new_incarnation_new_client_token(net: Net) -> None:
    zero, again, one = (instances.instance_token(request(net, incarnation=n)) for n in (0, 0, 1))
    assert zero == again != one
    assert instances.instance_token(request(net, machine="cp-1")) != zero
    assert instances.instance_token(request(net, namespace="other")) != zero
    assert all(len(t) <= 64 for t in (zero, one))

    first = instances.ensure_instance(request(net, incarnation=0))
    instances.terminate_instance(
        instances.TerminateInstanceRequest(region=REGION, instance_id=first.instance_id)
    )
    replacement = instances.ensure_instance(request(net, incarnation=1))
    assert replacement.created and replacement.instance_id != first.instance_id
    assert raw(replacement.instance_id)["ClientToken"] == one != raw(first.instance_id)["ClientToken"]


def test_spent_client_token_is_a_non_retryable_error(net: Net) -> None:
    """Real EC2 (not moto) answers a reused token with the earlier, terminated instance."""
    client = session.client("ec2", REGION)
    req = request(net)
    with Stubber(client) as stub:
        stub.add_response(
            "describe_images",
            {"Images": [{"ImageId": net.image, "RootDeviceName": "/dev/sda1", "State": "available"}]},
        )
        stub.add_response(
            "run_instances",
            {
                "Instances": [
                    {"InstanceId": "i-0aaaaaaaaaaaaaaaa", "State": {"Name": "terminated", "Code": 48}}
                ]
            },
        )
        with pytest.raises(instances.ClientTokenSpentError) as err:
            instances._launch(client, req)
    assert err.value.non_retryable and "new incarnation" in str(err.value)


def test_worker_role_uses_node_tags_and_profile(net: Net) -> None:
    result = instances.ensure_instance(
        request(
            net,
            machine="md-0-a",
            role="worker",
            security_group_ids=(net.node_sg,),
            availability_zone="ap-northeast-2a",
        )
    )
    i = raw(result.instance_id)
    assert tags.as_dict(i["Tags"])[tags.ROLE_TAG] == "node"
    assert i["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{iam.NODES_PROFILE}")
    assert i["SubnetId"] == net.subnets["ap-northeast-2a"]


def test_template_overrides_and_ami_lookup(net: Net) -> None:
    newest = add_ami("capa-ami-ubuntu-24.04-v1.31.0-2", dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    template = MachineTemplate(
        name="relaxed",
        instance_type="m5.large",
        http_tokens="optional",
        http_put_response_hop_limit=2,
        root_volume=RootVolume(size_gib=120, type="gp2", encrypted=False),
        iam_instance_profile=iam.NODES_PROFILE,
        additional_tags=(("cost-center", "42"),),
    )
    result = instances.ensure_instance(request(net, template=template, image_id=None))
    i = raw(result.instance_id)
    assert i["ImageId"] == newest
    assert (i["MetadataOptions"]["HttpTokens"], i["MetadataOptions"]["HttpPutResponseHopLimit"]) == (
        "optional",
        2,
    )
    root = i["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = ec2().describe_volumes(VolumeIds=[root])["Volumes"][0]
    assert (volume["VolumeType"], volume["Encrypted"], volume["Size"]) == ("gp2", False, 120)
    assert i["IamInstanceProfile"]["Arn"].endswith(iam.NODES_PROFILE)
    assert tags.as_dict(i["Tags"])["cost-center"] == "42"


def test_missing_image_fails_fast(net: Net) -> None:
    template = MachineTemplate(name="x", instance_type="t3.large", ami=AMISelector(lookup_base_os="flatcar"))
    with pytest.raises(ApplicationError) as err:
        instances.ensure_instance(request(net, template=template, image_id=None))
    assert err.value.non_retryable and "flatcar" in err.value.message
    assert machine_instances("cp-0") == []


def test_run_instances_params_are_deterministic_and_public_ip_uses_an_interface(net: Net) -> None:
    from capt.activities.aws.images import ImageChoice

    image = ImageChoice(image_id="ami-1", root_device_name="/dev/xvda")
    a = instances.run_instances_params(request(net), image)
    assert a == instances.run_instances_params(request(net), image)
    assert a["BlockDeviceMappings"][0]["DeviceName"] == "/dev/xvda"
    public = instances.run_instances_params(
        request(net, template=MachineTemplate(name="p", instance_type="t3.micro", public_ip=True)), image
    )
    assert "SubnetId" not in public
    assert public["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True
    assert "UserData" not in instances.run_instances_params(request(net, bootstrap_secret_prefix=None), image)


# --------------------------------------------------------------------------------------------
# describe and terminate


def test_describe_instance_and_gone(net: Net) -> None:
    launched = instances.ensure_instance(request(net))
    d = instances.describe_instance(
        instances.DescribeInstanceRequest(region=REGION, instance_id=launched.instance_id)
    )
    assert d.found and d.state == "running"
    assert d.instance.private_ip and d.instance.private_dns_name and d.instance.launch_time
    assert d.instance.availability_zone == "ap-northeast-2b"
    gone = instances.describe_instance(
        instances.DescribeInstanceRequest(region=REGION, instance_id="i-0123456789abcdef0")
    )
    assert (gone.found, gone.state, gone.instance) == (False, "gone", None)


def test_terminate_twice_and_unknown(net: Net) -> None:
    launched = instances.ensure_instance(request(net))
    req = instances.TerminateInstanceRequest(
        region=REGION, instance_id=launched.instance_id, cluster_name=CLUSTER
    )
    first = instances.terminate_instance(req)
    assert not first.already_gone and first.state in ("shutting-down", "terminated")
    second = instances.terminate_instance(req)
    assert second.already_gone
    unknown = instances.terminate_instance(
        instances.TerminateInstanceRequest(region=REGION, instance_id="i-0123456789abcdef0")
    )
    assert unknown.already_gone and unknown.state == "gone"
    assert machine_instances("cp-0") == []


def test_lookup_machine_instance_by_tags(net: Net) -> None:
    """Delete mode: a machine whose workflow closed before it recorded its instance id."""
    launched = instances.ensure_instance(request(net, machine="cp-0"))
    instances.ensure_instance(request(net, machine="cp-0", cluster_name="someone-else"))

    def lookup(machine: str = "cp-0", cluster: str = CLUSTER) -> instances.MachineInstanceResult:
        return instances.lookup_machine_instance(
            instances.MachineInstanceLookup(region=REGION, cluster_name=cluster, machine_name=machine)
        )

    found = lookup()
    assert found.instance is not None and found.instance.instance_id == launched.instance_id
    assert found.instance.machine_name == "cp-0"
    assert lookup("cp-9").instance is None
    instances.terminate_instance(
        instances.TerminateInstanceRequest(
            region=REGION, instance_id=launched.instance_id, cluster_name=CLUSTER
        )
    )
    ec2().get_waiter("instance_terminated").wait(
        InstanceIds=[launched.instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": 10}
    )
    assert lookup().instance is None  # terminated ones are not the machine's any more


def test_terminate_refuses_an_instance_the_cluster_does_not_own(net: Net) -> None:
    foreign = ec2().run_instances(
        ImageId=net.image, MinCount=1, MaxCount=1, SubnetId=net.subnets["ap-northeast-2a"]
    )
    foreign_id = foreign["Instances"][0]["InstanceId"]
    with pytest.raises(ApplicationError) as err:
        instances.terminate_instance(
            instances.TerminateInstanceRequest(region=REGION, instance_id=foreign_id, cluster_name=CLUSTER)
        )
    assert err.value.non_retryable
    assert raw(foreign_id)["State"]["Name"] == "running"


def test_describe_cluster_instances_in_one_paginated_call(net: Net) -> None:
    a = instances.ensure_instance(request(net, machine="cp-0"))
    b = instances.ensure_instance(request(net, machine="md-0-x", role="worker"))
    c = instances.ensure_instance(request(net, machine="md-0-y", role="worker"))
    instances.ensure_instance(request(net, machine="cp-0", cluster_name="someone-else"))
    instances.terminate_instance(instances.TerminateInstanceRequest(region=REGION, instance_id=c.instance_id))

    live = instances.describe_cluster_instances(
        instances.ClusterInstancesRequest(region=REGION, cluster_name=CLUSTER)
    )
    assert [(i.machine_name, i.instance_id, i.role) for i in live.instances] == [
        ("cp-0", a.instance_id, "control-plane"),
        ("md-0-x", b.instance_id, "node"),
    ]
    assert live.aws_calls == {"ec2:DescribeInstances": 1}
    everything = instances.describe_cluster_instances(
        instances.ClusterInstancesRequest(region=REGION, cluster_name=CLUSTER, include_terminated=True)
    )
    assert {i.instance_id for i in everything.instances} == {a.instance_id, b.instance_id, c.instance_id}


def test_same_named_clusters_and_machines_in_two_namespaces_stay_apart(net: Net) -> None:
    """`prod` in team-a and in team-b, each with a machine `cp-0`: the instance is tagged as owned by
    the cluster id, found by it, and terminated only by its own cluster."""
    a_req = request(net, cluster_name="prod", namespace="team-a", cluster_id="team-a.prod")
    b_req = request(net, cluster_name="prod", namespace="team-b", cluster_id="team-b.prod")
    a = instances.ensure_instance(a_req)
    assert instances.find_machine_instance(ec2(), "team-b.prod", "cp-0") is None
    b = instances.ensure_instance(b_req)
    assert a.created and b.created and a.instance_id != b.instance_id
    assert instances.ensure_instance(b_req).instance_id == b.instance_id  # a retry finds its own
    b_tags = tags.as_dict(raw(b.instance_id)["Tags"])
    assert (b_tags[tags.cluster_key("team-b.prod")], b_tags[tags.cloud_provider_key("team-b.prod")]) == (
        "owned",
        "owned",
    )
    assert not any(k.endswith("/prod") or "team-a" in k for k in b_tags)
    found = instances.find_machine_instance(ec2(), "team-a.prod", "cp-0")
    assert found is not None and found["InstanceId"] == a.instance_id
    listed = instances.describe_cluster_instances(
        instances.ClusterInstancesRequest(region=REGION, cluster_name="prod", cluster_id="team-b.prod")
    )
    assert [i.instance_id for i in listed.instances] == [b.instance_id]
    with pytest.raises(ApplicationError):
        instances.terminate_instance(
            instances.TerminateInstanceRequest(
                region=REGION, instance_id=a.instance_id, cluster_name="prod", cluster_id="team-b.prod"
            )
        )
    assert raw(a.instance_id)["State"]["Name"] == "running"


# --------------------------------------------------------------------------------------------
# API load balancer


def test_classic_elb_registration_is_idempotent(net: Net) -> None:
    elb = session.client("elb", REGION)
    elb.create_load_balancer(
        LoadBalancerName=f"{CLUSTER}-apiserver",
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 6443, "InstancePort": 6443}],
        Subnets=list(net.subnets.values()),
    )
    launched = instances.ensure_instance(request(net))
    reg = lb_membership.LoadBalancerRegistration(
        region=REGION,
        load_balancer_type="classic",
        load_balancer_name=f"{CLUSTER}-apiserver",
        instance_id=launched.instance_id,
    )

    def members() -> list[str]:
        lb = elb.describe_load_balancers(LoadBalancerNames=[f"{CLUSTER}-apiserver"])[
            "LoadBalancerDescriptions"
        ][0]
        return [i["InstanceId"] for i in lb["Instances"]]

    assert lb_membership.register_with_load_balancer(reg).changed
    assert not lb_membership.register_with_load_balancer(reg).changed
    assert members() == [launched.instance_id]
    assert lb_membership.deregister_from_load_balancer(reg).changed
    assert not lb_membership.deregister_from_load_balancer(reg).changed
    assert members() == []
    gone = reg.model_copy(update={"load_balancer_name": "no-such-lb"})
    assert not lb_membership.deregister_from_load_balancer(gone).changed
    with pytest.raises(ApplicationError) as err:
        lb_membership.register_with_load_balancer(gone)
    assert not err.value.non_retryable


@pytest.mark.parametrize("by_name", [False, True], ids=["target-group-arn", "found-by-lb-name"])
def test_nlb_registration_is_idempotent(net: Net, by_name: bool) -> None:
    v2 = session.client("elbv2", REGION)
    lb = v2.create_load_balancer(Name=f"{CLUSTER}-api", Subnets=list(net.subnets.values()), Type="network")
    tg = v2.create_target_group(Name=f"{CLUSTER}-api", Protocol="TCP", Port=6443, VpcId=net.vpc)
    tg_arn = tg["TargetGroups"][0]["TargetGroupArn"]
    v2.create_listener(
        LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"],
        Protocol="TCP",
        Port=6443,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
    )
    launched = instances.ensure_instance(request(net))
    reg = lb_membership.LoadBalancerRegistration(
        region=REGION,
        load_balancer_type="nlb",
        load_balancer_name=f"{CLUSTER}-api",
        target_group_arn=None if by_name else tg_arn,
        instance_id=launched.instance_id,
    )

    def targets() -> list[str]:
        described = v2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
        return [d["Target"]["Id"] for d in described if d["TargetHealth"]["State"] != "draining"]

    assert lb_membership.register_with_load_balancer(reg).changed
    assert not lb_membership.register_with_load_balancer(reg).changed
    assert targets() == [launched.instance_id]
    assert lb_membership.deregister_from_load_balancer(reg).changed
    assert not lb_membership.deregister_from_load_balancer(reg).changed
    assert targets() == []


async def test_models_round_trip_through_the_temporal_converter(net: Net) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter

    launched = instances.ensure_instance(request(net))
    for value in (
        request(net),
        launched,
        instances.describe_instance(
            instances.DescribeInstanceRequest(region=REGION, instance_id=launched.instance_id)
        ),
        instances.describe_cluster_instances(
            instances.ClusterInstancesRequest(region=REGION, cluster_name=CLUSTER)
        ),
    ):
        payloads = await pydantic_data_converter.encode([value])
        assert (await pydantic_data_converter.decode(payloads, [type(value)]))[0] == value
