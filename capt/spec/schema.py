"""The fields of every kind capt reads, per API version: what is known, what capt ignores on
purpose, and what Cluster API / CAPA define but capt does not implement.

Data only; `spec.strict` walks a document against it. The field names come from the CAPI
(`cluster.x-k8s.io`, `controlplane.`, `bootstrap.`, `addons.`) and CAPA
(`infrastructure.cluster.x-k8s.io`) API types of v1alpha3, v1alpha4, v1beta1 and v1beta2.

A schema node is one of:

- a dict: a mapping whose keys are exactly these field names, each with its own node;
- `ListOf(node)`: a list whose items are `node`;
- `ANY`: a value capt reads (its reader checks the type);
- `FREE`: a map or document owned by someone else (labels, annotations, additionalTags,
  kubeadm's ClusterConfiguration/InitConfiguration/JoinConfiguration, a ConfigMap's data):
  its contents are not checked here;
- `IGNORED`: allowed and without effect (status, server-set metadata such as
  creationTimestamp or managedFields, an object reference's uid);
- `NotSupported(reason)`: a field CAPI/CAPA define but capt does not implement: a problem.
"""

from __future__ import annotations

from typing import Any

from capt.spec.schema_aws import (
    _AWS_CLUSTER_V1ALPHA3,
    _AWS_CLUSTER_V1ALPHA4,
    _AWS_CLUSTER_V1BETA1,
    _AWS_CLUSTER_V1BETA2,
    _AWS_MACHINE_V1ALPHA3,
    _AWS_MACHINE_V1ALPHA4,
    _AWS_MACHINE_V1BETA1,
    _AWS_MACHINE_V1BETA2,
    _machine_template,
)
from capt.spec.schema_base import (
    ANY,
    CONTRACT_REF,
    FREE,
    IGNORED,
    LABEL_SELECTOR,
    NS,
    OBJECT_META,
    OBJECT_REF,
    TEMPLATE_META,
    V1ALPHA3,
    V1ALPHA4,
    V1BETA1,
    V1BETA2,
    ListOf,
    NotSupported,
    _object,
    _with,
)

# --- Cluster ----------------------------------------------------------------------------

_CLUSTER_V1ALPHA3 = {
    "paused": ANY,
    "clusterNetwork": {
        "apiServerPort": NotSupported("the API server listens on 6443; set controlPlaneEndpoint.port"),
        "services": {"cidrBlocks": ANY},
        "pods": {"cidrBlocks": ANY},
        "serviceDomain": ANY,
    },
    "controlPlaneEndpoint": {"host": ANY, "port": ANY},
    "controlPlaneRef": OBJECT_REF,
    "infrastructureRef": OBJECT_REF,
}
# spec.topology is refused by the reader with its own message (ClusterClass is not supported).
_CLUSTER_V1ALPHA4 = _with(_CLUSTER_V1ALPHA3, {"topology": FREE})
_CLUSTER_V1BETA1 = _with(_CLUSTER_V1ALPHA4, {"availabilityGates": NS})
_CLUSTER_V1BETA2 = _with(
    _CLUSTER_V1BETA1, {"controlPlaneRef": CONTRACT_REF, "infrastructureRef": CONTRACT_REF}
)


# --- KubeadmConfigSpec (inside KubeadmControlPlane and KubeadmConfigTemplate) -------------

