"""In-process moto set up for the real machine-side activities (instances, the API load balancer,
Secrets Manager): what tests/activities/aws/test_instances.py builds in fixtures, as plain
functions the benchmarks can use (bench imports nothing under tests/).

Call everything inside `mock_aws()`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from capt.spec.models import AMISelector

REGION = "ap-northeast-2"
CAPA_ORG = AMISelector().lookup_org


def offline_aws_env(region: str = REGION) -> None:
    """Fake credentials and a region; no endpoint override (in-process moto only, never AWS)."""
    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[var]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
    )


def add_ami(
    name: str,
    created: dt.datetime,
    *,
    region: str = REGION,
    owner: str = CAPA_ORG,
    arch: str = "x86_64",
    state: str = "available",
) -> str:
    """Put an image into moto as a third-party account (CAPA's) published it: moto's RegisterImage
    always makes the caller the owner and stamps "now", so moto's own model object is built."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami
    from moto.ec2.utils import random_ami_id

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    ami_id = random_ami_id()
    backend.amis[ami_id] = Ami(
        backend,
        ami_id,
        name=name,
        owner_id=owner,
        architecture=arch,
        virtualization_type="hvm",
        root_device_name="/dev/sda1",
        creation_date=created,
        state=state,
    )
    return ami_id


@dataclass(frozen=True)
class MachineNet:
    """What a machine's instance needs to exist: the cluster's network, IAM and an image."""

    region: str
    cluster: str
    vpc: str
    subnets: dict[str, str]  # az -> subnet id
    control_plane_sg: str
    node_sg: str
    image: str
    kubernetes_version: str
    load_balancer: str  # a classic ELB's name


def machine_net(cluster: str, kubernetes_version: str = "v1.31.0", region: str = REGION) -> MachineNet:
    """A VPC with two private subnets, the control-plane and node security groups, capt's IAM
    (`iam_bootstrap.bootstrap_iam()`, for the instance profiles), a CAPA-named AMI for the version and a
    classic ELB for the API server. Made with the activities' cached clients, so reset their
    tallies (or count inside `session.counting_calls()` only what you measure)."""
    from capt.activities.aws import iam_bootstrap, session

    ec2 = session.client("ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = {
        az: ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        for az, cidr in ((f"{region}a", "10.0.64.0/18"), (f"{region}b", "10.0.128.0/18"))
    }
    cp_sg, node_sg = (
        ec2.create_security_group(GroupName=f"{cluster}-{n}", Description=n, VpcId=vpc)["GroupId"]
        for n in ("controlplane", "node")
    )
    iam_bootstrap.bootstrap_iam()
    image = add_ami(
        f"capa-ami-ubuntu-24.04-{kubernetes_version}-1", dt.datetime(2025, 1, 1, tzinfo=dt.UTC), region=region
    )
    lb = f"{cluster}-apiserver"
    session.client("elb", region).create_load_balancer(
        LoadBalancerName=lb,
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 6443, "InstancePort": 6443}],
        Subnets=list(subnets.values()),
        SecurityGroups=[cp_sg],
        Scheme="internet-facing",
    )
    return MachineNet(
        region=region,
        cluster=cluster,
        vpc=vpc,
        subnets=subnets,
        control_plane_sg=cp_sg,
        node_sg=node_sg,
        image=image,
        kubernetes_version=kubernetes_version,
        load_balancer=lb,
    )
