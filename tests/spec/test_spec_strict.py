"""Strict manifests: an unknown field, a field capt does not implement and a value of the wrong
type are each a problem with the document, kind/name, the field's full path and what to write;
the real manifests capt ships with and tests against load with no problem at all."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from capt.spec.errors import ManifestError
from capt.spec.loader import load_file, load_manifest
from capt.spec.schema import README_BEGIN, README_END, not_supported_markdown
from tests.spec.test_spec_loader import CLUSTERCTL_VARS, base_docs, render
from tests.support.paths import CAPA_TEMPLATE, QUICKSTART, ROOT
from tests.support.secret_manifest import secret_manifest

Mutation = Callable[[list[dict]], None]


def _doc(docs: list[dict], kind: str, name: str | None) -> dict:
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


def _node(doc: dict, path: str) -> tuple[dict | list, str | int]:
    """The container of the dotted `path`'s last part (a digit part indexes a list)."""
    *parents, last = path.split(".")
    node: dict | list = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})  # type: ignore[index]
    return node, (int(last) if last.isdigit() else last)


def put(kind: str, path: str, value, name: str | None = None) -> Mutation:
    def fn(docs: list[dict]) -> None:
        node, last = _node(_doc(docs, kind, name), path)
        node[last] = value  # type: ignore[index]

    return fn


def rename(kind: str, path: str, new: str, name: str | None = None) -> Mutation:
    """Move the value at `path` to the sibling key `new` (a misspelling, or another version's name)."""

    def fn(docs: list[dict]) -> None:
        node, last = _node(_doc(docs, kind, name), path)
        node[new] = node.pop(last)  # type: ignore[union-attr]

    return fn


def add(*extra: dict) -> Mutation:
    def fn(docs: list[dict]) -> None:
        docs.extend(copy.deepcopy(extra))

    return fn


def both(*fns: Mutation) -> Mutation:
    def fn(docs: list[dict]) -> None:
        for f in fns:
            f(docs)

    return fn


def _kcp_v1alpha3_shape(docs: list[dict]) -> None:
    spec = _doc(docs, "KubeadmControlPlane", None)["spec"]
    spec["infrastructureTemplate"] = spec.pop("machineTemplate")["infrastructureRef"]


CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cni"},
    "data": {"cni.yaml": "{}"},
}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "extra"}, "stringData": {"k": "v"}}
CRS = {
    "apiVersion": "addons.cluster.x-k8s.io/v1beta1",
    "kind": "ClusterResourceSet",
    "metadata": {"name": "cni"},
    "spec": {
        "clusterSelector": {"matchLabels": {"cni": "calico"}},
        "resources": [{"kind": "ConfigMap", "name": "cni"}],
        "strategy": "ApplyOnce",
    },
}
KCS = "spec.kubeadmConfigSpec"
KCT = "spec.template.spec"
AMT = "spec.template.spec"
FILE = {"path": "/etc/x", "content": "x"}