_FILE_V1ALPHA3 = {
    "path": ANY,
    "owner": ANY,
    "permissions": ANY,
    "encoding": ANY,
    "content": ANY,
    "contentFrom": {"secret": {"name": ANY, "key": ANY}},
}
_USER_V1ALPHA3 = {
    "name": ANY,
    "gecos": ANY,
    "groups": ANY,
    "homeDir": ANY,
    "inactive": ANY,
    "shell": ANY,
    "passwd": ANY,
    "primaryGroup": ANY,
    "lockPassword": ANY,
    "sudo": ANY,
    "sshAuthorizedKeys": ANY,
    # v1beta1 and later; capt resolves it in every version (spec.secret_kinds)
    "passwdFrom": {"secret": {"name": ANY, "key": ANY}},
}
_KUBEADM_CONFIG_V1ALPHA3 = {
    # kubeadm's own documents: their contents are kubeadm's to check.
    "clusterConfiguration": FREE,
    "initConfiguration": FREE,
    "joinConfiguration": FREE,
    "files": ListOf(_FILE_V1ALPHA3),
    "diskSetup": NS,
    "mounts": ANY,
    "preKubeadmCommands": ANY,
    "postKubeadmCommands": ANY,
    "users": ListOf(_USER_V1ALPHA3),
    "ntp": {"servers": ANY, "enabled": ANY},
    "format": ANY,  # the reader refuses ignition
    "verbosity": NS,
    "useExperimentalRetryJoin": ANY,
}
_KUBEADM_CONFIG_V1ALPHA4 = _KUBEADM_CONFIG_V1ALPHA3
_KUBEADM_CONFIG_V1BETA1 = _with(
    _KUBEADM_CONFIG_V1ALPHA4,
    {
        "files.append": ANY,
        "files.contentFormat": NS,
        "bootCommands": NS,
        "ignition": NS,
    },
)
_KUBEADM_CONFIG_V1BETA2 = _with(_KUBEADM_CONFIG_V1BETA1, {"useExperimentalRetryJoin": None})

# --- KubeadmControlPlane ----------------------------------------------------------------

_KCP_V1ALPHA3 = {
    "replicas": ANY,
    "version": ANY,
    "infrastructureTemplate": OBJECT_REF,
    "kubeadmConfigSpec": _KUBEADM_CONFIG_V1ALPHA3,
    "upgradeAfter": ANY,
    "nodeDrainTimeout": ANY,
    "rolloutStrategy": {"type": ANY, "rollingUpdate": {"maxSurge": ANY}},
}
_KCP_V1ALPHA4 = {
    "replicas": ANY,
    "version": ANY,
    "machineTemplate": {"metadata": TEMPLATE_META, "infrastructureRef": OBJECT_REF, "nodeDrainTimeout": ANY},
    "kubeadmConfigSpec": _KUBEADM_CONFIG_V1ALPHA4,
    "rolloutAfter": ANY,
    "rolloutStrategy": {"type": ANY, "rollingUpdate": {"maxSurge": ANY}},
}
_KCP_V1BETA1 = _with(
    _KCP_V1ALPHA4,
    {
        "kubeadmConfigSpec": _KUBEADM_CONFIG_V1BETA1,
        "machineTemplate.readinessGates": NS,
        "machineTemplate.nodeVolumeDetachTimeout": NS,
        "machineTemplate.nodeDeletionTimeout": NS,
        "machineTemplate.taints": NS,
        "rolloutBefore": {"certificatesExpiryDays": ANY},
        "remediationStrategy": {"maxRetry": ANY, "retryPeriod": ANY, "minHealthyPeriod": ANY},
        "machineNamingStrategy": NS,
    },
)
_KCP_V1BETA2 = {
    "replicas": ANY,
    "version": ANY,
    "machineTemplate": {
        "metadata": TEMPLATE_META,
        "spec": {
            "infrastructureRef": CONTRACT_REF,
            "deletion": {
                "nodeDrainTimeoutSeconds": ANY,
                "nodeVolumeDetachTimeoutSeconds": NS,
                "nodeDeletionTimeoutSeconds": NS,
            },
            "readinessGates": NS,
            "taints": NS,
        },
    },
    "kubeadmConfigSpec": _KUBEADM_CONFIG_V1BETA2,
    "rollout": {
        "after": ANY,
        "strategy": {"type": ANY, "rollingUpdate": {"maxSurge": ANY}},
        "before": {"certificatesExpiryDays": ANY},
    },
    "remediation": {"maxRetry": ANY, "retryPeriodSeconds": ANY, "minHealthyPeriodSeconds": ANY},
    "machineNaming": NS,
}

# --- KubeadmConfigTemplate --------------------------------------------------------------

_KCT = {
    V1ALPHA3: _machine_template(_KUBEADM_CONFIG_V1ALPHA3, metadata=False),
    V1ALPHA4: _machine_template(_KUBEADM_CONFIG_V1ALPHA4, metadata=False),
    V1BETA1: _machine_template(_KUBEADM_CONFIG_V1BETA1),
    V1BETA2: _machine_template(_KUBEADM_CONFIG_V1BETA2),
}

# --- MachineDeployment ------------------------------------------------------------------

