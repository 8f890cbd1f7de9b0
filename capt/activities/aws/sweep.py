"""The ownership sweep: everything in the region still tagged as owned by the cluster.

Used twice by deletion: first as the inventory of what to delete (so deletion works from
what exists, even after a half-finished create), last as proof that nothing is left. EC2 and
ELB resources are listed with their own describe calls, which reflect deletions promptly and
let states be checked (a NAT gateway stays visible as "deleted" for an hour, an instance as
"terminated"); moto ignores some tag filters, so ownership is always re-checked client-side.
Anything else the Resource Groups Tagging API reports under the owned tag (secrets, volumes
of other services, ...) is listed as kind "other".

`sweep_cluster_resources` is the wider sweep of ClusterTeardownWorkflow: capt's owned tag on
every kind, plus what Kubernetes made for the cluster (`kubernetes.io/cluster/<id>=owned`, as
the cloud provider and the EBS CSI driver tag) -- but only for load balancers, target groups,
security groups, volumes, network interfaces and Elastic IPs, never for VPC-level resources --
plus the volumes and load balancers the workload API named, and every network interface left
in the cluster's own VPCs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from capt.activities.aws import tags
from capt.activities.aws.models import AwsResult, ClusterRef
from capt.activities.aws.session import aws_activity, client
from capt.rules.base import Frozen

# Kinds in deletion order, later kinds depend on earlier ones being gone.
KINDS = (
    "load-balancer",
    "network-load-balancer",
    "target-group",
    "instance",
    "security-group",
    "route-table",
    "nat-gateway",
    "elastic-ip",
    "internet-gateway",
    "subnet",
    "vpc",
    "other",
)
# The wider sweep's kinds, in the same spirit (volumes and interfaces go after the groups, before
# the subnets; secrets last).
CLUSTER_KINDS = (
    "load-balancer",
    "network-load-balancer",
    "target-group",
    "instance",
    "security-group",
    "volume",
    "network-interface",
    "route-table",
    "nat-gateway",
    "elastic-ip",
    "internet-gateway",
    "subnet",
    "vpc",
    "secret",
    "other",
)
# Security groups EKS manages are never capt's or the cloud provider's to delete (as CAPA's GC).
EKS_CLUSTER_TAG = "aws:eks:cluster-name"
# The EBS CSI driver tags every volume it creates with this, whatever its flags.
EBS_CSI_TAG = "ebs.csi.aws.com/cluster"
LIVE_VOLUME_STATES = ("creating", "available", "in-use", "error")


class SweepInput(Frozen):
    cluster: ClusterRef


class OwnedResource(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    id: str
    name: str = ""
    role: str = ""
    # Extra facts deletion needs: a NAT gateway's or an instance's state, an IGW's VPC.
    state: str = ""
    vpc_id: str = ""
    # Who made it, for the wider sweep: "capt" (our owned tag), "kubernetes" (the cloud
    # provider's tag), "workload" (named by the workload API) or "vpc" (left in our VPC).
    owner: str = ""
    # A network interface's type and requester ("interface", "network_load_balancer amazon-elb"),
    # a volume's attachments: what a reader needs to tell what it is.
    detail: str = ""


class SweepResult(AwsResult):
    resources: tuple[OwnedResource, ...]

    def of(self, kind: str) -> tuple[OwnedResource, ...]:
        return tuple(r for r in self.resources if r.kind == kind)


def _owned(resource: dict, cluster: str) -> dict[str, str] | None:
    t = tags.as_dict(resource.get("Tags"))
    return t if tags.is_owned(t, cluster) else None


def _ec2(cluster: ClusterRef) -> list[OwnedResource]:
    ec2 = client("ec2", cluster.region)
    owned = [tags.owned_filter(cluster.name)]
    out: list[OwnedResource] = []

    def add(kind: str, items: list[dict], id_key: str, *, state_of=None, vpc_of=None, live=None) -> None:
        for item in items:
            t = _owned(item, cluster.name)
            if t is None:
                continue
            state = state_of(item) if state_of else ""
            if live is not None and state not in live:
                continue
            out.append(
                OwnedResource(
                    kind=kind,
                    id=item[id_key],
                    name=tags.name_of(t),
                    role=t.get(tags.ROLE_TAG, ""),
                    state=state,
                    vpc_id=vpc_of(item) if vpc_of else item.get("VpcId", ""),
                )
            )

    def pages(op: str, key: str, **kw) -> list[dict]:
        items: list[dict] = []
        for page in ec2.get_paginator(op).paginate(**kw):
            items += page[key]
        return items

    add("vpc", pages("describe_vpcs", "Vpcs", Filters=owned), "VpcId")
    add("subnet", pages("describe_subnets", "Subnets", Filters=owned), "SubnetId")
    add(
        "internet-gateway",
        pages("describe_internet_gateways", "InternetGateways", Filters=owned),
        "InternetGatewayId",
        vpc_of=lambda i: next((a["VpcId"] for a in i.get("Attachments", [])), ""),
    )
    add(
        "nat-gateway",
        pages("describe_nat_gateways", "NatGateways", Filter=owned),
        "NatGatewayId",
        state_of=lambda n: n.get("State", ""),
        live=("pending", "available", "deleting", "failed"),
    )
    add("elastic-ip", ec2.describe_addresses(Filters=owned)["Addresses"], "AllocationId", vpc_of=lambda a: "")
    add("route-table", pages("describe_route_tables", "RouteTables", Filters=owned), "RouteTableId")
    add("security-group", pages("describe_security_groups", "SecurityGroups", Filters=owned), "GroupId")
    reservations = pages("describe_instances", "Reservations", Filters=owned)
    add(
        "instance",
        [i for r in reservations for i in r["Instances"]],
        "InstanceId",
        state_of=lambda i: i["State"]["Name"],
        live=("pending", "running", "stopping", "stopped", "shutting-down"),
    )
    return out


def _in_batches(items: list, size: int = 20):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _elb(cluster: ClusterRef) -> list[OwnedResource]:
    out: list[OwnedResource] = []
    elb = client("elb", cluster.region)
    names = [
        lb["LoadBalancerName"]
        for page in elb.get_paginator("describe_load_balancers").paginate()
        for lb in page["LoadBalancerDescriptions"]
    ]
    for batch in _in_batches(names):
        for d in elb.describe_tags(LoadBalancerNames=batch)["TagDescriptions"]:
            t = _owned(d, cluster.name)
            if t is not None:
                out.append(
                    OwnedResource(
                        kind="load-balancer",
                        id=d["LoadBalancerName"],
                        name=d["LoadBalancerName"],
                        role=t.get(tags.ROLE_TAG, ""),
                    )
                )

    v2 = client("elbv2", cluster.region)
    lbs = {
        lb["LoadBalancerArn"]: lb
        for page in v2.get_paginator("describe_load_balancers").paginate()
        for lb in page["LoadBalancers"]
    }
    tgs = {
        tg["TargetGroupArn"]: tg
        for page in v2.get_paginator("describe_target_groups").paginate()
        for tg in page["TargetGroups"]
    }
    for kind, items, name_key in (
        ("network-load-balancer", lbs, "LoadBalancerName"),
        ("target-group", tgs, "TargetGroupName"),
    ):
        for batch in _in_batches(list(items)):
            for d in v2.describe_tags(ResourceArns=batch)["TagDescriptions"]:
                t = _owned(d, cluster.name)
                if t is not None:
                    item = items[d["ResourceArn"]]
                    out.append(
                        OwnedResource(
                            kind=kind,
                            id=d["ResourceArn"],
                            name=item[name_key],
                            role=t.get(tags.ROLE_TAG, ""),
                            vpc_id=item.get("VpcId", ""),
                        )
                    )
    return out


def owned_load_balancers(cluster: ClusterRef) -> list[OwnedResource]:
    """The classic and v2 load balancers owned by `cluster.name` (the cluster id), with their role."""
    return [r for r in _elb(cluster) if r.kind in ("load-balancer", "network-load-balancer")]


def _others(cluster: ClusterRef) -> list[OwnedResource]:
    """Owned resources of services the describes above do not cover (EC2 and ELB ARNs are
    skipped: the tagging API lags deletions, and those were checked authoritatively)."""
    tagging = client("resourcegroupstaggingapi", cluster.region)
    out = []
    filters = [{"Key": tags.cluster_key(cluster.name), "Values": [tags.OWNED]}]
    for page in tagging.get_paginator("get_resources").paginate(TagFilters=filters):
        for m in page["ResourceTagMappingList"]:
            arn = m["ResourceARN"]
            service = arn.split(":")[2] if arn.count(":") >= 2 else ""
            if service in ("ec2", "elasticloadbalancing"):
                continue
            t = tags.as_dict(m.get("Tags"))
            out.append(
                OwnedResource(kind="other", id=arn, name=tags.name_of(t), role=t.get(tags.ROLE_TAG, ""))
            )
    return out


@aws_activity
def sweep_owned_resources(inp: SweepInput) -> SweepResult:
    found = _ec2(inp.cluster) + _elb(inp.cluster) + _others(inp.cluster)
    order = {k: i for i, k in enumerate(KINDS)}
    return SweepResult(resources=tuple(sorted(found, key=lambda r: (order[r.kind], r.name, r.id))))
