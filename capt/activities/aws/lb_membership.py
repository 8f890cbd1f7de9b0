"""A machine's membership of the cluster's API load balancer: register and deregister its instance
(classic ELB instances, or NLB target-group targets), idempotently."""

from __future__ import annotations

from typing import Any, Literal

from capt.activities.aws import session
from capt.activities.aws.errors import CaptAwsError, NotYetVisibleError, is_code
from capt.activities.aws.models import AwsResult
from capt.rules.base import Frozen


class LoadBalancerRegistration(Frozen):
    """A control-plane instance behind the API load balancer: classic ELB by name, or NLB by
    target group (its ARN, or found from the load balancer's name)."""

    region: str
    load_balancer_type: Literal["classic", "nlb"]
    load_balancer_name: str
    target_group_arn: str | None = None
    instance_id: str


class LoadBalancerRegistrationResult(AwsResult):
    instance_id: str
    registered: bool
    changed: bool


def _classic_members(elb: Any, name: str) -> set[str] | None:
    try:
        lbs = elb.describe_load_balancers(LoadBalancerNames=[name])["LoadBalancerDescriptions"]
    except Exception as err:
        if is_code(err, "LoadBalancerNotFound", "AccessPointNotFound"):
            return None
        raise
    return {i["InstanceId"] for lb in lbs for i in lb.get("Instances", [])}


def _target_group_arn(elbv2: Any, req: LoadBalancerRegistration) -> str | None:
    if req.target_group_arn:
        return req.target_group_arn
    try:
        lbs = elbv2.describe_load_balancers(Names=[req.load_balancer_name])["LoadBalancers"]
    except Exception as err:
        if is_code(err, "LoadBalancerNotFound"):
            return None
        raise
    groups = elbv2.describe_target_groups(LoadBalancerArn=lbs[0]["LoadBalancerArn"])["TargetGroups"]
    return groups[0]["TargetGroupArn"] if groups else None


def _nlb_members(elbv2: Any, target_group_arn: str) -> set[str] | None:
    """Registered targets (draining ones are on their way out: not members)."""
    try:
        described = elbv2.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    except Exception as err:
        if is_code(err, "TargetGroupNotFound"):
            return None
        raise
    return {
        d["Target"]["Id"]
        for d in described
        if d.get("TargetHealth", {}).get("State") not in ("draining", "unused")
    }


def _missing_lb(req: LoadBalancerRegistration) -> CaptAwsError:
    # Retryable: a load balancer created moments ago may not be visible yet.
    return NotYetVisibleError(
        f"{req.load_balancer_type} load balancer {req.load_balancer_name} "
        f"(target group {req.target_group_arn or '-'}) not found"
    )


@session.aws_activity
def register_with_load_balancer(req: LoadBalancerRegistration) -> LoadBalancerRegistrationResult:
    """Put a control-plane instance behind the API load balancer (already there = no call)."""
    if req.load_balancer_type == "classic":
        elb = session.client("elb", req.region)
        members = _classic_members(elb, req.load_balancer_name)
        if members is None:
            raise _missing_lb(req)
        if req.instance_id in members:
            return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=True, changed=False)
        elb.register_instances_with_load_balancer(
            LoadBalancerName=req.load_balancer_name, Instances=[{"InstanceId": req.instance_id}]
        )
        return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=True, changed=True)
    elbv2 = session.client("elbv2", req.region)
    arn = _target_group_arn(elbv2, req)
    members = _nlb_members(elbv2, arn) if arn else None
    if arn is None or members is None:
        raise _missing_lb(req)
    if req.instance_id in members:
        return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=True, changed=False)
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": req.instance_id}])
    return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=True, changed=True)


@session.aws_activity
def deregister_from_load_balancer(req: LoadBalancerRegistration) -> LoadBalancerRegistrationResult:
    """Take an instance out of the API load balancer; not a member, or no load balancer = done."""
    if req.load_balancer_type == "classic":
        elb = session.client("elb", req.region)
        members = _classic_members(elb, req.load_balancer_name)
        if not members or req.instance_id not in members:
            return LoadBalancerRegistrationResult(
                instance_id=req.instance_id, registered=False, changed=False
            )
        elb.deregister_instances_from_load_balancer(
            LoadBalancerName=req.load_balancer_name, Instances=[{"InstanceId": req.instance_id}]
        )
        return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=False, changed=True)
    elbv2 = session.client("elbv2", req.region)
    arn = _target_group_arn(elbv2, req)
    members = _nlb_members(elbv2, arn) if arn else None
    if not members or req.instance_id not in members:
        return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=False, changed=False)
    try:
        elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": req.instance_id}])
    except Exception as err:
        # A terminated instance is no longer a valid target: it is out already.
        if not is_code(err, "InvalidTarget", "TargetGroupNotFound"):
            raise
    return LoadBalancerRegistrationResult(instance_id=req.instance_id, registered=False, changed=True)
