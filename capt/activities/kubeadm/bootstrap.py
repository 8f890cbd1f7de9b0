"""Bootstrap data: the cloud-init that turns an EC2 instance into a Kubernetes node with kubeadm.

Three kinds, as CAPI's kubeadm bootstrap provider renders them:

- ``init``: the first control-plane machine. The cluster's CA, etcd CA, front-proxy CA and
  service-account keys are written under /etc/kubernetes/pki, then ``kubeadm init`` runs with a
  ClusterConfiguration + InitConfiguration.
- ``join-control-plane``: further control-plane machines. The same key material, then
  ``kubeadm join`` with a JoinConfiguration that has a ``controlPlane`` section (the config-file
  form of ``kubeadm join --control-plane``).
- ``join-worker``: workers. No key material, only a JoinConfiguration with bootstrap-token
  discovery pinned to the CA's public-key hash.

The output is a ``## template: jinja`` cloud-config, as CAPI emits: cloud-init renders it on the
instance, so ``{{ ds.meta_data.local_hostname }}`` in the manifest's nodeRegistration becomes the
instance's hostname there. Our own templates (templates/*.j2) use other delimiters so that our
rendering never consumes cloud-init's.

Because the rendered data holds keys and a token it never goes into EC2 user data: the activity
`prepare_bootstrap_data` stores it gzipped (chunked if large) in Secrets Manager, and the user data
is only a boothook (`render_user_data`) that fetches it with the instance profile, deletes it and
lets cloud-init include it — CAPA's secrets backend.

Pure functions first (render, kubeadm documents, user data), the activity at the end.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from capt.activities.aws import bootstrap_data, idempotent, token_secrets, user_secrets
from capt.activities.aws import secrets as sm
from capt.activities.aws.models import AwsResult
from capt.activities.aws.secrets import ClusterPKIRefs
from capt.activities.aws.session import aws_activity
from capt.activities.kubeadm.cloud_init import (
    RenderInput,
    compress,
    render_cloud_config,
    render_user_data,
    secret_refs,
)
from capt.activities.kubeadm.documents import (
    BootstrapError,
    BootstrapKind,
    KubeadmInputs,
)
from capt.spec.models import ClusterSpec, KubeadmConfigSpec

# --------------------------------------------------------------------------------------------
# the activity


class BootstrapRequest(BaseModel):
    """One machine's bootstrap. Names and ARNs only: the keys and token are read inside."""

    model_config = ConfigDict(frozen=True)

    cluster_name: str
    namespace: str = "default"
    region: str
    machine_name: str
    kind: BootstrapKind
    kubernetes_version: str
    kubeadm: KubeadmConfigSpec
    endpoint_host: str
    endpoint_port: int = 6443
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    service_domain: str = "cluster.local"
    # From ensure_cluster_pki.
    pki: ClusterPKIRefs
    # From ensure_bootstrap_token: required for joins; optional for init (kubeadm init then
    # creates that token itself, so the next machines can join at once).
    token_secret_arn: str | None = None
    additional_tags: tuple[tuple[str, str], ...] = ()
    # The cluster's id in AWS (contracts.names.cluster_id): the stored data is tagged as owned by it.
    # kubeadm's clusterName stays `cluster_name`. None (recorded before ids were namespaced): the
    # name.
    cluster_id: str | None = None


class BootstrapRefs(AwsResult):
    """Where the machine's bootstrap data is and how big things are; no secret in here."""

    secret_prefix: str
    secret_arns: tuple[str, ...]
    chunks: int
    rendered_bytes: int  # the cloud-config before gzip
    stored_bytes: int  # gzipped, what Secrets Manager holds
    user_data_bytes: int  # the boothook MIME document (no endpoint override)
    reused: bool = False


