"""Kubeadm kinds: KubeadmControlPlane and KubeadmConfigTemplate, across v1alpha3 … v1beta2."""

from __future__ import annotations

from dataclasses import dataclass

from capt.spec.documents import Doc
from capt.spec.models import DEFAULT_MIN_HEALTHY_PERIOD_SECONDS, KubeadmConfigSpec
from capt.spec.refs import Ref, read_ref


def read_kubeadm_config_spec(doc: Doc, path: str) -> KubeadmConfigSpec:
    fmt = doc.str(f"{path}.format", "cloud-config")
    if fmt not in ("cloud-config", "ignition"):
        doc.problem(f"{path}.format", f"must be cloud-config or ignition, got {fmt!r}")
        fmt = "cloud-config"
    elif fmt == "ignition":
        doc.problem(f"{path}.format", "ignition is not supported by capt yet; use cloud-config")
    files = []
    for i, f in enumerate(doc.list(f"{path}.files")):
        if not isinstance(f, dict) or not f.get("path"):
            doc.problem(f"{path}.files[{i}]", "needs a path")
            continue
        # contentFrom (a Secret reference) is kept as written: the loader resolves it and the
        # bootstrap activity reads the value from Secrets Manager (capt/spec/secret_kinds.py).
        files.append(f)
    users = [u for u in doc.list(f"{path}.users") if isinstance(u, dict)]
    mounts = tuple(tuple(str(x) for x in m) for m in doc.list(f"{path}.mounts") if isinstance(m, list))
    return KubeadmConfigSpec(
        cluster_configuration=doc.dict(f"{path}.clusterConfiguration"),
        init_configuration=doc.dict(f"{path}.initConfiguration"),
        join_configuration=doc.dict(f"{path}.joinConfiguration"),
        files=tuple(files),
        pre_kubeadm_commands=tuple(doc.str_list(f"{path}.preKubeadmCommands")),
        post_kubeadm_commands=tuple(doc.str_list(f"{path}.postKubeadmCommands")),
        users=tuple(users),
        ntp=doc.dict(f"{path}.ntp") or None,
        mounts=mounts,
        format=fmt,
        use_experimental_retry_join=doc.bool(f"{path}.useExperimentalRetryJoin", False),
    )


@dataclass
class KubeadmControlPlaneDoc:
    doc: Doc
    replicas: int
    version: str | None
    infrastructure_ref: Ref | None
    kubeadm: KubeadmConfigSpec
    max_surge: object  # validated later: must be 0 or 1
    rollout_after: str | None
    certificates_expiry_days: int | None
    node_drain_timeout_seconds: int | None
    remediation_max_retry: int | None
    remediation_retry_period_seconds: int
    remediation_min_healthy_period_seconds: int


def read_kubeadm_control_plane(doc: Doc) -> KubeadmControlPlaneDoc:
    # The infrastructure template moved: v1alpha3 spec.infrastructureTemplate,
    # v1alpha4/v1beta1 spec.machineTemplate.infrastructureRef,
    # v1beta2 spec.machineTemplate.spec.infrastructureRef.
    if doc.has("spec.machineTemplate.spec.infrastructureRef"):
        ref_path = "spec.machineTemplate.spec.infrastructureRef"
    elif doc.has("spec.machineTemplate.infrastructureRef"):
        ref_path = "spec.machineTemplate.infrastructureRef"
    elif doc.has("spec.infrastructureTemplate"):
        ref_path = "spec.infrastructureTemplate"
    else:
        ref_path = (
            "spec.machineTemplate.spec.infrastructureRef"
            if doc.at_least("v1beta2")
            else "spec.infrastructureTemplate"
            if doc.version == "v1alpha3"
            else "spec.machineTemplate.infrastructureRef"
        )
    infra = read_ref(doc, ref_path, ("AWSMachineTemplate",))

    # KubeadmControlPlane rolls out one way only (CAPI: RollingUpdate is the only strategy).
    for type_path in ("spec.rollout.strategy.type", "spec.rolloutStrategy.type"):
        strategy = doc.str(type_path)
        if strategy is not None and strategy != "RollingUpdate":
            doc.problem(
                type_path, f"must be RollingUpdate (the only KubeadmControlPlane strategy), got {strategy!r}"
            )
    if doc.has("spec.rollout.strategy.rollingUpdate.maxSurge"):
        max_surge = doc.raw("spec.rollout.strategy.rollingUpdate.maxSurge")
    else:
        max_surge = doc.raw("spec.rolloutStrategy.rollingUpdate.maxSurge", 1)
    rollout_after = (
        doc.str("spec.rollout.after") or doc.str("spec.rolloutAfter") or doc.str("spec.upgradeAfter")
    )

    drain: int | None = None
    if doc.has("spec.machineTemplate.spec.deletion.nodeDrainTimeoutSeconds"):
        drain = doc.int("spec.machineTemplate.spec.deletion.nodeDrainTimeoutSeconds", minimum=0)
    else:
        for path in ("spec.machineTemplate.nodeDrainTimeout", "spec.nodeDrainTimeout"):
            if doc.has(path):
                drain = doc.duration_seconds(path)
                break

    # rolloutBefore.certificatesExpiryDays: CAPI's minimum is 7; kubeadm's certificates last 365.
    expiry_days = doc.int("spec.rollout.before.certificatesExpiryDays", minimum=7, maximum=364)
    if expiry_days is None:
        expiry_days = doc.int("spec.rolloutBefore.certificatesExpiryDays", minimum=7, maximum=364)

    retry_period = 0
    if doc.has("spec.remediation.retryPeriodSeconds"):
        retry_period = doc.int("spec.remediation.retryPeriodSeconds", 0, minimum=0) or 0
    else:
        retry_period = doc.duration_seconds("spec.remediationStrategy.retryPeriod") or 0
    # CAPI's DefaultMinHealthyPeriod is 1h: a machine failing again within it after being a
    # replacement counts as a retry of that remediation.
    if doc.has("spec.remediation.minHealthyPeriodSeconds"):
        min_healthy = doc.int("spec.remediation.minHealthyPeriodSeconds", minimum=0)
    else:
        min_healthy = doc.duration_seconds("spec.remediationStrategy.minHealthyPeriod")
    if min_healthy is None:
        min_healthy = DEFAULT_MIN_HEALTHY_PERIOD_SECONDS
    max_retry = doc.int("spec.remediation.maxRetry", minimum=0)
    if max_retry is None:
        max_retry = doc.int("spec.remediationStrategy.maxRetry", minimum=0)

    return KubeadmControlPlaneDoc(
        doc=doc,
        replicas=doc.replicas(),
        version=doc.str("spec.version", required=True),
        infrastructure_ref=infra,
        kubeadm=read_kubeadm_config_spec(doc, "spec.kubeadmConfigSpec"),
        max_surge=max_surge,
        rollout_after=rollout_after,
        certificates_expiry_days=expiry_days,
        node_drain_timeout_seconds=drain,
        remediation_max_retry=max_retry,
        remediation_retry_period_seconds=retry_period,
        remediation_min_healthy_period_seconds=min_healthy,
    )


def read_kubeadm_config_template(doc: Doc) -> KubeadmConfigSpec:
    return read_kubeadm_config_spec(doc, "spec.template.spec")
