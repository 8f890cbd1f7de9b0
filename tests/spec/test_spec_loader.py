"""The manifest loader: the real CAPA template, every API-version shape, defaults, and a
table of bad manifests each rejected with a message naming document, kind, name and field."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pydantic
import pytest
import yaml

from capt.spec.errors import ManifestError, MissingVariablesError
from capt.spec.loader import load_file, load_manifest
from tests.support.paths import CAPA_TEMPLATE, QUICKSTART

CLUSTERCTL_VARS = {
    "CLUSTER_NAME": "capa-demo",
    "AWS_REGION": "us-west-2",
    "AWS_SSH_KEY_NAME": "default",
    "AWS_CONTROL_PLANE_MACHINE_TYPE": "t3.large",
    "AWS_NODE_MACHINE_TYPE": "t3.medium",
    "CONTROL_PLANE_MACHINE_COUNT": "3",
    "WORKER_MACHINE_COUNT": "4",
    "KUBERNETES_VERSION": "v1.32.0",
}


# --- the real CAPA template -------------------------------------------------------------


def test_capa_template_loads_with_clusterctl_variables():
    result = load_file(CAPA_TEMPLATE, CLUSTERCTL_VARS, env={})
    spec = result.spec
    assert spec.name == "capa-demo" and spec.region == "us-west-2"
    assert spec.load_balancer.type == "nlb" and spec.load_balancer.health_check_protocol == "HTTPS"
    assert spec.control_plane.replicas == 3 and spec.control_plane.version == "v1.32.0"
    assert spec.control_plane.machine_template.instance_type == "t3.large"
    assert (
        spec.control_plane.machine_template.iam_instance_profile
        == "control-plane.cluster-api-provider-aws.sigs.k8s.io"
    )
    [md] = spec.machine_deployments
    assert (md.name, md.replicas, md.machine_template.instance_type) == ("capa-demo-md-0", 4, "t3.medium")
    # `selector.matchLabels: null` in the template: CAPI's defaulting selects by deployment name.
    assert ("cluster.x-k8s.io/deployment-name", "capa-demo-md-0") in md.labels
    assert md.bootstrap.join_configuration["nodeRegistration"]["name"] == "{{ ds.meta_data.local_hostname }}"
    # Both ClusterResourceSets select the cluster's ccm/csi labels and carry their ConfigMaps.
    assert [a.name for a in spec.addons] == ["crs-ccm", "crs-csi"]
    ccm = dict(dict(spec.addons[0].config_maps)["cloud-controller-manager-addon"])
    # ${VAR:-default} inside addon data is substituted; $(VAR) (a container env reference) is not.
    assert "cloud-controller-manager:v1.32.5" in ccm["aws-ccm-external.yaml"]
    csi = "".join(v for _, data in spec.addons[1].config_maps for _, v in data)
    assert "$(CSI_ENDPOINT)" in csi
    # CAPA's EBS CSI driver does not tag volumes with the cluster id: capt says so.
    [warning] = result.warnings
    assert "ClusterResourceSet/crs-csi deploys the EBS CSI driver without --k8s-tag-cluster-id" in warning


def test_capa_template_without_variables_lists_every_missing_one():
    with pytest.raises(MissingVariablesError) as info:
        load_file(CAPA_TEMPLATE, {}, env={})
    assert info.value.names == sorted(CLUSTERCTL_VARS)
    assert "KUBERNETES_AWS_CCM_VERSION" not in info.value.names  # it has a default


def test_environment_supplies_variables_and_var_overrides_it():
    env = dict(CLUSTERCTL_VARS, WORKER_MACHINE_COUNT="2")
    assert load_file(CAPA_TEMPLATE, {}, env=env).spec.machine_deployments[0].replicas == 2
    assert (
        load_file(CAPA_TEMPLATE, {"WORKER_MACHINE_COUNT": "5"}, env=env).spec.machine_deployments[0].replicas
        == 5
    )


# --- the reference cluster ---------------------------------------------------------------


def test_quickstart_is_the_reference_cluster_with_capi_defaults():
    spec = load_file(QUICKSTART, env={}).spec
    assert (spec.name, spec.namespace, spec.region) == (
        "capi-quickstart",
        "capi-quickstart",
        "ap-northeast-2",
    )
    assert spec.network.pod_cidrs == ("192.168.0.0/16",)
    assert spec.network.vpc_cidr == "10.0.0.0/16"
    assert spec.network.availability_zone_usage_limit == 3
    assert spec.load_balancer.type == "classic"  # CAPA's default when the manifest names none
    cp = spec.control_plane
    assert (cp.replicas, cp.version, cp.machine_template.instance_type) == (3, "v1.20.5", "t3.large")
    [md] = spec.machine_deployments
    assert (md.replicas, md.version, md.machine_template.iam_instance_profile) == (
        3,
        "v1.20.5",
        "nodes.cluster-api-provider-aws.sigs.k8s.io",
    )
    assert (md.rolling_update.max_surge, md.rolling_update.max_unavailable) == (1, 0)
    [hc] = spec.health_checks
    assert hc.machine_deployments == (md.name,) and not hc.control_plane
    assert hc.max_unhealthy == "40%" and hc.node_startup_timeout_seconds == 600
    assert [(c.status, c.timeout_seconds) for c in hc.unhealthy_conditions] == [
        ("Unknown", 300),
        ("False", 300),
    ]


# --- a compact v1beta1 base to mutate ----------------------------------------------------


def base_docs() -> list[dict]:
    return [
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "Cluster",
            "metadata": {"name": "demo", "labels": {"cni": "calico"}},
            "spec": {
                "clusterNetwork": {"pods": {"cidrBlocks": ["192.168.0.0/16"]}},
                "controlPlaneRef": {
                    "apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
                    "kind": "KubeadmControlPlane",
                    "name": "demo-cp",
                },
                "infrastructureRef": {
                    "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                    "kind": "AWSCluster",
                    "name": "demo",
                },
            },
        },
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "AWSCluster",
            "metadata": {"name": "demo"},
            "spec": {"region": "eu-west-1"},
        },
        {
            "apiVersion": "controlplane.cluster.x-k8s.io/v1beta1",
            "kind": "KubeadmControlPlane",
            "metadata": {"name": "demo-cp"},
            "spec": {
                "replicas": 3,
                "version": "v1.30.2",
                "machineTemplate": {
                    "infrastructureRef": {
                        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                        "kind": "AWSMachineTemplate",
                        "name": "demo-cp",
                    }
                },
                "kubeadmConfigSpec": {},
            },
        },
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "AWSMachineTemplate",
            "metadata": {"name": "demo-cp"},
            "spec": {"template": {"spec": {"instanceType": "m5.large"}}},
        },
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "MachineDeployment",
            "metadata": {"name": "demo-md"},
            "spec": {
                "clusterName": "demo",
                "replicas": 2,
                "template": {
                    "spec": {
                        "clusterName": "demo",
                        "version": "v1.30.2",
                        "bootstrap": {
                            "configRef": {
                                "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
                                "kind": "KubeadmConfigTemplate",
                                "name": "demo-md",
                            }
                        },
                        "infrastructureRef": {
                            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                            "kind": "AWSMachineTemplate",
                            "name": "demo-md",
                        },
                    }
                },
            },
        },
        {
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
            "kind": "AWSMachineTemplate",
            "metadata": {"name": "demo-md"},
            "spec": {"template": {"spec": {"instanceType": "m5.large"}}},
        },
        {
            "apiVersion": "bootstrap.cluster.x-k8s.io/v1beta1",
            "kind": "KubeadmConfigTemplate",
            "metadata": {"name": "demo-md"},
            "spec": {"template": {"spec": {"joinConfiguration": {}}}},
        },
        {
            "apiVersion": "cluster.x-k8s.io/v1beta1",
            "kind": "MachineHealthCheck",
            "metadata": {"name": "demo-mhc"},
            "spec": {
                "clusterName": "demo",
                "maxUnhealthy": "40%",
                "selector": {"matchLabels": {"cluster.x-k8s.io/deployment-name": "demo-md"}},
                "unhealthyConditions": [{"type": "Ready", "status": "False", "timeout": "5m"}],
            },
        },
    ]


def render(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def mutate(fn: Callable[[list[dict]], None]) -> str:
    docs = copy.deepcopy(base_docs())
    fn(docs)
    return render(docs)


def by_kind(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


def kcp_to_v1beta2(docs: list[dict]) -> dict:
    """The demo's KubeadmControlPlane as v1beta2 (its machine template under spec.machineTemplate.spec)."""
    kcp = by_kind(docs, "KubeadmControlPlane")
    kcp["apiVersion"] = "controlplane.cluster.x-k8s.io/v1beta2"
    kcp["spec"]["machineTemplate"] = {
        "spec": {
            "infrastructureRef": {
                "apiGroup": "infrastructure.cluster.x-k8s.io",
                "kind": "AWSMachineTemplate",
                "name": "demo-cp",
            }
        }
    }
    return kcp


