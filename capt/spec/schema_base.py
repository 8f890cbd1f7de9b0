"""The building blocks of the manifest schemas: markers for fields capt reads, ignores or refuses,
list and per-version helpers, and the metadata and reference shapes every kind shares."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Marker:
    name: str

    def __repr__(self) -> str:
        return self.name

    def __deepcopy__(self, memo: dict) -> _Marker:
        return self  # compared by identity


ANY = _Marker("ANY")


FREE = _Marker("FREE")


IGNORED = _Marker("IGNORED")


@dataclass(frozen=True)
class NotSupported:
    reason: str = ""


@dataclass(frozen=True)
class ListOf:
    item: Any


NS = NotSupported()


V1ALPHA3, V1ALPHA4, V1BETA1, V1BETA2 = "v1alpha3", "v1alpha4", "v1beta1", "v1beta2"


VERSIONS = (V1ALPHA3, V1ALPHA4, V1BETA1, V1BETA2)


def _with(tree: dict, changes: dict[str, Any]) -> dict:
    """A deep copy of `tree` with dotted paths set (a value) or removed (None)."""
    out = copy.deepcopy(tree)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = node[part].item if isinstance(node[part], ListOf) else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return out


# metav1.ObjectMeta of a top-level object: what the API server sets is harmless in a manifest
# (`kubectl get -o yaml` output), and labels/annotations are the user's.
OBJECT_META = {
    "name": ANY,
    "namespace": ANY,
    "labels": FREE,
    "annotations": FREE,
    "generateName": IGNORED,
    "uid": IGNORED,
    "resourceVersion": IGNORED,
    "generation": IGNORED,
    "creationTimestamp": IGNORED,
    "deletionTimestamp": IGNORED,
    "deletionGracePeriodSeconds": IGNORED,
    "ownerReferences": IGNORED,
    "finalizers": IGNORED,
    "managedFields": IGNORED,
    "selfLink": IGNORED,
}


# clusterv1.ObjectMeta of a machine template: labels (capt matches selectors against them) and
# annotations (nothing in capt reads them; harmless).
TEMPLATE_META = {"labels": FREE, "annotations": FREE}


# corev1.ObjectReference (v1alpha3 … v1beta1); uid/resourceVersion/fieldPath are set by
# controllers and `clusterctl move`, and mean nothing in a manifest.
OBJECT_REF = {
    "apiVersion": ANY,
    "kind": ANY,
    "name": ANY,
    "namespace": ANY,
    "uid": IGNORED,
    "resourceVersion": IGNORED,
    "fieldPath": IGNORED,
}


# clusterv1beta2.ContractVersionedObjectReference; capt also reads the older apiVersion and
# namespace in one (spec.refs), so a v1beta2 document may keep them.
CONTRACT_REF = {"apiGroup": ANY, "kind": ANY, "name": ANY, "apiVersion": ANY, "namespace": ANY}


LABEL_SELECTOR = {
    "matchLabels": FREE,
    "matchExpressions": ListOf({"key": ANY, "operator": ANY, "values": ANY}),
}


def _object(spec: dict) -> dict:
    """A CAPI/CAPA object: its status is the controllers' and ignored in a manifest."""
    return {"apiVersion": ANY, "kind": ANY, "metadata": OBJECT_META, "spec": spec, "status": IGNORED}
