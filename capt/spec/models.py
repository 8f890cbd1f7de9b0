"""The canonical, validated, immutable description of one cluster.

`spec.loader` turns CAPI manifests (any supported apiVersion) into a `ClusterSpec`; every
other part of capt — the network plan, the workflows, the activities, the CLI — reads only
these models, never raw YAML. They are frozen pydantic models so that a spec passed into a
workflow cannot be changed behind its back, and they serialise with the Temporal pydantic
data converter as plain JSON (snake_case field names).

Nothing here holds a secret: keys, tokens and kubeconfigs live in AWS Secrets Manager and
workflows carry only their ARNs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from capt.rules.base import Frozen
from capt.rules.control_plane_remediation import DEFAULT_MIN_HEALTHY_PERIOD_SECONDS
from capt.rules.intstr import IntOrPercent

# Calico's rules, as CAPA adds them when the manifest names no CNI rules.
DEFAULT_CNI_RULES: tuple[dict[str, Any], ...] = (
    {"description": "bgp (calico)", "protocol": "tcp", "from_port": 179, "to_port": 179},
    {"description": "IP-in-IP (calico)", "protocol": "4", "from_port": -1, "to_port": 65535},
)


# CAPI's DefaultMinHealthyPeriod (KubeadmControlPlane remediation): 1 hour.


class IngressRule(Frozen):
    description: str = ""
    protocol: str  # "tcp", "udp", "icmp", "-1" (all) or an IP protocol number such as "4"
    from_port: int
    to_port: int


class SubnetSpec(Frozen):
    """A subnet named in the manifest (AWSCluster.spec.network.subnets)."""

    id: str | None = None
    cidr_block: str | None = None
    availability_zone: str | None = None
    is_public: bool = False


class NetworkSpec(Frozen):
    vpc_cidr: str = "10.0.0.0/16"
    # An existing VPC we use but never modify or delete.
    vpc_id: str | None = None
    availability_zone_usage_limit: int = 3
    availability_zone_selection: Literal["Ordered", "Random"] = "Ordered"
    subnets: tuple[SubnetSpec, ...] = ()
    cni_ingress_rules: tuple[IngressRule, ...] = tuple(IngressRule(**r) for r in DEFAULT_CNI_RULES)
    pod_cidrs: tuple[str, ...] = ("192.168.0.0/16",)
    # kubeadm's default service subnet.
    service_cidrs: tuple[str, ...] = ("10.96.0.0/12",)
    service_domain: str = "cluster.local"


class LoadBalancerSpec(Frozen):
    type: Literal["classic", "nlb"] = "classic"
    scheme: Literal["internet-facing", "internal"] = "internet-facing"
    name: str | None = None
    # Classic ELB: TCP health check; NLB: HTTPS /readyz unless the manifest says otherwise.
    health_check_protocol: Literal["TCP", "HTTP", "HTTPS", "SSL"] | None = None
    cross_zone: bool = True
    ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    additional_security_groups: tuple[str, ...] = ()
    port: int = 6443


class BastionSpec(Frozen):
    enabled: bool = False
    allowed_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    instance_type: str = "t3.micro"
    ami: str | None = None


class RootVolume(Frozen):
    size_gib: int = 80
    type: str = "gp3"
    # Stricter than CAPA (which leaves it unencrypted unless asked): encrypted by default.
    encrypted: bool = True
    iops: int | None = None
    throughput: int | None = None


class AMISelector(Frozen):
    id: str | None = None
    # CAPA's lookup: the newest image whose name matches the format (Go template syntax, as
    # AWSCluster/AWSMachineTemplate write it) owned by the CAPA account.
    lookup_format: str = "capa-ami-{{.BaseOS}}-?{{.K8sVersion}}-*"
    lookup_org: str = "258751437250"
    lookup_base_os: str = "ubuntu-24.04"

    def name_pattern(self, kubernetes_version: str) -> str:
        """The DescribeImages name filter for a version; CAPA drops the leading "v"."""
        pattern = self.lookup_format
        for placeholder, value in (
            ("{{.BaseOS}}", self.lookup_base_os),
            ("{{.K8sVersion}}", kubernetes_version.removeprefix("v")),
        ):
            pattern = pattern.replace(placeholder, value)
        return pattern


class MachineTemplate(Frozen):
    """AWSMachineTemplate.spec.template.spec, reduced to what an instance needs."""

    name: str
    instance_type: str
    ami: AMISelector = AMISelector()
    iam_instance_profile: str | None = None
    ssh_key_name: str | None = None
    additional_security_groups: tuple[str, ...] = ()
    root_volume: RootVolume = RootVolume()
    # IMDSv2 required, hop limit 1 by default (stricter than CAPA's "optional").
    http_tokens: Literal["required", "optional"] = "required"
    http_put_response_hop_limit: int = 1
    public_ip: bool = False
    subnet_id: str | None = None
    additional_tags: tuple[tuple[str, str], ...] = ()
    spot: bool = False


class KubeadmConfigSpec(Frozen):
    """KubeadmConfigSpec as the bootstrap provider sees it.

    kubeadm's own documents are kept as the manifest wrote them (camelCase dicts); the
    bootstrap renderer fills in what capt owns (endpoint, version, CIDRs, tokens).
    """

    cluster_configuration: dict[str, Any] = Field(default_factory=dict)
    init_configuration: dict[str, Any] = Field(default_factory=dict)
    join_configuration: dict[str, Any] = Field(default_factory=dict)
    files: tuple[dict[str, Any], ...] = ()
    pre_kubeadm_commands: tuple[str, ...] = ()
    post_kubeadm_commands: tuple[str, ...] = ()
    users: tuple[dict[str, Any], ...] = ()
    ntp: dict[str, Any] | None = None
    mounts: tuple[tuple[str, ...], ...] = ()
    format: Literal["cloud-config", "ignition"] = "cloud-config"
    use_experimental_retry_join: bool = False


class ControlPlaneSpec(Frozen):
    """KubeadmControlPlane."""

    name: str
    replicas: int = 1
    version: str
    machine_template: MachineTemplate
    kubeadm: KubeadmConfigSpec = KubeadmConfigSpec()
    # Rollout: maxSurge is 0 or 1 for a stacked-etcd control plane.
    max_surge: int = 1
    rollout_after: str | None = None
    # rolloutBefore.certificatesExpiryDays: replace machines whose kubeadm certificates (one year
    # from the machine's creation) expire within this many days.
    certificates_expiry_days: int | None = None
    node_drain_timeout_seconds: int | None = None
    # Remediation knobs (KCP spec.remediation / v1beta2 spec.remediation).
    remediation_max_retry: int | None = None
    remediation_retry_period_seconds: int = 0
    # KCP spec.remediationStrategy.minHealthyPeriod / v1beta2 spec.remediation.minHealthyPeriodSeconds.
    remediation_min_healthy_period_seconds: int = DEFAULT_MIN_HEALTHY_PERIOD_SECONDS


class RollingUpdate(Frozen):
    max_surge: IntOrPercent = 1
    max_unavailable: IntOrPercent = 0


class MachineDeploymentSpec(Frozen):
    name: str
    replicas: int = 1
    version: str
    machine_template: MachineTemplate
    bootstrap: KubeadmConfigSpec
    bootstrap_template_name: str
    failure_domain: str | None = None
    strategy: Literal["RollingUpdate", "OnDelete"] = "RollingUpdate"
    rolling_update: RollingUpdate = RollingUpdate()
    delete_policy: Literal["Random", "Newest", "Oldest"] = "Random"
    min_ready_seconds: int = 0
    progress_deadline_seconds: int = 600
    revision_history_limit: int = 1
    paused: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    rollout_after: str | None = None
    # MachineSet remediation: at most this many (int or percent of replicas) remediated at once;
    # None: the health check's maxInFlight, else unlimited.
    remediation_max_in_flight: IntOrPercent | None = None


# The machine conditions (CAPI v1beta2 Machine condition types) capt's machines report, derived
# from their status by capt/workflows/health/detection.py (machine_conditions); an unhealthyMachineConditions
# entry naming another type never matches (the loader warns).
MACHINE_CONDITION_TYPES = ("BootstrapConfigReady", "InfrastructureReady", "NodeReady", "UpToDate", "Deleting")


class UnhealthyCondition(Frozen):
    type: str
    status: str
    timeout_seconds: int


class RemediationTemplateRef(Frozen):
    """MachineHealthCheck spec.remediationTemplate / v1beta2 spec.remediation.templateRef: remediation
    is left to another system. capt records an external remediation request per unhealthy machine
    (the health workflow's status) and does not replace the machine."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None


class HealthCheckSpec(Frozen):
    """MachineHealthCheck, with its selector already resolved to the machine sets it covers."""

    name: str
    selector: tuple[tuple[str, str], ...] = ()
    # Which of the cluster's machine owners the selector matches.
    control_plane: bool = False
    machine_deployments: tuple[str, ...] = ()
    unhealthy_conditions: tuple[UnhealthyCondition, ...] = ()
    # Machine conditions (v1beta1 spec.unhealthyMachineConditions, v1beta2
    # spec.checks.unhealthyMachineConditions), judged on what capt's machine status carries
    # (capt/workflows/health/detection.py (machine_conditions)).
    unhealthy_machine_conditions: tuple[UnhealthyCondition, ...] = ()
    max_unhealthy: IntOrPercent = "100%"
    unhealthy_range: tuple[int, int] | None = None
    node_startup_timeout_seconds: int = 600
    max_in_flight: IntOrPercent | None = None
    remediation_enabled: bool = True
    remediation_template: RemediationTemplateRef | None = None


class AddonResource(Frozen):
    kind: Literal["ConfigMap", "Secret"]
    name: str


class AddonSpec(Frozen):
    """ClusterResourceSet whose selector matches this cluster, with the ConfigMaps it applies."""

    name: str
    strategy: Literal["ApplyOnce", "Reconcile"] = "ApplyOnce"
    resources: tuple[AddonResource, ...] = ()
    # ConfigMap name -> {key -> document text}
    config_maps: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    # Secret resource name -> the version `capt apply` stored (Secrets Manager's VersionId, not
    # the value): a changed Secret changes the addon's digest, so Reconcile applies it again.
    secret_versions: tuple[tuple[str, str], ...] = ()


class ClusterSpec(Frozen):
    name: str
    namespace: str = "default"
    region: str
    labels: tuple[tuple[str, str], ...] = ()
    ssh_key_name: str | None = None
    # Set when the manifest pins the endpoint; otherwise the load balancer's DNS name.
    control_plane_endpoint_host: str | None = None
    control_plane_endpoint_port: int = 6443
    network: NetworkSpec = NetworkSpec()
    load_balancer: LoadBalancerSpec = LoadBalancerSpec()
    bastion: BastionSpec = BastionSpec()
    additional_tags: tuple[tuple[str, str], ...] = ()
    # Default AMI lookup settings from AWSCluster.spec.imageLookup*.
    control_plane: ControlPlaneSpec
    machine_deployments: tuple[MachineDeploymentSpec, ...] = ()
    health_checks: tuple[HealthCheckSpec, ...] = ()
    addons: tuple[AddonSpec, ...] = ()
    paused: bool = False

    @property
    def key(self) -> str:
        """`<namespace>/<name>`: the cluster's identity in workflow ids."""
        return f"{self.namespace}/{self.name}"

    def deployment(self, name: str) -> MachineDeploymentSpec:
        for md in self.machine_deployments:
            if md.name == name:
                return md
        raise KeyError(name)