def md_tpl(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "AWSMachineTemplate" and d["metadata"]["name"] == "demo-md")


def test_base_manifest_is_valid_and_defaults_are_capis():
    spec = load_manifest(render(base_docs()), env={}).spec
    md = spec.machine_deployments[0]
    assert md.strategy == "RollingUpdate" and md.delete_policy == "Random"
    assert (md.rolling_update.max_surge, md.rolling_update.max_unavailable) == (1, 0)
    assert md.progress_deadline_seconds == 600 and md.min_ready_seconds == 0
    assert spec.control_plane.max_surge == 1
    assert spec.health_checks[0].node_startup_timeout_seconds == 600
    assert spec.load_balancer.type == "classic" and spec.network.vpc_cidr == "10.0.0.0/16"
    assert spec.network.availability_zone_usage_limit == 3
    assert spec.network.availability_zone_selection == "Ordered"
    assert [r.from_port for r in spec.network.cni_ingress_rules] == [179, -1]  # Calico's rules


def test_health_check_defaults_are_capis():
    def drop_limits(docs):
        by_kind(docs, "MachineHealthCheck")["spec"].pop("maxUnhealthy")

    hc = load_manifest(mutate(drop_limits), env={}).spec.health_checks[0]
    assert hc.max_unhealthy == "100%" and hc.node_startup_timeout_seconds == 600


