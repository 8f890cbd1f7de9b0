"""discover_workload_access on moto: the API endpoint and PKI of a cluster from AWS alone."""

from __future__ import annotations

import json

import boto3
import pytest

from activities.aws import secrets as sm
from activities.aws import tags
from activities.kubeadm.pki import ca_cert_hash
from activities.workload.discover import DiscoverWorkloadRequest, discover_workload_access
from testkit.reference import AZS, REGION


def api_lb(cluster_id: str, name: str, *, nlb: bool = False, role: str = tags.ROLE_APISERVER) -> str:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24", AvailabilityZone=AZS[0])["Subnet"][
        "SubnetId"
    ]
    owned = [
        {"Key": tags.CLUSTER_TAG_PREFIX + cluster_id, "Value": tags.OWNED},
        {"Key": tags.ROLE_TAG, "Value": role},
    ]
    if nlb:
        v2 = boto3.client("elbv2", region_name=REGION)
        arn = v2.create_load_balancer(Name=name, Subnets=[subnet], Type="network", Tags=owned)[
            "LoadBalancers"
        ][0]["LoadBalancerArn"]
        tg = v2.create_target_group(Name=f"{name}-tg", Protocol="TCP", Port=6443, VpcId=vpc)["TargetGroups"][
            0
        ]
        v2.create_listener(
            LoadBalancerArn=arn,
            Protocol="TCP",
            Port=6443,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
        return v2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]["DNSName"]
    elb = boto3.client("elb", region_name=REGION)
    return elb.create_load_balancer(
        LoadBalancerName=name,
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 6443, "InstancePort": 6443}],
        Subnets=[subnet],
        Tags=owned,
    )["DNSName"]


def pki(namespace: str, name: str, cluster_id: str) -> sm.ClusterPKIRefs:
    return sm.ensure_cluster_pki(
        sm.ClusterPKIRequest(cluster_name=name, namespace=namespace, region=REGION, cluster_id=cluster_id)
    )


def discover(namespace: str, name: str, cluster_id: str):
    return discover_workload_access(
        DiscoverWorkloadRequest(namespace=namespace, name=name, region=REGION, cluster_id=cluster_id)
    )


@pytest.mark.parametrize("nlb", [False, True])
def test_finds_the_api_load_balancer_and_the_pki_of_this_cluster_only(aws, nlb: bool) -> None:
    # Another cluster's API load balancer, and a same-named cluster in another namespace.
    api_lb("team-b.prod", "team-b-prod-other-apiserver", nlb=nlb)
    pki("team-b", "prod", "team-b.prod")
    api_lb("team-a.prod", "team-a-prod-bastionish", nlb=nlb, role=tags.ROLE_BASTION)  # not the API
    host = api_lb("team-a.prod", "team-a-prod-apiserver", nlb=nlb)
    mine = pki("team-a", "prod", "team-a.prod")

    found = discover("team-a", "prod", "team-a.prod")
    assert found.reason == "" and found.access is not None
    assert found.access.endpoint_host == host and found.access.endpoint_port == 6443
    assert found.access.pki.ca_arn == mine.ca_arn and found.access.pki.admin_arn == mine.admin_arn
    ca = sm.get_string(sm.client(REGION), mine.ca_arn)
    assert found.access.pki.ca_cert_hash == mine.ca_cert_hash == ca_cert_hash(json.loads(ca)["cert"])
    assert "BEGIN" not in found.model_dump_json()  # ARNs and the public hash only


def test_what_is_missing_is_the_answer(aws) -> None:
    assert "no load balancer with role apiserver owned by td" in discover("default", "td", "td").reason
    api_lb("td", "td-apiserver")
    assert "no PKI secret(s) ca, etcd-ca" in discover("default", "td", "td").reason
    # The secrets of a legacy same-named cluster (owned by "td-2") are not this cluster's.
    pki("default", "td", "td-2")
    missing = discover("default", "td", "td")
    assert missing.access is None and "owned by td" in missing.reason
