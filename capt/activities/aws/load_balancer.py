"""The API server load balancer: a classic ELB or a network load balancer (elbv2).

Classic (CAPA's default): a TCP listener on the API port, a TCP health check on the same port,
cross-zone balancing, the public subnets (private ones when internal) and the apiserver-lb
group. NLB: a TCP target group with an HTTPS `/readyz` health check (the manifest may pick
another protocol) and a TCP listener forwarding to it. Either way its DNS name becomes the
control plane endpoint. Load balancer and target group names are unique per region, so
lookup is by name and the owned tag is then checked (names come from plan.names).
"""

from __future__ import annotations

from capt.activities.aws import tags
from capt.activities.aws.errors import NotOwnedError, NotYetVisibleError, is_code
from capt.activities.aws.models import AwsResult, ClusterRef, DoneResult
from capt.activities.aws.session import aws_activity, client
from capt.plan.cluster import LoadBalancerPlan
from capt.rules.base import Frozen


class _In(Frozen):
    """Activity inputs: immutable, and strict about unknown fields (rules.base.Frozen)."""


class EnsureLoadBalancerInput(_In):
    cluster: ClusterRef
    plan: LoadBalancerPlan
    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]


class LoadBalancerResult(AwsResult):
    name: str
    type: str
    dns_name: str
    arn: str | None = None
    target_group_arn: str | None = None
    created: bool = False


class DeleteLoadBalancerInput(_In):
    cluster: ClusterRef
    type: str  # classic | nlb
    name: str | None = None  # classic
    arn: str | None = None  # nlb


class TargetGroupInput(_In):
    cluster: ClusterRef
    arn: str


def _lb_tags(inp: EnsureLoadBalancerInput) -> dict[str, str]:
    return tags.build(
        inp.cluster.name, inp.plan.name, tags.ROLE_APISERVER, additional=inp.cluster.additional_tags
    )


def _check_owned(tag_list: list[dict], cluster: str, kind: str, ident: str) -> None:
    if not tags.is_owned(tags.as_dict(tag_list), cluster):
        raise NotOwnedError(
            f"{kind} {ident} exists but is not tagged {tags.cluster_key(cluster)}={tags.OWNED}; capt will not adopt it"
        )


# A name that is taken, by a load balancer or target group that the lookup did not show:
# classic ELB says DuplicateAccessPointName (moto: DuplicateLoadBalancerName), elbv2 the latter or
# DuplicateTargetGroupName. Names are unique per region and account and a foreign one would have
# been visible (and refused), so it is ours from an attempt whose answer was lost.
DUPLICATE_NAME_CODES = ("DuplicateAccessPointName", "DuplicateLoadBalancerName", "DuplicateTargetGroupName")


# --- classic ELB --------------------------------------------------------------------------


def _ensure_classic(inp: EnsureLoadBalancerInput) -> LoadBalancerResult:
    elb = client("elb", inp.cluster.region)
    p = inp.plan
    try:
        lb = elb.describe_load_balancers(LoadBalancerNames=[p.name])["LoadBalancerDescriptions"][0]
    except Exception as exc:
        if not is_code(exc, "LoadBalancerNotFound"):
            raise
        lb = None
    created = lb is None
    if lb is None:
        kwargs = {"Scheme": "internal"} if p.scheme == "internal" else {}
        try:
            out = elb.create_load_balancer(
                LoadBalancerName=p.name,
                Listeners=[
                    {
                        "Protocol": "TCP",
                        "LoadBalancerPort": p.port,
                        "InstanceProtocol": "TCP",
                        "InstancePort": p.port,
                    }
                ],
                Subnets=list(inp.subnet_ids),
                SecurityGroups=list(inp.security_group_ids),
                Tags=tags.as_list(_lb_tags(inp)),
                **kwargs,
            )
        except Exception as exc:
            if not is_code(exc, *DUPLICATE_NAME_CODES):
                raise
            raise NotYetVisibleError(f"load balancer {p.name} exists but is not visible yet") from exc
        dns_name = out["DNSName"]
        current_check = None
    else:
        descriptions = elb.describe_tags(LoadBalancerNames=[p.name])["TagDescriptions"]
        _check_owned(
            descriptions[0].get("Tags", []) if descriptions else [], inp.cluster.name, "load balancer", p.name
        )
        dns_name = lb["DNSName"]
        current_check = lb.get("HealthCheck")
    hc = p.health_check
    want_check = {
        "Target": hc.classic_target,
        "Interval": hc.interval_seconds,
        "Timeout": hc.timeout_seconds,
        "UnhealthyThreshold": hc.unhealthy_threshold,
        "HealthyThreshold": hc.healthy_threshold,
    }
    if current_check != want_check:
        elb.configure_health_check(LoadBalancerName=p.name, HealthCheck=want_check)
    # Idempotent; one call whether or not it changes anything.
    elb.modify_load_balancer_attributes(
        LoadBalancerName=p.name, LoadBalancerAttributes={"CrossZoneLoadBalancing": {"Enabled": p.cross_zone}}
    )
    return LoadBalancerResult(name=p.name, type="classic", dns_name=dns_name, created=created)


