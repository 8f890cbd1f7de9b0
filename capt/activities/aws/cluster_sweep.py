"""The sweep of everything an AWS account holds for one cluster, whoever created it: capt's own
resources and what Kubernetes made in AWS for the cluster (load balancers, volumes, ENIs), found
by the cluster's tags, for the teardown's rounds and its final proof."""

from __future__ import annotations

from capt.activities.aws import secrets as sm
from capt.activities.aws import tags
from capt.activities.aws.errors import is_code
from capt.activities.aws.models import ClusterRef
from capt.activities.aws.session import aws_activity, client
from capt.activities.aws.sweep import (
    CLUSTER_KINDS,
    EBS_CSI_TAG,
    EKS_CLUSTER_TAG,
    LIVE_VOLUME_STATES,
    OwnedResource,
    SweepResult,
    _ec2,
    _in_batches,
)
from capt.rules.base import Frozen


class SweepClusterInput(Frozen):
    cluster: ClusterRef  # name = the cluster's AWS id
    # Learned from the workload API before it went away (Services' load balancers, PVs' volumes).
    volume_ids: tuple[str, ...] = ()
    load_balancer_names: tuple[str, ...] = ()
    # Secrets Manager prefix (`capt/<ns>/<name>/`): its secrets owned by the cluster are listed
    # too (the final proof); None = not listed.
    secret_prefix: str | None = None


def _tags_of(resource: dict) -> dict[str, str]:
    return tags.as_dict(resource.get("Tags") or resource.get("TagSet"))


def _who(t: dict[str, str], cluster: str) -> str:
    """ "capt", "kubernetes" or "" for a resource's tags."""
    if tags.is_owned(t, cluster):
        return "capt"
    if t.get(tags.cloud_provider_key(cluster)) == tags.OWNED:
        return "kubernetes"
    return ""


def _ghost(eni: dict, terminated: set[str]) -> bool:
    """An interface AWS removes with its instance (a terminated instance's own interfaces);
    emulators keep them around."""
    att = eni.get("Attachment") or {}
    if att.get("InstanceId") not in terminated:
        return False
    # An instance's primary interface always goes with it (moto reports DeleteOnTermination=False).
    return bool(att.get("DeleteOnTermination", True)) or att.get("DeviceIndex") == 0


def _eni_detail(eni: dict) -> str:
    parts = [eni.get("InterfaceType") or "interface", eni.get("Status", "")]
    if eni.get("RequesterManaged"):
        parts.append(f"requester-managed by {eni.get('RequesterId', '?')}")
    att = eni.get("Attachment") or {}
    if att.get("InstanceId"):
        parts.append(f"attached to {att['InstanceId']}")
    if eni.get("Description"):
        parts.append(repr(eni["Description"]))
    return ", ".join(p for p in parts if p)


