"""The cloud-controller-manager's service controller against the emulated AWS: classic ELBs, their
security groups and the instances' ingress rules (a mixin of `CloudControllers`)."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from capt.dev.simulator.cloud_controllers.names import (
    ELB_ROLE_TAG,
    INTERNAL_ELB_ROLE_TAG,
    SG_DELETE_GIVE_UP_SECONDS,
    Tagging,
    elb_security_group_description,
    elb_security_group_name,
    elb_tags,
)
from capt.dev.simulator.cloud_controllers.work import (
    CloudContext,
    Pending,
    ServiceWork,
    Target,
    _code,
    _SgDeletes,
    _tag_list,
    _tags,
)

log = logging.getLogger("capt.simulator")


class LoadBalancerMixin:
    """The CCM's classic ELB steps of `CloudControllers`."""

    # -- CCM: classic ELB ----------------------------------------------------------------------

    def _ec2(self, ctx: CloudContext) -> Any:
        return self.aws.client("ec2", ctx.region)

    def _elb(self, ctx: CloudContext) -> Any:
        return self.aws.client("elb", ctx.region)

    def _describe_lb(self, ctx: CloudContext, name: str) -> dict | None:
        try:
            found = self._elb(ctx).describe_load_balancers(LoadBalancerNames=[name])[
                "LoadBalancerDescriptions"
            ]
        except ClientError as err:
            if _code(err) in ("LoadBalancerNotFound", "AccessPointNotFound"):
                return None
            raise
        return found[0] if found else None

    def _elb_subnets(self, ctx: CloudContext, tagging: Tagging, internal: bool) -> list[str]:
        ec2 = self._ec2(ctx)
        vpc = [{"Name": "vpc-id", "Values": [ctx.vpc_id]}]
        subnets = [
            s
            for s in ec2.describe_subnets(Filters=vpc)["Subnets"]
            if tagging.has_cluster_tag(_tags(s.get("Tags")))
            or tagging.has_no_cluster_prefix_tag(_tags(s.get("Tags")))
        ]
        if not subnets and ctx.subnet_id:
            subnets = ec2.describe_subnets(SubnetIds=[ctx.subnet_id])["Subnets"]
        tables = ec2.describe_route_tables(Filters=vpc)["RouteTables"]
        role = INTERNAL_ELB_ROLE_TAG if internal else ELB_ROLE_TAG
        by_az: dict[str, dict] = {}
        for s in subnets:
            az, sid = s.get("AvailabilityZone", ""), s.get("SubnetId", "")
            if not az or not sid or (not internal and not _is_public(tables, sid)):
                continue
            old = by_az.get(az)
            if old is None:
                by_az[az] = s
                continue
            old_tags, new_tags = _tags(old.get("Tags")), _tags(s.get("Tags"))
            if (role in old_tags) != (role in new_tags):
                if role in new_tags:
                    by_az[az] = s
                continue
            if tagging.has_cluster_tag(old_tags) != tagging.has_cluster_tag(new_tags):
                if tagging.has_cluster_tag(new_tags):
                    by_az[az] = s
                continue
            if old["SubnetId"] > sid:
                by_az[az] = s
        return [by_az[az]["SubnetId"] for az in sorted(by_az)]

    def _ensure_security_group(
        self, ctx: CloudContext, name: str, description: str, tags: dict[str, str]
    ) -> str:
        ec2 = self._ec2(ctx)
        for _ in range(2):
            found = ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [ctx.vpc_id]}]
            )["SecurityGroups"]
            if found:
                return found[0]["GroupId"]
            try:
                return ec2.create_security_group(
                    GroupName=name,
                    Description=description,
                    VpcId=ctx.vpc_id,
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
                )["GroupId"]
            except ClientError as err:
                if _code(err) != "InvalidGroup.Duplicate":
                    raise
        raise Pending(f"security group {name} was created concurrently and is not visible yet")

    def _set_ingress(self, ctx: CloudContext, group_id: str, desired: list[dict]) -> None:
        """setSecurityGroupIngress: exactly these CIDR permissions."""
        ec2 = self._ec2(ctx)
        group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]

        def flat(perms: list[dict]) -> set[tuple]:
            return {
                (p.get("IpProtocol"), p.get("FromPort"), p.get("ToPort"), r.get("CidrIp"))
                for p in perms
                for r in p.get("IpRanges") or []
            }

        want, have = flat(desired), flat(group.get("IpPermissions") or [])

        def perms(rules: set[tuple]) -> list[dict]:
            return [
                {"IpProtocol": proto, "FromPort": lo, "ToPort": hi, "IpRanges": [{"CidrIp": cidr}]}
                for proto, lo, hi, cidr in sorted(rules, key=str)
            ]

        if want - have:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=perms(want - have))
        if have - want:
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=perms(have - want))

    def _instance_group_rules(
        self, ctx: CloudContext, tagging: Tagging, lb_group: str, targets: tuple[Target, ...], deleting: bool
    ) -> None:
        """updateInstanceSecurityGroupsForLoadBalancer: allow all traffic from the ELB's group on
        each target's group; remove the rule from groups no target needs (cluster-tagged ones, or
        any while the ELB's group is being deleted)."""
        ec2 = self._ec2(ctx)
        tagged = {
            g["GroupId"]
            for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [ctx.vpc_id]}])[
                "SecurityGroups"
            ]
            if tagging.has_cluster_tag(_tags(g.get("Tags")))
        }
        wanted: dict[str, bool] = {}
        for t in targets:
            group = _group_for_instance(t, tagged)
            if group is not None:
                wanted[group] = True
        actual = ec2.describe_security_groups(
            Filters=[{"Name": "ip-permission.group-id", "Values": [lb_group]}]
        )["SecurityGroups"]
        for g in actual:
            if wanted.get(g["GroupId"]):
                del wanted[g["GroupId"]]
            elif g["GroupId"] in tagged or deleting:
                wanted[g["GroupId"]] = False
        rule = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": lb_group}]}]
        for group, add in sorted(wanted.items()):
            try:
                if add:
                    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=rule)
                    log.info(
                        "cluster %s: %s allows all traffic from the ELB group %s",
                        ctx.cluster_name,
                        group,
                        lb_group,
                    )
                else:
                    ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=rule)
                    log.info(
                        "cluster %s: %s no longer allows traffic from %s", ctx.cluster_name, group, lb_group
                    )
            except ClientError as err:
                if _code(err) not in ("InvalidPermission.Duplicate", "InvalidPermission.NotFound"):
                    raise

    def _ensure_load_balancer(self, ctx: CloudContext, item: ServiceWork) -> str:
        tagging = ctx.tagging
        assert tagging is not None
        for protocol, _, node_port in item.ports:
            if protocol.upper() != "TCP":
                raise ValueError("Only TCP LoadBalancer is supported for AWS ELB")
            if not node_port:
                raise ValueError("the Service has no node port")
        if not item.ports:
            raise ValueError("requested load balancer with no ports")
        subnets = self._elb_subnets(ctx, tagging, item.internal)
        if not subnets:
            raise ValueError("could not find any suitable subnets for creating the ELB")
        additional = dict(item.additional_tags)
        group = self._ensure_security_group(
            ctx,
            elb_security_group_name(item.lb_name),
            elb_security_group_description(item.lb_name, item.namespace, item.name),
            tagging.build(additional),
        )
        ranges = [{"CidrIp": r} for r in item.source_ranges]
        desired = [
            {"IpProtocol": p.lower(), "FromPort": port, "ToPort": port, "IpRanges": ranges}
            for p, port, _ in item.ports
        ]
        desired.append({"IpProtocol": "icmp", "FromPort": 3, "ToPort": 4, "IpRanges": ranges})
        self._set_ingress(ctx, group, desired)
        listeners = [
            {
                "Protocol": "TCP",
                "LoadBalancerPort": port,
                "InstanceProtocol": "TCP",
                "InstancePort": node_port,
            }
            for _, port, node_port in item.ports
        ]
        elb = self._elb(ctx)
        lb = self._describe_lb(ctx, item.lb_name)
        if lb is None:
            params: dict[str, Any] = {
                "LoadBalancerName": item.lb_name,
                "Listeners": listeners,
                "Subnets": subnets,
                "SecurityGroups": [group],
                "Tags": _tag_list(elb_tags(tagging, item.namespace, item.name, additional)),
            }
            if item.internal:
                params["Scheme"] = "internal"
            elb.create_load_balancer(**params)
            log.info(
                "cluster %s: service %s/%s: created ELB %s in %s with security group %s",
                ctx.cluster_name,
                item.namespace,
                item.name,
                item.lb_name,
                ",".join(subnets),
                group,
            )
            lb = self._describe_lb(ctx, item.lb_name)
            if lb is None:
                raise Pending(f"ELB {item.lb_name} is not visible yet")
        else:
            have = {
                d["Listener"]["LoadBalancerPort"]: d["Listener"] for d in lb.get("ListenerDescriptions") or []
            }
            want = {listener["LoadBalancerPort"]: listener for listener in listeners}
            stale = [port for port, listener in have.items() if want.get(port) != listener]
            if stale:
                elb.delete_load_balancer_listeners(LoadBalancerName=item.lb_name, LoadBalancerPorts=stale)
            missing = [listener for port, listener in want.items() if have.get(port) != listener]
            if missing:
                elb.create_load_balancer_listeners(LoadBalancerName=item.lb_name, Listeners=missing)
        elb.configure_health_check(
            LoadBalancerName=item.lb_name,
            HealthCheck={
                "Target": f"TCP:{item.ports[0][2]}",
                "Interval": 10,
                "Timeout": 5,
                "UnhealthyThreshold": 6,
                "HealthyThreshold": 2,
            },
        )
        self._instance_group_rules(
            ctx, tagging, (lb.get("SecurityGroups") or [group])[0], item.targets, deleting=False
        )
        registered = {i["InstanceId"] for i in lb.get("Instances") or []}
        wanted = {t.instance_id for t in item.targets}
        if wanted - registered:
            elb.register_instances_with_load_balancer(
                LoadBalancerName=item.lb_name,
                Instances=[{"InstanceId": i} for i in sorted(wanted - registered)],
            )
        if registered - wanted:
            elb.deregister_instances_from_load_balancer(
                LoadBalancerName=item.lb_name,
                Instances=[{"InstanceId": i} for i in sorted(registered - wanted)],
            )
        return str(lb.get("DNSName") or "")

    def _delete_load_balancer(self, ctx: CloudContext, item: ServiceWork) -> None:
        """EnsureLoadBalancerDeleted (classic)."""
        tagging = ctx.tagging
        assert tagging is not None
        ec2 = self._ec2(ctx)
        memo_key = (ctx.cluster_key, item.uid)
        lb = self._describe_lb(ctx, item.lb_name)
        if lb is not None:
            groups = list(lb.get("SecurityGroups") or [])
            owned = []
            if groups:
                described = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": groups}])[
                    "SecurityGroups"
                ]
                owned = [g["GroupId"] for g in described if tagging.has_cluster_tag(_tags(g.get("Tags")))]
                self._instance_group_rules(ctx, tagging, groups[0], (), deleting=groups[0] in owned)
            self._elb(ctx).delete_load_balancer(LoadBalancerName=item.lb_name)
            log.info(
                "cluster %s: service %s/%s: deleted ELB %s",
                ctx.cluster_name,
                item.namespace,
                item.name,
                item.lb_name,
            )
            self._sg_deletes[memo_key] = _SgDeletes(tuple(owned), self.world.clock())
        pending = self._sg_deletes.get(memo_key)
        if pending is None:
            return  # "Load balancer already deleted"
        left = []
        for group in pending.groups:
            try:
                ec2.delete_security_group(GroupId=group)
                log.info("cluster %s: deleted ELB security group %s", ctx.cluster_name, group)
            except ClientError as err:
                if _code(err) == "InvalidGroup.NotFound":
                    continue
                if _code(err) != "DependencyViolation":
                    raise
                left.append(group)
        if left and self.world.clock() - pending.since < SG_DELETE_GIVE_UP_SECONDS:
            self._sg_deletes[memo_key] = _SgDeletes(tuple(left), pending.since)
            raise Pending(f"security group(s) {', '.join(left)} still in use (DependencyViolation)")
        if left:
            log.warning(
                "cluster %s: gave up deleting ELB security group(s) %s after %gs: left behind",
                ctx.cluster_name,
                ", ".join(left),
                SG_DELETE_GIVE_UP_SECONDS,
            )
        self._sg_deletes.pop(memo_key, None)