# --- network load balancer ------------------------------------------------------------------


def _ensure_nlb(inp: EnsureLoadBalancerInput) -> LoadBalancerResult:
    elb = client("elbv2", inp.cluster.region)
    p = inp.plan
    assert p.target_group_name
    try:
        lb = elb.describe_load_balancers(Names=[p.name])["LoadBalancers"][0]
    except Exception as exc:
        if not is_code(exc, "LoadBalancerNotFound"):
            raise
        lb = None
    created = lb is None
    if lb is None:
        # AWS answers a repeat with the same settings with the existing load balancer.
        try:
            lb = elb.create_load_balancer(
                Name=p.name,
                Type="network",
                Scheme=p.scheme,
                IpAddressType="ipv4",
                Subnets=list(inp.subnet_ids),
                SecurityGroups=list(inp.security_group_ids),
                Tags=tags.as_list(_lb_tags(inp)),
            )["LoadBalancers"][0]
        except Exception as exc:
            if not is_code(exc, *DUPLICATE_NAME_CODES):
                raise
            raise NotYetVisibleError(f"load balancer {p.name} exists but is not visible yet") from exc
    else:
        described = elb.describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"]
        _check_owned(
            described[0].get("Tags", []) if described else [], inp.cluster.name, "load balancer", p.name
        )
    lb_arn = lb["LoadBalancerArn"]

    hc = p.health_check
    try:
        tg = elb.describe_target_groups(Names=[p.target_group_name])["TargetGroups"][0]
        described = elb.describe_tags(ResourceArns=[tg["TargetGroupArn"]])["TagDescriptions"]
        _check_owned(
            described[0].get("Tags", []) if described else [],
            inp.cluster.name,
            "target group",
            p.target_group_name,
        )
    except Exception as exc:
        if not is_code(exc, "TargetGroupNotFound"):
            raise
        health = {
            "HealthCheckProtocol": hc.protocol,
            "HealthCheckPort": str(hc.port),
            "HealthCheckIntervalSeconds": hc.interval_seconds,
            "HealthCheckTimeoutSeconds": hc.timeout_seconds,
            "HealthyThresholdCount": hc.healthy_threshold,
            "UnhealthyThresholdCount": hc.unhealthy_threshold,
        }
        if hc.path:
            health["HealthCheckPath"] = hc.path
        tg_tags = tags.build(
            inp.cluster.name, p.target_group_name, tags.ROLE_APISERVER, additional=inp.cluster.additional_tags
        )
        try:
            tg = elb.create_target_group(
                Name=p.target_group_name,
                Protocol="TCP",
                Port=p.port,
                VpcId=inp.vpc_id,
                TargetType="instance",
                Tags=tags.as_list(tg_tags),
                **health,
            )["TargetGroups"][0]
        except Exception as exc:
            if not is_code(exc, *DUPLICATE_NAME_CODES):
                raise
            raise NotYetVisibleError(
                f"target group {p.target_group_name} exists but is not visible yet"
            ) from exc
    tg_arn = tg["TargetGroupArn"]

    listeners = elb.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
    if not any(listener["Port"] == p.port for listener in listeners):
        try:
            elb.create_listener(
                LoadBalancerArn=lb_arn,
                Protocol="TCP",
                Port=p.port,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
            )
        except Exception as exc:
            if not is_code(exc, "DuplicateListener"):
                raise
    elb.modify_load_balancer_attributes(
        LoadBalancerArn=lb_arn,
        Attributes=[
            {"Key": "load_balancing.cross_zone.enabled", "Value": "true" if p.cross_zone else "false"}
        ],
    )
    return LoadBalancerResult(
        name=p.name, type="nlb", dns_name=lb["DNSName"], arn=lb_arn, target_group_arn=tg_arn, created=created
    )


@aws_activity
def ensure_load_balancer(inp: EnsureLoadBalancerInput) -> LoadBalancerResult:
    return _ensure_nlb(inp) if inp.plan.type == "nlb" else _ensure_classic(inp)


@aws_activity
def delete_load_balancer(inp: DeleteLoadBalancerInput) -> DoneResult:
    """Delete by name (classic) or ARN (NLB), as found by the ownership sweep. Gone = done."""
    if inp.type == "classic":
        # Classic ELB answers success for a name that does not exist.
        client("elb", inp.cluster.region).delete_load_balancer(LoadBalancerName=inp.name)
        return DoneResult()
    try:
        client("elbv2", inp.cluster.region).delete_load_balancer(LoadBalancerArn=inp.arn)
    except Exception as exc:
        if is_code(exc, "LoadBalancerNotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()


@aws_activity
def delete_target_group(inp: TargetGroupInput) -> DoneResult:
    """ResourceInUse while its load balancer is still being deleted: retried by Temporal."""
    try:
        client("elbv2", inp.cluster.region).delete_target_group(TargetGroupArn=inp.arn)
    except Exception as exc:
        if is_code(exc, "TargetGroupNotFound"):
            return DoneResult(changed=False)
        raise
    return DoneResult()
