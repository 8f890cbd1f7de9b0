"""Every workflow class the worker registers. Add new workflows here."""

WORKFLOWS: list[type] = []

# One EC2 instance -> one node, and the KubeadmControlPlane that owns control-plane machines.
from capt.workflows.controlplane.workflow import ControlPlaneWorkflow  # noqa: E402
from capt.workflows.machine.workflow import MachineWorkflow  # noqa: E402

WORKFLOWS += [MachineWorkflow, ControlPlaneWorkflow]

# Network, security groups and API load balancer: create and delete (issue 3).
from capt.workflows.infrastructure.workflow import InfrastructureWorkflow  # noqa: E402

WORKFLOWS.append(InfrastructureWorkflow)

# MachineHealthCheck: detection and remediation requests to the owners (issue 9).
from capt.workflows.health.workflow import HealthCheckWorkflow  # noqa: E402

WORKFLOWS.append(HealthCheckWorkflow)

# The cluster entity and the MachineDeployments it owns (issues 7 and 8).
from capt.workflows.cluster.workflow import ClusterWorkflow  # noqa: E402
from capt.workflows.machinedeployment.workflow import MachineDeploymentWorkflow  # noqa: E402

WORKFLOWS += [MachineDeploymentWorkflow, ClusterWorkflow]

# Cluster deletion that always finishes: workload objects, machines, everything tagged for the
# cluster (Kubernetes' tag too), secrets last (issue 15).
from capt.workflows.teardown.workflow import ClusterTeardownWorkflow  # noqa: E402

WORKFLOWS.append(ClusterTeardownWorkflow)
