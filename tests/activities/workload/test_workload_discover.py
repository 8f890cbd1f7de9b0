"""discover_workload_access on moto: the API endpoint and PKI of a cluster from AWS alone."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from temporalio import activity
from temporalio.exceptions import ApplicationError

from capt.activities.aws import secrets as sm
from capt.activities.aws import session, tags
from capt.activities.kubeadm.pki import ca_cert_hash
from capt.activities.workload.discover import DiscoverWorkloadRequest, discover_workload_access
from capt.dev.testkit.reference import AZS, REGION
from capt.workflows.teardown.models import DISCOVER_WORKLOAD_ACCESS, DiscoveredWorkload
from capt.workflows.teardown.models import DiscoverWorkloadRequest as WorkflowDiscoverRequest


def api_lb(
    cluster_id: str, name: str, *, nlb: bool = False, role: str = tags.ROLE_APISERVER, port: int = 6443
) -> str:
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
        # capt tags the target group as the load balancer (role apiserver): it is not one.
        tg = v2.create_target_group(Name=f"{name}-tg", Protocol="TCP", Port=port, VpcId=vpc, Tags=owned)[
            "TargetGroups"
        ][0]
        v2.create_listener(
            LoadBalancerArn=arn,
            Protocol="TCP",
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
        return v2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]["DNSName"]
    elb = boto3.client("elb", region_name=REGION)
    return elb.create_load_balancer(
        LoadBalancerName=name,
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": port, "InstancePort": port}],
        Subnets=[subnet],
        Tags=owned,
    )["DNSName"]


def pki(namespace: str, name: str, cluster_id: str, **kw) -> sm.ClusterPKIRefs:
    return sm.ensure_cluster_pki(
        sm.ClusterPKIRequest(
            cluster_name=name, namespace=namespace, region=REGION, cluster_id=cluster_id, **kw
        )
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


# Ids where one is a prefix of the other, legacy (the bare name) and namespaced: the owned tag's
# key is matched whole, so neither cluster's discovery ever picks the other's load balancer.
NEIGHBOURS = [
    (("default", "td", "td"), ("default", "td-2", "td-2")),
    (("default", "td-2", "td-2"), ("default", "td", "td")),
    (("team-a", "prod", "team-a.prod"), ("team-a", "prod-2", "team-a.prod-2")),
    (("team-a", "prod", "team-a.prod"), ("default", "team-a", "team-a")),
]


@pytest.mark.parametrize("nlb", [False, True], ids=["classic", "nlb"])
@pytest.mark.parametrize("mine,other", NEIGHBOURS, ids=[f"{m[2]}-vs-{o[2]}" for m, o in NEIGHBOURS])
def test_another_clusters_api_load_balancer_is_never_chosen(aws, nlb: bool, mine, other) -> None:
    def lb_name(cid: str) -> str:
        return cid.replace(".", "-") + "-apiserver"

    theirs = api_lb(other[2], lb_name(other[2]), nlb=nlb)
    pki(*other)
    alone = discover(*mine)
    assert alone.access is None
    assert alone.reason == f"no load balancer with role apiserver owned by {mine[2]}"

    host = api_lb(mine[2], lb_name(mine[2]), nlb=nlb)
    refs = pki(*mine)
    found = discover(*mine)
    assert found.access is not None and found.access.endpoint_host == host != theirs
    assert found.access.pki.ca_arn == refs.ca_arn
    assert discover(*other).access.endpoint_host == theirs


@pytest.mark.parametrize("nlb", [False, True], ids=["classic", "nlb"])
def test_listener_port_and_admin_kubeconfig(aws, nlb: bool) -> None:
    host = api_lb("td", "td-apiserver", nlb=nlb, port=443)
    refs = pki("default", "td", "td", endpoint_host=host, endpoint_port=443)
    found = discover("default", "td", "td")
    assert found.access is not None
    assert (found.access.endpoint_host, found.access.endpoint_port) == (host, 443)
    assert found.access.pki.kubeconfig_arn == refs.kubeconfig_arn is not None
    assert found.access.pki.model_dump(exclude={"aws_calls", "created"}) == refs.model_dump(
        exclude={"aws_calls", "created"}
    )


def test_each_missing_piece_is_named(aws, caplog: pytest.LogCaptureFixture) -> None:
    api_lb("td", "td-apiserver")
    refs = pki("default", "td", "td")
    secrets = boto3.client("secretsmanager", region_name=REGION)
    caplog.set_level("DEBUG")
    assert discover("default", "td", "td").access is not None

    # Unreadable as a certificate: said, not raised, and nothing of it in the answer or the logs.
    ca_text = secrets.get_secret_value(SecretId=refs.ca_arn)["SecretString"]
    secrets.put_secret_value(SecretId=refs.ca_arn, SecretString='{"cert": "-----BEGIN garbage", "key": "k"}')
    bad = discover("default", "td", "td")
    assert bad.access is None and bad.reason == "the CA secret does not hold a PEM certificate"
    assert "BEGIN" not in bad.model_dump_json()
    secrets.put_secret_value(SecretId=refs.ca_arn, SecretString=ca_text)

    # The admin credentials gone: only they are named.
    secrets.delete_secret(SecretId=refs.admin_arn, ForceDeleteWithoutRecovery=True)
    no_admin = discover("default", "td", "td")
    assert no_admin.access is None and no_admin.reason == "no PKI secret(s) admin owned by td"

    # A CA scheduled for deletion (a recovery window) cannot be read: as good as missing.
    secrets.delete_secret(SecretId=refs.ca_arn, RecoveryWindowInDays=7)
    assert discover("default", "td", "td").reason == "no PKI secret(s) ca, admin owned by td"
    # botocore's own DEBUG logs print response bodies (this test's calls too); capt's never do.
    ours = "\n".join(
        r.getMessage()
        for r in caplog.records
        if not r.name.startswith(("botocore", "boto3", "urllib3", "moto"))
    )
    assert "BEGIN" not in ours and "PRIVATE" not in ours


def _answer(code: str, status: int):
    """`before-call` hook: every DescribeLoadBalancers is answered with AWS's error `code`."""

    def hook(model, **kwargs):
        if model.name != "DescribeLoadBalancers":
            return None
        parsed = {
            "Error": {"Code": code, "Message": f"injected: {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return AWSResponse("https://injected.invalid", status, {}, None), parsed

    return hook


@pytest.mark.parametrize("code,status,retryable", [("AccessDenied", 403, False), ("Throttling", 400, True)])
def test_aws_errors_are_classified_as_every_aws_activitys(
    aws, code: str, status: int, retryable: bool
) -> None:
    api_lb("td", "td-apiserver")
    with session.hooked("before-call", _answer(code, status)), pytest.raises(ApplicationError) as err:
        discover("default", "td", "td")
    assert err.value.type == code and err.value.non_retryable is not retryable


def test_registered_on_the_worker_under_the_name_the_teardown_calls() -> None:
    from capt.activities.registry import ACTIVITIES

    by_name = {activity._Definition.must_from_callable(fn).name: fn for fn in ACTIVITIES}
    assert by_name[DISCOVER_WORKLOAD_ACCESS] is discover_workload_access
    # The workflow reads the result as its own model (the workflow package is not imported here).
    ret = activity._Definition.must_from_callable(discover_workload_access).ret_type
    assert set(DiscoveredWorkload.model_fields) <= set(ret.model_fields)  # type: ignore[union-attr]
    assert set(DiscoverWorkloadRequest.model_fields) == set(WorkflowDiscoverRequest.model_fields)
