"""Object references across apiVersions: `{apiVersion, kind, name, namespace}` (v1alpha3–v1beta1)
and `{apiGroup, kind, name}` (v1beta2)."""

from __future__ import annotations

from dataclasses import dataclass

from capt.spec.documents import KIND_GROUP, Doc, split_api_version


@dataclass(frozen=True)
class Ref:
    kind: str
    name: str
    namespace: str
    path: str  # where the reference was written, for error messages


_REF_FIELDS = ("apiVersion", "apiGroup", "kind", "name", "namespace", "uid", "resourceVersion", "fieldPath")


def read_ref(doc: Doc, path: str, expected_kinds: tuple[str, ...], required: bool = True) -> Ref | None:
    node = doc.raw(path)
    # An ObjectReference's fields (v1alpha3–v1beta1) and a v1beta2 reference's, for capt/spec/strict.py.
    doc.read.update(f"{path}.{k}" for k in _REF_FIELDS)
    if node is None:
        if required:
            doc.problem(path, "is required")
        return None
    if not isinstance(node, dict):
        doc.problem(path, "must be an object reference with kind and name")
        return None
    kind, name = node.get("kind"), node.get("name")
    if not kind or not name:
        doc.problem(path, "must name both kind and name")
        return None
    if kind not in expected_kinds:
        doc.problem(
            f"{path}.kind", f"{kind!r} is not supported here (expected {' or '.join(expected_kinds)})"
        )
        return None
    group = node.get("apiGroup")
    if group is None and node.get("apiVersion"):
        group, _ = split_api_version(str(node["apiVersion"]))
    if group is not None and group != KIND_GROUP.get(kind, group):
        doc.problem(path, f"{kind} belongs to {KIND_GROUP[kind]!r}, not {group!r}")
    namespace = str(node.get("namespace") or doc.namespace)
    return Ref(kind=str(kind), name=str(name), namespace=namespace, path=path)
