"""What a machine is told about its cluster, what it is asked to be, and what it reports.

These models are the MachineWorkflow's interface: the control-plane and machine-deployment
workflows build a `MachineInput`, start a MachineWorkflow with it, and receive `MachineStatus`
signals back. They hold ids, names and ARNs — never key material.
"""

from __future__ import annotations

from typing import Literal

from capt.contracts.ids import machine_id
from capt.contracts.machines import ClusterPKIRefs, MachineRole
from capt.rules.base import Frozen
from capt.spec.models import KubeadmConfigSpec, MachineTemplate

BootstrapKind = Literal["init", "join-control-plane", "join-worker"]
# "create": make the machine, keep it, delete it when asked. "delete": the machine's earlier
# workflow closed without deleting it (failed, terminated, timed out); only delete what it left.
MachineMode = Literal["create", "delete"]


class LoadBalancerRef(Frozen):
    type: Literal["classic", "nlb"]
    name: str
    dns_name: str
    target_group_arn: str | None = None  # NLB only


class ClusterContext(Frozen):
    """The parts of a provisioned cluster every machine needs (from infra + PKI)."""

    name: str
    namespace: str
    region: str
    endpoint_host: str
    endpoint_port: int = 6443
    pki: ClusterPKIRefs
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    service_domain: str = "cluster.local"
    # availability zone -> private subnet id
    private_subnets: tuple[tuple[str, str], ...] = ()
    # role ("controlplane", "node", …) -> security group id
    security_groups: tuple[tuple[str, str], ...] = ()
    load_balancer: LoadBalancerRef | None = None
    additional_tags: tuple[tuple[str, str], ...] = ()
    ssh_key_name: str | None = None
    # The cluster's id in AWS (contracts.names.cluster_id), chosen by ClusterWorkflow. None in contexts
    # recorded before ids were namespaced: read it through `cluster_id`, which falls back to the
    # name. `name` stays the Kubernetes cluster name (kubeadm's clusterName, the kubeconfig).
    aws_id: str | None = None

    @property
    def cluster_id(self) -> str:
        """What the cluster's AWS resources are named after and tagged as owned by."""
        return self.aws_id or self.name

    @property
    def failure_domains(self) -> list[str]:
        return [az for az, _ in self.private_subnets]

    def subnet_for(self, az: str | None) -> str | None:
        return dict(self.private_subnets).get(az) if az else None

    def security_group(self, role: str) -> str | None:
        return dict(self.security_groups).get(role)


class DeleteOptions(Frozen):
    """How a machine goes. `skip_node_cleanup`: no cordon, drain or Node deletion — the whole
    cluster is being deleted, so there is no workload to move and no API worth waiting for."""

    skip_node_cleanup: bool = False


class MachineInput(Frozen):
    cluster: ClusterContext
    name: str
    role: MachineRole
    bootstrap_kind: BootstrapKind
    # The workflow (control plane or machine deployment) that owns this machine; it is
    # signalled `machine_changed` on every phase change.
    owner_workflow_id: str | None = None
    failure_domain: str | None = None
    version: str
    # Hash of what the machine was made from; owners compare it to decide what is outdated.
    revision: str
    template: MachineTemplate
    kubeadm: KubeadmConfigSpec
    # Bumped for a replacement of the same machine name: it changes RunInstances' ClientToken
    # (AWS refuses to reuse the token of a terminated instance).
    incarnation: int = 0
    node_startup_timeout_seconds: int = 600
    node_drain_timeout_seconds: int = 300  # 0: no timeout (drain until it succeeds)
    deployment: str | None = None
    # mode="delete" (see MachineMode): what the owner knew of the machine. Without an instance
    # id the instance is found by its tags.
    mode: MachineMode = "create"
    instance_id: str | None = None
    node_name: str | None = None
    delete_options: DeleteOptions | None = None


def machine_workflow_id(cluster: ClusterContext | str, machine: str, namespace: str = "default") -> str:
    """`machine/<namespace>/<cluster>/<machine>`: stable and readable in the Web UI."""
    if isinstance(cluster, ClusterContext):
        namespace, cluster = cluster.namespace, cluster.name
    return machine_id(namespace, cluster, machine)