# The base manifest (tests/spec/test_spec_loader.py::base_docs): 1 Cluster/demo (v1beta1),
# 2 AWSCluster/demo (v1beta2), 3 KubeadmControlPlane/demo-cp (v1beta1), 4 AWSMachineTemplate/demo-cp
# (v1beta2), 5 MachineDeployment/demo-md (v1beta1), 6 AWSMachineTemplate/demo-md,
# 7 KubeadmConfigTemplate/demo-md (v1beta1), 8 MachineHealthCheck/demo-mhc (v1beta1).
CASES: list[tuple[str, Mutation, list[str]]] = [
    # --- unknown fields, at every depth of every kind, with a did-you-mean ---------------
    (
        "kcp-replica",
        rename("KubeadmControlPlane", "spec.replicas", "replica"),
        ['document 3 KubeadmControlPlane/demo-cp spec.replica: unknown field; did you mean "replicas"?'],
    ),
    (
        "cluster-network-pod",
        rename("Cluster", "spec.clusterNetwork.pods", "pod"),
        ['document 1 Cluster/demo spec.clusterNetwork.pod: unknown field; did you mean "pods"?'],
    ),
    (
        "cluster-metadata-label",
        rename("Cluster", "metadata.labels", "label"),
        ['document 1 Cluster/demo metadata.label: unknown field; did you mean "labels"?'],
    ),
    (
        "aws-cluster-vpc-cidr",
        put("AWSCluster", "spec.network", {"vpc": {"cidr": "10.1.0.0/16"}}),
        ['document 2 AWSCluster/demo spec.network.vpc.cidr: unknown field; did you mean "cidrBlock"?'],
    ),
    (
        "aws-cluster-region-case",
        rename("AWSCluster", "spec.region", "Region"),
        [
            'document 2 AWSCluster/demo spec.Region: unknown field; did you mean "region"?',
            "document 2 AWSCluster/demo spec.region: is required",
        ],
    ),
    (
        "aws-machine-root-volume-sise",
        put("AWSMachineTemplate", f"{AMT}.rootVolume", {"sise": 100}, "demo-md"),
        [
            "document 6 AWSMachineTemplate/demo-md spec.template.spec.rootVolume.sise: unknown field; "
            'did you mean "size"?'
        ],
    ),
    (
        "kcp-pre-kubeadm-command",
        put("KubeadmControlPlane", f"{KCS}.preKubeadmCommand", ["echo hi"]),
        [
            "document 3 KubeadmControlPlane/demo-cp spec.kubeadmConfigSpec.preKubeadmCommand: unknown field; "
            'did you mean "preKubeadmCommands"?'
        ],
    ),
    (
        "kcp-file-permission",
        put("KubeadmControlPlane", f"{KCS}.files", [FILE, dict(FILE, permission="0600")]),
        [
            "document 3 KubeadmControlPlane/demo-cp spec.kubeadmConfigSpec.files[1].permission: unknown field; "
            'did you mean "permissions"?'
        ],
    ),
    (
        "kct-user-ssh-key",
        put(
            "KubeadmConfigTemplate",
            f"{KCT}.users",
            [{"name": "ops", "sshAuthorizedKey": ["ssh-ed25519 AAAA"]}],
        ),
        [
            "document 7 KubeadmConfigTemplate/demo-md spec.template.spec.users[0].sshAuthorizedKey: "
            'unknown field; did you mean "sshAuthorizedKeys"?'
        ],
    ),
    (
        "kct-template-spc",
        rename("KubeadmConfigTemplate", "spec.template.spec", "spc"),
        ['document 7 KubeadmConfigTemplate/demo-md spec.template.spc: unknown field; did you mean "spec"?'],
    ),
    (
        "md-max-surg",
        put("MachineDeployment", "spec.strategy", {"rollingUpdate": {"maxSurg": 1}}),
        [
            "document 5 MachineDeployment/demo-md spec.strategy.rollingUpdate.maxSurg: unknown field; "
            'did you mean "maxSurge"?'
        ],
    ),
    (
        "md-bootstrap-config-ref-case",
        rename("MachineDeployment", "spec.template.spec.bootstrap.configRef", "configref"),
        [
            "document 5 MachineDeployment/demo-md spec.template.spec.bootstrap.configref: unknown field; "
            'did you mean "configRef"?',
            "document 5 MachineDeployment/demo-md spec.template.spec.bootstrap.configRef: is required",
        ],
    ),
    (
        "mhc-max-unhealty",
        rename("MachineHealthCheck", "spec.maxUnhealthy", "maxUnhealty"),
        [
            'document 8 MachineHealthCheck/demo-mhc spec.maxUnhealty: unknown field; did you mean "maxUnhealthy"?'
        ],
    ),
    (
        "crs-stratgy",
        both(add(CRS, CONFIG_MAP), rename("ClusterResourceSet", "spec.strategy", "stratgy")),
        ['document 9 ClusterResourceSet/cni spec.stratgy: unknown field; did you mean "strategy"?'],
    ),
    (
        "config-map-datta",
        both(add(CRS, CONFIG_MAP), rename("ConfigMap", "data", "datta")),
        ['document 10 ConfigMap/cni datta: unknown field; did you mean "data"?'],
    ),
    (
        "secret-string-data-case",
        both(add(SECRET), rename("Secret", "stringData", "stringdata")),
        ['document 9 Secret/extra stringdata: unknown field; did you mean "stringData"?'],
    ),
    (
        "no-suggestion-for-a-stranger",
        put("Cluster", "spec.zzz", 1),
        ["document 1 Cluster/demo spec.zzz: unknown field"],
    ),
    # --- a field of another API version --------------------------------------------------
    (
        "kcp-v1beta1-with-v1alpha3-infrastructure-template",
        _kcp_v1alpha3_shape,
        [
            "document 3 KubeadmControlPlane/demo-cp spec.infrastructureTemplate: unknown field in v1beta1 "
            "(only in v1alpha3)",
        ],
    ),
    (
        "aws-cluster-v1beta2-with-network-spec",
        put("AWSCluster", "spec.networkSpec", {"vpc": {"cidrBlock": "10.1.0.0/16"}}),
        [
            "document 2 AWSCluster/demo spec.networkSpec: unknown field in v1beta2 (only in v1alpha3); "
            'did you mean "network"?'
        ],
    ),
    (
        "md-v1beta1-with-v1beta2-rollout",
        put("MachineDeployment", "spec.rollout", {"strategy": {"type": "OnDelete"}}),
        ["document 5 MachineDeployment/demo-md spec.rollout: unknown field in v1beta1 (only in v1beta2)"],
    ),
    # --- defined by CAPI/CAPA, not implemented by capt ------------------------------------
    (
        "aws-cluster-identity-ref",
        put("AWSCluster", "spec.identityRef", {"kind": "AWSClusterRoleIdentity", "name": "ops"}),
        [
            "document 2 AWSCluster/demo spec.identityRef: is not supported by capt "
            "(capt uses the worker's AWS credentials)"
        ],
    ),
    (
        "aws-machine-non-root-volumes",
        put("AWSMachineTemplate", f"{AMT}.nonRootVolumes", [{"size": 50}], "demo-md"),
        ["document 6 AWSMachineTemplate/demo-md spec.template.spec.nonRootVolumes: is not supported by capt"],
    ),
    (
        "kcp-disk-setup",
        put("KubeadmControlPlane", f"{KCS}.diskSetup", {"filesystems": [{"device": "/dev/xvdb"}]}),
        ["document 3 KubeadmControlPlane/demo-cp spec.kubeadmConfigSpec.diskSetup: is not supported by capt"],
    ),
    (
        "md-taints",
        put("MachineDeployment", "spec.template.spec.taints", [{"key": "gpu", "effect": "NoSchedule"}]),
        ["document 5 MachineDeployment/demo-md spec.template.spec.taints: is not supported by capt"],
    ),
    (
        "md-machine-naming-strategy",
        put(
            "MachineDeployment",
            "spec.machineNamingStrategy",
            {"template": "{{ .machineSet.name }}-{{ .random }}"},
        ),
        ["document 5 MachineDeployment/demo-md spec.machineNamingStrategy: is not supported by capt"],
    ),
    # --- type errors say what to write ----------------------------------------------------
    (
        "kcp-version-float",
        put("KubeadmControlPlane", "spec.version", 1.20),
        [
            "document 3 KubeadmControlPlane/demo-cp spec.version: got the number 1.2; write the Kubernetes "
            'version as a quoted string with a v prefix, e.g. "v1.20.5"'
        ],
    ),
    (
        "md-replicas-string",
        put("MachineDeployment", "spec.replicas", "3"),
        [
            'document 5 MachineDeployment/demo-md spec.replicas: got the string "3"; write 3 (a number, without quotes)'
        ],
    ),
    (
        "md-replicas-float",
        put("MachineDeployment", "spec.replicas", 2.0),
        ["document 5 MachineDeployment/demo-md spec.replicas: got the number 2.0; write 2 (a whole number)"],
    ),
    (
        "cluster-paused-string",
        put("Cluster", "spec.paused", "yes"),
        ['document 1 Cluster/demo spec.paused: got the string "yes"; write true (without quotes)'],
    ),
    (
        "aws-cluster-ssh-key-number",
        put("AWSCluster", "spec.sshKeyName", 123),
        [
            'document 2 AWSCluster/demo spec.sshKeyName: got the number 123; write "123" (quoted) if that is what you mean'
        ],
    ),
    (
        "aws-cluster-bastion-list",
        put("AWSCluster", "spec.bastion", [{"enabled": True}]),
        [
            "document 2 AWSCluster/demo spec.bastion: got a list; write a mapping (key: value lines), "
            "not a list (- item lines)"
        ],
    ),
    (
        "kcp-files-mapping",
        put("KubeadmControlPlane", f"{KCS}.files", FILE),
        [
            "document 3 KubeadmControlPlane/demo-cp spec.kubeadmConfigSpec.files: got a mapping; "
            "write a list (- item lines), not a mapping"
        ],
    ),
    (
        "kct-commands-string",
        put("KubeadmConfigTemplate", f"{KCT}.preKubeadmCommands", "echo hi"),
        [
            "document 7 KubeadmConfigTemplate/demo-md spec.template.spec.preKubeadmCommands: "
            'got the string "echo hi"; write a list, e.g. ["echo hi"]'
        ],
    ),
    (
        "md-rollout-after-unquoted-timestamp",
        put(
            "MachineDeployment",
            "spec.rolloutAfter",
            datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        ),
        [
            "document 5 MachineDeployment/demo-md spec.rolloutAfter: got the timestamp 2025-01-02T03:04:05+00:00; "
            'write it quoted: "2025-01-02T03:04:05Z"'
        ],
    ),
    # --- accepted: ignored metadata/status, unsupported fields at their zero value ---------
    (
        "server-set-metadata-and-status-are-ignored",
        both(
            put("Cluster", "metadata.creationTimestamp", "2024-01-01T00:00:00Z"),
            put("Cluster", "metadata.resourceVersion", "123"),
            put("Cluster", "metadata.generation", 4),
            put("Cluster", "metadata.managedFields", [{"manager": "clusterctl"}]),
            put("Cluster", "status", {"phase": "Provisioned"}),
            put("Cluster", "spec.infrastructureRef.uid", "0b5e"),
        ),
        [],
    ),
    (
        "unsupported-fields-at-their-zero-value-are-accepted",
        both(
            put("AWSCluster", "spec.bastion", {"enabled": False, "disableIngressRules": False}),
            put("KubeadmControlPlane", f"{KCS}.diskSetup", {}),
            put("MachineDeployment", "spec.template.spec.taints", []),
        ),
        [],
    ),
    (
        "kubeadm-documents-are-kubeadms",
        put("KubeadmControlPlane", f"{KCS}.clusterConfiguration", {"anything": {"kubeadm": "owns"}}),
        [],
    ),
]


