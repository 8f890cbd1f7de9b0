"""Unknown fields are errors: every field of a document capt reads must be one its readers asked
for (spec/documents.py records the paths), one capt knowingly ignores, or a field Cluster API /
CAPA define that capt does not implement ("not supported by capt", listed in the README).

A typo gets the closest field capt knows at that place (`spec.replica: unknown field; did you
mean "replicas"?`). Maps and lists that capt hands on whole (labels, tags, kubeadm's own
configuration documents, files, users) are not looked into here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from spec.documents import Doc

# ObjectMeta: what a manifest (or `kubectl get -o yaml`) may carry; capt reads name, namespace,
# labels and annotations and leaves the rest to the API server that never sees them.
_METADATA = {
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
}
_TOP = {"apiVersion", "kind", "metadata", "status"}

# Cluster API / CAPA fields capt knows and does not implement, by kind: an error, not silence.
NOT_SUPPORTED: dict[str, dict[str, str]] = {
    "Cluster": {
        "spec.availabilityGates": "availability gates",
    },
    "AWSCluster": {
        "spec.identityRef": "AWS cluster identities (capt uses the worker's credentials)",
        "spec.s3Bucket": "S3 bootstrap data (capt uses Secrets Manager)",
        "spec.secondaryControlPlaneLoadBalancer": "a second API load balancer",
        "spec.partition": "partitions other than the region's",
    },
    "AWSMachineTemplate": {
        "spec.template.spec.ignition": "Ignition bootstrap data",
        "spec.template.spec.cloudInit": "cloud-init secure-secret backends (capt uses its boothook)",
        "spec.template.spec.networkInterfaces": "pre-made network interfaces",
        "spec.template.spec.placementGroupName": "placement groups",
        "spec.template.spec.capacityReservationId": "capacity reservations",
        "spec.template.spec.elasticIpPool": "Elastic IP pools",
        "spec.template.spec.privateDnsName": "private DNS name options",
        "spec.template.spec.nonRootVolumes": "extra EBS volumes",
    },
    "KubeadmControlPlane": {
        "spec.machineNamingStrategy": "machine naming templates",
        "spec.kubeadmConfigSpec.diskSetup": "disk setup",
        "spec.kubeadmConfigSpec.ignition": "Ignition",
        "spec.kubeadmConfigSpec.verbosity": "kubeadm verbosity",
        "spec.kubeadmConfigSpec.bootCommands": "boot commands",
    },
    "KubeadmConfigTemplate": {
        "spec.template.spec.diskSetup": "disk setup",
        "spec.template.spec.ignition": "Ignition",
        "spec.template.spec.verbosity": "kubeadm verbosity",
        "spec.template.spec.bootCommands": "boot commands",
    },
    "MachineDeployment": {
        "spec.machineNamingStrategy": "machine naming templates",
        "spec.template.spec.readinessGates": "readiness gates",
    },
    "MachineHealthCheck": {
        "spec.remediationTemplate": "external remediation",
        "spec.remediation.templateRef": "external remediation",
    },
}

# Fields capt reads nothing from because they change nothing for it (deprecated in CAPI, or the
# server's to set): accepted with a warning so that real templates load unchanged.
IGNORED: dict[str, dict[str, str]] = {}


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, value
            yield from _walk(value, child)


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _known_children(doc: Doc, parent: str) -> set[str]:
    names = set()
    for path in doc.read | set(NOT_SUPPORTED.get(doc.kind, {})) | set(IGNORED.get(doc.kind, {})):
        if _parent(path) == parent:
            names.add(path.rpartition(".")[2])
        elif parent and path.startswith(parent + "."):
            names.add(path[len(parent) + 1 :].split(".", 1)[0])
        elif not parent:
            names.add(path.split(".", 1)[0])
    return names


def check(doc: Doc, warnings: list[str]) -> None:
    """Report every field of `doc` that no reader asked for (after the readers ran)."""
    covered = doc.read
    taken_whole = doc.whole
    for key in doc.body:
        if key not in _TOP and key not in covered and not any(p.split(".")[0] == key for p in covered):
            _unknown(doc, str(key), warnings)
    meta = doc.body.get("metadata")
    if isinstance(meta, dict):
        for key in meta:
            if key not in _METADATA:
                near = difflib.get_close_matches(str(key), sorted(_METADATA), n=1)
                hint = f'; did you mean "{near[0]}"?' if near else ""
                doc.problem(f"metadata.{key}", f"unknown field{hint}")
    skip: set[str] = set()
    for path, _ in _walk(doc.body, ""):
        top = path.split(".")[0]
        if top in _TOP or not path.count("."):
            continue
        if any(path == s or path.startswith(s + ".") for s in skip):
            continue
        if any(path == w or path.startswith(w + ".") for w in taken_whole):
            continue
        if path in covered or any(p.startswith(path + ".") for p in covered):
            continue
        listed = set(NOT_SUPPORTED.get(doc.kind, {})) | set(IGNORED.get(doc.kind, {}))
        if any(p.startswith(path + ".") for p in listed):
            continue  # a parent of a field we name: judge its children
        _unknown(doc, path, warnings)
        skip.add(path)


def _unknown(doc: Doc, path: str, warnings: list[str]) -> None:
    if path in NOT_SUPPORTED.get(doc.kind, {}):
        doc.problem(path, f"is not supported by capt ({NOT_SUPPORTED[doc.kind][path]})")
        return
    if path in IGNORED.get(doc.kind, {}):
        warnings.append(
            f"document {doc.index}: {doc.kind}/{doc.name} {path} is ignored by capt "
            f"({IGNORED[doc.kind][path]})"
        )
        return
    name = path.rpartition(".")[2]
    near = difflib.get_close_matches(
        name, sorted(_known_children(doc, _parent(path)) - {name}), n=1, cutoff=0.6
    )
    hint = f'; did you mean "{near[0]}"?' if near else ""
    doc.problem(path, f"unknown field{hint}")
