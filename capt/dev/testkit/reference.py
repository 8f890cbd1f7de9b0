"""The reference cluster for infrastructure tests, built directly as a ClusterSpec.

capi-quickstart in default, ap-northeast-2, VPC 10.0.0.0/16 over ap-northeast-2a/b/c, a
control plane of 3 t3.large at v1.20.5 and md-0 with 3 workers.
"""

from __future__ import annotations

from capt.spec.models import (
    BastionSpec,
    ClusterSpec,
    ControlPlaneSpec,
    KubeadmConfigSpec,
    LoadBalancerSpec,
    MachineDeploymentSpec,
    MachineTemplate,
    NetworkSpec,
    SubnetSpec,
)

NAME = "capi-quickstart"
REGION = "ap-northeast-2"
AZS = ("ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c")
VERSION = "v1.20.5"


def reference_spec(
    name: str = NAME,
    *,
    network: NetworkSpec | None = None,
    load_balancer: LoadBalancerSpec | None = None,
    bastion: BastionSpec | None = None,
    cp_replicas: int = 3,
    md_replicas: int = 3,
    md_failure_domain: str | None = None,
) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        namespace="default",
        region=REGION,
        network=network or NetworkSpec(vpc_cidr="10.0.0.0/16"),
        load_balancer=load_balancer or LoadBalancerSpec(),
        bastion=bastion or BastionSpec(),
        control_plane=ControlPlaneSpec(
            name=f"{name}-control-plane",
            replicas=cp_replicas,
            version=VERSION,
            machine_template=MachineTemplate(name=f"{name}-control-plane", instance_type="t3.large"),
        ),
        machine_deployments=(
            MachineDeploymentSpec(
                name=f"{name}-md-0",
                replicas=md_replicas,
                version=VERSION,
                machine_template=MachineTemplate(name=f"{name}-md-0", instance_type="t3.large"),
                bootstrap=KubeadmConfigSpec(),
                bootstrap_template_name=f"{name}-md-0",
                failure_domain=md_failure_domain,
            ),
        ),
    )


def existing_vpc_spec(vpc_id: str, subnet_ids: list[str], name: str = "byo-vpc") -> ClusterSpec:
    return reference_spec(
        name, network=NetworkSpec(vpc_id=vpc_id, subnets=tuple(SubnetSpec(id=s) for s in subnet_ids))
    )
