"""Workflow ids, each built here once: one cluster's tree is every id below with its namespace and
name, so ids never collide across namespaces and a cluster's workflows can be listed by prefix.

    cluster/<ns>/<name>                  ClusterWorkflow (or ClusterTeardownWorkflow once it has closed)
    infra/<ns>/<name>                    InfrastructureWorkflow
    controlplane/<ns>/<name>             ControlPlaneWorkflow
    md/<ns>/<name>/<deployment>          MachineDeploymentWorkflow
    machine/<ns>/<name>/<machine>        MachineWorkflow
    health/<ns>/<name>                   HealthCheckWorkflow
    teardown/<ns>/<name>                 ClusterTeardownWorkflow as the ClusterWorkflow's child

Child workflow ids and signal targets are command attributes: changing a string here breaks replay
of every running cluster. The strings only ever move, never change.
"""

from __future__ import annotations


def cluster_workflow_id(namespace: str, name: str) -> str:
    return f"cluster/{namespace}/{name}"


def infra_workflow_id(namespace: str, name: str) -> str:
    return f"infra/{namespace}/{name}"


def control_plane_workflow_id(namespace: str, name: str) -> str:
    return f"controlplane/{namespace}/{name}"


def deployment_workflow_id(namespace: str, cluster: str, deployment: str) -> str:
    return f"md/{namespace}/{cluster}/{deployment}"


def machine_id(namespace: str, cluster: str, machine: str) -> str:
    return f"machine/{namespace}/{cluster}/{machine}"


def health_workflow_id(namespace: str, cluster: str) -> str:
    return f"health/{namespace}/{cluster}"


def teardown_workflow_id(namespace: str, name: str) -> str:
    """The teardown as the child of a live ClusterWorkflow. Started by `capt delete` for a
    cluster whose workflow has closed, it runs as `cluster/<ns>/<name>` instead."""
    return f"teardown/{namespace}/{name}"


def tree_ids(namespace: str, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(exact ids, id prefixes) of a cluster's workflows other than `cluster/…` itself."""
    exact = (
        infra_workflow_id(namespace, name),
        control_plane_workflow_id(namespace, name),
        health_workflow_id(namespace, name),
    )
    prefixes = (deployment_workflow_id(namespace, name, ""), machine_id(namespace, name, ""))
    return exact, prefixes