_MD_V1ALPHA3 = {
    "clusterName": ANY,
    "replicas": ANY,
    "selector": LABEL_SELECTOR,
    "template": {
        "metadata": TEMPLATE_META,
        "spec": {
            "clusterName": ANY,
            "bootstrap": {
                "configRef": OBJECT_REF,
                "data": NotSupported("use a KubeadmConfigTemplate in bootstrap.configRef"),
                "dataSecretName": NotSupported("use a KubeadmConfigTemplate in bootstrap.configRef"),
            },
            "infrastructureRef": OBJECT_REF,
            "version": ANY,
            "failureDomain": ANY,
            "providerID": NS,
            "nodeDrainTimeout": NS,
        },
    },
    "strategy": {"type": ANY, "rollingUpdate": {"maxUnavailable": ANY, "maxSurge": ANY}},
    "minReadySeconds": ANY,
    "revisionHistoryLimit": ANY,
    "paused": ANY,
    "progressDeadlineSeconds": ANY,
}
_MD_V1ALPHA4 = _with(
    _MD_V1ALPHA3,
    {
        "template.spec.bootstrap.data": None,
        "strategy.rollingUpdate.deletePolicy": ANY,
    },
)
_MD_V1BETA1 = _with(
    _MD_V1ALPHA4,
    {
        "rolloutAfter": ANY,
        "template.spec.readinessGates": NS,
        "template.spec.nodeVolumeDetachTimeout": NS,
        "template.spec.nodeDeletionTimeout": NS,
        "template.spec.taints": NS,
        "strategy.remediation": {"maxInFlight": ANY},
        "machineNamingStrategy": NS,
    },
)
_MD_V1BETA2 = {
    "clusterName": ANY,
    "replicas": ANY,
    "rollout": {
        "after": ANY,
        "strategy": {"type": ANY, "rollingUpdate": {"maxUnavailable": ANY, "maxSurge": ANY}},
    },
    "selector": LABEL_SELECTOR,
    "template": {
        "metadata": TEMPLATE_META,
        "spec": {
            "clusterName": ANY,
            "bootstrap": {
                "configRef": CONTRACT_REF,
                "dataSecretName": NotSupported("use a KubeadmConfigTemplate in bootstrap.configRef"),
            },
            "infrastructureRef": CONTRACT_REF,
            "version": ANY,
            "failureDomain": ANY,
            "minReadySeconds": ANY,
            "providerID": NS,
            "readinessGates": NS,
            "deletion": NS,
            "taints": NS,
        },
    },
    "machineNaming": NS,
    "remediation": {"maxInFlight": ANY},
    "deletion": {"order": ANY},
    "paused": ANY,
}

# --- MachineHealthCheck -----------------------------------------------------------------

_MHC_V1ALPHA3 = {
    "clusterName": ANY,
    "selector": LABEL_SELECTOR,
    "unhealthyConditions": ListOf({"type": ANY, "status": ANY, "timeout": ANY}),
    "maxUnhealthy": ANY,
    "nodeStartupTimeout": ANY,
    # capt records an external remediation request instead of replacing the machine
    "remediationTemplate": OBJECT_REF,
}
_MHC_V1ALPHA4 = _with(_MHC_V1ALPHA3, {"unhealthyRange": ANY})
_MHC_V1BETA1 = _with(
    _MHC_V1ALPHA4, {"unhealthyMachineConditions": ListOf({"type": ANY, "status": ANY, "timeout": ANY})}
)
_MHC_V1BETA2 = {
    "clusterName": ANY,
    "selector": LABEL_SELECTOR,
    "checks": {
        "nodeStartupTimeoutSeconds": ANY,
        # unhealthyTimeoutSeconds: an earlier v1beta2 spelling capt reads as well
        "unhealthyNodeConditions": ListOf(
            {"type": ANY, "status": ANY, "timeoutSeconds": ANY, "unhealthyTimeoutSeconds": ANY}
        ),
        "unhealthyMachineConditions": ListOf({"type": ANY, "status": ANY, "timeoutSeconds": ANY}),
    },
    "remediation": {
        "triggerIf": {"unhealthyLessThanOrEqualTo": ANY, "unhealthyInRange": ANY},
        "maxInFlight": ANY,  # capt reads it here (CAPI has it on the MachineDeployment)
        "templateRef": {"apiVersion": ANY, "kind": ANY, "name": ANY},
    },
}

