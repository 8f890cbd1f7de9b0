"""ClusterTeardownWorkflow: sweep (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from capt.activities.aws import (
        blockers as aws_blockers,
    )
    from capt.activities.aws import (
        cleanup,
        cluster_sweep,
        gateways,
        instance_events,
        load_balancer,
        route_tables,
        security_groups,
        subnets,
        sweep,
        vpc,
    )
    from capt.activities.aws import errors as aws_errors
    from capt.activities.aws import secrets as sm
    from capt.activities.aws.models import Blocker
    from capt.workflows import activity_options as opts
    from capt.workflows.teardown.policy import (
        LB_KINDS,
        NAT_GONE,
        PATCH_TRANSIENT_FAULTS,
        SWEPT_KINDS,
        _cause,
        _error_type,
    )


class _SweepMixin:
    # --- stages 4 and 5: the sweep ---------------------------------------------------------------
    async def _sweep(self) -> None:
        s = self._inp.settings
        deadline = workflow.now() + timedelta(seconds=s.blocked_deadline_seconds)
        rounds = quiet = 0
        while True:
            inventory = await self._inventory()
            todo = [r for r in inventory.resources if r.kind in SWEPT_KINDS]
            if not todo:
                if self._blocked:
                    self._event("no longer blocked")
                self._blocked = []
                return
            rounds += 1
            counts: dict[str, int] = {}
            for r in todo:
                counts[r.kind] = counts.get(r.kind, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in counts.items())
            self._set("Deleting", f"deleting AWS resources (round {rounds}): {summary}")
            await self._report()
            blockers = await self._round(inventory)
            if blockers != self._blocked:
                self._blocked = blockers
                if blockers:
                    self._event(f"blocked: {'; '.join(b.text() for b in blockers[:5])}")
            if workflow.now() >= deadline:
                listing = "; ".join(b.text() for b in blockers) or ", ".join(f"{r.kind} {r.id}" for r in todo)
                raise ApplicationError(
                    f"deletion blocked after {s.blocked_deadline_seconds}s: {listing}",
                    type="DeletionBlocked",
                    non_retryable=True,
                )
            if blockers:
                self._set(
                    "Deleting", f"blocked, trying again in {s.blocked_retry_seconds}s: {blockers[0].text()}"
                )
                await self._report()
                await workflow.sleep(s.blocked_retry_seconds)
            elif self._transient:
                # Only AWS's flakiness stopped this round (never counted as quiet): again soon.
                self._set(
                    "Deleting",
                    f"{len(self._transient)} delete(s) failed on throttling or lost connections, "
                    f"trying again in {s.final_sweep_interval_seconds}s: {self._transient[0]}",
                )
                await self._report()
                await workflow.sleep(s.final_sweep_interval_seconds)
            else:
                # Deleted, but reads still show some of it (AWS lags), or only what others must
                # remove (an interface its load balancer still holds): soon, then less often.
                quiet += 1
                short = quiet <= s.final_sweep_attempts
                await workflow.sleep(s.final_sweep_interval_seconds if short else s.blocked_retry_seconds)

    async def _inventory(self, *, with_secrets: bool = False) -> sweep.SweepResult:
        inp = self._inp
        return await self._aws(
            cluster_sweep.sweep_cluster_resources,
            cluster_sweep.SweepClusterInput(
                cluster=self._ref(),
                volume_ids=tuple(self._volume_ids),
                load_balancer_names=tuple(self._lb_names),
                secret_prefix=sm.cluster_prefix(inp.namespace, inp.name) + "/" if with_secrets else None,
            ),
            summary="sweep the cluster's resources",
        )

    async def _round(self, inv: sweep.SweepResult) -> list[Blocker]:
        """One pass over the inventory in dependency order. A kind whose prerequisite failed
        is left for the next round; each failure is reported with what blocks it."""
        ref = self._ref()
        blockers: list[Blocker] = []
        failed: set[str] = set()
        self._transient = []
        attempts = self._inp.settings.delete_attempts

        async def attempt(kind: str, r: sweep.OwnedResource, call: Callable[[], Awaitable[Any]]) -> None:
            try:
                await call()
            except FailureError as err:
                failed.add(kind)
                if aws_errors.is_transient(_error_type(err)) and workflow.patched(PATCH_TRANSIENT_FAULTS):
                    self._transient.append(f"{kind} {r.name or r.id}: {_cause(err)}")
                    return
                blockers.extend(await self._blockers(kind, r, err))

        async def each(
            kind: str, call_for: Callable[[sweep.OwnedResource], Awaitable[Any]], items=None
        ) -> None:
            rs = inv.of(kind) if items is None else items
            await asyncio.gather(*(attempt(kind, r, lambda r=r: call_for(r)) for r in rs))

        def ok(*kinds: str) -> bool:
            return not failed.intersection(kinds)

        def delete(fn, arg, what: str):
            return self._aws(fn, arg, summary=what, attempts=attempts)

        async def instances() -> None:
            live = inv.of("instance")
            if live:
                await attempt("instance", live[0], self._terminate_instances)

        async def load_balancers() -> None:
            await asyncio.gather(
                each(
                    "load-balancer",
                    lambda r: delete(
                        load_balancer.delete_load_balancer,
                        load_balancer.DeleteLoadBalancerInput(cluster=ref, type="classic", name=r.id),
                        f"delete load balancer {r.name}",
                    ),
                ),
                each(
                    "network-load-balancer",
                    lambda r: delete(
                        load_balancer.delete_load_balancer,
                        load_balancer.DeleteLoadBalancerInput(cluster=ref, type="nlb", arn=r.id),
                        f"delete load balancer {r.name}",
                    ),
                ),
            )

        async def delete_nat(r: sweep.OwnedResource) -> None:
            state = r.state
            if state != "deleting":
                state = (
                    await delete(
                        gateways.delete_nat_gateway,
                        gateways.NatGatewayIdInput(cluster=ref, nat_gateway_id=r.id),
                        f"delete NAT gateway {r.id}",
                    )
                ).state
            deadline = workflow.now() + timedelta(seconds=self._inp.settings.nat_deleted_timeout_seconds)
            delays = opts.poll_intervals(first=5, factor=1.5, cap=30)
            while state not in NAT_GONE:
                if workflow.now() >= deadline:
                    raise ApplicationError(
                        f"NAT gateway {r.id} still {state}", type="Timeout", non_retryable=True
                    )
                await workflow.sleep(next(delays))
                state = (
                    await self._aws(
                        gateways.describe_nat_gateway,
                        gateways.NatGatewayIdInput(cluster=ref, nat_gateway_id=r.id),
                        summary=f"NAT gateway {r.id}",
                    )
                ).state

        instances_t = asyncio.ensure_future(instances())
        lbs_t = asyncio.ensure_future(load_balancers())
        nats_t = asyncio.ensure_future(each("nat-gateway", delete_nat))
        rts_t = asyncio.ensure_future(
            each(
                "route-table",
                lambda r: delete(
                    route_tables.delete_route_table,
                    route_tables.RouteTableIdInput(cluster=ref, route_table_id=r.id),
                    f"delete route table {r.name or r.id}",
                ),
            )
        )

        async def target_groups() -> None:
            await lbs_t
            if ok(*LB_KINDS):
                await each(
                    "target-group",
                    lambda r: delete(
                        load_balancer.delete_target_group,
                        load_balancer.TargetGroupInput(cluster=ref, arn=r.id),
                        f"delete target group {r.name}",
                    ),
                )

        async def groups() -> None:
            await asyncio.gather(lbs_t, instances_t)
            found = inv.of("security-group")
            if not found or not ok(*LB_KINDS, "instance"):
                return
            owned_vpcs = tuple(sorted({r.id for r in inv.of("vpc")}))
            # Rules naming a doomed group (the cloud provider's rule on the instances' group
            # admits its ELB's group) block that group's deletion: revoked first.
            await attempt(
                "security-group",
                found[0],
                lambda: delete(
                    cleanup.revoke_security_group_references,
                    cleanup.RevokeReferencesInput(
                        cluster=ref, group_ids=tuple(r.id for r in found), vpc_ids=owned_vpcs
                    ),
                    "revoke the rules that name the cluster's security groups",
                ),
            )
            if not ok("security-group"):
                return
            await each(
                "security-group",
                lambda r: delete(
                    security_groups.delete_security_group,
                    security_groups.GroupIdInput(cluster=ref, group_id=r.id),
                    f"delete security group {r.name or r.id}",
                ),
            )

        async def volumes() -> None:
            await instances_t
            if ok("instance"):
                await each(
                    "volume",
                    lambda r: delete(
                        cleanup.delete_volume,
                        cleanup.VolumeIdInput(cluster=ref, volume_id=r.id),
                        f"delete volume {r.name or r.id}",
                    ),
                )

        async def interfaces() -> None:
            await asyncio.gather(lbs_t, nats_t, instances_t)
            if not ok(*LB_KINDS, "nat-gateway", "instance"):
                return
            # Only detached ones: a requester-managed interface goes with its load balancer or
            # NAT gateway, an attached foreign one is reported by what it blocks.
            loose = [
                r
                for r in inv.of("network-interface")
                if r.state == "available" and "requester-managed" not in r.detail
            ]
            await each(
                "network-interface",
                lambda r: delete(
                    cleanup.delete_network_interface,
                    cleanup.NetworkInterfaceIdInput(cluster=ref, network_interface_id=r.id),
                    f"delete network interface {r.id}",
                ),
                loose,
            )

        tgs_t = asyncio.ensure_future(target_groups())
        sgs_t = asyncio.ensure_future(groups())
        vols_t = asyncio.ensure_future(volumes())
        enis_t = asyncio.ensure_future(interfaces())

        async def addresses() -> None:
            await nats_t  # a NAT gateway holds its address until it is deleted
            if ok("nat-gateway"):
                await each(
                    "elastic-ip",
                    lambda r: delete(
                        gateways.release_eip,
                        gateways.AllocationIdInput(cluster=ref, allocation_id=r.id),
                        f"release address {r.name or r.id}",
                    ),
                )

        eips_t = asyncio.ensure_future(addresses())

        async def internet_gateways() -> None:
            # Detaching fails while public addresses are mapped in the VPC.
            await asyncio.gather(nats_t, eips_t, lbs_t, instances_t)
            if ok("nat-gateway", "elastic-ip", *LB_KINDS, "instance"):
                await each(
                    "internet-gateway",
                    lambda r: delete(
                        gateways.delete_internet_gateway,
                        gateways.InternetGatewayIdInput(
                            cluster=ref, internet_gateway_id=r.id, vpc_id=r.vpc_id or None
                        ),
                        f"delete internet gateway {r.name or r.id}",
                    ),
                )

        async def subnets_() -> None:
            await asyncio.gather(nats_t, lbs_t, instances_t, rts_t, enis_t)
            if ok("nat-gateway", *LB_KINDS, "instance", "route-table", "network-interface"):
                await each(
                    "subnet",
                    lambda r: delete(
                        subnets.delete_subnet,
                        subnets.SubnetIdInput(cluster=ref, subnet_id=r.id),
                        f"delete subnet {r.name or r.id}",
                    ),
                )

        igw_t = asyncio.ensure_future(internet_gateways())
        subnets_t = asyncio.ensure_future(subnets_())
        await asyncio.gather(
            instances_t, lbs_t, nats_t, rts_t, tgs_t, sgs_t, vols_t, enis_t, eips_t, igw_t, subnets_t
        )
        if not failed:
            await each(
                "vpc",
                lambda r: delete(
                    vpc.delete_vpc, vpc.VpcIdInput(cluster=ref, vpc_id=r.id), f"delete VPC {r.name or r.id}"
                ),
            )
        return sorted(blockers, key=lambda b: (b.resource_kind, b.resource_id, b.blocker_kind, b.blocker_id))

    async def _blockers(self, kind: str, r: sweep.OwnedResource, err: FailureError) -> list[Blocker]:
        """What holds `r`, described once its delete gave up."""
        message, error_type = _cause(err), _error_type(err)
        try:
            found = (
                await self._aws(
                    aws_blockers.describe_blockers,
                    aws_blockers.BlockersInput(
                        cluster=self._ref(), kind=kind, id=r.id, error=message, error_type=error_type
                    ),
                    summary=f"what blocks {kind} {r.id}",
                    attempts=3,
                )
            ).blockers
        except ActivityError:
            found = (
                Blocker(
                    resource_kind=kind,
                    resource_id=r.id,
                    blocker_kind="error",
                    blocker_id="",
                    blocker_type=error_type,
                    description=message,
                ),
            )
        return [b.model_copy(update={"resource_name": r.name}) for b in found]

    # --- stage 6: secrets, stage 7: proof ----------------------------------------------------------
    async def _secrets(self) -> None:
        inp = self._inp
        self._set("Deleting", "deleting the cluster's secrets")
        await self._report()
        deleted = await self._aws(
            sm.delete_cluster_secrets,
            sm.DeleteClusterSecretsRequest(
                cluster_name=inp.name, namespace=inp.namespace, region=inp.region, cluster_id=inp.aws_id
            ),
            summary="delete the cluster's secrets",
        )
        self._event(f"{deleted.deleted} secret(s) deleted")
        try:
            await self._aws(
                instance_events.delete_instance_events,
                instance_events.InstanceEventsRequest(
                    region=inp.region, cluster_name=inp.name, namespace=inp.namespace
                ),
                summary="delete the instance-events queue and rule",
                attempts=3,
            )
        except ActivityError as err:
            self._event(f"instance-events queue not deleted: {_cause(err)}")

    async def _prove(self) -> None:
        s = self._inp.settings
        self._set("Deleting", "checking that nothing is left")
        await self._report()
        for attempt in range(s.final_sweep_attempts):
            left = await self._inventory(with_secrets=True)
            if not left.resources:
                return
            if attempt + 1 < s.final_sweep_attempts:
                await workflow.sleep(s.final_sweep_interval_seconds)
        listing = ", ".join(
            f"{r.kind} {r.id}" + (f" ({r.name})" if r.name and r.name != r.id else "") for r in left.resources
        )
        raise ApplicationError(
            f"resources of cluster {self._inp.aws_id} left after deletion: {listing}",
            type="ResourcesRemain",
            non_retryable=True,
        )
