"""The reference cluster of the design write-up (capi-quickstart), built in Python for the
bootstrap tests, and a once-per-session cluster PKI (RSA key generation is the slow part)."""

from __future__ import annotations

import datetime as dt
import functools

from capt.activities.kubeadm import pki, tokens
from capt.activities.kubeadm.cloud_init import RenderInput
from capt.activities.kubeadm.documents import KubeadmInputs
from capt.spec.models import (
    ClusterSpec,
    ControlPlaneSpec,
    KubeadmConfigSpec,
    MachineDeploymentSpec,
    MachineTemplate,
    NetworkSpec,
)

HOSTNAME = "ip-10-0-71-23.ap-northeast-2.compute.internal"
ENDPOINT = "capi-quickstart-apiserver-479433786.ap-northeast-2.elb.amazonaws.com"
NODE_NAME = "{{ ds.meta_data.local_hostname }}"
AWS = {"cloud-provider": "aws"}


def reference_cluster() -> ClusterSpec:
    node_registration = {"name": NODE_NAME, "kubeletExtraArgs": dict(AWS)}
    return ClusterSpec(
        name="capi-quickstart",
        namespace="capi-quickstart",
        region="ap-northeast-2",
        ssh_key_name="capi-seungkyu",
        network=NetworkSpec(pod_cidrs=("192.168.0.0/16",)),
        control_plane=ControlPlaneSpec(
            name="capi-quickstart-control-plane",
            replicas=3,
            version="v1.20.5",
            machine_template=MachineTemplate(
                name="capi-quickstart-control-plane",
                instance_type="t3.large",
                iam_instance_profile="control-plane.cluster-api-provider-aws.sigs.k8s.io",
                ssh_key_name="capi-seungkyu",
            ),
            kubeadm=KubeadmConfigSpec(
                cluster_configuration={
                    "apiServer": {"extraArgs": dict(AWS)},
                    "controllerManager": {"extraArgs": dict(AWS)},
                },
                init_configuration={"nodeRegistration": dict(node_registration)},
                join_configuration={"nodeRegistration": dict(node_registration)},
            ),
        ),
        machine_deployments=(
            MachineDeploymentSpec(
                name="capi-quickstart-md-0",
                replicas=3,
                version="v1.20.5",
                machine_template=MachineTemplate(
                    name="capi-quickstart-md-0",
                    instance_type="t3.large",
                    iam_instance_profile="nodes.cluster-api-provider-aws.sigs.k8s.io",
                    ssh_key_name="capi-seungkyu",
                ),
                bootstrap=KubeadmConfigSpec(join_configuration={"nodeRegistration": dict(node_registration)}),
                bootstrap_template_name="capi-quickstart-md-0",
            ),
        ),
    )


@functools.cache
def cluster_pki() -> pki.ClusterPKI:
    return pki.new_cluster_pki()


def token(now: dt.datetime | None = None) -> tokens.BootstrapToken:
    return tokens.new_token(now or dt.datetime.now(dt.UTC))


def inputs(
    cluster: ClusterSpec, *, version: str | None = None, tok: tokens.BootstrapToken | None = None
) -> KubeadmInputs:
    return KubeadmInputs(
        cluster_name=cluster.name,
        kubernetes_version=version or cluster.control_plane.version,
        endpoint_host=ENDPOINT,
        endpoint_port=cluster.control_plane_endpoint_port,
        pod_cidrs=cluster.network.pod_cidrs,
        service_cidrs=cluster.network.service_cidrs,
        service_domain=cluster.network.service_domain,
        ca_cert_hash=pki.ca_cert_hash(cluster_pki().ca.cert),
        token=tok,
    )


def render_input(
    cluster: ClusterSpec,
    kind: str,
    *,
    version: str | None = None,
    tok: tokens.BootstrapToken | None = None,
    kubeadm: KubeadmConfigSpec | None = None,
) -> RenderInput:
    if kubeadm is None:
        kubeadm = (
            cluster.machine_deployments[0].bootstrap
            if kind == "join-worker"
            else cluster.control_plane.kubeadm
        )
    return RenderInput(
        kind=kind,  # type: ignore[arg-type]
        kubeadm=kubeadm,
        inputs=inputs(cluster, version=version, tok=tok),
        pki=cluster_pki() if kind != "join-worker" else None,
    )
