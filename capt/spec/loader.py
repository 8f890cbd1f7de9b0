"""CAPI manifests → one validated, immutable `ClusterSpec`.

    result = load_file("cluster.yaml", variables={"CLUSTER_NAME": "demo"})
    result.spec       # ClusterSpec
    result.warnings   # ignored kinds, unused objects, …

Besides `--var` and the environment, one variable is built in: `${CAPT_CLUSTER_ID}`, the
cluster's id in AWS (`contracts.names.cluster_id`: `<namespace>.<name>` of the manifest's Cluster),
for addons that must name the cluster as AWS knows it (the cloud controller manager's
`--cluster-name`, the EBS CSI driver's `--k8s-tag-cluster-id`). `--var CAPT_CLUSTER_ID=…`
overrides it (a cluster created before ids were namespaced has its name as its id); the
environment does not, so a value exported for one cluster never leaks into another.

Every problem in the manifest is collected and raised together as a `ManifestError`
(or `MissingVariablesError` when `${VAR}`s are unset) before anything is created.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from capt.contracts.names import cluster_id
from capt.spec import strict
from capt.spec import validation as v
from capt.spec.aws_kinds import AWSClusterDoc, read_aws_cluster
from capt.spec.capi_kinds import (
    ClusterDoc,
    read_cluster,
    read_machine_deployment,
    read_machine_health_check,
)
from capt.spec.documents import Doc, is_dns1123_label, parse_documents
from capt.spec.errors import ManifestError, Problem
from capt.spec.kubeadm_kinds import (
    read_kubeadm_control_plane,
)
from capt.spec.loader_machines import _MachinesMixin
from capt.spec.models import (
    ClusterSpec,
    NetworkSpec,
)
from capt.spec.refs import Ref
from capt.spec.secret_kinds import (
    SecretKeyRef,
    inline_secret_warnings,
    kubeadm_secret_refs,
    read_secret,
)
from capt.spec.variables import referenced_variables, substitute

CLUSTER_ID_VARIABLE = "CAPT_CLUSTER_ID"
_PLACEHOLDER = "capt-cluster-id-placeholder"


@dataclass
class LoadResult:
    spec: ClusterSpec
    warnings: list[str] = field(default_factory=list)
    # The values of every Secret document the cluster references (name -> key -> bytes): for the
    # CLI to store in Secrets Manager before the workflow starts; never part of `spec`.
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict, repr=False)
    # Where each ${VARIABLE} came from: "--var", "environment", "default" or "built-in".
    variables: dict[str, str] = field(default_factory=dict)


def load_file(
    path: str | Path, variables: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> LoadResult:
    return load_manifest(Path(path).read_text(), variables, env)


def load_manifest(
    text: str, variables: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> LoadResult:
    env = os.environ if env is None else env
    values = dict(variables or {})
    if CLUSTER_ID_VARIABLE not in values and CLUSTER_ID_VARIABLE in referenced_variables(text):
        values[CLUSTER_ID_VARIABLE] = manifest_cluster_id(text, values, env)
    sources: dict[str, str] = {}
    text = substitute(text, values, env, sources)
    if CLUSTER_ID_VARIABLE in sources and CLUSTER_ID_VARIABLE not in (variables or {}):
        sources[CLUSTER_ID_VARIABLE] = "built-in"
    result = _Resolver(text).resolve()
    result.variables = dict(sorted(sources.items()))
    return result


def manifest_cluster_id(text: str, values: Mapping[str, str], env: Mapping[str, str]) -> str:
    """`${CAPT_CLUSTER_ID}`'s built-in value: the id of the manifest's one Cluster, read after the
    other variables are substituted (its name is often `${CLUSTER_NAME}`). Empty when there is no
    single Cluster: loading then fails on that, with the real problem named."""
    text = substitute(text, {**values, CLUSTER_ID_VARIABLE: _PLACEHOLDER}, env)
    clusters = [d for d in parse_documents(text, [], []) if d.kind == "Cluster"]
    if len(clusters) != 1:
        return ""
    return cluster_id(clusters[0].namespace, clusters[0].name)


class _Resolver(_MachinesMixin):
    def __init__(self, text: str):
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.docs = parse_documents(text, self.problems, self.warnings)
        self.by_key: dict[tuple[str, str, str], Doc] = {}
        self.used: set[tuple[str, str, str]] = set()
        self.secrets: dict[str, dict[str, bytes]] = {}
        self.cluster_tags: dict[str, str] = {}
        self.strict: list[Doc] = []  # documents read for the cluster, besides those in `used`

    # ------------------------------------------------------------------------------------
    def resolve(self) -> LoadResult:
        if self.problems and not self.docs:
            raise ManifestError(self.problems, self.warnings)  # unreadable YAML: nothing more to say
        for doc in self.docs:
            key = (doc.kind, doc.namespace, doc.name)
            if key in self.by_key:
                first = self.by_key[key]
                doc.problem(
                    "metadata.name",
                    f"duplicate {doc.kind} {doc.namespace}/{doc.name} (first defined in document {first.index})",
                )
                continue
            self.by_key[key] = doc

        clusters = [d for d in self.by_key.values() if d.kind == "Cluster"]
        if len(clusters) != 1:
            self.problems.append(
                Problem(0, "", "", "", f"a manifest must hold exactly one Cluster, found {len(clusters)}")
            )
            raise ManifestError(self.problems, self.warnings)
        spec = self._build(clusters[0])

        for key, doc in self.by_key.items():
            if key not in self.used and doc.kind not in (
                "Cluster",
                "MachineHealthCheck",
                "ClusterResourceSet",
            ):
                self.warnings.append(
                    f"document {doc.index}: {doc.kind}/{doc.name} is not referenced by the cluster; ignored"
                )
        # Unknown fields, in every document the cluster was read from (a document with a problem
        # already may have been read only in part: its unknown fields wait for the next run).
        with_problems = {p.document for p in self.problems}
        read = {id(d) for d in [clusters[0], *self.strict]} | {
            id(d) for k, d in self.by_key.items() if k in self.used
        }
        for doc in self.by_key.values():
            strict.check(doc, read_fully=id(doc) in read and doc.index not in with_problems)
        if spec is not None and not self.problems and (err := _input_size_error(spec)):
            self.problems.append(Problem(0, "", "", "", err))
        if self.problems or spec is None:
            raise ManifestError(sorted(self.problems, key=lambda p: p.document), self.warnings)
        return LoadResult(spec=spec, warnings=self.warnings, secrets=self.secrets)

    # ------------------------------------------------------------------------------------
    def _secret(self, owner: Doc, name: str, path: str) -> dict[str, bytes] | None:
        """The values of Secret `name` (owner's namespace), or a problem at `path`."""
        key = ("Secret", owner.namespace, name)
        doc = self.by_key.get(key)
        if doc is None:
            owner.problem(
                path,
                f"Secret {owner.namespace}/{name} is not in the manifest (capt reads referenced "
                "Secrets from the manifest: add it as a v1 Secret document)",
            )
            return None
        self.used.add(key)
        if name not in self.secrets:
            self.secrets[name] = read_secret(doc)
        return self.secrets[name]

    def _kubeadm_secrets(self, doc: Doc, path: str) -> None:
        """Resolve a KubeadmConfigSpec's Secret references (each must name an existing key) and
        warn about secret material written inline."""
        ref: SecretKeyRef
        for ref in kubeadm_secret_refs(doc, path):
            values = self._secret(doc, ref.name, f"{ref.path}.name")
            if values is not None and ref.key not in values:
                doc.problem(
                    f"{ref.path}.key",
                    f"Secret {doc.namespace}/{ref.name} has no key {ref.key!r} (it has: "
                    f"{', '.join(sorted(values)) or 'none'})",
                )
        self.warnings.extend(inline_secret_warnings(doc, path))

    def _lookup(self, owner: Doc, ref: Ref | None) -> Doc | None:
        if ref is None:
            return None
        key = (ref.kind, ref.namespace, ref.name)
        doc = self.by_key.get(key)
        if doc is None:
            owner.problem(ref.path, f"{ref.kind} {ref.namespace}/{ref.name} is not in the manifest")
            return None
        self.used.add(key)
        return doc

    def _build(self, cluster_doc: Doc) -> ClusterSpec | None:
        cluster = read_cluster(cluster_doc)
        name, namespace = cluster_doc.name, cluster_doc.namespace
        if not is_dns1123_label(name):
            cluster_doc.problem(
                "metadata.name",
                f"{name!r}: a cluster name must be a DNS-1123 label (at most 63 lowercase letters, digits and '-')",
            )

        aws_doc = self._lookup(cluster_doc, cluster.infrastructure_ref)
        aws = read_aws_cluster(aws_doc) if aws_doc else None
        self.cluster_tags = dict(aws.additional_tags) if aws else {}
        ami_defaults = aws.ami_defaults if aws else {}

        kcp_doc = self._lookup(cluster_doc, cluster.control_plane_ref)
        kcp = read_kubeadm_control_plane(kcp_doc) if kcp_doc else None
        if kcp_doc is not None:
            self._kubeadm_secrets(kcp_doc, "spec.kubeadmConfigSpec")
        control_plane = self._control_plane(kcp, ami_defaults) if kcp else None

        network = self._network(cluster, aws)
        deployments = []
        for md_doc in sorted(
            (d for d in self.by_key.values() if d.kind == "MachineDeployment"), key=lambda d: d.index
        ):
            self.used.add((md_doc.kind, md_doc.namespace, md_doc.name))
            md = read_machine_deployment(md_doc)
            if md.cluster_name is not None and md.cluster_name != name:
                md_doc.problem(
                    "spec.clusterName", f"{md.cluster_name!r} is not the manifest's cluster {name!r}"
                )
                continue
            if md.template_cluster_name is not None and md.template_cluster_name != name:
                md_doc.problem(
                    "spec.template.spec.clusterName",
                    f"{md.template_cluster_name!r} is not the manifest's cluster {name!r}",
                )
            if (built := self._deployment(md, ami_defaults, control_plane, aws)) is not None:
                deployments.append(built)

        health_checks = []
        for mhc_doc in sorted(
            (d for d in self.by_key.values() if d.kind == "MachineHealthCheck"), key=lambda d: d.index
        ):
            mhc = read_machine_health_check(mhc_doc)
            if mhc.cluster_name is not None and mhc.cluster_name != name:
                mhc_doc.problem(
                    "spec.clusterName", f"{mhc.cluster_name!r} is not the manifest's cluster {name!r}"
                )
                continue
            self.strict.append(mhc_doc)
            if (built := self._health_check(mhc, name, kcp_doc, deployments)) is not None:
                health_checks.append(built)

        addons = self._addons(cluster_doc)

        if aws is None or control_plane is None or network is None:
            return None
        endpoint_host = cluster.endpoint_host or aws.endpoint_host
        endpoint_port = cluster.endpoint_port or aws.endpoint_port or 6443
        try:
            return ClusterSpec(
                name=name,
                namespace=namespace,
                region=aws.region or "",
                labels=tuple(sorted(cluster_doc.labels.items())),
                ssh_key_name=aws.ssh_key_name,
                control_plane_endpoint_host=endpoint_host,
                control_plane_endpoint_port=endpoint_port,
                network=network,
                load_balancer=aws.load_balancer,
                bastion=aws.bastion,
                additional_tags=tuple(sorted(aws.additional_tags.items())),
                control_plane=control_plane,
                machine_deployments=tuple(deployments),
                health_checks=tuple(health_checks),
                addons=tuple(addons),
                paused=cluster.paused,
            )
        except ValidationError as exc:
            for err in exc.errors():
                cluster_doc.problem(".".join(str(p) for p in err["loc"]), err["msg"])
            return None

    # ------------------------------------------------------------------------------------
    def _network(self, cluster: ClusterDoc, aws: AWSClusterDoc | None) -> NetworkSpec | None:
        doc = cluster.doc
        fields = dict(aws.network) if aws else {}
        if cluster.pod_cidrs:
            fields["pod_cidrs"] = tuple(cluster.pod_cidrs)
        if cluster.service_cidrs:
            fields["service_cidrs"] = tuple(cluster.service_cidrs)
        if cluster.service_domain:
            fields["service_domain"] = cluster.service_domain
        try:
            network = NetworkSpec(**fields)
        except ValidationError as exc:
            for err in exc.errors():
                doc.problem(".".join(str(p) for p in err["loc"]), err["msg"])
            return None

        net_path = "spec.networkSpec" if aws and aws.doc.has("spec.networkSpec") else "spec.network"
        aws_doc = aws.doc if aws else doc
        if err := v.vpc_cidr_error(network.vpc_cidr):
            aws_doc.problem(f"{net_path}.vpc.cidrBlock", err)
        for i, cidr in enumerate(network.pod_cidrs):
            path = f"spec.clusterNetwork.pods.cidrBlocks[{i}]"
            if err := v.network_error(cidr, "pod") or v.overlap_error(
                cidr, "pod CIDR", network.vpc_cidr, "VPC CIDR"
            ):
                doc.problem(path, err)
        for i, cidr in enumerate(network.service_cidrs):
            path = f"spec.clusterNetwork.services.cidrBlocks[{i}]"
            err = v.network_error(cidr, "service") or v.overlap_error(
                cidr, "service CIDR", network.vpc_cidr, "VPC CIDR"
            )
            for pod in network.pod_cidrs:
                err = err or v.overlap_error(cidr, "service CIDR", pod, "pod CIDR")
            if err:
                doc.problem(path, err)
        for i, subnet in enumerate(network.subnets):
            if subnet.cidr_block:
                path = f"{net_path}.subnets[{i}].cidrBlock"
                err = v.network_error(subnet.cidr_block, "subnet")
                if not network.vpc_id:
                    err = err or v.subnet_in_vpc_error(subnet.cidr_block, network.vpc_cidr)
                if err:
                    aws_doc.problem(path, err)
        for path, err in v.overlapping_cidrs(
            [
                (f"{net_path}.subnets[{i}].cidrBlock", sn.cidr_block)
                for i, sn in enumerate(network.subnets)
                if sn.cidr_block
            ]
        ):
            aws_doc.problem(path, err)
        if aws:
            for i, cidr in enumerate(aws.load_balancer.ingress_cidrs):
                if err := v.network_error(cidr, "load balancer ingress"):
                    aws.doc.problem(f"spec.controlPlaneLoadBalancer.ingressRules[{i}]", err)
            for i, cidr in enumerate(aws.bastion.allowed_cidrs):
                if err := v.network_error(cidr, "bastion allowed"):
                    aws.doc.problem(f"spec.bastion.allowedCIDRBlocks[{i}]", err)
        return network


MAX_WORKFLOW_INPUT = 256 * 1024  # the cluster spec travels in the workflow's input and every update


def _input_size_error(spec: ClusterSpec) -> str | None:
    """The spec must fit a workflow input comfortably; if not, say what made it large."""
    size = len(spec.model_dump_json())
    if size <= MAX_WORKFLOW_INPUT:
        return None
    parts: list[tuple[int, str]] = []
    for addon in spec.addons:
        for cm, entries in addon.config_maps:
            parts.append(
                (sum(len(t) for _, t in entries), f"ConfigMap {cm} of ClusterResourceSet {addon.name}")
            )
    parts.append(
        (len(spec.control_plane.kubeadm.model_dump_json()), "the KubeadmControlPlane's kubeadmConfigSpec")
    )
    for md in spec.machine_deployments:
        parts.append((len(md.bootstrap.model_dump_json()), f"the KubeadmConfigTemplate of {md.name}"))
    largest = ", ".join(f"{what} ({n // 1024} KiB)" for n, what in sorted(parts, reverse=True)[:3])
    return (
        f"the cluster's spec is {size // 1024} KiB; a workflow input may be at most "
        f"{MAX_WORKFLOW_INPUT // 1024} KiB. Largest parts: {largest}. Move large files to a Secret "
        "(contentFrom) or shrink the addons"
    )