def problems(text: str) -> list[str]:
    try:
        load_manifest(text, env={})
    except ManifestError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(("mutation", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_strict_manifest_problems(mutation: Mutation, expected: list[str]):
    docs = copy.deepcopy(base_docs())
    mutation(docs)
    # The same problems (their order follows when each check ran).
    assert sorted(problems(render(docs))) == sorted(expected)


def test_there_are_at_least_25_strict_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(lambda: load_file(QUICKSTART, env={}), id="examples/capi-quickstart.yaml"),
        pytest.param(lambda: load_file(CAPA_TEMPLATE, CLUSTERCTL_VARS, env={}), id="capa-cluster-template"),
        pytest.param(
            lambda: load_file(ROOT / "tests" / "histories" / "manifests" / "hist.yaml", env={}),
            id="hist.yaml",
        ),
        pytest.param(lambda: load_manifest(secret_manifest(), env={}), id="secret-manifest"),
        pytest.param(lambda: load_manifest(render(base_docs()), env={}), id="base-docs"),
    ],
)
def test_real_manifests_load_with_zero_problems(load):
    load()  # raises ManifestError on any problem


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path: Path):
    load_file(path, env={})


def test_readme_lists_the_fields_capt_does_not_support():
    readme = (ROOT / "README.md").read_text()
    begin, end = readme.index(README_BEGIN) + len(README_BEGIN), readme.index(README_END)
    assert readme[begin:end].strip() == not_supported_markdown(), (
        "README.md is out of date: put spec.schema.not_supported_markdown() between its markers"
    )