# --- fields that moved between API versions ---------------------------------------------


def test_v1beta2_shapes_are_understood():
    def to_v1beta2(docs):
        kcp = kcp_to_v1beta2(docs)
        kcp["spec"]["rollout"] = {"strategy": {"rollingUpdate": {"maxSurge": 0}}}
        md = by_kind(docs, "MachineDeployment")
        md["apiVersion"] = "cluster.x-k8s.io/v1beta2"
        md["spec"]["rollout"] = {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 1}}
        }
        md["spec"]["deletion"] = {"order": "Oldest"}
        md["spec"]["template"]["spec"]["minReadySeconds"] = 30
        md["spec"]["template"]["spec"]["bootstrap"]["configRef"] = {
            "apiGroup": "bootstrap.cluster.x-k8s.io",
            "kind": "KubeadmConfigTemplate",
            "name": "demo-md",
        }
        mhc = by_kind(docs, "MachineHealthCheck")
        mhc["apiVersion"] = "cluster.x-k8s.io/v1beta2"
        mhc["spec"] = {
            "clusterName": "demo",
            "selector": {"matchLabels": {"cluster.x-k8s.io/deployment-name": "demo-md"}},
            "checks": {
                "nodeStartupTimeoutSeconds": 900,
                "unhealthyNodeConditions": [{"type": "Ready", "status": "Unknown", "timeoutSeconds": 120}],
            },
            "remediation": {"triggerIf": {"unhealthyLessThanOrEqualTo": 2}},
        }

    spec = load_manifest(mutate(to_v1beta2), env={}).spec
    assert spec.control_plane.max_surge == 0
    md = spec.machine_deployments[0]
    assert (md.rolling_update.max_surge, md.rolling_update.max_unavailable) == ("50%", 1)
    assert md.delete_policy == "Oldest" and md.min_ready_seconds == 30
    hc = spec.health_checks[0]
    assert hc.node_startup_timeout_seconds == 900 and hc.max_unhealthy == 2
    assert [(c.status, c.timeout_seconds) for c in hc.unhealthy_conditions] == [("Unknown", 120)]


