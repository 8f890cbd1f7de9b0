"""Part 1, the network: the census of the reference network's mutating minimum, and the calls of
InfrastructureWorkflow's create, re-create and delete against moto."""

from __future__ import annotations

from collections import Counter
from typing import Any

from capt.dev.bench.aws_calls.ops import REGION, is_creating, is_mutating, operation, split

# ---------------------------------------------------------------------------------------------
# 1. network


def network_minimum(region: str = REGION) -> dict[str, int]:
    """The mutating calls a create of what moto now holds cannot avoid, per kind of call: one per
    resource, one per setting a create call cannot carry that differs from AWS's default. The
    default VPC and its resources are not counted."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region)
    need: Counter = Counter()
    vpcs = [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
    vpc_ids = [v["VpcId"] for v in vpcs]
    for vpc in vpc_ids:
        need["CreateVpc"] += 1
        # AWS's defaults for a new VPC: DNS support on, DNS hostnames off.
        if not ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")["EnableDnsSupport"][
            "Value"
        ]:
            need["ModifyVpcAttribute"] += 1
        if ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"][
            "Value"
        ]:
            need["ModifyVpcAttribute"] += 1
    if not vpc_ids:
        return dict(need)
    in_vpc = [{"Name": "vpc-id", "Values": vpc_ids}]
    for subnet in ec2.describe_subnets(Filters=in_vpc)["Subnets"]:
        need["CreateSubnet"] += 1
        if subnet.get("MapPublicIpOnLaunch"):
            need["ModifySubnetAttribute"] += 1
    for _ in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": vpc_ids}])[
        "InternetGateways"
    ]:
        need["CreateInternetGateway"] += 1
        need["AttachInternetGateway"] += 1
    nats = [
        n
        for n in ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"]
        if n.get("State") not in ("deleted", "deleting", "failed")
    ]
    need["CreateNatGateway"] += len(nats)
    need["AllocateAddress"] += sum(
        1 for a in ec2.describe_addresses()["Addresses"] if a.get("Domain") == "vpc"
    )
    for rt in ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]:
        main = any(a.get("Main") for a in rt.get("Associations", []))
        if not main:
            need["CreateRouteTable"] += 1
        need["CreateRoute"] += sum(1 for r in rt.get("Routes", []) if r.get("GatewayId") != "local")
        need["AssociateRouteTable"] += sum(
            1 for a in rt.get("Associations", []) if not a.get("Main") and a.get("SubnetId")
        )
    for sg in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]:
        default = sg["GroupName"] == "default"
        if not default:
            need["CreateSecurityGroup"] += 1
        # AWS makes a group with all traffic out; a VPC's default group also lets in all traffic
        # from itself. Removing a starting rule is a Revoke, adding any is an Authorize (all of a
        # direction's rules in one call).
        everywhere = [p for p in sg.get("IpPermissionsEgress", []) if _all_traffic(p) and _to_anywhere(p)]
        if not everywhere:
            need["RevokeSecurityGroupEgress"] += 1
        if len(sg.get("IpPermissionsEgress", [])) > len(everywhere):
            need["AuthorizeSecurityGroupEgress"] += 1
        ingress = sg.get("IpPermissions", [])
        from_itself = [
            p
            for p in ingress
            if default
            and _all_traffic(p)
            and [g["GroupId"] for g in p.get("UserIdGroupPairs", [])] == [sg["GroupId"]]
        ]
        if default and not from_itself:
            need["RevokeSecurityGroupIngress"] += 1
        if len(ingress) > len(from_itself):
            need["AuthorizeSecurityGroupIngress"] += 1
    elb = boto3.client("elb", region_name=region)
    for lb in elb.describe_load_balancers()["LoadBalancerDescriptions"]:
        if lb.get("VPCId") not in vpc_ids:
            continue
        need["CreateLoadBalancer"] += 1
        hc = lb.get("HealthCheck", {})
        port = lb["ListenerDescriptions"][0]["Listener"]["InstancePort"]
        aws_default = {
            "Target": f"TCP:{port}",
            "Interval": 30,
            "Timeout": 5,
            "UnhealthyThreshold": 2,
            "HealthyThreshold": 10,
        }
        if {k: hc.get(k) for k in aws_default} != aws_default:
            need["ConfigureHealthCheck"] += 1
        attrs = elb.describe_load_balancer_attributes(LoadBalancerName=lb["LoadBalancerName"])
        if attrs["LoadBalancerAttributes"].get("CrossZoneLoadBalancing", {}).get("Enabled"):
            need["ModifyLoadBalancerAttributes"] += 1
    elbv2 = boto3.client("elbv2", region_name=region)
    for lb in elbv2.describe_load_balancers()["LoadBalancers"]:
        if lb.get("VpcId") not in vpc_ids:
            continue
        need["CreateLoadBalancer"] += 1
        need["CreateListener"] += len(
            elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        )
        need["CreateTargetGroup"] += len(
            elbv2.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
        )
    return {k: v for k, v in sorted(need.items()) if v}


def _all_traffic(permission: dict) -> bool:
    return permission.get("IpProtocol") == "-1"


def _to_anywhere(permission: dict) -> bool:
    return [r.get("CidrIp") for r in permission.get("IpRanges", [])] == ["0.0.0.0/0"]


async def measure_network() -> dict[str, Any]:
    from capt.dev.bench import infra_calls

    census: dict[str, dict[str, int]] = {}

    def inspect(phase: str) -> None:
        if phase == "create":
            census["minimum"] = network_minimum()

    calls = await infra_calls.measure(inspect)
    phases = {}
    for phase, tally in calls.items():
        mutating = {operation(k): n for k, n in sorted(tally.items()) if is_mutating(k)}
        phases[phase] = {
            **split(tally),
            "creating": sum(n for k, n in tally.items() if is_creating(k)),
            "by_operation": dict(sorted(tally.items())),
            "mutating_by_operation": mutating,
        }
    minimum = census["minimum"]
    made = phases["create"]["mutating_by_operation"]
    phases["create"]["mutating_minimum"] = sum(minimum.values())
    phases["create"]["minimum_by_operation"] = minimum
    # What the create did beyond the census (or, negative, short of it), per operation.
    phases["create"]["beyond_minimum"] = {
        op: made.get(op, 0) - minimum.get(op, 0)
        for op in sorted(set(made) | set(minimum))
        if made.get(op, 0) != minimum.get(op, 0)
    }
    return phases
