"""The manifest resolver's second half (a mixin of `_Resolver` in loader.py): machine templates,
the control plane, machine deployments, health checks and addons."""

from __future__ import annotations

import yaml
from pydantic import ValidationError

from capt.rules import versions
from capt.spec import validation as v
from capt.spec.addon_kinds import ClusterResourceSetDoc, read_cluster_resource_set, read_config_map
from capt.spec.aws_kinds import AWSClusterDoc, read_aws_machine_template
from capt.spec.capi_kinds import (
    CLUSTER_NAME_LABEL,
    CONTROL_PLANE_LABEL,
    CONTROL_PLANE_NAME_LABEL,
    DEPLOYMENT_NAME_LABEL,
    MachineDeploymentDoc,
    MachineHealthCheckDoc,
)
from capt.spec.documents import Doc
from capt.spec.kubeadm_kinds import (
    KubeadmControlPlaneDoc,
    read_kubeadm_config_template,
)
from capt.spec.models import (
    MACHINE_CONDITION_TYPES,
    AddonSpec,
    ControlPlaneSpec,
    HealthCheckSpec,
    KubeadmConfigSpec,
    MachineDeploymentSpec,
    MachineTemplate,
    RollingUpdate,
)
from capt.spec.refs import Ref
from capt.spec.secret_kinds import (
    CRS_SECRET_TYPE,
)