def _cluster_ec2(inp: SweepClusterInput) -> list[OwnedResource]:
    cluster = inp.cluster
    ec2 = client("ec2", cluster.region)
    ours = [r.model_copy(update={"owner": "capt"}) for r in _ec2(cluster)]
    seen = {(r.kind, r.id) for r in ours}
    out = list(ours)
    owned_vpcs = {r.id for r in ours if r.kind == "vpc"}

    def add(r: OwnedResource) -> None:
        if (r.kind, r.id) not in seen:
            seen.add((r.kind, r.id))
            out.append(r)

    def pages(op: str, key: str, **kw) -> list[dict]:
        items: list[dict] = []
        for page in ec2.get_paginator(op).paginate(**kw):
            items += page[key]
        return items

    k8s = [{"Name": f"tag:{tags.cloud_provider_key(cluster.name)}", "Values": [tags.OWNED]}]
    for g in pages("describe_security_groups", "SecurityGroups", Filters=k8s):
        t = _tags_of(g)
        if _who(t, cluster.name) and EKS_CLUSTER_TAG not in t and g.get("GroupName") != "default":
            add(
                OwnedResource(
                    kind="security-group",
                    id=g["GroupId"],
                    name=tags.name_of(t) or g.get("GroupName", ""),
                    vpc_id=g.get("VpcId", ""),
                    owner=_who(t, cluster.name),
                    detail=g.get("Description", ""),
                )
            )
    for a in ec2.describe_addresses(Filters=k8s)["Addresses"]:
        t = _tags_of(a)
        if _who(t, cluster.name):
            add(
                OwnedResource(
                    kind="elastic-ip", id=a["AllocationId"], name=tags.name_of(t), owner=_who(t, cluster.name)
                )
            )

    # Volumes: either tag, or named by the workload API and made by the EBS CSI driver (or ours).
    def volume(v: dict, owner: str) -> None:
        if v.get("State") not in LIVE_VOLUME_STATES:
            return
        attached = ", ".join(
            f"attached to {a.get('InstanceId')} ({a.get('State')})" for a in v.get("Attachments", [])
        )
        add(
            OwnedResource(
                kind="volume",
                id=v["VolumeId"],
                name=tags.name_of(_tags_of(v)),
                state=v.get("State", ""),
                owner=owner,
                detail=attached,
            )
        )

    for key in (tags.cluster_key(cluster.name), tags.cloud_provider_key(cluster.name)):
        for v in pages(
            "describe_volumes", "Volumes", Filters=[{"Name": f"tag:{key}", "Values": [tags.OWNED]}]
        ):
            who = _who(_tags_of(v), cluster.name)
            if who:
                volume(v, who)
    if inp.volume_ids:
        try:
            found = ec2.describe_volumes(VolumeIds=list(inp.volume_ids))["Volumes"]
        except Exception as exc:
            if not is_code(exc, "InvalidVolume.NotFound"):
                raise
            # Some are gone already: look at the rest one by one.
            found = []
            for vid in inp.volume_ids:
                try:
                    found += ec2.describe_volumes(VolumeIds=[vid])["Volumes"]
                except Exception as exc2:
                    if not is_code(exc2, "InvalidVolume.NotFound"):
                        raise
        for v in found:
            t = _tags_of(v)
            if _who(t, cluster.name) or t.get(EBS_CSI_TAG) == "true":
                volume(v, _who(t, cluster.name) or "workload")

    # Network interfaces: tagged for the cluster, or anywhere in one of its own VPCs.
    terminated = {
        i["InstanceId"]
        for r in pages(
            "describe_instances",
            "Reservations",
            Filters=[{"Name": "instance-state-name", "Values": ["terminated", "shutting-down"]}],
        )
        for i in r["Instances"]
        if i["State"]["Name"] in ("terminated", "shutting-down")
    }
    enis: dict[str, tuple[dict, str]] = {}
    for key in (tags.cluster_key(cluster.name), tags.cloud_provider_key(cluster.name)):
        for e in pages(
            "describe_network_interfaces",
            "NetworkInterfaces",
            Filters=[{"Name": f"tag:{key}", "Values": [tags.OWNED]}],
        ):
            who = _who(_tags_of(e), cluster.name)
            if who:
                enis.setdefault(e["NetworkInterfaceId"], (e, who))
    if owned_vpcs:
        for e in pages(
            "describe_network_interfaces",
            "NetworkInterfaces",
            Filters=[{"Name": "vpc-id", "Values": sorted(owned_vpcs)}],
        ):
            if e.get("VpcId") in owned_vpcs:
                enis.setdefault(e["NetworkInterfaceId"], (e, _who(_tags_of(e), cluster.name) or "vpc"))
    for eni_id, (e, who) in enis.items():
        if _ghost(e, terminated):
            continue
        add(
            OwnedResource(
                kind="network-interface",
                id=eni_id,
                name=tags.name_of(_tags_of(e)),
                state=e.get("Status", ""),
                vpc_id=e.get("VpcId", ""),
                owner=who,
                detail=_eni_detail(e),
            )
        )
    return out