# --- ClusterResourceSet, ConfigMap, Secret ----------------------------------------------

_CRS = {
    "clusterSelector": LABEL_SELECTOR,
    "resources": ListOf({"name": ANY, "kind": ANY}),
    "strategy": ANY,
}
_CONFIG_MAP = {
    "apiVersion": ANY,
    "kind": ANY,
    "metadata": OBJECT_META,
    "data": FREE,
    "binaryData": NotSupported("addons are YAML documents: put them under data"),
    "immutable": IGNORED,
}
_SECRET = {
    "apiVersion": ANY,
    "kind": ANY,
    "metadata": OBJECT_META,
    "data": FREE,
    "stringData": FREE,
    "type": ANY,
    "immutable": IGNORED,
}


def _per_version(a3: dict, a4: dict, b1: dict, b2: dict) -> dict[str, dict]:
    return {V1ALPHA3: _object(a3), V1ALPHA4: _object(a4), V1BETA1: _object(b1), V1BETA2: _object(b2)}


# kind -> apiVersion's version -> schema of the whole document
SCHEMAS: dict[str, dict[str, dict]] = {
    "Cluster": _per_version(_CLUSTER_V1ALPHA3, _CLUSTER_V1ALPHA4, _CLUSTER_V1BETA1, _CLUSTER_V1BETA2),
    "AWSCluster": _per_version(
        _AWS_CLUSTER_V1ALPHA3, _AWS_CLUSTER_V1ALPHA4, _AWS_CLUSTER_V1BETA1, _AWS_CLUSTER_V1BETA2
    ),
    "AWSMachineTemplate": {
        V1ALPHA3: _machine_template(_AWS_MACHINE_V1ALPHA3, metadata=False),
        V1ALPHA4: _machine_template(_AWS_MACHINE_V1ALPHA4, metadata=False),
        V1BETA1: _machine_template(_AWS_MACHINE_V1BETA1),
        V1BETA2: _machine_template(_AWS_MACHINE_V1BETA2),
    },
    "KubeadmControlPlane": _per_version(_KCP_V1ALPHA3, _KCP_V1ALPHA4, _KCP_V1BETA1, _KCP_V1BETA2),
    "KubeadmConfigTemplate": _KCT,
    "MachineDeployment": _per_version(_MD_V1ALPHA3, _MD_V1ALPHA4, _MD_V1BETA1, _MD_V1BETA2),
    "MachineHealthCheck": _per_version(_MHC_V1ALPHA3, _MHC_V1ALPHA4, _MHC_V1BETA1, _MHC_V1BETA2),
    "ClusterResourceSet": _per_version(_CRS, _CRS, _CRS, _CRS),
    "ConfigMap": {"v1": _CONFIG_MAP},
    "Secret": {"v1": _SECRET},
}


def not_supported_fields() -> dict[str, dict[str, list[str]]]:
    """kind -> field path (`[]` for a list's items) -> the API versions that define it, for
    every field capt refuses as not supported."""
    out: dict[str, dict[str, list[str]]] = {}

    def walk(kind: str, version: str, node: Any, path: str) -> None:
        if isinstance(node, ListOf):
            walk(kind, version, node.item, f"{path}[]")
        elif isinstance(node, NotSupported):
            out.setdefault(kind, {}).setdefault(path, []).append(version)
        elif isinstance(node, dict):
            for key, sub in node.items():
                walk(kind, version, sub, f"{path}.{key}" if path else key)

    for kind, versions in SCHEMAS.items():
        for version, schema in versions.items():
            walk(kind, version, schema, "")
    return out


README_BEGIN = "<!-- not-supported:begin (generated from capt/spec/schema.py; tests/spec/test_spec_strict.py checks it) -->"
README_END = "<!-- not-supported:end -->"


def not_supported_markdown() -> str:
    """The README's list of the fields capt refuses as not supported, one line per kind."""
    lines = []
    for kind, fields in not_supported_fields().items():
        all_versions = set(SCHEMAS[kind])
        items = []
        for path, versions in fields.items():
            only = "" if set(versions) == all_versions else f" ({', '.join(versions)})"
            items.append(f"`{path}`{only}")
        lines.append(f"- **{kind}**: " + ", ".join(items))
    return "\n".join(lines)
