"""InfrastructureWorkflow: deletion (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import (
        bastion,
        gateways,
        load_balancer,
        route_tables,
        security_groups,
        subnets,
        sweep,
        vpc,
    )
    from capt.activities.aws.models import ClusterRef
    from capt.workflows import activity_options as opts
    from capt.workflows.infrastructure.models import (
        FINAL_SWEEP_ATTEMPTS,
        FINAL_SWEEP_INTERVAL,
        INSTANCE_TERMINATED_TIMEOUT,
        NAT_DELETED_TIMEOUT,
        InfraInput,
        InfraResult,
        _all,
    )


class _DeletionMixin:
    async def _delete(self, inp: InfraInput) -> InfraResult:
        spec = inp.spec
        cluster = ClusterRef.of(spec, inp.cluster_id)
        self._phase = "deleting"
        inventory = await self._call(sweep.sweep_owned_resources, sweep.SweepInput(cluster=cluster))
        machines = [r for r in inventory.of("instance") if r.role != "bastion"]
        if machines:
            raise ApplicationError(
                f"instances still owned by cluster {cluster.name}: {', '.join(r.id for r in machines)}; delete the machines before the infrastructure",
                type="MachinesRemain",
                non_retryable=True,
            )
        for r in inventory.resources:
            self._set(r.kind, r.name or r.id, "deleting", r.id)

        def done(r: sweep.OwnedResource) -> None:
            self._set(r.kind, r.name or r.id, "deleted")

        async def each(kind: str, fn: Callable[[sweep.OwnedResource], Awaitable[Any]]) -> None:
            async def one(r: sweep.OwnedResource) -> None:
                await fn(r)
                done(r)

            await _all(*(one(r) for r in inventory.of(kind)))

        async def load_balancers() -> None:
            await _all(
                each(
                    "load-balancer",
                    lambda r: self._call(
                        load_balancer.delete_load_balancer,
                        load_balancer.DeleteLoadBalancerInput(cluster=cluster, type="classic", name=r.id),
                    ),
                ),
                each(
                    "network-load-balancer",
                    lambda r: self._call(
                        load_balancer.delete_load_balancer,
                        load_balancer.DeleteLoadBalancerInput(cluster=cluster, type="nlb", arn=r.id),
                    ),
                ),
            )
            # A target group is in use until its load balancer is gone (retried meanwhile).
            await each(
                "target-group",
                lambda r: self._call(
                    load_balancer.delete_target_group,
                    load_balancer.TargetGroupInput(cluster=cluster, arn=r.id),
                ),
            )

        async def terminate(r: sweep.OwnedResource) -> None:
            result = await self._call(
                bastion.terminate_bastion, bastion.InstanceIdInput(cluster=cluster, instance_id=r.id)
            )
            deadline = workflow.now() + INSTANCE_TERMINATED_TIMEOUT
            delays = opts.poll_intervals(first=5, factor=1.5, cap=30)
            while result.state != "terminated":
                if workflow.now() >= deadline:
                    raise ApplicationError(
                        f"instance {r.id} still {result.state} after {INSTANCE_TERMINATED_TIMEOUT}",
                        type="Timeout",
                        non_retryable=True,
                    )
                await workflow.sleep(next(delays))
                result = await self._call(
                    bastion.describe_bastion, bastion.InstanceIdInput(cluster=cluster, instance_id=r.id)
                )

        async def delete_nat(r: sweep.OwnedResource) -> None:
            if r.state == "deleting":
                # An earlier deletion (e.g. a previous run) is under way: only wait for it.
                result = gateways.NatGatewayResult(nat_gateway_id=r.id, state="deleting")
            else:
                result = await self._call(
                    gateways.delete_nat_gateway,
                    gateways.NatGatewayIdInput(cluster=cluster, nat_gateway_id=r.id),
                )
            if result.state != "deleted":
                # The deletion is under way; an immediate read usually still says "deleting".
                now = await self._call(
                    gateways.describe_nat_gateway,
                    gateways.NatGatewayIdInput(cluster=cluster, nat_gateway_id=r.id),
                )
                await self._wait_nat(cluster, now, "deleted", NAT_DELETED_TIMEOUT)

        lbs_task = asyncio.ensure_future(load_balancers())
        bastion_task = asyncio.ensure_future(each("instance", terminate))
        nats_task = asyncio.ensure_future(each("nat-gateway", delete_nat))
        rts_task = asyncio.ensure_future(
            each(
                "route-table",
                lambda r: self._call(
                    route_tables.delete_route_table,
                    route_tables.RouteTableIdInput(cluster=cluster, route_table_id=r.id),
                ),
            )
        )

        async def security_groups_() -> None:
            # Instances and load balancer interfaces must be gone before their groups can go.
            await _all(lbs_task, bastion_task)
            groups = inventory.of("security-group")
            await _all(
                *(
                    self._call(
                        security_groups.revoke_security_group_ingress,
                        security_groups.GroupIdInput(cluster=cluster, group_id=g.id),
                    )
                    for g in groups
                )
            )
            await each(
                "security-group",
                lambda r: self._call(
                    security_groups.delete_security_group,
                    security_groups.GroupIdInput(cluster=cluster, group_id=r.id),
                ),
            )

        async def eips() -> None:
            await nats_task  # a NAT gateway holds its address until it is deleted
            await each(
                "elastic-ip",
                lambda r: self._call(
                    gateways.release_eip, gateways.AllocationIdInput(cluster=cluster, allocation_id=r.id)
                ),
            )

        sgs_task = asyncio.ensure_future(security_groups_())
        eips_task = asyncio.ensure_future(eips())

        async def internet_gateways() -> None:
            # Detaching fails while public addresses are mapped in the VPC.
            await _all(nats_task, eips_task, lbs_task, bastion_task)
            await each(
                "internet-gateway",
                lambda r: self._call(
                    gateways.delete_internet_gateway,
                    gateways.InternetGatewayIdInput(
                        cluster=cluster, internet_gateway_id=r.id, vpc_id=r.vpc_id or None
                    ),
                ),
            )

        async def subnets_() -> None:
            await _all(nats_task, lbs_task, bastion_task, rts_task)
            await each(
                "subnet",
                lambda r: self._call(
                    subnets.delete_subnet, subnets.SubnetIdInput(cluster=cluster, subnet_id=r.id)
                ),
            )

        igw_task = asyncio.ensure_future(internet_gateways())
        subnets_task = asyncio.ensure_future(subnets_())
        await _all(lbs_task, bastion_task, nats_task, rts_task, sgs_task, eips_task, igw_task, subnets_task)
        await each("vpc", lambda r: self._call(vpc.delete_vpc, vpc.VpcIdInput(cluster=cluster, vpc_id=r.id)))

        # Proof: nothing tagged as owned by the cluster is left.
        for attempt in range(FINAL_SWEEP_ATTEMPTS):
            left = await self._call(sweep.sweep_owned_resources, sweep.SweepInput(cluster=cluster))
            if not left.resources:
                break
            if attempt + 1 < FINAL_SWEEP_ATTEMPTS:
                await workflow.sleep(FINAL_SWEEP_INTERVAL)
        else:
            listing = ", ".join(
                f"{r.kind} {r.id}" + (f" ({r.name})" if r.name and r.name != r.id else "")
                for r in left.resources
            )
            raise ApplicationError(
                f"resources still owned by cluster {cluster.name} after deletion: {listing}",
                type="ResourcesRemain",
                non_retryable=True,
            )
        self._phase = "deleted"
        return InfraResult(
            cluster=spec.name,
            operation="delete",
            vpc_managed=not spec.network.vpc_id,
            aws_calls=dict(self._calls),
        )