def _is_public(tables: list[dict], subnet_id: str) -> bool:
    """isSubnetPublic: the subnet's route table (explicit, else the VPC's main one) routes to an
    internet gateway."""
    table = next(
        (t for t in tables if any(a.get("SubnetId") == subnet_id for a in t.get("Associations") or [])), None
    )
    if table is None:
        table = next((t for t in tables if any(a.get("Main") for a in t.get("Associations") or [])), None)
    if table is None:
        return False
    return any(str(r.get("GatewayId", "")).startswith("igw") for r in table.get("Routes") or [])


def _group_for_instance(target: Target, tagged: set[str]) -> str | None:
    """findSecurityGroupForInstance: the one cluster-tagged group, else the only group."""
    groups = list(target.security_groups)
    hits = [g for g in groups if g in tagged]
    if hits:
        if len(hits) != 1:
            raise ValueError(
                f"Multiple tagged security groups found for instance {target.instance_id}; ensure only the k8s "
                f"security group is tagged; the tagged groups were {' '.join(hits)}"
            )
        return hits[0]
    if groups:
        if len(groups) != 1:
            raise ValueError(
                f"Multiple untagged security groups found for instance {target.instance_id}; ensure the k8s "
                "security group is tagged"
            )
        return groups[0]
    log.warning("Ignoring instance without security group: %s", target.instance_id)
    return None