def bootstrap_request_for(
    cluster: ClusterSpec,
    *,
    machine_name: str,
    kind: BootstrapKind,
    endpoint_host: str,
    pki: ClusterPKIRefs,
    token_secret_arn: str | None = None,
    deployment: str | None = None,
    kubernetes_version: str | None = None,
) -> BootstrapRequest:
    """Build a BootstrapRequest from the cluster spec: the control plane's KubeadmConfigSpec for
    control-plane machines, the named MachineDeployment's for workers."""
    if kind == "join-worker":
        if deployment is None:
            raise ValueError("a worker needs its MachineDeployment's name")
        md = cluster.deployment(deployment)
        kubeadm, version, tags = md.bootstrap, md.version, md.machine_template.additional_tags
    else:
        cp = cluster.control_plane
        kubeadm, version, tags = cp.kubeadm, cp.version, cp.machine_template.additional_tags
    return BootstrapRequest(
        cluster_name=cluster.name,
        namespace=cluster.namespace,
        region=cluster.region,
        machine_name=machine_name,
        kind=kind,
        kubernetes_version=kubernetes_version or version,
        kubeadm=kubeadm,
        endpoint_host=cluster.control_plane_endpoint_host or endpoint_host,
        endpoint_port=cluster.control_plane_endpoint_port,
        pod_cidrs=cluster.network.pod_cidrs,
        service_cidrs=cluster.network.service_cidrs,
        service_domain=cluster.network.service_domain,
        pki=pki,
        token_secret_arn=token_secret_arn,
        additional_tags=tuple(cluster.additional_tags) + tuple(tags),
    )


@aws_activity
def prepare_bootstrap_data(req: BootstrapRequest) -> BootstrapRefs:
    """Read the PKI (and token) from Secrets Manager, render the cloud-config, store it gzipped
    and chunked under a fresh unguessable prefix. Idempotent: a retry finds the machine's
    complete set by its tags and returns it instead of storing another."""
    client = sm.client(req.region)
    existing = bootstrap_data.find_bootstrap_data(
        client, req.namespace, req.cluster_name, req.machine_name, owner=req.cluster_id
    )
    if existing is not None:
        return _refs(existing, req.region, reused=True)
    # A retry may follow an attempt that stored a copy ListSecrets does not show yet.
    idempotent.before_create(f"bootstrap data of {req.machine_name}")

    token = token_secrets.read_bootstrap_token(client, req.token_secret_arn) if req.token_secret_arn else None
    if req.kind != "init" and token is None:
        raise BootstrapError(f"{req.kind} for {req.machine_name} needs token_secret_arn")
    pki = sm.read_cluster_pki(client, req.pki) if req.kind != "join-worker" else None
    user_values = {
        (name, key): user_secrets.read_value(req.region, req.namespace, req.cluster_name, name, key)
        for name, key in secret_refs(req.kubeadm)
    }
    rendered = render_cloud_config(
        RenderInput(
            kind=req.kind,
            kubeadm=req.kubeadm,
            pki=pki,
            secrets=user_values,
            inputs=KubeadmInputs(
                cluster_name=req.cluster_name,
                kubernetes_version=req.kubernetes_version,
                endpoint_host=req.endpoint_host,
                endpoint_port=req.endpoint_port,
                pod_cidrs=req.pod_cidrs,
                service_cidrs=req.service_cidrs,
                service_domain=req.service_domain,
                ca_cert_hash=req.pki.ca_cert_hash,
                token=token,
            ),
        )
    )
    data = compress(rendered)
    stored = bootstrap_data.store_bootstrap_data(
        client,
        namespace=req.namespace,
        cluster_name=req.cluster_name,
        machine_name=req.machine_name,
        data=data,
        rendered_bytes=len(rendered.encode()),
        additional_tags=req.additional_tags,
        owner=req.cluster_id,
    )
    refs = _refs(stored, req.region)
    activity.logger.info(
        "stored bootstrap data for %s (%s): %d bytes rendered, %d stored in %d chunk(s), user data %d bytes",
        req.machine_name,
        req.kind,
        refs.rendered_bytes,
        refs.stored_bytes,
        refs.chunks,
        refs.user_data_bytes,
    )
    return refs


def _refs(stored: bootstrap_data.StoredBootstrapData, region: str, reused: bool = False) -> BootstrapRefs:
    chunks = len(stored.secret_arns)
    user_data = render_user_data(secret_prefix=stored.secret_prefix, chunks=chunks, region=region)
    return BootstrapRefs(
        secret_prefix=stored.secret_prefix,
        secret_arns=stored.secret_arns,
        chunks=chunks,
        rendered_bytes=stored.rendered_bytes,
        stored_bytes=stored.stored_bytes,
        user_data_bytes=len(user_data.encode()),
        reused=reused,
    )
