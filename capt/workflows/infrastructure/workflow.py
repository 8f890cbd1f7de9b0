"""InfrastructureWorkflow — the cluster's network, security groups and API load balancer.

What CAPA's AWSCluster controller builds, as one durable workflow per operation:

- create: plan (pure, `plan.cluster.build_plan`) → VPC → subnets, internet gateway, Elastic
  IPs and security groups in parallel → per zone, the NAT gateway (polled until available)
  then that zone's private route table; public route tables once the IGW is attached;
  security group rules once every group and NAT IP exists; the load balancer once the groups,
  public subnets and IGW exist; the bastion last. An existing VPC (manifest `network.vpc.id`)
  is described, never modified: only groups, load balancer and bastion are created in it.
- delete: sweep (everything tagged owned by the cluster) → load balancers, bastion, NAT
  gateways and route tables in parallel → security groups (rules revoked first, they name
  each other) → Elastic IPs released once the NATs are gone → IGW detached and deleted →
  subnets → VPC → a final sweep that must come back empty, or the workflow fails listing
  what is left.

Temporal semantics worth knowing when reading this file:
- Every activity result is recorded in history; a restarted worker replays it and does not
  call AWS again for steps already done. An activity whose attempt failed (a lost response,
  throttling, DependencyViolation) is retried by the server with backoff; the activities are
  idempotent (find by ownership tags, then create) so a retry never makes a second resource.
- Waiting for AWS (NAT gateways, instance termination, the final sweep) is a loop of a short
  describe activity and `workflow.sleep` — a durable timer, skipped instantly by the
  time-skipping test server — never a sleeping activity.
- `asyncio` tasks inside a workflow run on Temporal's deterministic event loop: the
  parallel branches below are replayed in the same order every time.
- The `status` query reads in-memory state; it never blocks the workflow.

Workflow id: `infra/<namespace>/<cluster>` (see `workflow_id`). One model in (InfraInput),
one out (InfraResult).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import (
        bastion,
        gateways,
        load_balancer,
        route_tables,
        security_groups,
        subnets,
        vpc,
    )
    from capt.activities.aws.models import ClusterRef
    from capt.plan.cluster import ClusterPlan, build_plan, plan_for_network
    from capt.plan.network import NetworkPlan, PlanError, SubnetPlan, resolve_existing
    from capt.plan.security_groups import resolve_permissions, security_group_plans
    from capt.workflows import activity_options as opts
    from capt.workflows.infrastructure.models import (
        NAT_AVAILABLE_TIMEOUT,
        PATCH_NAT_POLL,
        InfraInput,
        InfraResult,
        InfraStatus,
        LoadBalancerOut,
        ResourceState,
        ResourceStatus,
        SubnetOut,
        T,
        _all,
    )
from capt.workflows.infrastructure.deletion import _DeletionMixin


@workflow.defn(name="InfrastructureWorkflow", versioning_behavior=VersioningBehavior.PINNED)
class InfrastructureWorkflow(_DeletionMixin):
    def __init__(self) -> None:
        self._operation = "create"
        self._phase: str = "planning"
        self._resources: dict[tuple[str, str], ResourceStatus] = {}
        self._calls: dict[str, int] = {}
        self._error: str | None = None

    # --- status ---------------------------------------------------------------------------

    @workflow.query
    def status(self) -> InfraStatus:
        return InfraStatus(
            operation=self._operation,
            phase=self._phase,  # type: ignore[arg-type]
            resources=list(self._resources.values()),
            aws_calls=dict(self._calls),
            error=self._error,
        )

    def _set(self, kind: str, name: str, state: ResourceState, id: str | None = None) -> None:
        current = self._resources.get((kind, name))
        self._resources[(kind, name)] = ResourceStatus(
            kind=kind, name=name, state=state, id=id or (current.id if current else None)
        )

    async def _call(self, fn: Callable[[Any], T], arg: Any) -> T:
        """One AWS activity with the shared AWS options; its call counts join the totals."""
        result = await workflow.execute_activity(fn, arg, **opts.AWS_CALL)
        for op, n in result.aws_calls.items():  # type: ignore[attr-defined]
            self._calls[op] = self._calls.get(op, 0) + n
        return result

    async def _step(
        self, kind: str, name: str, fn: Callable[[Any], T], arg: Any, id_of: Callable[[T], str]
    ) -> T:
        """Create-or-find one resource, tracking planned -> creating -> ready in the status."""
        self._set(kind, name, "creating")
        result = await self._call(fn, arg)
        self._set(kind, name, "ready", id_of(result))
        return result

    # --- run -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: InfraInput) -> InfraResult:
        self._operation = inp.operation
        try:
            if inp.operation == "delete":
                return await self._delete(inp)
            return await self._create(inp)
        except PlanError as exc:
            self._phase, self._error = "failed", str(exc)
            raise ApplicationError(str(exc), type="PlanError", non_retryable=True) from exc
        except BaseException as exc:
            # An activity's failure arrives wrapped in ActivityError; the status shows its cause
            # (for AWS errors: the operation, code and AWS's message).
            cause = exc.cause if isinstance(exc, ActivityError) and exc.cause else exc
            self._phase, self._error = "failed", str(cause)
            raise

    # --- create ----------------------------------------------------------------------------

    def _mark_planned(self, plan: ClusterPlan) -> None:
        net = plan.network
        if net.managed:
            self._set("vpc", net.vpc.name, "planned")
            for s in net.subnets:
                self._set("subnet", s.name, "planned")
            self._set("internet-gateway", net.internet_gateway_name or "", "planned")
            for n in net.nat_gateways:
                self._set("elastic-ip", n.eip_name, "planned")
                self._set("nat-gateway", n.name, "planned")
            for r in net.route_tables:
                self._set("route-table", r.name, "planned")
        for g in plan.security_groups:
            self._set("security-group", g.name, "planned")
        self._set("load-balancer", plan.load_balancer.name, "planned")
        if plan.bastion:
            self._set("instance", plan.bastion.name, "planned")

    async def _create(self, inp: InfraInput) -> InfraResult:
        spec = inp.spec
        cluster = ClusterRef.of(spec, inp.cluster_id)
        scope = workflow.info().run_id
        azs = inp.availability_zones
        needs_zones = not spec.network.vpc_id and not spec.network.subnets
        if not azs and needs_zones:
            azs = (await self._call(vpc.list_availability_zones, vpc.ZonesInput(region=spec.region))).zones
        plan = build_plan(spec, azs, inp.cluster_id)
        self._mark_planned(plan)
        self._phase = "creating"
        net: NetworkPlan = plan.network

        existing_nat_ips: tuple[str, ...] = ()
        if net.managed:
            v = await self._step(
                "vpc",
                net.vpc.name,
                vpc.ensure_vpc,
                vpc.EnsureVpcInput(cluster=cluster, name=net.vpc.name, cidr_block=net.vpc.cidr_block),
                lambda r: r.vpc_id,
            )
            vpc_id, vpc_cidr = v.vpc_id, v.cidr_block
        else:
            described = await self._call(
                vpc.describe_existing_network,
                vpc.DescribeNetworkInput(
                    cluster=cluster, vpc_id=net.vpc.id, subnet_ids=tuple(s.id for s in net.subnets)
                ),
            )
            vpc_id, vpc_cidr = net.vpc.id, described.vpc_cidr
            net = resolve_existing(net, described.vpc_cidr, described.subnets)
            # Load balancer subnets, bastion subnet and failure domains follow from the
            # described subnets (which are public, which zones).
            plan = plan_for_network(spec, net)
            self._mark_planned(plan)
            existing_nat_ips = described.nat_public_ips
        sg_plans = security_group_plans(spec, vpc_cidr, inp.cluster_id)

        # Branches that only need the VPC. Each is a task so later steps can await exactly
        # the resources they depend on, and everything else runs meanwhile.
        def task(coro: Awaitable[T]) -> asyncio.Future[T]:
            return asyncio.ensure_future(coro)

        async def existing_subnet(s: SubnetPlan) -> subnets.SubnetResult:
            return subnets.SubnetResult(
                subnet_id=s.id or "",
                availability_zone=s.availability_zone or "",
                cidr_block=s.cidr_block or "",
            )

        subnet_tasks: dict[str, asyncio.Future[subnets.SubnetResult]] = {}
        for s in net.subnets:
            if net.managed:
                subnet_tasks[s.name] = task(
                    self._step(
                        "subnet",
                        s.name,
                        subnets.ensure_subnet,
                        subnets.EnsureSubnetInput(cluster=cluster, vpc_id=vpc_id, subnet=s),
                        lambda r: r.subnet_id,
                    )
                )
            else:
                subnet_tasks[s.name] = task(existing_subnet(s))
        igw_task = None
        default_sg_task = None
        if net.managed and net.internet_gateway_name:
            igw_task = task(
                self._step(
                    "internet-gateway",
                    net.internet_gateway_name,
                    gateways.ensure_internet_gateway,
                    gateways.EnsureInternetGatewayInput(
                        cluster=cluster, vpc_id=vpc_id, name=net.internet_gateway_name
                    ),
                    lambda r: r.internet_gateway_id,
                )
            )
            default_sg_task = task(
                self._call(
                    security_groups.revoke_default_security_group_rules,
                    vpc.VpcIdInput(cluster=cluster, vpc_id=vpc_id),
                )
            )
        eip_tasks = {
            n.availability_zone: task(
                self._step(
                    "elastic-ip",
                    n.eip_name,
                    gateways.ensure_eip,
                    gateways.EnsureEipInput(cluster=cluster, name=n.eip_name),
                    lambda r: r.allocation_id,
                )
            )
            for n in net.nat_gateways
        }
        sg_tasks = {
            g.role: task(
                self._step(
                    "security-group",
                    g.name,
                    security_groups.ensure_security_group,
                    security_groups.EnsureSecurityGroupInput(
                        cluster=cluster, vpc_id=vpc_id, name=g.name, role=g.role, description=g.description
                    ),
                    lambda r: r.group_id,
                )
            )
            for g in sg_plans
        }

        async def nat_gateway(az: str) -> str:
            n = next(x for x in net.nat_gateways if x.availability_zone == az)
            subnet = await subnet_tasks[n.subnet_name]
            eip = await eip_tasks[az]
            self._set("nat-gateway", n.name, "creating")
            nat = await self._call(
                gateways.ensure_nat_gateway,
                gateways.EnsureNatGatewayInput(
                    cluster=cluster,
                    name=n.name,
                    subnet_id=subnet.subnet_id,
                    allocation_id=eip.allocation_id,
                    token_scope=scope,
                ),
            )
            self._set("nat-gateway", n.name, "creating", nat.nat_gateway_id)
            await self._wait_nat(cluster, nat, "available", NAT_AVAILABLE_TIMEOUT)
            self._set("nat-gateway", n.name, "ready")
            return nat.nat_gateway_id

        nat_tasks = {n.availability_zone: task(nat_gateway(n.availability_zone)) for n in net.nat_gateways}

        async def route_table(i: int) -> None:
            r = net.route_tables[i]
            subnet = await subnet_tasks[r.subnet_name]
            if r.is_public:
                assert igw_task is not None
                target = {"internet_gateway_id": (await igw_task).internet_gateway_id}
            else:
                target = {"nat_gateway_id": await nat_tasks[r.availability_zone]}
            await self._step(
                "route-table",
                r.name,
                route_tables.ensure_route_table,
                route_tables.EnsureRouteTableInput(
                    cluster=cluster,
                    vpc_id=vpc_id,
                    name=r.name,
                    subnet_id=subnet.subnet_id,
                    token_scope=scope,
                    **target,
                ),
                lambda x: x.route_table_id,
            )

        async def rules() -> dict[str, str]:
            group_ids = {role: (await t).group_id for role, t in sg_tasks.items()}
            nat_ips = [(await eip_tasks[az]).public_ip for az in sorted(eip_tasks)] or list(existing_nat_ips)
            await _all(
                *(
                    self._call(
                        security_groups.reconcile_security_group_rules,
                        security_groups.RulesInput(
                            cluster=cluster,
                            group_id=group_ids[g.role],
                            permissions=resolve_permissions(g.rules, group_ids, nat_ips),
                        ),
                    )
                    for g in sg_plans
                )
            )
            return group_ids

        async def api_load_balancer() -> load_balancer.LoadBalancerResult:
            lb = plan.load_balancer
            group_ids = [(await sg_tasks[lb.security_group_role]).group_id, *lb.additional_security_groups]
            subnet_ids = [(await subnet_tasks[name]).subnet_id for name in lb.subnet_names]
            if igw_task is not None:
                await igw_task  # an internet-facing load balancer needs the VPC's IGW attached
            return await self._step(
                "load-balancer",
                lb.name,
                load_balancer.ensure_load_balancer,
                load_balancer.EnsureLoadBalancerInput(
                    cluster=cluster,
                    plan=lb,
                    vpc_id=vpc_id,
                    subnet_ids=tuple(subnet_ids),
                    security_group_ids=tuple(group_ids),
                ),
                lambda r: r.arn or r.name,
            )

        async def bastion_host() -> str | None:
            b = plan.bastion
            if b is None:
                return None
            subnet = await subnet_tasks[b.subnet_name]
            group = await sg_tasks[b.security_group_role]
            if igw_task is not None:
                await igw_task
            result = await self._step(
                "instance",
                b.name,
                bastion.ensure_bastion,
                bastion.EnsureBastionInput(
                    cluster=cluster,
                    name=b.name,
                    instance_type=b.instance_type,
                    ami=b.ami,
                    subnet_id=subnet.subnet_id,
                    security_group_id=group.group_id,
                    ssh_key_name=b.ssh_key_name,
                    token_scope=scope,
                ),
                lambda r: r.instance_id,
            )
            return result.instance_id

        branches: list[Awaitable[Any]] = [*subnet_tasks.values(), *nat_tasks.values()]
        branches += [route_table(i) for i in range(len(net.route_tables))]
        rules_task, lb_task, bastion_task = task(rules()), task(api_load_balancer()), task(bastion_host())
        branches += [rules_task, lb_task, bastion_task]
        if igw_task is not None and default_sg_task is not None:
            branches += [igw_task, default_sg_task]
        await _all(*branches)

        group_ids, lb, bastion_id = rules_task.result(), lb_task.result(), bastion_task.result()
        self._phase = "ready"
        return InfraResult(
            cluster=spec.name,
            operation="create",
            vpc_id=vpc_id,
            vpc_managed=net.managed,
            subnets=tuple(
                SubnetOut(
                    name=s.name,
                    id=r.subnet_id,
                    availability_zone=r.availability_zone,
                    cidr_block=r.cidr_block,
                    is_public=s.is_public,
                )
                for s in net.subnets
                for r in [subnet_tasks[s.name].result()]
            ),
            security_groups=group_ids,
            load_balancer=LoadBalancerOut(
                name=lb.name,
                type=lb.type,
                dns_name=lb.dns_name,
                arn=lb.arn,
                target_group_arn=lb.target_group_arn,
            ),
            control_plane_endpoint_host=spec.control_plane_endpoint_host or lb.dns_name,
            control_plane_endpoint_port=spec.control_plane_endpoint_port,
            failure_domains=net.failure_domains(),
            bastion_instance_id=bastion_id,
            aws_calls=dict(self._calls),
        )

    async def _wait_nat(
        self, cluster: ClusterRef, nat: gateways.NatGatewayResult, want: str, timeout: timedelta
    ) -> None:
        """Poll the NAT gateway between durable timers until it reaches `want`."""
        deadline = workflow.now() + timeout
        # A NAT gateway takes 1-2 minutes: polls capped at 10 s see it at most 10 s late (at 30 s,
        # up to 30 s late on every create's critical path); ~12 describes per gateway, not ~7.
        cap = 10 if workflow.patched(PATCH_NAT_POLL) else 30
        delays = opts.poll_intervals(first=5, factor=1.5, cap=cap)
        state, failure = nat.state, nat.failure
        while state != want:
            if state == "failed" and want == "available":
                raise ApplicationError(
                    f"NAT gateway {nat.nat_gateway_id} failed: {failure}",
                    type="NatGatewayFailed",
                    non_retryable=True,
                )
            if workflow.now() >= deadline:
                raise ApplicationError(
                    f"NAT gateway {nat.nat_gateway_id} still {state} after {timeout}",
                    type="Timeout",
                    non_retryable=True,
                )
            await workflow.sleep(next(delays))
            now = await self._call(
                gateways.describe_nat_gateway,
                gateways.NatGatewayIdInput(cluster=cluster, nat_gateway_id=nat.nat_gateway_id),
            )
            state, failure = now.state, now.failure
