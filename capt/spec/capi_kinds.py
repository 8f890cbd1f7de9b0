"""Core CAPI kinds: Cluster, MachineDeployment, MachineHealthCheck, across v1alpha3 … v1beta2."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from capt.spec.documents import Doc
from capt.spec.durations import parse_duration
from capt.spec.models import RemediationTemplateRef, UnhealthyCondition
from capt.spec.refs import Ref, read_ref

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
CONTROL_PLANE_LABEL = "cluster.x-k8s.io/control-plane"
CONTROL_PLANE_NAME_LABEL = "cluster.x-k8s.io/control-plane-name"


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    # (key, operator, values)
    match_expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels):
            return False
        for key, op, values in self.match_expressions:
            present = key in labels
            if op == "In" and (not present or labels[key] not in values):
                return False
            if op == "NotIn" and present and labels[key] in values:
                return False
            if op == "Exists" and not present:
                return False
            if op == "DoesNotExist" and present:
                return False
        return True


def read_selector(doc: Doc, path: str) -> LabelSelector:
    labels = doc.str_map(f"{path}.matchLabels")
    expressions = []
    for i, expr in enumerate(doc.list(f"{path}.matchExpressions")):
        p = f"{path}.matchExpressions[{i}]"
        if not isinstance(expr, dict) or "key" not in expr or "operator" not in expr:
            doc.problem(p, "needs key and operator")
            continue
        op = expr["operator"]
        values = tuple(str(v) for v in expr.get("values") or [])
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            doc.problem(f"{p}.operator", f"must be In, NotIn, Exists or DoesNotExist, got {op!r}")
            continue
        if op in ("In", "NotIn") and not values:
            doc.problem(f"{p}.values", f"must not be empty with operator {op}")
            continue
        expressions.append((str(expr["key"]), op, values))
    return LabelSelector(tuple(sorted(labels.items())), tuple(expressions))


@dataclass
class ClusterDoc:
    doc: Doc
    pod_cidrs: list[str]
    service_cidrs: list[str]
    service_domain: str | None
    control_plane_ref: Ref | None
    infrastructure_ref: Ref | None
    endpoint_host: str | None
    endpoint_port: int | None
    paused: bool


def read_cluster(doc: Doc) -> ClusterDoc:
    if doc.has("spec.topology"):
        doc.problem(
            "spec.topology",
            "ClusterClass-based (managed topology) clusters are not supported; write the objects out",
        )
    return ClusterDoc(
        doc=doc,
        pod_cidrs=doc.str_list("spec.clusterNetwork.pods.cidrBlocks"),
        service_cidrs=doc.str_list("spec.clusterNetwork.services.cidrBlocks"),
        service_domain=doc.str("spec.clusterNetwork.serviceDomain"),
        control_plane_ref=read_ref(doc, "spec.controlPlaneRef", ("KubeadmControlPlane",)),
        infrastructure_ref=read_ref(doc, "spec.infrastructureRef", ("AWSCluster",)),
        endpoint_host=doc.str("spec.controlPlaneEndpoint.host") or None,
        endpoint_port=doc.int("spec.controlPlaneEndpoint.port", minimum=0) or None,
        paused=doc.bool("spec.paused", False),
    )


@dataclass
class MachineDeploymentDoc:
    doc: Doc
    cluster_name: str | None
    replicas: int
    version: str | None
    bootstrap_ref: Ref | None
    infrastructure_ref: Ref | None
    failure_domain: str | None
    selector: LabelSelector
    template_labels: dict[str, str]
    strategy_type: str
    max_surge: object
    max_unavailable: object
    delete_policy: str
    min_ready_seconds: int
    progress_deadline_seconds: int
    revision_history_limit: int
    paused: bool
    rollout_after: str | None
    template_cluster_name: str | None = None
    strategy_path: str = "spec.strategy"
    delete_policy_path: str = "spec.strategy.rollingUpdate.deletePolicy"
    # MachineSet remediation (v1beta1 spec.strategy.remediation / v1beta2 spec.remediation).
    remediation_max_in_flight: object | None = None
    remediation_path: str = "spec.strategy.remediation.maxInFlight"
    extra: dict = field(default_factory=dict)


def read_machine_deployment(doc: Doc) -> MachineDeploymentDoc:
    t = "spec.template.spec"
    # v1beta2 moved the strategy under spec.rollout and the delete policy to spec.deletion.order.
    strategy_path = "spec.rollout.strategy" if doc.has("spec.rollout.strategy") else "spec.strategy"
    strategy_type = doc.str(f"{strategy_path}.type", "RollingUpdate")
    if strategy_type not in ("RollingUpdate", "OnDelete"):
        doc.problem(f"{strategy_path}.type", f"must be RollingUpdate or OnDelete, got {strategy_type!r}")
        strategy_type = "RollingUpdate"
    if doc.has("spec.deletion.order"):
        delete_path = "spec.deletion.order"
    else:
        delete_path = "spec.strategy.rollingUpdate.deletePolicy"
    delete_policy = doc.str(delete_path, "Random")
    if delete_policy not in ("Random", "Newest", "Oldest"):
        doc.problem(delete_path, f"must be Random, Newest or Oldest, got {delete_policy!r}")
        delete_policy = "Random"
    min_ready = doc.int(f"{t}.minReadySeconds", minimum=0)
    if min_ready is None:
        min_ready = doc.int("spec.minReadySeconds", 0, minimum=0) or 0
    remediation_path = (
        "spec.remediation.maxInFlight"
        if doc.has("spec.remediation")
        else "spec.strategy.remediation.maxInFlight"
    )
    return MachineDeploymentDoc(
        doc=doc,
        cluster_name=doc.str("spec.clusterName", required=True),
        template_cluster_name=doc.str(f"{t}.clusterName"),
        replicas=doc.replicas(),
        version=doc.str(f"{t}.version", required=True),
        bootstrap_ref=read_ref(doc, f"{t}.bootstrap.configRef", ("KubeadmConfigTemplate",)),
        infrastructure_ref=read_ref(doc, f"{t}.infrastructureRef", ("AWSMachineTemplate",)),
        failure_domain=doc.str(f"{t}.failureDomain") or None,
        selector=read_selector(doc, "spec.selector"),
        template_labels=doc.str_map("spec.template.metadata.labels"),
        strategy_type=strategy_type,
        max_surge=doc.raw(f"{strategy_path}.rollingUpdate.maxSurge", 1),
        max_unavailable=doc.raw(f"{strategy_path}.rollingUpdate.maxUnavailable", 0),
        delete_policy=delete_policy,
        min_ready_seconds=min_ready,
        progress_deadline_seconds=doc.int("spec.progressDeadlineSeconds", 600, minimum=1) or 600,
        revision_history_limit=doc.int("spec.revisionHistoryLimit", 1, minimum=0) or 1,
        paused=doc.bool("spec.paused", False),
        rollout_after=doc.str("spec.rollout.after") or doc.str("spec.rolloutAfter"),
        strategy_path=strategy_path,
        delete_policy_path=delete_path,
        remediation_max_in_flight=doc.raw(remediation_path),
        remediation_path=remediation_path,
    )


@dataclass
class MachineHealthCheckDoc:
    doc: Doc
    cluster_name: str | None
    selector: LabelSelector
    unhealthy_conditions: list[UnhealthyCondition]
    max_unhealthy: object
    max_unhealthy_path: str
    unhealthy_range: tuple[int, int] | None
    node_startup_timeout_seconds: int
    max_in_flight: object | None
    unhealthy_machine_conditions: list[UnhealthyCondition] = field(default_factory=list)
    remediation_template: RemediationTemplateRef | None = None


def _remediation_template(doc: Doc, path: str) -> RemediationTemplateRef | None:
    if not doc.has(path):
        return None
    kind, name, api_version = doc.str(f"{path}.kind"), doc.str(f"{path}.name"), doc.str(f"{path}.apiVersion")
    namespace = doc.str(f"{path}.namespace") if doc.has(f"{path}.namespace") else None
    missing = [f for f, v in (("apiVersion", api_version), ("kind", kind), ("name", name)) if not v]
    if missing:
        doc.problem(path, f"needs {', '.join(missing)}")
        return None
    return RemediationTemplateRef(api_version=api_version, kind=kind, name=name, namespace=namespace)  # type: ignore[arg-type]


# Machine conditions an unhealthyMachineConditions entry may not name (CAPI's validation: the
# health check's own conditions and the summaries built from them).
FORBIDDEN_MACHINE_CONDITIONS = (
    "Ready",
    "Available",
    "HealthCheckSucceeded",
    "OwnerRemediated",
    "ExternallyRemediated",
)
CONDITION_STATUSES = ("True", "False", "Unknown")


def _machine_conditions(doc: Doc, path: str, *, seconds: bool) -> list[UnhealthyCondition]:
    """v1beta1 spec.unhealthyMachineConditions[] {type, status, timeout: duration} or v1beta2
    spec.checks.unhealthyMachineConditions[] {type, status, timeoutSeconds}."""
    out: list[UnhealthyCondition] = []
    for i, c in enumerate(doc.list(path)):
        p = f"{path}[{i}]"
        if not isinstance(c, dict) or not c.get("type") or not c.get("status"):
            doc.problem(p, "needs type, status and " + ("timeoutSeconds" if seconds else "timeout"))
            continue
        if str(c["type"]) in FORBIDDEN_MACHINE_CONDITIONS:
            doc.problem(f"{p}.type", f"must not be one of: {', '.join(FORBIDDEN_MACHINE_CONDITIONS)}")
            continue
        if str(c["status"]) not in CONDITION_STATUSES:
            doc.problem(f"{p}.status", f"must be one of True, False, Unknown, got {c['status']!r}")
            continue
        if seconds:
            timeout = c.get("timeoutSeconds", 0)
            if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
                doc.problem(f"{p}.timeoutSeconds", f"must be a non-negative integer, got {timeout!r}")
                continue
        else:
            try:
                timeout = int(parse_duration(str(c.get("timeout", ""))))
            except ValueError as exc:
                doc.problem(f"{p}.timeout", str(exc))
                continue
        out.append(UnhealthyCondition(type=str(c["type"]), status=str(c["status"]), timeout_seconds=timeout))
    return out


def read_machine_health_check(doc: Doc) -> MachineHealthCheckDoc:
    conditions: list[UnhealthyCondition] = []
    if doc.has("spec.checks") or doc.at_least("v1beta2"):
        # v1beta2: spec.checks.{nodeStartupTimeoutSeconds, unhealthyNodeConditions[].timeoutSeconds},
        # spec.remediation.triggerIf.{unhealthyLessThanOrEqualTo, unhealthyInRange}
        for i, c in enumerate(doc.list("spec.checks.unhealthyNodeConditions")):
            p = f"spec.checks.unhealthyNodeConditions[{i}]"
            if not isinstance(c, dict) or not c.get("type") or not c.get("status"):
                doc.problem(p, "needs type and status")
                continue
            timeout = c.get("timeoutSeconds", c.get("unhealthyTimeoutSeconds", 0))
            if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
                doc.problem(f"{p}.timeoutSeconds", f"must be a non-negative integer, got {timeout!r}")
                continue
            conditions.append(
                UnhealthyCondition(type=str(c["type"]), status=str(c["status"]), timeout_seconds=timeout)
            )
        startup = doc.int("spec.checks.nodeStartupTimeoutSeconds", 600, minimum=0)
        max_path = "spec.remediation.triggerIf.unhealthyLessThanOrEqualTo"
        range_path = "spec.remediation.triggerIf.unhealthyInRange"
        in_flight = doc.raw("spec.remediation.maxInFlight")
        machine_conditions = _machine_conditions(doc, "spec.checks.unhealthyMachineConditions", seconds=True)
        template = _remediation_template(doc, "spec.remediation.templateRef")
    else:
        for i, c in enumerate(doc.list("spec.unhealthyConditions")):
            p = f"spec.unhealthyConditions[{i}]"
            if not isinstance(c, dict) or not c.get("type") or not c.get("status"):
                doc.problem(p, "needs type, status and timeout")
                continue
            try:
                timeout = int(parse_duration(str(c.get("timeout", ""))))
            except ValueError as exc:
                doc.problem(f"{p}.timeout", str(exc))
                continue
            conditions.append(
                UnhealthyCondition(type=str(c["type"]), status=str(c["status"]), timeout_seconds=timeout)
            )
        startup = doc.duration_seconds("spec.nodeStartupTimeout")
        if startup is None:
            startup = 600
        max_path = "spec.maxUnhealthy"
        range_path = "spec.unhealthyRange"
        in_flight = None
        machine_conditions = _machine_conditions(doc, "spec.unhealthyMachineConditions", seconds=False)
        template = _remediation_template(doc, "spec.remediationTemplate")
    unhealthy_range = None
    if (text := doc.str(range_path)) is not None:
        unhealthy_range = parse_unhealthy_range(text)
        if unhealthy_range is None:
            doc.problem(range_path, f"{text!r} must look like '[min-max]' with min <= max")
    return MachineHealthCheckDoc(
        doc=doc,
        cluster_name=doc.str("spec.clusterName", required=True),
        selector=read_selector(doc, "spec.selector"),
        unhealthy_conditions=conditions,
        max_unhealthy=doc.raw(max_path, "100%"),
        max_unhealthy_path=max_path,
        unhealthy_range=unhealthy_range,
        node_startup_timeout_seconds=startup if startup is not None else 600,
        max_in_flight=in_flight,
        unhealthy_machine_conditions=machine_conditions,
        remediation_template=template,
    )


def parse_unhealthy_range(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"\[(\d+)-(\d+)\]", text.strip())
    if not m:
        return None
    low, high = int(m.group(1)), int(m.group(2))
    return (low, high) if low <= high else None
