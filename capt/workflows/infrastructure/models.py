"""The models, constants and pure helpers of this workflow (its class is in workflow.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from capt.spec.models import ClusterSpec


ResourceState = Literal["planned", "creating", "ready", "deleting", "deleted"]


# How long AWS may take before the workflow gives up waiting (durable timers in between).
NAT_AVAILABLE_TIMEOUT = timedelta(minutes=15)


NAT_DELETED_TIMEOUT = timedelta(minutes=15)


INSTANCE_TERMINATED_TIMEOUT = timedelta(minutes=10)


# The final sweep is re-read a few times: AWS reads lag deletions by seconds.
FINAL_SWEEP_ATTEMPTS = 6


FINAL_SWEEP_INTERVAL = timedelta(seconds=10)


# workflow.patched id (docs/versioning.md): NAT gateway polls capped at 10 s instead of 30 s.
PATCH_NAT_POLL = "infra-nat-poll-10s"


class InfraInput(BaseModel):
    spec: ClusterSpec
    operation: Literal["create", "delete"] = "create"
    # Zones to plan with; empty = ask EC2 (DescribeAvailabilityZones).
    availability_zones: tuple[str, ...] = ()
    # The cluster's id in AWS (contracts.names.cluster_id), chosen by ClusterWorkflow: every name and
    # ownership tag derives from it. None (inputs recorded before ids were namespaced, legacy
    # clusters): the cluster's name.
    cluster_id: str | None = None


class ResourceStatus(BaseModel):
    kind: str
    name: str
    state: ResourceState
    id: str | None = None


class SubnetOut(BaseModel):
    name: str
    id: str
    availability_zone: str
    cidr_block: str
    is_public: bool


class LoadBalancerOut(BaseModel):
    name: str
    type: str
    dns_name: str
    arn: str | None = None
    target_group_arn: str | None = None


class InfraResult(BaseModel):
    cluster: str
    operation: str
    vpc_id: str | None = None
    vpc_managed: bool = True
    subnets: tuple[SubnetOut, ...] = ()
    # Security group role -> id (apiserver-lb, lb, controlplane, node, bastion).
    security_groups: dict[str, str] = {}
    load_balancer: LoadBalancerOut | None = None
    control_plane_endpoint_host: str | None = None
    control_plane_endpoint_port: int = 6443
    failure_domains: tuple[str, ...] = ()
    bastion_instance_id: str | None = None
    # AWS requests per `service:Operation`, summed over the activity results of this run.
    aws_calls: dict[str, int] = {}

    def private_subnet(self, availability_zone: str) -> SubnetOut:
        return next(s for s in self.subnets if not s.is_public and s.availability_zone == availability_zone)


class InfraStatus(BaseModel):
    operation: str
    phase: Literal["planning", "creating", "ready", "deleting", "deleted", "failed"]
    resources: list[ResourceStatus]
    aws_calls: dict[str, int]
    error: str | None = None


T = TypeVar("T")


async def _all(*aws: Awaitable[Any]) -> list[Any]:
    """Run branches concurrently; on the first failure cancel the rest and re-raise it."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        raise