def _cluster_elb(inp: SweepClusterInput, owned_vpcs: set[str]) -> list[OwnedResource]:
    """Classic and v2 load balancers and target groups under either tag, and the load balancers
    the workload API named when they sit in one of the cluster's own VPCs."""
    cluster = inp.cluster
    wanted = set(inp.load_balancer_names)
    out: list[OwnedResource] = []
    elb = client("elb", cluster.region)
    classic = {
        lb["LoadBalancerName"]: lb
        for page in elb.get_paginator("describe_load_balancers").paginate()
        for lb in page["LoadBalancerDescriptions"]
    }
    for batch in _in_batches(list(classic)):
        for d in elb.describe_tags(LoadBalancerNames=batch)["TagDescriptions"]:
            name = d["LoadBalancerName"]
            t = _tags_of(d)
            who = _who(t, cluster.name)
            if not who and name in wanted and classic[name].get("VPCId") in owned_vpcs:
                who = "workload"
            if who:
                out.append(
                    OwnedResource(
                        kind="load-balancer",
                        id=name,
                        name=name,
                        role=t.get(tags.ROLE_TAG, ""),
                        vpc_id=classic[name].get("VPCId", ""),
                        owner=who,
                        detail=t.get("kubernetes.io/service-name", ""),
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
                item = items[d["ResourceArn"]]
                t = _tags_of(d)
                who = _who(t, cluster.name)
                if (
                    not who
                    and kind == "network-load-balancer"
                    and item[name_key] in wanted
                    and item.get("VpcId") in owned_vpcs
                ):
                    who = "workload"
                if who:
                    out.append(
                        OwnedResource(
                            kind=kind,
                            id=d["ResourceArn"],
                            name=item[name_key],
                            role=t.get(tags.ROLE_TAG, ""),
                            vpc_id=item.get("VpcId", ""),
                            owner=who,
                            detail=t.get("kubernetes.io/service-name", ""),
                        )
                    )
    return out


def _cluster_others(inp: SweepClusterInput) -> list[OwnedResource]:
    """Secrets under the cluster's prefix that it owns, and anything else the tagging API lists
    under either tag outside EC2 and ELB (those were read authoritatively above)."""
    cluster = inp.cluster
    out: dict[str, OwnedResource] = {}
    if inp.secret_prefix is not None:
        for s in sm.list_by_name_prefix(client("secretsmanager", cluster.region), inp.secret_prefix):
            if tags.is_owned(_tags_of(s), cluster.name):
                out[s["ARN"]] = OwnedResource(kind="secret", id=s["ARN"], name=s["Name"], owner="capt")
    tagging = client("resourcegroupstaggingapi", cluster.region)
    for key in (tags.cluster_key(cluster.name), tags.cloud_provider_key(cluster.name)):
        for page in tagging.get_paginator("get_resources").paginate(
            TagFilters=[{"Key": key, "Values": [tags.OWNED]}]
        ):
            for m in page["ResourceTagMappingList"]:
                arn = m["ResourceARN"]
                service = arn.split(":")[2] if arn.count(":") >= 2 else ""
                if service in ("ec2", "elasticloadbalancing") or arn in out:
                    continue
                if service == "secretsmanager" and inp.secret_prefix is None:
                    continue  # secrets go last, by prefix, once everything else is gone
                t = tags.as_dict(m.get("Tags"))
                out[arn] = OwnedResource(
                    kind="secret" if service == "secretsmanager" else "other",
                    id=arn,
                    name=tags.name_of(t),
                    role=t.get(tags.ROLE_TAG, ""),
                    owner=_who(t, cluster.name),
                )
    return list(out.values())


@aws_activity
def sweep_cluster_resources(inp: SweepClusterInput) -> SweepResult:
    """Everything of the cluster's that deletion must remove (see the module doc), in
    deletion order."""
    found = _cluster_ec2(inp)
    owned_vpcs = {r.id for r in found if r.kind == "vpc"}
    found += _cluster_elb(inp, owned_vpcs) + _cluster_others(inp)
    order = {k: i for i, k in enumerate(CLUSTER_KINDS)}
    return SweepResult(resources=tuple(sorted(found, key=lambda r: (order[r.kind], r.name, r.id))))
