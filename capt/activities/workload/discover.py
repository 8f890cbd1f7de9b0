"""Find how to reach a cluster's API server from AWS alone: for a teardown whose cluster
workflow is gone (failed, terminated), so nobody could hand it the workload access.

- The API server's load balancer: the classic ELB or NLB owned by the cluster id
  (`sigs.k8s.io/cluster-api-provider-aws/cluster/<id>=owned`) with the role `apiserver`; its DNS
  name and listener port are the endpoint.
- The PKI: the cluster's secrets by name (`capt/<ns>/<name>/pki/*`, owned by the id); the CA
  certificate is read here to compute kubeadm's CA hash and never leaves the activity.

Anything missing is an answer (`access=None` and what is missing), not an error: the teardown
then skips the workload stage and its AWS sweep finds what the controllers left by their tags.
The workflow calls this by name (capt/workflows/teardown/models.py `DISCOVER_WORKLOAD_ACCESS`); these
models have the same fields as the workflow's (the workflow package is not imported here).
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import secrets as sm
from capt.activities.aws import sweep, tags
from capt.activities.aws.models import AwsResult, ClusterRef
from capt.activities.aws.session import aws_activity, client
from capt.activities.kubeadm.pki import ca_cert_hash
from capt.activities.workload.activities import WorkloadAccess


class DiscoverWorkloadRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    region: str
    cluster_id: str


class WorkloadDiscovery(AwsResult):
    access: WorkloadAccess | None = None
    reason: str = ""


def _endpoint(region: str, cluster_id: str) -> tuple[str, int] | str:
    """(host, port) of the cluster's API load balancer, or why there is none."""
    owned = sweep.owned_load_balancers(ClusterRef(name=cluster_id, region=region))
    api = [r for r in owned if r.role == tags.ROLE_APISERVER]
    if not api:
        return f"no load balancer with role apiserver owned by {cluster_id}"
    lb = api[0]
    if lb.kind == "load-balancer":
        desc = client("elb", region).describe_load_balancers(LoadBalancerNames=[lb.id])
        d = desc["LoadBalancerDescriptions"][0]
        ports = [x["Listener"]["LoadBalancerPort"] for x in d.get("ListenerDescriptions", [])]
        return d["DNSName"], (6443 if 6443 in ports or not ports else ports[0])
    v2 = client("elbv2", region)
    d = v2.describe_load_balancers(LoadBalancerArns=[lb.id])["LoadBalancers"][0]
    ports = [x["Port"] for x in v2.describe_listeners(LoadBalancerArn=lb.id).get("Listeners", [])]
    return d["DNSName"], (6443 if 6443 in ports or not ports else ports[0])


def _pki(req: DiscoverWorkloadRequest) -> sm.ClusterPKIRefs | str:
    secrets = sm.client(req.region)
    arns: dict[str, str] = {}
    for what in sm.PKI_NAMES:
        found = sm.describe(secrets, sm.pki_secret_name(req.namespace, req.name, what))
        if (
            found is not None
            and not found.get("DeletedDate")  # scheduled for deletion: unreadable, as good as gone
            and tags.is_owned(tags.as_dict(found.get("Tags")), req.cluster_id)
        ):
            arns[what] = found["ARN"]
    missing = [w for w in ("ca", "etcd-ca", "front-proxy-ca", "sa", "admin") if w not in arns]
    if missing:
        return f"no PKI secret(s) {', '.join(missing)} owned by {req.cluster_id}"
    ca = sm.get_string(secrets, arns["ca"])
    if ca is None:
        return "the CA secret has no value"
    ca_hash = _ca_hash(ca)
    if ca_hash is None:
        return "the CA secret does not hold a PEM certificate"
    return sm.ClusterPKIRefs(
        ca_arn=arns["ca"],
        etcd_ca_arn=arns["etcd-ca"],
        front_proxy_ca_arn=arns["front-proxy-ca"],
        sa_arn=arns["sa"],
        admin_arn=arns["admin"],
        kubeconfig_arn=arns.get("admin-kubeconfig"),
        ca_cert_hash=ca_hash,
    )


def _ca_hash(text: str) -> str | None:
    """kubeadm's CA hash of the stored CA (`{"cert": …, "key": …}`), or None when it cannot be
    read: a permanent state, said as the reason rather than raised (the parsers' messages are
    not passed on either, so nothing of the material can reach a log)."""
    try:
        return ca_cert_hash(json.loads(text)["cert"])
    except (ValueError, KeyError, TypeError):
        return None


@aws_activity
def discover_workload_access(req: DiscoverWorkloadRequest) -> WorkloadDiscovery:
    """The workload API's endpoint and PKI from AWS, or why they cannot be found."""
    endpoint = _endpoint(req.region, req.cluster_id)
    if isinstance(endpoint, str):
        return WorkloadDiscovery(reason=endpoint)
    pki = _pki(req)
    if isinstance(pki, str):
        return WorkloadDiscovery(reason=pki)
    host, port = endpoint
    return WorkloadDiscovery(
        access=WorkloadAccess(region=req.region, endpoint_host=host, endpoint_port=port, pki=pki)
    )
