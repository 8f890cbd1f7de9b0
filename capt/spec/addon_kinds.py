"""ClusterResourceSet and the ConfigMaps it applies to the workload cluster."""

from __future__ import annotations

from dataclasses import dataclass

from capt.spec.capi_kinds import LabelSelector, read_selector
from capt.spec.documents import Doc
from capt.spec.models import AddonResource


@dataclass
class ClusterResourceSetDoc:
    doc: Doc
    cluster_selector: LabelSelector
    strategy: str
    resources: list[tuple[AddonResource, str]]  # (resource, manifest path)


def read_cluster_resource_set(doc: Doc) -> ClusterResourceSetDoc:
    strategy = doc.str("spec.strategy", "ApplyOnce")
    if strategy not in ("ApplyOnce", "Reconcile"):
        doc.problem("spec.strategy", f"must be ApplyOnce or Reconcile, got {strategy!r}")
        strategy = "ApplyOnce"
    resources = []
    for i, r in enumerate(doc.list("spec.resources")):
        path = f"spec.resources[{i}]"
        if not isinstance(r, dict) or not r.get("name") or r.get("kind") not in ("ConfigMap", "Secret"):
            doc.problem(path, "needs kind ConfigMap or Secret and a name")
            continue
        # A Secret resource's values never enter the spec: the loader hands them to the CLI,
        # which stores them in Secrets Manager (capt/spec/secret_kinds.py).
        resources.append((AddonResource(kind=r["kind"], name=str(r["name"])), path))
    return ClusterResourceSetDoc(
        doc=doc,
        cluster_selector=read_selector(doc, "spec.clusterSelector"),
        strategy=strategy,
        resources=resources,
    )


def read_config_map(doc: Doc) -> dict[str, str]:
    doc.bool("immutable")
    if doc.has("binaryData"):
        doc.problem(
            "binaryData", "is not supported by capt (a ClusterResourceSet applies YAML documents from data)"
        )
    return doc.str_map("data")