def test_v1beta1_delete_policy_and_v1alpha3_infrastructure_template():
    def old_shapes(docs):
        kcp = by_kind(docs, "KubeadmControlPlane")
        kcp["apiVersion"] = "controlplane.cluster.x-k8s.io/v1alpha3"
        kcp["spec"]["infrastructureTemplate"] = kcp["spec"].pop("machineTemplate")["infrastructureRef"]
        md = by_kind(docs, "MachineDeployment")
        md["spec"]["strategy"] = {
            "rollingUpdate": {"deletePolicy": "Newest", "maxSurge": 0, "maxUnavailable": "25%"}
        }

    spec = load_manifest(mutate(old_shapes), env={}).spec
    assert spec.control_plane.machine_template.name == "demo-cp"
    md = spec.machine_deployments[0]
    assert md.delete_policy == "Newest" and md.rolling_update.max_unavailable == "25%"


def test_unknown_kind_is_a_warning_not_an_error():
    text = render(base_docs() + [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}])
    result = load_manifest(text, env={})
    assert any("Namespace/x is not a kind capt uses" in w for w in result.warnings)


def test_spec_is_immutable():
    spec = load_manifest(render(base_docs()), env={}).spec
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        spec.control_plane.replicas = 5  # type: ignore[misc]


# --- bad manifests -----------------------------------------------------------------------


def _set(path: list, value, kind: str, name: str | None = None):
    def fn(docs):
        doc = next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return fn


def _kcp(path, value):
    return _set(["spec", *path], value, "KubeadmControlPlane")


def _md(path, value):
    return _set(["spec", *path], value, "MachineDeployment")


def _cluster(path, value):
    return _set(["spec", *path], value, "Cluster")


def _aws(path, value):
    return _set(["spec", *path], value, "AWSCluster")


def _mhc(path, value):
    return _set(["spec", *path], value, "MachineHealthCheck")


def _drop(kind: str, name: str | None = None):
    def fn(docs):
        docs[:] = [
            d for d in docs if not (d["kind"] == kind and (name is None or d["metadata"]["name"] == name))
        ]

    return fn


def _append(doc: dict):
    return lambda docs: docs.append(doc)


