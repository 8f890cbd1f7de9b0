"""The activities InfrastructureWorkflow uses (issue 3), listed once for the registry and tests."""

from __future__ import annotations

from collections.abc import Callable

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

INFRASTRUCTURE_ACTIVITIES: list[Callable] = [
    vpc.list_availability_zones,
    vpc.ensure_vpc,
    vpc.describe_existing_network,
    vpc.delete_vpc,
    subnets.ensure_subnet,
    subnets.delete_subnet,
    gateways.ensure_internet_gateway,
    gateways.delete_internet_gateway,
    gateways.ensure_eip,
    gateways.release_eip,
    gateways.ensure_nat_gateway,
    gateways.describe_nat_gateway,
    gateways.delete_nat_gateway,
    route_tables.ensure_route_table,
    route_tables.delete_route_table,
    security_groups.ensure_security_group,
    security_groups.reconcile_security_group_rules,
    security_groups.revoke_default_security_group_rules,
    security_groups.revoke_security_group_ingress,
    security_groups.delete_security_group,
    load_balancer.ensure_load_balancer,
    load_balancer.delete_load_balancer,
    load_balancer.delete_target_group,
    bastion.ensure_bastion,
    bastion.describe_bastion,
    bastion.terminate_bastion,
    sweep.sweep_owned_resources,
]