class _MachinesMixin:
    def _machine_template(
        self, owner: Doc, ref: Ref | None, ami_defaults: dict[str, str]
    ) -> MachineTemplate | None:
        doc = self._lookup(owner, ref)
        template = read_aws_machine_template(doc, ami_defaults) if doc else None
        if template is not None and doc is not None and self.cluster_tags:
            # The cluster's additionalTags land on the machines too: count them together.
            for key, err in v.tags_errors(dict(template.additional_tags), extra=len(self.cluster_tags)):
                if not key:
                    doc.problem(
                        "spec.template.spec.additionalTags", err + " (with the AWSCluster's additionalTags)"
                    )
        if doc is not None and template is not None and template.http_tokens == "optional":
            warning = (
                f"document {doc.index}: AWSMachineTemplate/{doc.name} "
                "spec.template.spec.instanceMetadataOptions.httpTokens is optional: IMDSv1 lets any "
                "process that can make a request from the node (an SSRF) read the node's credentials; "
                "capt's default is required"
            )
            if warning not in self.warnings:
                self.warnings.append(warning)
        return template

    def _control_plane(
        self, kcp: KubeadmControlPlaneDoc, ami_defaults: dict[str, str]
    ) -> ControlPlaneSpec | None:
        doc = kcp.doc
        if err := v.control_plane_replicas_error(kcp.replicas) or v.control_plane_size_error(kcp.replicas):
            doc.problem("spec.replicas", err)
        if err := v.label_name_error(doc.name, "KubeadmControlPlane"):
            doc.problem("metadata.name", err)
        surge_path = (
            "spec.rollout.strategy.rollingUpdate.maxSurge"
            if doc.has("spec.rollout.strategy.rollingUpdate.maxSurge")
            else "spec.rolloutStrategy.rollingUpdate.maxSurge"
        )
        if err := v.control_plane_max_surge_error(kcp.max_surge):
            doc.problem(surge_path, err)
        if kcp.version and (err := versions.manifest_version_error(kcp.version)):
            doc.problem("spec.version", err)
        template = self._machine_template(doc, kcp.infrastructure_ref, ami_defaults)
        if template is None or not kcp.version:
            return None
        return ControlPlaneSpec(
            name=doc.name,
            replicas=kcp.replicas,
            version=kcp.version,
            machine_template=template,
            kubeadm=kcp.kubeadm,
            max_surge=kcp.max_surge if kcp.max_surge in (0, 1) else 1,  # type: ignore[arg-type]
            rollout_after=kcp.rollout_after,
            certificates_expiry_days=kcp.certificates_expiry_days,
            node_drain_timeout_seconds=kcp.node_drain_timeout_seconds,
            remediation_max_retry=kcp.remediation_max_retry,
            remediation_retry_period_seconds=kcp.remediation_retry_period_seconds,
            remediation_min_healthy_period_seconds=kcp.remediation_min_healthy_period_seconds,
        )

    def _deployment(
        self,
        md: MachineDeploymentDoc,
        ami_defaults: dict[str, str],
        control_plane: ControlPlaneSpec | None,
        aws: AWSClusterDoc | None,
    ) -> MachineDeploymentSpec | None:
        doc = md.doc
        ok = True
        if err := v.deployment_replicas_error(md.replicas):
            doc.problem("spec.replicas", err)
            ok = False
        if err := v.label_name_error(doc.name, "MachineDeployment"):
            doc.problem("metadata.name", err)
        surge_path = f"{md.strategy_path}.rollingUpdate.maxSurge"
        unavailable_path = f"{md.strategy_path}.rollingUpdate.maxUnavailable"
        for value, path in ((md.max_surge, surge_path), (md.max_unavailable, unavailable_path)):
            if err := v.int_or_percent_error(value):
                doc.problem(path, err)
                ok = False
        if (
            ok
            and md.strategy_type == "RollingUpdate"
            and (err := v.rolling_update_error(md.max_surge, md.max_unavailable, md.replicas))
        ):
            doc.problem(f"{md.strategy_path}.rollingUpdate", err)
        version_err = md.version and (
            versions.manifest_version_error(md.version)
            or (control_plane and versions.worker_version_error(md.version, control_plane.version))
        )
        if version_err:
            doc.problem("spec.template.spec.version", version_err)
        if md.failure_domain and aws and aws.region and not md.failure_domain.startswith(aws.region):
            doc.problem(
                "spec.template.spec.failureDomain",
                f"{md.failure_domain!r} is not an availability zone of {aws.region}",
            )
        labels = {
            **md.template_labels,
            CLUSTER_NAME_LABEL: md.cluster_name or "",
            DEPLOYMENT_NAME_LABEL: doc.name,
        }
        if not md.selector.empty and not md.selector.matches(labels):
            doc.problem(
                "spec.selector",
                "does not match the machine template's labels (spec.template.metadata.labels)",
            )

        bootstrap_doc = self._lookup(doc, md.bootstrap_ref)
        bootstrap: KubeadmConfigSpec | None = (
            read_kubeadm_config_template(bootstrap_doc) if bootstrap_doc else None
        )
        if bootstrap_doc is not None:
            self._kubeadm_secrets(bootstrap_doc, "spec.template.spec")
        template = self._machine_template(doc, md.infrastructure_ref, ami_defaults)
        if template is None or bootstrap is None or bootstrap_doc is None or not md.version:
            return None
        if md.remediation_max_in_flight is not None and (
            err := v.int_or_percent_error(md.remediation_max_in_flight)
        ):
            doc.problem(md.remediation_path, err)
            md.remediation_max_in_flight = None
        try:
            rolling = RollingUpdate(max_surge=md.max_surge, max_unavailable=md.max_unavailable)  # type: ignore[arg-type]
        except ValidationError:
            rolling = RollingUpdate()
        return MachineDeploymentSpec(
            name=doc.name,
            replicas=md.replicas,
            version=md.version,
            machine_template=template,
            bootstrap=bootstrap,
            bootstrap_template_name=bootstrap_doc.name,
            failure_domain=md.failure_domain,
            strategy=md.strategy_type,  # type: ignore[arg-type]
            rolling_update=rolling,
            delete_policy=md.delete_policy,  # type: ignore[arg-type]
            min_ready_seconds=md.min_ready_seconds,
            progress_deadline_seconds=md.progress_deadline_seconds,
            revision_history_limit=md.revision_history_limit,
            paused=md.paused,
            labels=tuple(sorted(labels.items())),
            rollout_after=md.rollout_after,
            remediation_max_in_flight=md.remediation_max_in_flight,  # type: ignore[arg-type]
        )

    def _health_check(
        self,
        mhc: MachineHealthCheckDoc,
        cluster_name: str,
        kcp_doc: Doc | None,
        deployments: list[MachineDeploymentSpec],
    ) -> HealthCheckSpec | None:
        doc = mhc.doc
        if mhc.selector.empty:
            doc.problem("spec.selector", "must not be empty: say which machines this check covers")
            return None
        if err := v.int_or_percent_error(mhc.max_unhealthy):
            doc.problem(mhc.max_unhealthy_path, err)
            return None
        if mhc.max_in_flight is not None and (err := v.int_or_percent_error(mhc.max_in_flight)):
            doc.problem("spec.remediation.maxInFlight", err)
            return None
        covers_cp = False
        if kcp_doc is not None:
            cp_labels = {
                CLUSTER_NAME_LABEL: cluster_name,
                CONTROL_PLANE_LABEL: "",
                CONTROL_PLANE_NAME_LABEL: kcp_doc.name,
            }
            covers_cp = mhc.selector.matches(cp_labels)
        covered = tuple(md.name for md in deployments if mhc.selector.matches(dict(md.labels)))
        if not covers_cp and not covered:
            self.warnings.append(
                f"document {doc.index}: MachineHealthCheck/{doc.name} selects no machine of cluster {cluster_name}"
            )
        for c in mhc.unhealthy_machine_conditions:
            if c.type not in MACHINE_CONDITION_TYPES:
                self.warnings.append(
                    f"document {doc.index}: MachineHealthCheck/{doc.name}: capt's machines report no "
                    f"{c.type} condition (only {', '.join(MACHINE_CONDITION_TYPES)}): "
                    f"{c.type}={c.status} never matches"
                )
        return HealthCheckSpec(
            name=doc.name,
            selector=mhc.selector.match_labels,
            control_plane=covers_cp,
            machine_deployments=covered,
            unhealthy_conditions=tuple(mhc.unhealthy_conditions),
            unhealthy_machine_conditions=tuple(mhc.unhealthy_machine_conditions),
            remediation_template=mhc.remediation_template,
            max_unhealthy=mhc.max_unhealthy,  # type: ignore[arg-type]
            unhealthy_range=mhc.unhealthy_range,
            node_startup_timeout_seconds=mhc.node_startup_timeout_seconds,
            max_in_flight=mhc.max_in_flight,  # type: ignore[arg-type]
        )

    @staticmethod
    def _no_embedded_secrets(cm_doc: Doc, data: dict[str, str]) -> None:
        """A ConfigMap's documents are stored in workflow history: a Secret with values inside one
        is refused."""
        for key, text in data.items():
            try:
                embedded = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
            except yaml.YAMLError:
                continue  # not YAML: the addon activity reports it
            # An embedded Secret with only empty values (the CAPA template's EBS CSI
            # `aws-secret`, filled in later by the operator) carries nothing secret: allowed.
            if any(d.get("kind") == "Secret" and _has_values(d) for d in embedded):
                cm_doc.problem(
                    f"data.{key}",
                    "embeds a kind: Secret, whose values would be stored in workflow history: put "
                    "the Secret's documents in a Secret of type "
                    f"{CRS_SECRET_TYPE!r} and list it in the ClusterResourceSet as kind: Secret",
                )

    def _addons(self, cluster_doc: Doc) -> list[AddonSpec]:
        addons = []
        for crs_doc in sorted(
            (d for d in self.by_key.values() if d.kind == "ClusterResourceSet"), key=lambda d: d.index
        ):
            crs: ClusterResourceSetDoc = read_cluster_resource_set(crs_doc)
            # CAPI: an empty clusterSelector selects no cluster.
            if crs.cluster_selector.empty or not crs.cluster_selector.matches(cluster_doc.labels):
                self.warnings.append(
                    f"document {crs_doc.index}: ClusterResourceSet/{crs_doc.name} does not select cluster {cluster_doc.name}; ignored"
                )
                continue
            config_maps = []
            for resource, path in crs.resources:
                if resource.kind == "Secret":
                    # Its values are documents to apply, like a ConfigMap's; they stay out of the
                    # spec (the addon activity reads them from Secrets Manager).
                    if self._secret(crs_doc, resource.name, f"{path}.name") is not None:
                        secret_doc = self.by_key[("Secret", crs_doc.namespace, resource.name)]
                        if secret_doc.str("type") != CRS_SECRET_TYPE:
                            secret_doc.problem(
                                "type",
                                f"a ClusterResourceSet applies only Secrets of type {CRS_SECRET_TYPE!r} "
                                f"(got {secret_doc.str('type')!r})",
                            )
                    continue
                cm_doc = self._lookup(crs_doc, Ref(resource.kind, resource.name, crs_doc.namespace, path))
                if cm_doc is not None:
                    data = read_config_map(cm_doc)
                    self._no_embedded_secrets(cm_doc, data)
                    config_maps.append((resource.name, tuple(sorted(data.items()))))
            self.strict.append(crs_doc)
            addons.append(
                AddonSpec(
                    name=crs_doc.name,
                    strategy=crs.strategy,  # type: ignore[arg-type]
                    resources=tuple(r for r, _ in crs.resources),
                    config_maps=tuple(config_maps),
                )
            )
            text = "\n".join(doc for _, items in config_maps for _, doc in items)
            if "ebs.csi.aws.com" in text and "--k8s-tag-cluster-id" not in text:
                self.warnings.append(
                    f"document {crs_doc.index}: ClusterResourceSet/{crs_doc.name} deploys the EBS CSI driver "
                    "without --k8s-tag-cluster-id: its volumes will not be tagged kubernetes.io/cluster/<id>; "
                    "pass --k8s-tag-cluster-id=${CAPT_CLUSTER_ID}"
                )
        return addons


def _has_values(secret: dict) -> bool:
    """Whether a Secret object holds any non-empty value in data or stringData."""
    return any(
        value not in (None, "")
        for field in ("data", "stringData")
        if isinstance(secret.get(field), dict)
        for value in secret[field].values()
    )