BAD = [
    # (id, mutation, expected fragments)
    (
        "even-kcp-replicas",
        _kcp(["replicas"], 4),
        ["document 3 KubeadmControlPlane/demo-cp spec.replicas", "4 is even"],
    ),
    ("zero-kcp-replicas", _kcp(["replicas"], 0), ["KubeadmControlPlane/demo-cp spec.replicas", "at least 1"]),
    (
        "negative-md-replicas",
        _md(["replicas"], -1),
        ["MachineDeployment/demo-md spec.replicas", "must not be negative"],
    ),
    (
        "kcp-max-surge-2",
        _kcp(["rolloutStrategy"], {"rollingUpdate": {"maxSurge": 2}}),
        ["spec.rolloutStrategy.rollingUpdate.maxSurge", "must be 0 or 1"],
    ),
    (
        "md-surge-and-unavailable-zero",
        _md(["strategy"], {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
        ["MachineDeployment/demo-md spec.strategy.rollingUpdate", "must not both be 0"],
    ),
    (
        "md-surge-string-int",
        _md(["strategy"], {"rollingUpdate": {"maxSurge": "5"}}),
        ["spec.strategy.rollingUpdate.maxSurge", "'5' is not a percentage"],
    ),
    (
        "md-unavailable-oops",
        _md(["strategy"], {"rollingUpdate": {"maxUnavailable": "oops"}}),
        ["spec.strategy.rollingUpdate.maxUnavailable", "'oops'"],
    ),
    (
        "mhc-max-unhealthy-bad",
        _mhc(["maxUnhealthy"], "forty"),
        ["MachineHealthCheck/demo-mhc spec.maxUnhealthy", "'forty'"],
    ),
    (
        "vpc-cidr-invalid",
        _aws(["network"], {"vpc": {"cidrBlock": "10.0.0.0/33"}}),
        ["AWSCluster/demo spec.network.vpc.cidrBlock", "not a valid VPC CIDR"],
    ),
    (
        "vpc-cidr-host-bits",
        _aws(["network"], {"vpc": {"cidrBlock": "10.0.0.1/16"}}),
        ["spec.network.vpc.cidrBlock", "host bits set"],
    ),
    (
        "vpc-cidr-too-big",
        _aws(["network"], {"vpc": {"cidrBlock": "10.0.0.0/8"}}),
        ["spec.network.vpc.cidrBlock", "between /16 and /28"],
    ),
    (
        "pod-cidr-overlaps-vpc",
        _cluster(["clusterNetwork", "pods", "cidrBlocks"], ["10.0.128.0/17"]),
        ["Cluster/demo spec.clusterNetwork.pods.cidrBlocks[0]", "overlaps the VPC CIDR 10.0.0.0/16"],
    ),
    (
        "pod-cidr-invalid",
        _cluster(["clusterNetwork", "pods", "cidrBlocks"], ["192.168.0.0/40"]),
        ["spec.clusterNetwork.pods.cidrBlocks[0]", "not a valid pod CIDR"],
    ),
    (
        "service-cidr-overlaps-pods",
        _cluster(["clusterNetwork", "services"], {"cidrBlocks": ["192.168.128.0/20"]}),
        ["spec.clusterNetwork.services.cidrBlocks[0]", "overlaps the pod CIDR 192.168.0.0/16"],
    ),
    (
        "service-cidr-overlaps-vpc",
        _cluster(["clusterNetwork", "services"], {"cidrBlocks": ["10.0.0.0/12"]}),
        ["spec.clusterNetwork.services.cidrBlocks[0]", "overlaps the VPC CIDR"],
    ),
    (
        "subnet-outside-vpc",
        _aws(["network"], {"subnets": [{"cidrBlock": "172.16.0.0/24", "availabilityZone": "eu-west-1a"}]}),
        ["spec.network.subnets[0].cidrBlock", "not inside the VPC CIDR"],
    ),
    (
        "kcp-version-no-v",
        _kcp(["version"], "1.30.2"),
        ["KubeadmControlPlane/demo-cp spec.version", "vMAJOR.MINOR.PATCH"],
    ),
    (
        "md-version-two-parts",
        _set(["spec", "template", "spec", "version"], "v1.30", "MachineDeployment"),
        ["spec.template.spec.version", "vMAJOR.MINOR.PATCH"],
    ),
    (
        "md-newer-than-cp",
        _set(["spec", "template", "spec", "version"], "v1.31.0", "MachineDeployment"),
        ["spec.template.spec.version", "newer than the control plane"],
    ),
    (
        "cluster-name-not-dns",
        _set(["metadata", "name"], "Demo_Cluster", "Cluster"),
        ["metadata.name", "not a valid DNS-1123 name"],
    ),
    (
        "template-name-not-dns",
        _set(["metadata", "name"], "Bad.Name-", "AWSMachineTemplate", "demo-md"),
        ["AWSMachineTemplate/Bad.Name- metadata.name", "DNS-1123"],
    ),
    (
        "dangling-cp-ref",
        _drop("KubeadmControlPlane"),
        ["Cluster/demo spec.controlPlaneRef", "KubeadmControlPlane default/demo-cp is not in the manifest"],
    ),
    (
        "dangling-infra-template",
        _drop("AWSMachineTemplate", "demo-md"),
        [
            "MachineDeployment/demo-md spec.template.spec.infrastructureRef",
            "AWSMachineTemplate default/demo-md is not in the manifest",
        ],
    ),
    (
        "dangling-bootstrap-template",
        _drop("KubeadmConfigTemplate"),
        ["spec.template.spec.bootstrap.configRef", "KubeadmConfigTemplate default/demo-md"],
    ),
    (
        "duplicate-name",
        lambda docs: docs.append(copy.deepcopy(md_tpl(docs))),
        [
            "document 9 AWSMachineTemplate/demo-md metadata.name",
            "duplicate AWSMachineTemplate default/demo-md (first defined in document 6)",
        ],
    ),
    ("missing-region", _aws(["region"], None), ["AWSCluster/demo spec.region", "is required"]),
    (
        "missing-instance-type",
        _set(["spec", "template", "spec"], {}, "AWSMachineTemplate", "demo-cp"),
        ["AWSMachineTemplate/demo-cp spec.template.spec.instanceType", "is required"],
    ),
    (
        "unsupported-api-version",
        _set(["apiVersion"], "cluster.x-k8s.io/v2", "MachineDeployment"),
        ["MachineDeployment/demo-md apiVersion", "unsupported version 'v2'"],
    ),
    (
        "wrong-group",
        _set(["apiVersion"], "infrastructure.cluster.x-k8s.io/v1beta1", "MachineDeployment"),
        ["apiVersion", "is not a MachineDeployment API version"],
    ),
    (
        "wrong-ref-kind",
        _cluster(["infrastructureRef", "kind"], "AWSManagedCluster"),
        ["spec.infrastructureRef.kind", "'AWSManagedCluster' is not supported"],
    ),
    (
        "md-other-cluster",
        _md(["clusterName"], "other"),
        ["MachineDeployment/demo-md spec.clusterName", "'other' is not the manifest's cluster"],
    ),
    ("no-cluster", _drop("Cluster"), ["exactly one Cluster, found 0"]),
    (
        "lb-type-alb",
        _aws(["controlPlaneLoadBalancer"], {"loadBalancerType": "alb"}),
        ["spec.controlPlaneLoadBalancer.loadBalancerType", "'alb' is not supported"],
    ),
    (
        "az-selection-bad",
        _aws(["network"], {"vpc": {"availabilityZoneSelection": "Fastest"}}),
        ["spec.network.vpc.availabilityZoneSelection", "Ordered or Random"],
    ),
    (
        "mhc-empty-selector",
        _mhc(["selector"], {}),
        ["MachineHealthCheck/demo-mhc spec.selector", "must not be empty"],
    ),
    (
        "mhc-bad-duration",
        _mhc(["nodeStartupTimeout"], "ten minutes"),
        ["spec.nodeStartupTimeout", "not a duration"],
    ),
    (
        "md-selector-mismatch",
        _md(["selector"], {"matchLabels": {"pool": "gpu"}}),
        ["MachineDeployment/demo-md spec.selector", "does not match"],
    ),
    (
        "replicas-not-int",
        _md(["replicas"], "three"),
        ["spec.replicas", 'got the string "three"; write a whole number'],
    ),
    (
        "md-failure-domain-other-region",
        _set(["spec", "template", "spec", "failureDomain"], "us-east-1a", "MachineDeployment"),
        ["spec.template.spec.failureDomain", "not an availability zone of eu-west-1"],
    ),
    (
        "crs-secret",
        _append(
            {
                "apiVersion": "addons.cluster.x-k8s.io/v1beta1",
                "kind": "ClusterResourceSet",
                "metadata": {"name": "crs"},
                "spec": {
                    "clusterSelector": {"matchLabels": {"cni": "calico"}},
                    "resources": [{"kind": "Secret", "name": "s"}],
                },
            }
        ),
        # A Secret resource is supported; one that is not in the manifest is named.
        ["ClusterResourceSet/crs spec.resources[0].name", "Secret default/s is not in the manifest"],
    ),
    (
        "crs-dangling-configmap",
        _append(
            {
                "apiVersion": "addons.cluster.x-k8s.io/v1beta1",
                "kind": "ClusterResourceSet",
                "metadata": {"name": "crs"},
                "spec": {
                    "clusterSelector": {"matchLabels": {"cni": "calico"}},
                    "resources": [{"kind": "ConfigMap", "name": "calico"}],
                },
            }
        ),
        ["spec.resources[0]", "ConfigMap default/calico is not in the manifest"],
    ),
    ("cluster-class", _cluster(["topology"], {"class": "quick-start"}), ["spec.topology", "ClusterClass"]),
]


@pytest.mark.parametrize("mutation,fragments", [(m, f) for _, m, f in BAD], ids=[i for i, _, _ in BAD])
def test_bad_manifest_is_rejected_with_a_clear_message(mutation, fragments):
    with pytest.raises(ManifestError) as info:
        load_manifest(mutate(mutation), env={})
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_there_are_at_least_25_bad_manifest_cases():
    assert len({case_id for case_id, _, _ in BAD}) == len(BAD) >= 25


def test_every_problem_is_reported_at_once():
    def many(docs):
        by_kind(docs, "KubeadmControlPlane")["spec"]["replicas"] = 2
        by_kind(docs, "KubeadmControlPlane")["spec"]["version"] = "latest"
        by_kind(docs, "MachineDeployment")["spec"]["replicas"] = -3

    with pytest.raises(ManifestError) as info:
        load_manifest(mutate(many), env={})
    assert len(info.value.problems) == 3


def test_invalid_yaml_names_the_line():
    with pytest.raises(ManifestError) as info:
        load_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n bad: [\n", env={})
    assert len(info.value.problems) == 1
    assert "invalid YAML at line 5" in str(info.value)


# --- the namespace: half of the cluster's id in AWS ------------------------------------------------


def _in_namespace(namespace: str) -> Callable[[list[dict]], None]:
    def fn(docs):
        for d in docs:
            d["metadata"]["namespace"] = namespace

    return fn


def test_a_namespace_is_half_of_the_cluster_id():
    spec = load_manifest(mutate(_in_namespace("team-a")), env={}).spec
    assert (spec.namespace, spec.name) == ("team-a", "demo")


@pytest.mark.parametrize(
    "namespace",
    ["Team-A", "team_a", "team.a", "-team", "team-", "t" * 64, "tëam"],
)
def test_a_namespace_that_is_not_a_dns_label_is_refused(namespace):
    with pytest.raises(ManifestError) as info:
        load_manifest(mutate(_in_namespace(namespace)), env={})
    problems = [p for p in info.value.problems if p.path == "metadata.namespace"]
    # Every document names the field; the cluster's first.
    assert problems and (problems[0].kind, problems[0].name) == ("Cluster", "demo")
    assert f"{namespace!r} is not a valid namespace: it must be a DNS-1123 label" in str(info.value)
    assert "document 1 Cluster/demo metadata.namespace:" in str(info.value)


# --- ${CAPT_CLUSTER_ID}: the id for addons ------------------------------------------------------------

ADDON_DOCS = """
---
apiVersion: addons.cluster.x-k8s.io/v1beta1
kind: ClusterResourceSet
metadata:
  name: crs-aws
  namespace: ${NS}
spec:
  clusterSelector:
    matchLabels:
      cni: calico
  resources:
    - kind: ConfigMap
      name: aws-addons
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: aws-addons
  namespace: ${NS}
data:
  ccm.yaml: |
    args: ["--cloud-provider=aws", "--cluster-name=${CAPT_CLUSTER_ID}"]
  csi.yaml: |
    provisioner: ebs.csi.aws.com
    args: ["--k8s-tag-cluster-id=${CAPT_CLUSTER_ID}"]
"""


def _templated() -> str:
    """The base manifest (cluster `demo`) as a template whose namespace is a variable."""
    return mutate(_in_namespace("${NS}")) + ADDON_DOCS


def _addon_args(spec) -> str:
    [addon] = spec.addons
    return "".join(v for _, data in addon.config_maps for _, v in data)


def test_capt_cluster_id_is_built_in():
    result = load_manifest(_templated(), {"NS": "team-a"}, env={})
    args = _addon_args(result.spec)
    assert "--cluster-name=team-a.demo" in args and "--k8s-tag-cluster-id=team-a.demo" in args
    assert result.warnings == []  # the CSI driver tags its volumes with the id


def test_capt_cluster_id_follows_the_namespace():
    a = load_manifest(_templated(), {"NS": "team-a"}, env={}).spec
    b = load_manifest(_templated(), {"NS": "team-b"}, env={}).spec
    assert "--cluster-name=team-b.demo" in _addon_args(b) and _addon_args(a) != _addon_args(b)


def test_var_overrides_capt_cluster_id_and_the_environment_does_not():
    variables = {"NS": "team-a"}
    # A cluster created before ids were namespaced: its id is its name.
    legacy = load_manifest(_templated(), {**variables, "CAPT_CLUSTER_ID": "demo"}, env={}).spec
    assert '--cluster-name=demo"' in _addon_args(legacy)
    # A value exported for some other cluster never leaks in.
    env = {"CAPT_CLUSTER_ID": "elsewhere.demo"}
    assert "--cluster-name=team-a.demo" in _addon_args(load_manifest(_templated(), variables, env=env).spec)


def test_capt_cluster_id_is_never_a_missing_variable():
    with pytest.raises(MissingVariablesError) as info:
        load_manifest(_templated(), {}, env={})
    assert info.value.names == ["NS"]


def test_an_ebs_csi_driver_without_the_cluster_id_is_a_warning():
    text = _templated().replace("--k8s-tag-cluster-id=${CAPT_CLUSTER_ID}", "--endpoint=x")
    result = load_manifest(text, {"NS": "team-a"}, env={})
    [warning] = result.warnings
    assert "ClusterResourceSet/crs-aws deploys the EBS CSI driver without --k8s-tag-cluster-id" in warning
    assert "--k8s-tag-cluster-id=${CAPT_CLUSTER_ID}" in warning
